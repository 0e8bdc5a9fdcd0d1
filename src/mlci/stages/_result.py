"""What every stage shares: its result record, .mlci/out/<stage>.json and CI outputs."""

from __future__ import annotations

import importlib
import json
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlci import __version__, console, fs, providers
from mlci.config import Project
from mlci.errors import EXIT_INFRA, EXIT_INTERRUPTED, InfraError, MlciError
from mlci.stage_specs import StageSpec, stage_extras

# A stage's options by dest (`Option.dest`), as its run function takes them.
StageOptions = Mapping[str, Any]

# The report files each stage writes under .mlci/out/ besides <stage>.json, declared once so
# that the one stage path (execute, stage_command, mark) removes them before the stage starts:
# a stage that then fails or errors never leaves an earlier run's green report behind for CI
# to publish as its own (a broken contract left the previous passing data-test.xml).
JUNIT_REPORTS: dict[str, str] = {"test": "junit.xml", "data-test": "data-test.xml", "monitor": "monitor.xml"}
OTHER_REPORTS: dict[str, tuple[str, ...]] = {"test": ("coverage.json",)}
# One stage at a time appends to the CI system's output and summary files (`mlci run` runs
# the checks in threads): their lines never interleave.
_PUBLISH_LOCK = threading.Lock()
# Characters XML 1.0 forbids (C0 controls but tab/newline/return, surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass
class StageResult:
    """The outcome of a stage that passed. A stage that fails raises CheckFailed instead.

    `details` is free-form JSON for .mlci/out/<stage>.json; `outputs` go to the CI system.
    """

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


def report_files(out_dir: Path, stage: str) -> list[Path]:
    """The report files `stage` declares (JUNIT_REPORTS, OTHER_REPORTS), under `out_dir`."""
    names = ([JUNIT_REPORTS[stage]] if stage in JUNIT_REPORTS else []) + list(OTHER_REPORTS.get(stage, ()))
    return [out_dir / name for name in names]


def clear_reports(out_dir: Path, stage: str) -> None:
    """Remove `stage`'s report files of an earlier run (and any temporary file a killed write left)."""
    for path in report_files(out_dir, stage):
        path.unlink(missing_ok=True)  # a symlink planted here is removed, its target never touched
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)  # the temp name of older mlci
        for temp in out_dir.glob(fs.temp_glob(path.name)):
            temp.unlink(missing_ok=True)


def xml_text(text: str) -> str:
    """`text` with each character XML 1.0 forbids written as a visible escape (\\x01, \\ufffe)."""
    return _NOT_XML.sub(lambda m: ascii(m.group())[1:-1], text)


def _has_test_cases(junit: Path) -> bool:
    """Whether a JUnit file exists, parses and holds at least one test case."""
    try:
        return ET.parse(junit).getroot().find(".//testcase") is not None
    except (OSError, ET.ParseError):
        return False


def write_errored_junit(out_dir: Path, stage: str, message: str) -> None:
    """For a stage that did not pass and has no report of its own with test cases in it,
    write a suite of one errored case (the stage's message) in its place.

    That covers an error before the checks ran (a broken contract or mlci.yaml, Ctrl-C) and
    the empty suite pytest writes when it refuses its arguments or collects nothing. CI's test
    publishers then show the stage as broken: a missing file is at best a warning ("no test
    results found"), an empty suite a pass. A report this run wrote with test cases in it is
    this run's truth and stands (earlier runs' reports were removed before the stage began).
    """
    name = JUNIT_REPORTS.get(stage)
    if name is None or _has_test_cases(out_dir / name):
        return  # this run's own report (failing tests, failed checks, a coverage miss): it stands
    suite = ET.Element(
        "testsuite", {"name": f"mlci.{stage}", "tests": "1", "failures": "0", "errors": "1", "skipped": "0"}
    )
    case = ET.SubElement(suite, "testcase", {"classname": f"mlci.{stage}", "name": stage, "time": "0"})
    error = ET.SubElement(case, "error", {"message": xml_text(message), "type": "mlci"})
    error.text = xml_text(message)
    write_report(out_dir / name, ET.tostring(suite, encoding="utf-8", xml_declaration=True))


