"""Training as a Databricks job run: the project's wheel and data go to a Unity Catalog volume,
a one-time run executes `mlci databricks-task train` from them, and this process waits for it.

The run trains exactly what `mlci train` trains locally: the same entrypoint from the same
code (the wheel built from this checkout), the same data files and the lineage tags computed
here (commit, CI run, fingerprint), so register on the CI runner compares like with like. The
run's own result (.mlci/out/train.json of the job) comes back through the volume.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlci import __version__
from mlci.config import Project
from mlci.errors import InfraError, UsageError
from mlci.splits import read_split
from mlci.targets.databricks import workspace

TASK_KEY = "train"
ENVIRONMENT_KEY = "mlci"
INPUTS = "inputs.json"  # what the run downloads: mlci.yaml, the data files, the lineage tags
RESULT = "out/train.json"  # what the run uploads: its stage record
# How much longer than the run's own timeout_seconds this process waits before it cancels the
# run itself (the workspace normally ends it first, as TIMEDOUT).
WAIT_MARGIN = 300
# Life-cycle states after which a run changes no more.
_FINAL = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})


def volume_path(project: Project) -> str:
    catalog, schema, volume = project.config.databricks.volume.split(".")
    return f"/Volumes/{catalog}/{schema}/{volume}/{project.config.project.name}"


def mlci_requirement(project: Project) -> str:
    """How the job's environment installs mlci: as CI does (ci.mlci_install), else this version."""
    return project.config.ci.mlci_install or f"mlci=={__version__}"


def create_job(w: Any, settings: Any) -> int:
    """Create a job from its settings (the batch and monitor-check jobs); its id."""
    created = w.jobs.create(
        name=settings.name,
        tasks=settings.tasks,
        environments=settings.environments,
        schedule=settings.schedule,
        max_concurrent_runs=settings.max_concurrent_runs,
        tags=settings.tags,
    )
    return int(created.job_id)


def build_wheel(project: Project, out_dir: Path) -> Path:
    """The project's wheel, built by its own build backend (pyproject's [build-system]): in a
    child process when the backend is importable here (no network, no isolation), else by
    `uv build` / `pip wheel`, which fetch the backend."""
    root = project.root
    backend = _build_backend(root)
    code = (
        "import importlib, os, sys; os.chdir(sys.argv[1]); "
        "backend = importlib.import_module(sys.argv[2]); print(backend.build_wheel(sys.argv[3]))"
    )
    attempts: list[list[str]] = []
    if backend:
        attempts.append([sys.executable, "-c", code, str(root), backend, str(out_dir)])
    attempts.append([sys.executable, "-m", "uv", "build", "--wheel", "--out-dir", str(out_dir), str(root)])
    attempts.append([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out_dir), str(root)])
    errors: list[str] = []
    for command in attempts:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(out_dir.glob("*.whl"))
        if done.returncode == 0 and wheels:
            return wheels[-1]
        lines = (done.stderr or done.stdout).strip().splitlines()
        errors.append(lines[-1] if lines else f"exit {done.returncode}")
    raise UsageError(f"cannot build the project's wheel in {root} ({errors[0]}); check pyproject.toml's [build-system]")


def _build_backend(root: Path) -> str | None:
    """pyproject's build backend, when this interpreter can import it."""
    import importlib.util

    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10
        return None
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = str(data.get("build-system", {}).get("build-backend", ""))
    if not name or ":" in name:
        return None
    try:
        return name if importlib.util.find_spec(name.split(".")[0]) is not None else None
    except (ImportError, ValueError):
        return None


