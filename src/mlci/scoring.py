"""Score a registered model in isolation from the working tree.

A model carries its own feature code (MLflow `code_paths`). Loaded in the process that has
already imported the project's package, or from a directory where the working tree is
importable (an editable install, PYTHONPATH, the current directory), it would be scored with
the *new* feature code: a champion would crash on columns it never saw, or be scored wrong.
So every model that is not the candidate is scored by `python -m mlci.scoring` in a child
process whose working directory is a temporary one, whose PYTHONPATH and sys.path hold
nothing of the project, and which checks after loading that the project's package came from
the model's own logged code. Rows go in as a pickled DataFrame file, metrics come back as a
JSON file (never parsed from stdout, where MLflow may print).

Parent side: `score_isolated()`. Child side: `main()`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlci.errors import InfraError


def _under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (OSError, ValueError):
        return False
    return True


def _is_project_entry(entry: str, project_root: Path, keep: list[Path]) -> bool:
    """A sys.path / PYTHONPATH entry that would make the working tree importable: the project
    root or anything under it (src/, ...), except an environment living there (.venv)."""
    path = Path(entry or os.getcwd())
    return _under(path, project_root) and not any(_under(path, folder) for folder in keep)


def child_env(project_root: Path) -> dict[str, str]:
    """The environment of the scoring child: PYTHONPATH without the project's folders."""
    env = dict(os.environ)
    keep = [Path(sys.prefix), Path(sys.base_prefix)]
    entries = [e for e in env.get("PYTHONPATH", "").split(os.pathsep) if e]
    kept = [e for e in entries if not _is_project_entry(e, project_root, keep)]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        env.pop("PYTHONPATH", None)
    env["PYTHONSAFEPATH"] = "1"  # no script or cwd directory put in front of sys.path
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return env


def score_isolated(
    project_root: Path, package: str, model_dir: Path, features: Any, target: Any, task: str, what: str
) -> tuple[dict[str, float], list[str]]:
    """Metrics and notes of the model in `model_dir` (a downloaded MLflow model), scored on
    `features`/`target` in a child process that cannot see the working tree."""
    with tempfile.TemporaryDirectory(prefix="mlci-score-") as scratch:
        folder = Path(scratch)
        rows = folder / "rows.pkl"
        features.assign(**{"__mlci_target__": target.to_numpy()}).to_pickle(rows)
        request = {
            "model_dir": str(model_dir),
            "rows": str(rows),
            "task": task,
            "package": package,
            "project_root": str(project_root),
            "output": str(folder / "metrics.json"),
        }
        (folder / "request.json").write_text(json.dumps(request), encoding="utf-8")
        try:
            done = subprocess.run(
                [sys.executable, "-m", "mlci.scoring", str(folder / "request.json")],
                cwd=folder,
                env=child_env(project_root),
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InfraError(f"scoring {what} in isolation did not finish in 900 s") from None
        output = folder / "metrics.json"
        answer: dict[str, Any] = json.loads(output.read_text(encoding="utf-8")) if output.is_file() else {}
    if done.returncode != 0 or "metrics" not in answer:
        reason = answer.get("error") or (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InfraError(f"could not score {what} in isolation from the working tree: {reason}")
    return dict(answer["metrics"]), list(answer.get("notes", []))


def _hide_project(project_root: Path, package: str) -> None:
    """Take the working tree off the import system before anything loads the model."""
    keep = [Path(sys.prefix), Path(sys.base_prefix)]
    sys.path[:] = [e for e in sys.path if not _is_project_entry(e, project_root, keep)]
    # An editable install may use a meta-path finder instead of a path entry (hatchling's
    # dev-mode-exact, setuptools' strict mode): drop any finder that would serve the project.
    for finder in list(sys.meta_path):
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None or getattr(finder, "__module__", "").startswith(("importlib", "_frozen")):
            continue
        try:
            spec = find_spec(package, None)
        except Exception:  # a third-party finder that cannot answer: leave it alone
            continue
        origin = getattr(spec, "origin", None) if spec is not None else None
        locations = list(getattr(spec, "submodule_search_locations", None) or []) if spec is not None else []
        if any(_is_project_entry(str(place), project_root, keep) for place in [origin, *locations] if place):
            sys.meta_path.remove(finder)


def _load(model_dir: Path) -> Any:
    import mlflow

    try:
        return mlflow.sklearn.load_model(str(model_dir))
    except Exception:  # not an sklearn flavour: score through the generic interface
        return mlflow.pyfunc.load_model(str(model_dir))


def _check_code_origin(package: str, model_dir: Path) -> None:
    module = sys.modules.get(package)
    if module is None:
        return  # the model does not use the project's package at all
    origin = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), None)
    if origin is None or not _under(Path(origin), model_dir):
        raise RuntimeError(
            f"the model's package '{package}' was imported from {origin}, not from the model's own logged "
            "code; log the model with its code (mlci train does) or uninstall the project from this environment"
        )


def run_child(request: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    from mlci.metrics import evaluate

    project_root = Path(request["project_root"])
    model_dir = Path(request["model_dir"])
    package = str(request["package"])
    _hide_project(project_root, package)
    if package in sys.modules:  # nothing may have imported the working tree's package yet
        raise RuntimeError(f"'{package}' was imported before the model was loaded")
    model = _load(model_dir)
    _check_code_origin(package, model_dir)
    frame = pd.read_pickle(request["rows"])
    target = frame.pop("__mlci_target__")
    notes: list[str] = []
    metrics = evaluate(model, frame, target, str(request["task"]), notes)
    return {"metrics": metrics, "notes": notes}


def main(argv: list[str]) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    output = Path(request["output"])
    try:
        answer = run_child(request)
    except Exception as exc:  # reported to the parent as one line, which fails the stage clearly
        answer = {"error": f"{type(exc).__name__}: {exc}"}
        output.write_text(json.dumps(answer), encoding="utf-8")
        return 1
    output.write_text(json.dumps(answer), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
