"""What every stage shares: its result record, .mlci/out/<stage>.json and CI outputs."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlci import __version__, ci_env, console
from mlci.config import Project
from mlci.errors import EXIT_INFRA, EXIT_INTERRUPTED, MlciError


@dataclass
class StageResult:
    """The outcome of a stage that passed. A stage that fails raises CheckFailed instead.

    `details` is free-form JSON for .mlci/out/<stage>.json; `outputs` go to the CI system.
    """

    stage: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    markdown: str = ""


def result_path(project: Project, stage: str) -> Path:
    return project.out_dir / f"{stage}.json"


def read_result(project: Project, stage: str) -> dict[str, Any] | None:
    path = result_path(project, stage)
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    # Write then rename, so a reader never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def execute(stage: str, project: Project, work: Callable[[], StageResult]) -> StageResult:
    """Run one stage's work, record its result (also on failure) and publish CI outputs.

    The previous result is marked `running` first, so a stage that dies half-way never leaves
    an earlier success behind for the next stage to trust. A failing check raises an MlciError
    subclass; it is recorded, then re-raised so the CLI's error boundary prints it and exits
    with its code. Anything else (a bug, Ctrl-C, SIGTERM) is recorded as an error and re-raised.
    """
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    record: dict[str, Any] = {
        "stage": stage,
        "mlci_version": __version__,
        "started_at": started.isoformat(timespec="seconds"),
    }
    path = result_path(project, stage)
    _write_json(path, {**record, "status": "running", "exit_code": None, "summary": "running", "details": {}})
    try:
        result = work()
    except MlciError as exc:
        record.update(
            status="failed" if exc.exit_code == 1 else "error",
            exit_code=exc.exit_code,
            summary=exc.message,
            duration_s=round(time.perf_counter() - clock, 3),
            details=getattr(exc, "details", {}),
        )
        _write_json(path, record)
        console.set_result(record)
        # Outputs on failure too (actions/README: `result` is passed, failed or error), with
        # whatever the stage knew, so a later step can report the numbers of a failing run.
        ci_env.set_outputs({**getattr(exc, "outputs", {}), "result": record["status"]})
        ci_env.add_summary(f"### mlci {stage}: {record['status']}\n\n{exc.message}\n\n{exc.markdown}")
        raise
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        record.update(
            status="error",
            exit_code=EXIT_INTERRUPTED if interrupted else EXIT_INFRA,
            summary="interrupted" if interrupted else f"unexpected {type(exc).__name__}: {exc}",
            duration_s=round(time.perf_counter() - clock, 3),
            details={},
        )
        _write_json(path, record)
        console.set_result(record)
        ci_env.set_outputs({"result": "error"})
        ci_env.add_summary(f"### mlci {stage}: error\n\n{record['summary']}")
        raise
    record.update(
        status="passed",
        exit_code=0,
        summary=result.summary,
        duration_s=round(time.perf_counter() - clock, 3),
        details=result.details,
    )
    _write_json(path, record)
    console.set_result(record)
    ci_env.set_outputs({"result": record["status"], **result.outputs})
    ci_env.add_summary(f"### mlci {stage}: {record['status']}\n\n{result.summary}\n\n{result.markdown}")
    return result


def mark(project: Project, stage: str, status: str, summary: str) -> None:
    """Record a stage that `mlci run` did not run (yet): `pending` before the run starts,
    `skipped` after an earlier stage failed. An older result never sits beside a new one
    as if this run had produced it."""
    record: dict[str, Any] = {
        "stage": stage,
        "mlci_version": __version__,
        "started_at": None,
        "status": status,
        "exit_code": None,
        "summary": summary,
        "details": {},
    }
    _write_json(result_path(project, stage), record)


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    _write_json(path, payload)


def stage_command(stage: str, args: Any, work: Callable[[Project], StageResult]) -> int:
    """The whole of a stage command: find the project, hold its lock (it shares the registry
    and .mlci/out with any other mlci there), run and record the stage, print its summary."""
    from mlci.lock import project_lock

    project = load_project_for(args)
    with project_lock(project, stage):
        result = execute(stage, project, lambda: work(project))
    print(result.summary)
    return 0


def load_project_for(args: Any) -> Project:
    """The project a stage command works on: -C DIR, else the nearest mlci.yaml upwards."""
    from mlci.config import load_project

    directory = getattr(args, "project_dir", None)
    return load_project(Path(directory) if directory else None)


def tool_env(project: Project) -> dict[str, str]:
    """Environment for the tools a stage runs: the project's src/ importable, colours off in CI."""
    env = dict(os.environ)
    src = str(project.root / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