def submit_training(project: Project, tags: dict[str, str], *, progress: Callable[[str], None]) -> dict[str, Any]:
    """Upload, submit, wait: the job's train record (a passed one; a failed run raises)."""
    cfg = project.config
    for which in ("train", "holdout"):  # a bad data file fails here, not after a paid job start
        read_split(project, which)
    w = workspace.client(project)
    submission = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    folder = f"{volume_path(project)}/{submission}"
    with tempfile.TemporaryDirectory(prefix="mlci-wheel-") as scratch:
        wheel = build_wheel(project, Path(scratch))
        files = {
            "mlci.yaml": project.config_path,
            cfg.data.train: project.root / cfg.data.train,
            cfg.data.holdout: project.root / cfg.data.holdout,
        }
        progress(f"train: uploading {wheel.name} and {len(files)} files to {folder}")
        _upload(w, f"{folder}/{wheel.name}", wheel.read_bytes())
        for relative, path in files.items():
            _upload(w, f"{folder}/{relative}", path.read_bytes())
        inputs = {"files": sorted(files), "tags": tags, "submission": submission}
        _upload(w, f"{folder}/{INPUTS}", json.dumps(inputs, indent=2, sort_keys=True).encode())
        uploaded = [wheel.name, *files, INPUTS]
    try:
        run_id = _submit(w, project, folder, f"{folder}/{wheel.name}", submission)
        deadline = cfg.databricks.train.timeout + WAIT_MARGIN
        run = wait_for_run(w, run_id, deadline, cfg.databricks.poll_interval, progress)
        record = _record(w, folder)
    finally:
        # The training data does not stay on the volume after the run (the run page keeps its logs).
        _remove_quietly(w, folder, [*uploaded, RESULT], progress)
    url = run.run_page_url or ""
    state = run.state
    result = state.result_state.value if state and state.result_state else None
    if result != "SUCCESS":
        life = state.life_cycle_state.value if state and state.life_cycle_state else "UNKNOWN"
        # The task's own report first (mlci's one line), else what the workspace says.
        reason = str(record.get("error") or "") if record else ""
        raise InfraError(
            f"Databricks training run {run_id} ended {result or life}: {reason or task_error(w, run)}; {url}"
        )
    if not record or record.get("status") != "passed":
        raise InfraError(f"Databricks training run {run_id} succeeded but left no train record in {folder}; {url}")
    record.setdefault("details", {})["databricks"] = {"run_id": run_id, "run_page_url": url, "folder": folder}
    return dict(record)


def _remove_quietly(w: Any, folder: str, relative: list[str], progress: Callable[[str], None]) -> None:
    """Delete the submission's files, then its folders (the Files API deletes empty ones only)."""
    from databricks.sdk.errors import NotFound

    folders = {folder}
    try:
        for name in relative:
            with contextlib.suppress(NotFound):  # a file the run never wrote (its record) is no error
                w.files.delete(f"{folder}/{name}")
            parent = name.rpartition("/")[0]
            while parent:
                folders.add(f"{folder}/{parent}")
                parent = parent.rpartition("/")[0]
        for path in sorted(folders, key=len, reverse=True):
            w.files.delete_directory(path)
    except Exception as exc:
        progress(f"train: could not remove {folder} from the volume ({type(exc).__name__}); remove it by hand")


def _record(w: Any, folder: str) -> dict[str, Any] | None:
    """The train record the task uploaded, if it got that far."""
    from databricks.sdk.errors import NotFound

    try:
        data: dict[str, Any] = json.loads(_download(w, f"{folder}/{RESULT}"))
    except (NotFound, ValueError):
        return None
    return data


def _submit(w: Any, project: Project, folder: str, wheel: str, submission: str) -> int:
    from databricks.sdk.service import compute, jobs

    cfg = project.config.databricks.train
    task = jobs.PythonWheelTask(
        package_name="mlci",
        entry_point="mlci",
        parameters=["databricks-task", "train", "--source", folder],
    )
    requirement = mlci_requirement(project)
    if cfg.compute == "serverless":
        submitted = w.jobs.submit(
            run_name=f"{project.config.project.name}-train",
            tasks=[jobs.SubmitTask(task_key=TASK_KEY, python_wheel_task=task, environment_key=ENVIRONMENT_KEY)],
            environments=[
                jobs.JobEnvironment(
                    environment_key=ENVIRONMENT_KEY,
                    spec=compute.Environment(
                        environment_version=cfg.environment_version, dependencies=[requirement, wheel]
                    ),
                )
            ],
            timeout_seconds=cfg.timeout,
            idempotency_token=submission,
        )
    else:
        if not cfg.node_type_id:
            raise project.error(
                "databricks.train.compute",
                "databricks.train.compute: cluster needs databricks.train.node_type_id (e.g. i3.xlarge)",
            )
        cluster = compute.ClusterSpec(
            spark_version=cfg.spark_version,
            node_type_id=cfg.node_type_id,
            num_workers=cfg.num_workers,
            # Unity Catalog access (the wheel on a volume, the UC registry) needs a dedicated cluster.
            data_security_mode=compute.DataSecurityMode.SINGLE_USER,
        )
        if cfg.num_workers == 0:
            cluster.spark_conf = {"spark.master": "local[*]", "spark.databricks.cluster.profile": "singleNode"}
            cluster.custom_tags = {"ResourceClass": "SingleNode"}
        submitted = w.jobs.submit(
            run_name=f"{project.config.project.name}-train",
            tasks=[
                jobs.SubmitTask(
                    task_key=TASK_KEY,
                    python_wheel_task=task,
                    new_cluster=cluster,
                    libraries=[
                        compute.Library(whl=wheel),
                        compute.Library(pypi=compute.PythonPyPiLibrary(requirement)),
                    ],
                )
            ],
            timeout_seconds=cfg.timeout,
            idempotency_token=submission,
        )
    return int(submitted.run_id)


