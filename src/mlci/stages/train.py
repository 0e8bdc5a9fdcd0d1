"""train: the project's entrypoint under an MLflow run, with metrics, signature and lineage."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlci import __version__, console, git, providers, targets
from mlci.config import Project
from mlci.errors import CheckFailed, UsageError
from mlci.metrics import evaluate
from mlci.splits import read_split, split_path
from mlci.stages._result import StageOptions, StageResult


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def project_importable(project: Project) -> Iterator[None]:
    """The project's src/ and root at the front of sys.path inside the block, and sys.path as
    it was after it, whatever the block put there (MLflow's model loading prepends each logged
    model's code/ directory, a temporary one). A process that trains in-process (a test, a
    notebook, `mlci run`) must not go on importing from this project, or from a deleted
    directory, afterwards."""
    saved = list(sys.path)
    for folder in (project.root, project.root / "src"):
        if folder.is_dir() and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path[:] = saved


def load_entrypoint(project: Project) -> Callable[..., Any]:
    """Import 'module:function' with the project's src/ and root importable while it is imported
    (run_train keeps them importable for the whole run, so the function may import lazily)."""
    spec = project.config.train.entrypoint
    module_name, _, function_name = spec.partition(":")
    try:
        with project_importable(project):
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise project.error(
                "train.entrypoint",
                f"module '{module_name}' not found under src/ or the project root; fix train.entrypoint",
            ) from None
        raise UsageError(
            f"importing {module_name} failed: {exc}; install the project's dependencies (pip install -e .)"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise project.error(
            "train.entrypoint", f"'{module_name}' has no function '{function_name}'; fix train.entrypoint"
        )
    return function  # type: ignore[no-any-return]


# Files outside src/ that decide what a training run produces: dependencies and their locks.
_BUILD_FILES = ("pyproject.toml", "uv.lock", "poetry.lock", "requirements.txt", "requirements.lock", "setup.cfg")
# Libraries whose version changes a fitted model or how it is scored.
_MODEL_LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "xgboost", "lightgbm", "catboost")


def fingerprint(project: Project, entrypoint: Callable[..., Any], digests: dict[str, str]) -> str:
    """What makes a trained model what it is: every source file under src/ (and the
    entrypoint's module when it lives elsewhere), the project's dependency files, the versions
    of the libraries that fit and score it, the whole data and train sections of mlci.yaml
    (label column included) and the data itself. register finds an earlier version with the
    same fingerprint and registers nothing new: retraining with nothing changed is not a new
    model."""
    from importlib import metadata

    cfg = project.config
    src = project.root / "src"
    files = {
        p.resolve()
        for p in (src.rglob("*") if src.is_dir() else ())
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc" and ".egg-info" not in str(p)
    }
    files |= {(project.root / name).resolve() for name in _BUILD_FILES if (project.root / name).is_file()}
    module = sys.modules.get(getattr(entrypoint, "__module__", ""))
    module_file = getattr(module, "__file__", None)
    if module_file:
        files.add(Path(module_file).resolve())
    libraries: dict[str, str] = {}
    for library in _MODEL_LIBRARIES:
        try:
            libraries[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            continue
    digest = hashlib.sha256()
    facts = {
        "data_config": dataclasses.asdict(cfg.data),
        "train_config": dataclasses.asdict(cfg.train),
        "data": digests,
        "libraries": libraries,
    }
    digest.update(json.dumps(facts, sort_keys=True, default=str).encode())
    root = project.root.resolve()
    for path in sorted(files):
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        digest.update(f"\0{name}\0{file_digest(path)}".encode())
    return digest.hexdigest()


def lineage_tags(project: Project, digests: dict[str, str]) -> dict[str, str]:
    tags = {"mlci.version": __version__, "mlci.stage": "train"}
    head = git.head_info(project.root)
    if head is not None:
        tags.update(
            {
                "mlci.git.commit": head.commit,
                "mlflow.source.git.commit": head.commit,
                "mlci.git.branch": head.branch,
                "mlci.git.dirty": str(head.dirty).lower(),
            }
        )
    ci = providers.detect()
    url = ci.run_url(os.environ) if ci else None
    if url:
        tags["mlci.ci.run_url"] = url
    for which, digest in digests.items():
        tags[f"mlci.data.{which}.sha256"] = digest
    return tags


def pip_requirements(model: Any) -> list[str]:
    """Pinned requirements of the model's environment; given explicitly because MLflow's
    inference spends ~10 s in a subprocess guessing them."""
    from importlib import metadata

    names = ["scikit-learn", "pandas", "numpy", "scipy", "cloudpickle"]
    root_module = type(model).__module__.split(".")[0]
    extra = {"xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost"}.get(root_module)
    if extra:
        names.append(extra)
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


@contextmanager
def user_code(mlflow: Any, what: str) -> Iterator[None]:
    """Run the project's own code: any exception, or a sys.exit() in it, fails the stage
    (exit 1) with its traceback printed and the run tagged, instead of passing for done."""
    try:
        yield
    except (Exception, SystemExit) as exc:
        traceback.print_exc()
        reason = (
            f"exited with sys.exit({exc.code!r})"
            if isinstance(exc, SystemExit)
            else (f"raised {type(exc).__name__}: {exc}")
        )
        mlflow.set_tag("mlci.error", f"{what} {reason}"[:5000])
        raise CheckFailed(f"{what} {reason}") from None


def flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_train(project: Project, tracking_override: str | None = None) -> StageResult:
    target = targets.get(project.config.target)
    with target.store_faults(project, tracking_override), project_importable(project):
        target.require(project, "train")
        # The lineage is this checkout's (its commit, its CI run, its files' fingerprint) wherever
        # the target trains: a Databricks job runs from the wheel and data uploaded from here.
        digests = data_digests(project)
        tags = training_tags(project, digests)
        record = target.train_remotely(project, tags)
        if record is None:
            return _train(project, tags, tracking_override, digests)
        return StageResult(
            str(record["summary"]),
            dict(record["details"]),
            outputs=dict(record.get("outputs") or {}),
            markdown=str(record.get("markdown") or ""),
        )


def data_digests(project: Project) -> dict[str, str]:
    """The sha256 of data.train and data.holdout on this machine."""
    return {which: file_digest(split_path(project, which)) for which in ("train", "holdout")}


def training_tags(project: Project, digests: dict[str, str]) -> dict[str, str]:
    """The MLflow run's lineage tags and fingerprint, from the project's files on this machine."""
    function = load_entrypoint(project)
    return {**lineage_tags(project, digests), "mlci.fingerprint": fingerprint(project, function, digests)}


def train_here(project: Project, tags: dict[str, str], tracking_override: str | None = None) -> StageResult:
    """Train in this process on the target's tracking store, with the lineage `tags`."""
    with targets.get(project.config.target).store_faults(project, tracking_override), project_importable(project):
        return _train(project, tags, tracking_override)


def _train(
    project: Project, tags: dict[str, str], tracking_override: str | None, known_digests: dict[str, str] | None = None
) -> StageResult:
    cfg = project.config
    target = targets.get(project.config.target)
    train_x, train_y, train_path = read_split(project, "train")
    holdout_x, holdout_y, holdout_path = read_split(project, "holdout")
    missing = [c for c in train_x.columns if c not in holdout_x.columns]
    if missing:
        raise project.error(
            "data.holdout", f"holdout lacks training columns {missing[:5]}; regenerate {cfg.data.holdout}"
        )
    function = load_entrypoint(project)
    uri = target.tracking_uri(project, tracking_override)
    print(
        f"train: {cfg.train.entrypoint} on {cfg.data.train} ({len(train_x)} rows x {train_x.shape[1]} columns); "
        f"tracking {uri}",
        flush=True,
    )
    mlflow = target.configure_mlflow(project, tracking_override, verbose=console.verbose())
    from mlflow.models import infer_signature

    experiment_id = target.ensure_experiment(mlflow, project, uri)
    # Training here, on this machine's files: run_train hashed them for the lineage tags a
    # moment ago, so they are not read a second time. A job trained elsewhere from uploaded
    # copies (train_here) hashes the copies it read.
    digests = known_digests or {"train": file_digest(train_path), "holdout": file_digest(holdout_path)}
    params = dict(cfg.train.params)
    with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
        if params:
            mlflow.log_params(flat_params(params))
        started = time.perf_counter()
        with user_code(mlflow, f"training entrypoint {cfg.train.entrypoint}"):
            model = function(train_x, train_y, params)
        fit_seconds = time.perf_counter() - started
        if not hasattr(model, "predict"):
            raise project.error(
                "train.entrypoint",
                f"{cfg.train.entrypoint} returned {type(model).__name__}, which has no predict(); "
                "return the fitted model",
            )
        example = holdout_x.head(5)
        notes: list[str] = []
        with user_code(mlflow, f"the model returned by {cfg.train.entrypoint}"):
            metrics = evaluate(model, holdout_x, holdout_y, cfg.train.task, notes)
            signature = infer_signature(example, model.predict(example))
        mlflow.log_metrics({**metrics, "fit_seconds": fit_seconds})
        print("train: holdout " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)
        for text in notes:
            print(f"train: note: {text}", flush=True)
        package_dir = package_folder(project)
        import mlflow.sklearn

        logged = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(model),
            serialization_format=cfg.train.serialization,
            # Ship the project's package with the model: its features code is needed to load it.
            code_paths=[str(package_dir)] if package_dir is not None else None,
        )
        run_id = run.info.run_id
    model_uri = f"runs:/{run_id}/model"
    details = {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "experiment": cfg.experiment,
        "model_uri": model_uri,
        "logged_model_uri": getattr(logged, "model_uri", model_uri),
        "tracking_uri": uri,
        "metrics": metrics,
        "metric_notes": notes,
        "fingerprint": tags["mlci.fingerprint"],
        "params": params,
        "fit_seconds": round(fit_seconds, 3),
        "data": {
            "train": {"path": cfg.data.train, "rows": len(train_x), "sha256": digests["train"]},
            "holdout": {"path": cfg.data.holdout, "rows": len(holdout_x), "sha256": digests["holdout"]},
        },
    }
    table = "| metric | holdout |\n|---|---|\n" + "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
    summary = f"trained run {run_id}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    return StageResult(summary, details, outputs={"run-id": run_id, "model-uri": model_uri}, markdown=table)


def package_folder(project: Project) -> Path | None:
    """The project's package folder: src/<package> of a checkout, else where it is installed
    (a Databricks job runs the project from its wheel, without src/)."""
    package = project.config.project.package
    folder = project.root / "src" / package
    if folder.is_dir():
        return folder
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations and Path(locations[0]).is_dir() else None


def run(project: Project, options: StageOptions) -> StageResult:
    """The stage as `mlci train` and `mlci run` call it (mlci.stage_specs.STAGES names it)."""
    return run_train(project, options["tracking_uri"])
