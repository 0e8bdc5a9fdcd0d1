"""The double's job executor: a Databricks job run's python_wheel_task tasks as real subprocesses.

A task runs the console_scripts entry point `entry_point` of the distribution `package_name`
(falling back, as Databricks does, to calling `package_name.entry_point()`), with the current
interpreter, every uploaded `.whl` dependency unpacked onto PYTHONPATH and the environment a
Databricks task has. A dependency path that was never uploaded, or a PyPI requirement the test
venv cannot satisfy, fails the run as "library installation failed". Tasks run one after the
other in list order; the first one that fails ends the run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import Double

# What a python_wheel_task does on a cluster, in a few lines.
_RUNNER = r"""
import importlib, sys
from importlib.metadata import PackageNotFoundError, distribution
package, name, *args = sys.argv[1:]
target = None
try:
    found = [e for e in distribution(package).entry_points if e.group == "console_scripts" and e.name == name]
    target = found[0].load() if found else None
except PackageNotFoundError:
    pass
if target is None:
    target = getattr(importlib.import_module(package), name)
sys.argv = [name, *args]
result = target()
sys.exit(result if isinstance(result, int) else 0)
"""

STDERR_TAIL = 30  # lines of stderr kept as RunOutput.error_trace


def now_ms() -> int:
    return int(time.time() * 1000)


class LibraryError(Exception):
    pass


@dataclass
class TaskRun:
    run_id: int
    task: dict[str, Any]  # the SubmitTask/Task body, parameters already resolved
    dependencies: list[str]  # wheel paths (/Volumes/..., /Workspace/...) and PyPI requirements
    timeout_seconds: int = 0
    started: int | None = None
    ended: int | None = None
    result: str | None = None  # RunResultState once it is over
    code: str | None = None  # TerminationCodeCode
    message: str = ""
    stdout: str = ""
    stderr: str = ""
    process: subprocess.Popen[str] | None = None

    @property
    def key(self) -> str:
        return str(self.task["task_key"])


@dataclass
class JobRun:
    run_id: int
    job_id: int
    run_name: str
    run_type: str  # SUBMIT_RUN / JOB_RUN
    tasks: list[TaskRun]
    timeout_seconds: int = 0
    job_parameters: dict[str, str] = field(default_factory=dict)
    number_in_job: int = 1
    created: int = field(default_factory=now_ms)
    ended: int | None = None
    result: str | None = None
    code: str | None = None
    message: str = ""
    cancelled: bool = False
    timed_out: bool = False
    seen: set[str] = field(default_factory=set)  # life cycle states reported to a poll
    thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        return self.result is not None


def _task_environment(double: Double, token: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABRICKS_", "MLFLOW_", "ACTIONS_ID_TOKEN_", "PYTHONPATH", "PYTEST_"))
    }
    env.update(
        DATABRICKS_HOST=double.url,
        DATABRICKS_TOKEN=token,
        DATABRICKS_AUTH_TYPE="pat",
        DATABRICKS_RUNTIME_VERSION="client.3.1",
        MLFLOW_TRACKING_URI="databricks",
        MLFLOW_REGISTRY_URI="databricks-uc",
        MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC="true",
        # The double's own choice, not the test process's: no telemetry calls to the internet.
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    return env


def _install(double: Double, dependencies: list[str], libs: Path) -> list[str]:
    """Unpack each uploaded wheel under `libs`; check each PyPI requirement is satisfiable."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import InvalidRequirement, Requirement

    paths: list[str] = []
    for dependency in dependencies:
        if dependency.startswith("/"):
            source = double.file_path(
                dependency.removeprefix("/Workspace") if dependency.startswith("/Workspace/Volumes/") else dependency
            )
            if not source.is_file():
                raise LibraryError(
                    f"Library installation failed for library due to user error: {dependency} does not exist"
                )
            if not source.name.endswith(".whl"):
                raise LibraryError(
                    f"Library installation failed for library due to user error: {dependency} is not a wheel"
                )
            target = libs / source.name.removesuffix(".whl")
            with zipfile.ZipFile(source) as wheel:
                wheel.extractall(target)
            paths.append(str(target))
            continue
        try:
            requirement = Requirement(dependency)
            installed = version(requirement.name)
        except (InvalidRequirement, PackageNotFoundError) as exc:
            raise LibraryError(
                f"Library installation failed for library due to user error: could not install {dependency!r} ({exc})"
            ) from exc
        if not requirement.specifier.contains(installed, prereleases=True):
            raise LibraryError(
                "Library installation failed for library due to user error: "
                f"no version satisfies {dependency!r} (the double's venv has {installed})"
            )
    return paths


