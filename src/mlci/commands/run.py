"""`mlci run [STAGES]`: the stages in DAG order, a status line each, then a summary table.

The checks (stage_specs.CHECKS: lint, test, data-test) depend on nothing but the checkout, so
they run concurrently, up to --jobs at a time, each in a thread whose output is kept
(console.captured) and printed as one block, in stage order, as soon as it and the blocks
before it are done. The stages after the checks run one by one, as `--jobs 1` runs them all.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import importlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mlci import __version__, console
from mlci.config import Project
from mlci.errors import EXIT_INFRA, EXIT_INTERRUPTED, EXIT_OK, InfraError, MlciError, UsageError
from mlci.stage_specs import CHECKS, HANDED_OVER, NAMES, STAGES, StageSpec
from mlci.stages._result import (
    StageOptions,
    StageResult,
    execute,
    load_project_clearing_reports,
    mark,
    project_root_for,
    read_result,
    run_stage,
    write_errored_junit,
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
    _jobs(args)  # a bad --jobs fails before the lock is taken or any record is touched
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


# What train imports besides mlci's own code (the data, scikit-learn's metrics, MLflow with
# its sqlite stores, which register opens too, and GitPython, which MLflow tags runs with):
# warmed in a thread while the checks run, so `mlci run` does not pay them after the checks.
# Libraries only: never the project's own code, whose import may do anything.
_TRAIN_IMPORTS = (
    "pandas",
    "sklearn.metrics",
    "mlflow",
    "mlflow.models",
    "mlflow.sklearn",
    "mlflow.pyfunc",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.store.db.utils",
    "git",
    "mlci.stages.train",
    "mlci.metrics",
)
# After Ctrl-C, how long the checks still running get to record their interruption (their
# tools are stopped at once; a DuckDB scan in-process ends when it ends).
_GRACE_S = 10.0


@dataclass
class Outcome:
    """How one stage of the run ended: its row of the table, and what it raised, if anything."""

    stage: str
    status: str  # passed, FAILED, ERROR, interrupted
    elapsed: float
    summary: str
    failure: BaseException | None = None
    outputs: dict[str, Any] | None = None

    @property
    def row(self) -> tuple[str, str, float, str]:
        return (self.stage, self.status, self.elapsed, self.summary)


def default_jobs() -> int:
    """As many checks at once as this process may use cores (a CI runner's cgroup, taskset), at most all of them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(len(CHECKS), cores))


def _jobs(args: argparse.Namespace) -> int:
    jobs = getattr(args, "jobs", None)
    if jobs is None:
        return default_jobs()
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more (1 runs the stages one after another)")
    return int(jobs)


def _run_one(spec: StageSpec, index: int, count: int, project: Project, options: StageOptions) -> Outcome:
    """One stage between its `==>` and `<==` lines; what it raised is returned, not raised."""
    stage = spec.name
    _line(f"==> [{index}/{count}] {stage}")
    clock = time.perf_counter()
    work: Callable[[], StageResult] = functools.partial(run_stage, spec, project, options)
    try:
        result = execute(stage, project, _unless_stopped(work))
    except MlciError as exc:
        outcome = Outcome(stage, "FAILED" if exc.exit_code == 1 else "ERROR", 0.0, exc.message, exc)
    except KeyboardInterrupt as exc:
        outcome = Outcome(stage, "interrupted", 0.0, "interrupted", exc)
    except Exception as exc:  # a bug or user code failing: still this stage's line and the table
        outcome = Outcome(stage, "ERROR", 0.0, f"unexpected {type(exc).__name__}: {exc}", exc)
    else:
        outcome = Outcome(stage, "passed", 0.0, result.summary, outputs=dict(result.outputs))
    outcome.elapsed = time.perf_counter() - clock
    _line(f"<== {stage}: {outcome.status} in {outcome.elapsed:.1f}s")
    if (
        outcome.failure is not None
        and not console.stopping()  # the main thread records the checks of a stopped run
        and (read_result(project, stage) or {}).get("status") == "pending"
    ):
        # It failed before its own record was written (e.g. its module failed to import,
        # or Ctrl-C between two stages): never leave it looking as if it were still to come.
        mark(project, stage, "interrupted" if outcome.status == "interrupted" else "error", outcome.summary)
    return outcome


def _unless_stopped(work: Callable[[], StageResult]) -> Callable[[], StageResult]:
    """`work`, but a stage that ends after the run was interrupted (console.stop_tools) is
    recorded as interrupted, as the main thread records the ones it stopped waiting for."""

    def guarded() -> StageResult:
        try:
            result = work()
        except MlciError:
            if console.stopping():  # e.g. pytest, sent Ctrl-C's SIGINT too, exited on it first
                raise KeyboardInterrupt from None
            raise
        if console.stopping():
            raise KeyboardInterrupt
        return result

    return guarded


def _run(stages: list[StageSpec], project: Project, args: argparse.Namespace) -> int:
    handover: dict[str, str] = {}  # run id and version passed from stage to stage in this run
    outcomes: list[Outcome] = []
    interrupted = False  # Ctrl-C or SIGTERM while the checks ran
    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    jobs = _jobs(args)
    # Every stage this run will run says so before the first starts: a result of an earlier
    # run (an old passed deploy.json) never sits beside this run's failed register.json.
    for spec in stages:
        mark(project, spec.name, "pending", "pending: 'mlci run' has not reached this stage")
    checks = 0  # the checks lead the run (STAGES order): they may run side by side
    while checks < len(stages) and stages[checks].name in CHECKS:
        checks += 1
    if jobs > 1 and checks > 1:
        warm = _warm_train_imports() if any(spec.name == "train" for spec in stages[checks:]) else None
        with _stop_at_once():
            outcomes, interrupted = _run_concurrently(stages[:checks], len(stages), project, args, jobs)
        if warm is not None and (interrupted or any(o.failure for o in outcomes)):
            warm.cancel.set()  # train will not run: import nothing more
        elif warm is not None:
            try:
                _replay_warm_up(warm)
            except KeyboardInterrupt:  # while waiting for it: the run ends here, table and all
                warm.cancel.set()
                interrupted = True
    for index, spec in enumerate(stages[len(outcomes) :], len(outcomes) + 1):
        if interrupted or any(o.failure for o in outcomes):
            break
        outcome = _run_one(spec, index, len(stages), project, stage_options(spec, args, handover))
        handover.update({k: str(v) for k, v in (outcome.outputs or {}).items() if k in HANDED_OVER})
        outcomes.append(outcome)
    rows = [outcome.row for outcome in outcomes]
    # The run ends with the first stage (in stage order) that did not pass; an interruption
    # (Ctrl-C, SIGTERM) is what ended it whatever else failed beside it.
    failed = [o for o in outcomes if o.failure is not None]
    ended_by = next((o for o in failed if o.status == "interrupted"), failed[0] if failed else None)
    if interrupted and (ended_by is None or ended_by.status != "interrupted"):
        # The checks were all done when it came: the run is interrupted all the same.
        ended_by = Outcome("run", "interrupted", 0.0, "interrupted", KeyboardInterrupt())
    why = f"not run: {ended_by.stage} {ended_by.status.lower()}" if ended_by else ""
    for spec in stages[len(rows) :]:
        mark(project, spec.name, "skipped", why)
        rows.append((spec.name, "skipped", 0.0, why))
    total = time.perf_counter() - started
    _table(project, rows, total)
    console.set_result(_write_summary(project, rows, ended_by, started_at, total))
    if ended_by is not None:
        assert ended_by.failure is not None
        raise ended_by.failure
    return 0


@contextlib.contextmanager
def _stop_at_once() -> Iterator[None]:
    """While the checks run, Ctrl-C (or SIGTERM) stops the run first thing (console.stop_tools),
    before its KeyboardInterrupt unwinds to _run_concurrently's handler: pytest gets Ctrl-C's
    SIGINT too and may exit before then, and its check must read as interrupted, not failed."""
    if threading.current_thread() is not threading.main_thread():
        yield  # no signal handlers outside the main thread (mlci run in-process, from a thread)
        return

    def stop(signum: int, frame: object) -> None:
        console.stop_tools()
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def _run_concurrently(
    checks: list[StageSpec], count: int, project: Project, args: argparse.Namespace, jobs: int
) -> tuple[list[Outcome], bool]:
    """The checks, up to `jobs` at a time, each block printed in order as soon as it and those
    before it are done. After a failure no further check starts; the running ones finish.
    Ctrl-C (or SIGTERM) stops their tools, waits a little for them to record it, and prints
    what each had written. Also whether the run was interrupted (every check may have been
    done by then: the run still ends there)."""
    done: queue.Queue[tuple[int, Outcome]] = queue.Queue()
    captures: dict[int, console.Capture] = {}
    clocks: dict[int, float] = {}
    finished: dict[int, Outcome] = {}

    def work(index: int, spec: StageSpec) -> None:
        # Whatever happens, the main thread hears how the check ended (else it waits forever).
        outcome = Outcome(spec.name, "ERROR", 0.0, "unexpected: the check's thread ended without a result")
        try:
            with console.captured(captures[index]):
                outcome = _run_one(spec, index + 1, count, project, stage_options(spec, args, {}))
        except BaseException as exc:  # SystemExit from user code, a failure recording the stage
            outcome = _escaped(spec.name, exc, time.perf_counter() - clocks[index], captures[index], project)
        finally:
            done.put((index, outcome))

    next_start = printed = running = 0
    interrupted = False
    try:
        while printed < len(checks):
            failed = any(o.failure is not None for o in finished.values())
            while not failed and running < jobs and next_start < len(checks):
                clocks[next_start] = time.perf_counter()
                captures[next_start] = console.new_capture()
                thread = threading.Thread(
                    target=work, args=(next_start, checks[next_start]), name=f"mlci-{checks[next_start].name}"
                )
                # A daemon: after Ctrl-C the run ends even if a check's in-process scan has not.
                thread.daemon = True
                thread.start()
                next_start += 1
                running += 1
            if running == 0:
                break  # a failure: the checks not started are skipped
            index, outcome = _next(done)
            running -= 1
            finished[index] = outcome
            while printed in finished:
                printed += 1  # first: a Ctrl-C while it is replayed never replays it again
                console.replay(captures[printed - 1])
    except KeyboardInterrupt:
        console.stop_tools()
        # From here on the checks' threads write no record (execute, _run_one): this thread
        # records each check that had not ended before the interruption, once, and a check
        # still scanning after the grace can never overwrite that.
        ended_before = set(finished)
        deadline = time.monotonic() + _GRACE_S
        try:
            while running and time.monotonic() < deadline:
                try:
                    index, outcome = done.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    break
                running -= 1
                finished[index] = outcome
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: wait no longer, but still print and record what there is
        for index in range(next_start):
            stage = checks[index].name
            if index not in finished:  # still running: interrupted here
                elapsed = time.perf_counter() - clocks[index]
                with console.captured(captures[index]):
                    _line(f"<== {stage}: interrupted in {elapsed:.1f}s")
                finished[index] = Outcome(stage, "interrupted", elapsed, "interrupted", KeyboardInterrupt())
            if index not in ended_before:
                _record_stopped(project, finished[index])
        try:
            while printed < next_start:
                printed += 1
                console.replay(captures[printed - 1])
        except KeyboardInterrupt:
            pass  # another Ctrl-C: print no more; the table and run.json still follow
        interrupted = True
    return [finished[index] for index in range(next_start) if index in finished], interrupted


def _record_stopped(project: Project, outcome: Outcome) -> None:
    """The record of a check that ended (or was abandoned) after the run began stopping."""
    if outcome.status == "interrupted":
        mark(project, outcome.stage, "interrupted", "interrupted")
        write_errored_junit(project.out_dir, outcome.stage, "interrupted")  # CI's publishers see it broken
    elif outcome.status != "passed":
        mark(project, outcome.stage, "failed" if outcome.status == "FAILED" else "error", outcome.summary)
        write_errored_junit(project.out_dir, outcome.stage, outcome.summary)


def _escaped(stage: str, exc: BaseException, elapsed: float, capture: console.Capture, project: Project) -> Outcome:
    """The outcome of a check whose thread `exc` ended past _run_one's own handlers."""
    if isinstance(exc, KeyboardInterrupt):
        outcome = Outcome(stage, "interrupted", elapsed, "interrupted", exc)
    else:
        summary = f"unexpected {type(exc).__name__}: {exc}"
        # Only an Exception is raised on as it is: a SystemExit raised in the main thread
        # would end mlci with the user's code instead of the run's.
        outcome = Outcome(stage, "ERROR", elapsed, summary, exc if isinstance(exc, Exception) else InfraError(summary))
    with console.captured(capture):
        _line(f"<== {stage}: {outcome.status} in {elapsed:.1f}s")
    try:
        if not console.stopping() and (read_result(project, stage) or {}).get("status") in ("pending", "running"):
            mark(project, stage, "error", outcome.summary)
    except Exception:  # recording is what failed: the run's table and run.json still say it
        pass
    return outcome


def _next(done: queue.Queue[tuple[int, Outcome]]) -> tuple[int, Outcome]:
    # A timed wait, so Ctrl-C and SIGTERM's handler reach the main thread at once on every platform.
    while True:
        try:
            return done.get(timeout=0.2)
        except queue.Empty:
            continue


@dataclass
class WarmUp:
    """The thread importing train's modules, what they printed, and the flag that stops it."""

    thread: threading.Thread
    capture: console.Capture
    cancel: threading.Event


def _warm_train_imports() -> WarmUp:
    """Import what train needs in a thread while the checks run (the checks are mostly other
    processes and DuckDB, which leave the interpreter free). What the imports print (a
    library's warning) is kept and shown before train's block, where it would have been."""
    from mlci.targets.local.tracking import no_telemetry

    no_telemetry()  # MLflow decides at its import whether to phone home
    capture = console.new_capture()
    cancel = threading.Event()

    def warm() -> None:
        with console.captured() as kept:
            for name in _TRAIN_IMPORTS:
                if cancel.is_set():
                    break  # a check failed or the run was interrupted: train will not run
                try:
                    importlib.import_module(name)
                except Exception:  # not installed, or broken: train imports it again and says so
                    continue
            capture.chunks.extend(kept.chunks)

    thread = threading.Thread(target=warm, name="mlci-warm-train", daemon=True)
    thread.start()
    return WarmUp(thread, capture, cancel)


def _replay_warm_up(warm: WarmUp) -> None:
    """Wait for the warm-up (train would import the same modules) and show what it printed."""
    while warm.thread.is_alive():
        warm.thread.join(0.2)  # timed, so Ctrl-C and SIGTERM's handler reach the main thread at once
    console.replay(warm.capture)


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
    ended_by: Outcome | None,
    started_at: datetime,
    total: float,
) -> dict[str, Any]:
    """.mlci/out/run.json: what this run did, stage by stage; also the --json result."""
    failure = ended_by.failure if ended_by is not None else None
    if failure is None:
        status, code = "passed", EXIT_OK
    elif isinstance(failure, KeyboardInterrupt):
        status, code = "interrupted", EXIT_INTERRUPTED
    elif isinstance(failure, MlciError):
        status, code = ("failed" if failure.exit_code == 1 else "error"), failure.exit_code
    else:
        status, code = "error", EXIT_INFRA
    passed = sum(row[1] == "passed" for row in rows)
    # The stage that ended the run: not the skipped ones after it, nor a check that passed beside it.
    text = (
        f"run passed: {passed} stage{'s' * (passed != 1)} in {total:.1f}s"
        if ended_by is None
        else "run interrupted"
        if ended_by.stage == "run"  # between the checks and the next stage
        else f"run {status}: {ended_by.stage} {ended_by.status.lower()}: {ended_by.summary}"
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