def wait_for_run(w: Any, run_id: int, timeout: float, poll: float, progress: Callable[[str], None]) -> Any:
    """Poll the run until it ends, a line on every state change and every minute; on a timeout
    or an interruption (Ctrl-C, CI's SIGTERM) cancel it, so no orphan run keeps billing."""
    started = time.monotonic()
    last: tuple[str, float] = ("", 0.0)
    try:
        while True:
            run = w.jobs.get_run(run_id)
            state = run.state.life_cycle_state.value if run.state and run.state.life_cycle_state else "UNKNOWN"
            elapsed = time.monotonic() - started
            if state != last[0] or elapsed - last[1] >= 60:
                progress(f"train: Databricks run {run_id} {state} ({int(elapsed)}s) {run.run_page_url or ''}".rstrip())
                last = (state, elapsed)
            if state in _FINAL:
                return run
            if elapsed >= timeout:
                raise InfraError(
                    f"Databricks training run {run_id} did not finish within {int(timeout)}s and was cancelled; "
                    f"raise databricks.train.timeout in mlci.yaml if it needs longer; {run.run_page_url or ''}".rstrip()
                )
            time.sleep(poll)
    except BaseException:  # an interruption, or the workspace stopped answering: no orphan run
        _cancel_quietly(w, run_id)
        raise


def _cancel_quietly(w: Any, run_id: int) -> None:
    try:
        w.jobs.cancel_run(run_id)
    except Exception:  # the interruption is what the user sees; a failed cancel must not hide it
        print(f"train: could not cancel Databricks run {run_id}; cancel it in the workspace", file=sys.stderr)


def task_error(w: Any, run: Any) -> str:
    """The failed task's error (its last line of stderr on Databricks), for the one-line report;
    the trace's tail goes to stderr."""
    messages = []
    for task in run.tasks or []:
        try:
            output = w.jobs.get_run_output(task.run_id)
        except Exception as exc:  # the run's own state message is still worth reporting
            messages.append(f"(no output: {exc})")
            continue
        if output.error_trace:
            print("\n".join(output.error_trace.strip().splitlines()[-20:]), file=sys.stderr)
        if output.error:
            messages.append(output.error.strip().splitlines()[-1])
    if not messages and run.state and run.state.state_message:
        messages.append(run.state.state_message)
    return "; ".join(messages) or "no error message"


def _upload(w: Any, path: str, data: bytes) -> None:
    import io

    w.files.upload(path, io.BytesIO(data), overwrite=True)


def _download(w: Any, path: str) -> bytes:
    response = w.files.download(path)
    data: bytes = response.contents.read()
    return data


# ----- inside the job (mlci databricks-task train)


def fetch_inputs(w: Any, source: str, into: Path) -> dict[str, Any]:
    """Download what submit_training uploaded into `into`; the inputs record."""
    inputs: dict[str, Any] = json.loads(_download(w, f"{source}/{INPUTS}"))
    for relative in inputs["files"]:
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_download(w, f"{source}/{relative}"))
    return inputs


def publish_result(w: Any, source: str, record: dict[str, Any]) -> None:
    _upload(w, f"{source}/{RESULT}", json.dumps(record, indent=2, sort_keys=True, default=str).encode())