def start(double: Double, run: JobRun, token: str) -> None:
    run.thread = threading.Thread(target=_execute, args=(double, run, token), daemon=True)
    run.thread.start()


def _execute(double: Double, run: JobRun, token: str) -> None:
    deadline = run.created / 1000 + run.timeout_seconds if run.timeout_seconds else None
    for task in run.tasks:
        _run_task(double, run, task, token, deadline)
        if task.result != "SUCCESS":
            run.result, run.code, run.message = task.result, task.code, task.message
            for rest in run.tasks:
                if rest.result is None:
                    rest.result = "UPSTREAM_CANCELED" if task.result == "CANCELED" else "UPSTREAM_FAILED"
                    rest.code, rest.message = task.code, f"Upstream task {task.key} did not succeed"
            break
    else:
        run.result, run.code, run.message = "SUCCESS", "SUCCESS", ""
    run.ended = now_ms()


def _run_task(double: Double, run: JobRun, task: TaskRun, token: str, deadline: float | None) -> None:
    task.started = now_ms()
    work = double.root / "runs" / str(task.run_id)
    work.mkdir(parents=True, exist_ok=True)
    try:
        if run.cancelled:
            raise InterruptedError
        paths = _install(double, task.dependencies, work / "libs")
    except LibraryError as exc:
        task.result, task.code, task.message, task.ended = "FAILED", "LIBRARY_INSTALLATION_ERROR", str(exc), now_ms()
        return
    except InterruptedError:
        task.result, task.code, task.message, task.ended = "CANCELED", "USER_CANCELED", "Run cancelled.", now_ms()
        return
    wheel = task.task["python_wheel_task"]
    env = _task_environment(double, token)
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    command = [sys.executable, "-c", _RUNNER, wheel["package_name"], wheel["entry_point"], *wheel.get("parameters", [])]
    task.process = subprocess.Popen(
        command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if run.cancelled:  # cancelled while the process started
        task.process.kill()
    limits = [d for d in (deadline, task.started / 1000 + task.timeout_seconds if task.timeout_seconds else None) if d]
    limit = min(limits) if limits else None
    try:
        out, err = task.process.communicate(timeout=None if limit is None else max(0.0, limit - time.time()))
    except subprocess.TimeoutExpired:
        task.process.kill()
        out, err = task.process.communicate()
        run.timed_out = True
    task.stdout, task.stderr, task.ended = out, err, now_ms()
    if run.timed_out:
        task.result, task.code = "TIMEDOUT", "RUN_EXECUTION_ERROR"
        task.message = "Task timed out."
    elif run.cancelled:
        task.result, task.code, task.message = "CANCELED", "USER_CANCELED", "Run cancelled."
    elif task.process.returncode == 0:
        task.result, task.code = "SUCCESS", "SUCCESS"
    else:
        task.result, task.code = "FAILED", "RUN_EXECUTION_ERROR"
        last = [line for line in err.splitlines() if line.strip()]
        task.message = last[-1] if last else f"exit code {task.process.returncode}"


def cancel(run: JobRun) -> None:
    run.cancelled = True
    for task in run.tasks:
        if task.process is not None and task.process.poll() is None:
            task.process.kill()


def error_trace(task: TaskRun) -> str:
    return "\n".join(task.stderr.splitlines()[-STDERR_TAIL:])


_PARAMETER = re.compile(r"\{\{\s*job\.parameters\.([A-Za-z0-9_.-]+)\s*\}\}")


def resolve(value: str, parameters: dict[str, str]) -> str:
    """`{{job.parameters.x}}` references in a task parameter, as a job run resolves them."""
    return _PARAMETER.sub(lambda m: parameters.get(m.group(1), m.group(0)), value)