def write_report(path: Path, data: bytes) -> None:
    """Write a file of .mlci/out whole (a reader never sees half of it), never through a
    symlink: not a committed `.mlci` or `.mlci/out` link, nor one planted as the file itself."""
    in_project = path.parent.name == "out" and path.parent.parent.name == ".mlci"  # <root>/.mlci/out/<file>
    fs.write_atomic(path, data, root=path.parents[2] if in_project else path.parent)


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    write_report(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


def execute(stage: str, project: Project, work: Callable[[], StageResult]) -> StageResult:
    """Run one stage's work, record its result (also on failure) and publish CI outputs.

    The previous result is marked `running` first and the stage's previous report files are
    removed, so a stage that dies half-way never leaves an earlier success behind for the next
    stage (or CI's test publisher) to trust; a stage that ends without its JUnit report gets an
    errored one (write_errored_junit). Once `mlci run` is stopping (console.stop_tools) the
    stage's end is not recorded here: the run's main thread records it, and a check that ends
    after the run did never overwrites that. A failing check raises an MlciError
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
    if console.stopping():
        raise KeyboardInterrupt  # started as `mlci run` was interrupted: it records the stage
    path = result_path(project, stage)
    clear_reports(project.out_dir, stage)
    _write_json(path, {**record, "status": "running", "exit_code": None, "summary": "running", "details": {}})
    try:
        result = work()
    except MlciError as exc:
        if console.stopping():  # `mlci run` was interrupted: its main thread records this stage
            raise
        record.update(
            status="failed" if exc.exit_code == 1 else "error",
            exit_code=exc.exit_code,
            summary=exc.message,
            duration_s=round(time.perf_counter() - clock, 3),
            details=getattr(exc, "details", {}),
        )
        write_errored_junit(project.out_dir, stage, exc.message)
        _write_json(path, record)
        console.set_result(record)
        # Outputs on failure too (actions/README: `result` is passed, failed or error), with
        # whatever the stage knew, so a later step can report the numbers of a failing run.
        publish(
            {**getattr(exc, "outputs", {}), "result": record["status"]},
            f"### mlci {stage}: {record['status']}\n\n{exc.message}\n\n{exc.markdown}",
        )
        raise
    except BaseException as exc:
        if console.stopping():
            raise
        interrupted = isinstance(exc, KeyboardInterrupt)
        record.update(
            status="error",
            exit_code=EXIT_INTERRUPTED if interrupted else EXIT_INFRA,
            summary="interrupted" if interrupted else f"unexpected {type(exc).__name__}: {exc}",
            duration_s=round(time.perf_counter() - clock, 3),
            details={},
        )
        write_errored_junit(project.out_dir, stage, record["summary"])
        _write_json(path, record)
        console.set_result(record)
        publish({"result": "error"}, f"### mlci {stage}: error\n\n{record['summary']}")
        raise
    if console.stopping():
        return result
    record.update(
        status="passed",
        exit_code=0,
        summary=result.summary,
        duration_s=round(time.perf_counter() - clock, 3),
        details=result.details,
    )
    _write_json(path, record)
    console.set_result(record)
    publish(
        {"result": record["status"], **result.outputs},
        f"### mlci {stage}: {record['status']}\n\n{result.summary}\n\n{result.markdown}",
    )
    return result


def publish(outputs: dict[str, Any], summary: str) -> None:
    """The step's outputs and job summary, through the runtime of the CI system we run on."""
    ci = providers.detect()
    if ci is None:
        return
    with _PUBLISH_LOCK:
        for line in ci.set_outputs(outputs, os.environ):
            console.ci_command(line)
        for line in ci.add_summary(summary, os.environ):
            console.ci_command(line)


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
    clear_reports(project.out_dir, stage)
    _write_json(result_path(project, stage), record)


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    _write_json(path, payload)


def stage_command(stage: str, args: Any, work: Callable[[Project], StageResult]) -> int:
    """The whole of a stage command: find the project, hold its lock (it shares the registry
    and .mlci/out with any other mlci there), run and record the stage, print its summary."""
    from mlci.lock import root_lock

    root = project_root_for(args)  # fails only where there is no mlci.yaml: no results either
    with root_lock(root, stage):
        project = load_project_clearing_reports(root, [stage])
        result = execute(stage, project, lambda: work(project))
    print(result.summary)
    return 0


def stage_main(args: Any) -> int:
    """`mlci <stage>`: the stage the parser put in `args.spec`, with the options it parsed."""
    spec: StageSpec = args.spec
    options = {option.dest: getattr(args, option.dest) for option in spec.options}
    return stage_command(spec.name, args, lambda project: run_stage(spec, project, options))


def run_stage(spec: StageSpec, project: Project, options: StageOptions) -> StageResult:
    """Import the stage's code (only now: `mlci run lint` never imports MLflow) and run it.

    Its outputs are checked against the spec, which is what CI declares: an output the spec
    does not list never reaches a CI step, and one it lists but the stage forgot is empty.
    Either is a bug in mlci, never the user's: exit 3 with one line naming both lists."""
    from mlci import extras

    needed = stage_extras(spec, project.config, options)
    extras.require(spec.name, needed)  # a missing extra: one line naming it (exit 4), not an ImportError
    module, _, function = spec.entry.partition(":")
    try:
        run: Callable[[Project, StageOptions], StageResult] = getattr(importlib.import_module(module), function)
        result = run(project, options)
    except ModuleNotFoundError as exc:
        missing = extras.missing_module(spec.name, needed, exc)
        if missing is None:
            raise
        raise missing from exc
    except MlciError as exc:
        # A failing run writes what it knew (tests run, findings): a subset of the declared outputs.
        undeclared = set(getattr(exc, "outputs", {})) - spec.produced
        if undeclared:
            raise _output_bug(spec, undeclared, set()) from exc
        raise
    produced = set(result.outputs)
    if produced != spec.produced:
        raise _output_bug(spec, produced - spec.produced, spec.produced - produced)
    return result


def _output_bug(spec: StageSpec, undeclared: Set[str], missing: Set[str]) -> InfraError:
    wrong = [f"undeclared output(s) {', '.join(sorted(undeclared))}"] if undeclared else []
    wrong += [f"no declared output(s) {', '.join(sorted(missing))}"] if missing else []
    declared = ", ".join(sorted(spec.produced)) or "none besides result"
    return InfraError(
        f"mlci {spec.name} returned {' and '.join(wrong)} (declared: {declared}); "
        "this is a bug in mlci, please report it"
    )


def load_project_clearing_reports(root: Path, stages: list[str]) -> Project:
    """Load the project after removing the reports `stages` wrote in an earlier run (call it
    holding the lock). Before mlci.yaml is validated: a broken file fails every stage, and its
    reports of an earlier run must not stay behind as this run's."""
    from mlci.project import load_project

    out_dir = root / ".mlci" / "out"
    for stage in stages:
        clear_reports(out_dir, stage)
    try:
        return load_project(root)
    except MlciError as exc:
        for stage in stages:
            _record_before_start(out_dir, stage, exc)
        raise


def _record_before_start(out_dir: Path, stage: str, exc: MlciError) -> None:
    """The stage's record (and errored JUnit report) when it fails before it could start."""
    write_errored_junit(out_dir, stage, exc.message)
    record = {
        "stage": stage,
        "mlci_version": __version__,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "error",
        "exit_code": exc.exit_code,
        "summary": exc.message,
        "duration_s": 0.0,
        "details": {},
    }
    _write_json(out_dir / f"{stage}.json", record)


def project_root_for(args: Any) -> Path:
    """The directory of the project a command works on: -C DIR, else the nearest mlci.yaml upwards."""
    from mlci.config import find_project

    directory = getattr(args, "project_dir", None)
    return find_project(Path(directory) if directory else Path.cwd())


def load_project_for(args: Any) -> Project:
    """The project a stage command works on: -C DIR, else the nearest mlci.yaml upwards."""
    from mlci.project import load_project

    return load_project(project_root_for(args))


def tool_env(project: Project) -> dict[str, str]:
    """Environment for the tools a stage runs: os.environ with the project's src/ first on PYTHONPATH."""
    env = dict(os.environ)
    src = str(project.root / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
