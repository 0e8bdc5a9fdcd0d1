"""`mlci run [STAGES]`: the stages in DAG order, a status line each, then a summary table."""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from collections.abc import Callable

from mlci.cli import STAGES
from mlci.config import Project
from mlci.errors import MlciError, UsageError
from mlci.stages._result import StageResult, execute, load_project_for


def _work(
    stage: str, project: Project, args: argparse.Namespace, handover: dict[str, str]
) -> Callable[[], StageResult]:
    # Imported per stage: `mlci run lint` never imports MLflow.
    if stage == "lint":
        from mlci.stages.lint import run_lint

        return lambda: run_lint(project)
    if stage == "test":
        from mlci.stages.unit_test import run_tests

        return lambda: run_tests(project)
    if stage == "data-test":
        from mlci.stages.data_test import run_data_test

        return lambda: run_data_test(project)
    if stage == "train":
        from mlci.stages.train import run_train

        return lambda: run_train(project, args.tracking_uri)
    if stage == "register":
        from mlci.stages.register import run_register

        # This run's own model, never whatever .mlci/out/train.json says by now.
        return lambda: run_register(project, handover.get("run-id"), args.tracking_uri)
    from mlci.stages.deploy import run_deploy

    # The first environment (staging) only: production moves by 'mlci deploy --env production'.
    return lambda: run_deploy(project, "local", args.tracking_uri, version=handover.get("model-version"))


def selected_stages(requested: list[str]) -> list[str]:
    for name in requested:
        if name not in STAGES:
            close = difflib.get_close_matches(name, STAGES, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"stages: {', '.join(STAGES)}"
            raise UsageError(f"unknown stage '{name}'; {hint}")
    return [s for s in STAGES if not requested or s in requested]


def _line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    from mlci.lock import project_lock

    stages = selected_stages(args.stages)
    project = load_project_for(args)
    with project_lock(project, "run"):
        return _run(stages, project, args)


def _run(stages: list[str], project: Project, args: argparse.Namespace) -> int:
    handover: dict[str, str] = {}  # run id and version passed from stage to stage in this run
    rows: list[tuple[str, str, float, str]] = []
    started = time.perf_counter()
    failure: MlciError | None = None
    for index, stage in enumerate(stages, 1):
        _line(f"==> [{index}/{len(stages)}] {stage}")
        clock = time.perf_counter()
        try:
            result = execute(stage, project, _work(stage, project, args, handover))
        except MlciError as exc:
            elapsed = time.perf_counter() - clock
            status = "FAILED" if exc.exit_code == 1 else "ERROR"
            rows.append((stage, status, elapsed, exc.message))
            _line(f"<== {stage}: {status} in {elapsed:.1f}s")
            failure = exc
            break
        handover.update({k: str(v) for k, v in result.outputs.items() if k in ("run-id", "model-version")})
        elapsed = time.perf_counter() - clock
        rows.append((stage, "passed", elapsed, result.summary))
        _line(f"<== {stage}: passed in {elapsed:.1f}s")
    for stage in stages[len(rows) :]:
        rows.append((stage, "skipped", 0.0, "not run: an earlier stage failed"))
    width = max(len(s) for s in stages)
    _line("")
    _line(f"{'stage':<{width}}  {'result':<8}  {'time':>7}  summary")
    for stage, status, elapsed, summary in rows:
        short = summary if len(summary) <= 90 else summary[:87] + "..."
        _line(f"{stage:<{width}}  {status:<8}  {elapsed:>6.1f}s  {short}")
    _line(
        f"{'total':<{width}}  {'':<8}  {time.perf_counter() - started:>6.1f}s  "
        f"results in {project.out_dir.relative_to(project.root)}/"
    )
    if failure is not None:
        raise failure
    return 0
