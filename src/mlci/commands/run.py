"""`mlci run [STAGES]`: the stages in DAG order, a status line each, then a summary table."""

from __future__ import annotations

import argparse
import difflib
import functools
import time
from datetime import datetime, timezone
from typing import Any

from mlci import __version__, console
from mlci.config import Project
from mlci.errors import EXIT_INFRA, EXIT_INTERRUPTED, EXIT_OK, MlciError, UsageError
from mlci.stage_specs import HANDED_OVER, NAMES, STAGES, StageSpec
from mlci.stages._result import (
    StageOptions,
    execute,
    load_project_clearing_reports,
    mark,
    project_root_for,
    read_result,
    run_stage,
    write_json,
)


def stage_options(spec: StageSpec, args: argparse.Namespace, handover: dict[str, str]) -> StageOptions:
    """A stage's options under `mlci run`: each option `mlci run` has itself (--tracking-uri),
    else the output an earlier stage of this run handed over (Option.handover), else the
    option's default (deploy: mlci.yaml's target, and the first environment, staging, only:
    production moves by 'mlci deploy --env production')."""
    options: dict[str, Any] = {}
    for option in spec.options:
        if hasattr(args, option.dest):
            options[option.dest] = getattr(args, option.dest)
        elif option.handover is not None:
            options[option.dest] = handover.get(option.handover)
        else:
            options[option.dest] = option.default
    return options


def selected_stages(requested: list[str]) -> list[StageSpec]:
    for name in requested:
        if name not in NAMES:
            close = difflib.get_close_matches(name, NAMES, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"stages: {', '.join(NAMES)}"
            raise UsageError(f"unknown stage '{name}'; {hint}")
    return [spec for spec in STAGES if spec.name in requested or (not requested and spec.in_run)]


def _line(text: str) -> None:
    console.progress(text)


def main(args: argparse.Namespace) -> int:
    from mlci.lock import root_lock

    stages = selected_stages(args.stages)
    root = project_root_for(args)
    with root_lock(root, "run"):
        # As a stage command does: the reports of an earlier run go before mlci.yaml is
        # validated, so a broken file never leaves a green data-test.xml behind as this run's.
        project = load_project_clearing_reports(root, [spec.name for spec in stages])
        if getattr(args, "target", None):
            project = with_target(project, args.target)
        return _run(stages, project, args)


def with_target(project: Project, name: str) -> Project:
    """The project as if mlci.yaml said `target: name` (`mlci run --target`), checked by that
    target's own rules (Databricks: a three-level model name) at register.model_name's line."""
    import dataclasses

    from mlci import targets

    config = dataclasses.replace(project.config, target=name)
    for problem in targets.get(name).validate(config):
        raise project.error(problem.key, f"--target {name}: {problem.message}")
    return dataclasses.replace(project, config=config)


def _run(stages: list[StageSpec], project: Project, args: argparse.Namespace) -> int:
    handover: dict[str, str] = {}  # run id and version passed from stage to stage in this run
    rows: list[tuple[str, str, float, str]] = []
    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    failure: BaseException | None = None
    # Every stage this run will run says so before the first starts: a result of an earlier
    # run (an old passed deploy.json) never sits beside this run's failed register.json.
    for spec in stages:
        mark(project, spec.name, "pending", "pending: 'mlci run' has not reached this stage")
    for index, spec in enumerate(stages, 1):
        stage = spec.name
        _line(f"==> [{index}/{len(stages)}] {stage}")
        clock = time.perf_counter()
        options = stage_options(spec, args, handover)
        try:
            result = execute(stage, project, functools.partial(run_stage, spec, project, options))
        except MlciError as exc:
            status, summary, failure = ("FAILED" if exc.exit_code == 1 else "ERROR"), exc.message, exc
        except KeyboardInterrupt as exc:
            status, summary, failure = "interrupted", "interrupted", exc
        except Exception as exc:  # a bug or user code failing: still this stage's line and the table
            status, summary, failure = "ERROR", f"unexpected {type(exc).__name__}: {exc}", exc
        else:
            elapsed = time.perf_counter() - clock
            handover.update({k: str(v) for k, v in result.outputs.items() if k in HANDED_OVER})
            rows.append((stage, "passed", elapsed, result.summary))
            _line(f"<== {stage}: passed in {elapsed:.1f}s")
            continue
        elapsed = time.perf_counter() - clock
        rows.append((stage, status, elapsed, summary))
        _line(f"<== {stage}: {status} in {elapsed:.1f}s")
        if (read_result(project, stage) or {}).get("status") == "pending":
            # It failed before its own record was written (e.g. its module failed to import,
            # or Ctrl-C between two stages): never leave it looking as if it were still to come.
            mark(project, stage, "interrupted" if status == "interrupted" else "error", summary)
        break
    why = f"not run: {rows[-1][0]} {rows[-1][1].lower()}" if rows else ""
    for spec in stages[len(rows) :]:
        mark(project, spec.name, "skipped", why)
        rows.append((spec.name, "skipped", 0.0, why))
    total = time.perf_counter() - started
    _table(project, rows, total)
    console.set_result(_write_summary(project, rows, failure, started_at, total))
    if failure is not None:
        raise failure
    return 0


def _table(project: Project, rows: list[tuple[str, str, float, str]], total: float) -> None:
    # Wide enough for the headings too: `mlci run lint test` has only short stage names.
    width = max(len("stage"), len("total"), *(len(row[0]) for row in rows))
    status_width = max(len("result"), *(len(row[1]) for row in rows))
    _line("")
    _line(f"{'stage':<{width}}  {'result':<{status_width}}  {'time':>7}  summary")
    for stage, status, elapsed, summary in rows:
        short = summary if len(summary) <= 90 else summary[:87] + "..."
        _line(f"{stage:<{width}}  {status:<{status_width}}  {elapsed:>6.1f}s  {short}")
    _line(
        f"{'total':<{width}}  {'':<{status_width}}  {total:>6.1f}s  "
        f"results in {project.out_dir.relative_to(project.root)}/"
    )


def _write_summary(
    project: Project,
    rows: list[tuple[str, str, float, str]],
    failure: BaseException | None,
    started_at: datetime,
    total: float,
) -> dict[str, Any]:
    """.mlci/out/run.json: what this run did, stage by stage; also the --json result."""
    if failure is None:
        status, code = "passed", EXIT_OK
    elif isinstance(failure, KeyboardInterrupt):
        status, code = "interrupted", EXIT_INTERRUPTED
    elif isinstance(failure, MlciError):
        status, code = ("failed" if failure.exit_code == 1 else "error"), failure.exit_code
    else:
        status, code = "error", EXIT_INFRA
    passed = sum(row[1] == "passed" for row in rows)
    # The stage that ended the run, not the skipped ones recorded after it.
    last = next((row for row in reversed(rows) if row[1] != "skipped"), rows[-1]) if failure is not None else None
    text = (
        f"run passed: {passed} stage{'s' * (passed != 1)} in {total:.1f}s"
        if last is None
        else f"run {status}: {last[0]} {last[1].lower()}: {last[3]}"
    )
    summary: dict[str, Any] = {
        "stage": "run",
        "mlci_version": __version__,
        "started_at": started_at.isoformat(timespec="seconds"),
        "status": status,
        "exit_code": code,
        "summary": text,
        "duration_s": round(total, 3),
        "stages": [
            {"stage": stage, "status": state.lower(), "duration_s": round(elapsed, 3), "summary": summary}
            for stage, state, elapsed, summary in rows
        ],
    }
    write_json(project.out_dir / "run.json", summary)
    return summary
