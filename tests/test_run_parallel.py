"""`mlci run` runs the checks (lint, test, data-test) side by side: each stage's output printed
whole and in stage order, the table and run.json as before, --jobs 1 as before, a failing check
letting the running ones finish and starting nothing more, Ctrl-C/SIGTERM stopping them all.

Concurrency is proven by what the project's own unit test sees of the other checks' records
while it runs (a check waits for another's result), never by timing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli


def record(project: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / ".mlci" / "out" / f"{name}.json").read_text())
    return data


_SEES_THE_RUN = """import json
import os
import pathlib
import time

OUT = pathlib.Path(__file__).resolve().parents[1] / ".mlci" / "out"
MARK = os.environ.get("MLCI_TEST_MARK")


def status(stage):
    try:
        return json.loads((OUT / f"{stage}.json").read_text())["status"]
    except (OSError, ValueError):
        return None


def wait_for(stage, wanted, seconds=120):
    deadline = time.monotonic() + seconds
    while status(stage) != wanted:
        assert time.monotonic() < deadline, f"{stage} is {status(stage)}, never {wanted}"
        time.sleep(0.05)


def test_sees_the_run():
"""


def project_test(project: Path, body: str) -> None:
    """Replace the project's unit tests by one that runs `body` (lines of Python, indented 4)
    with status(stage), wait_for(stage, status) and MARK (the file $MLCI_TEST_MARK names) at
    hand; no coverage minimum, so pytest runs that one test alone (and fast)."""
    for old in (project / "tests").glob("*.py"):
        old.unlink()
    (project / "tests" / "test_sees_the_run.py").write_text(_SEES_THE_RUN + body)
    config = project / "mlci.yaml"
    config.write_text(config.read_text().replace("coverage_min: 80", "coverage_min: 0"))


def blocks(err: str) -> list[tuple[str, str]]:
    """The `==> [i/n] stage` and `<== stage: ...` lines, in the order printed."""
    lines = []
    for line in err.splitlines():
        if line.startswith("==> ["):
            lines.append(("start", line.split()[-1]))
        elif line.startswith("<== "):
            lines.append(("end", line[4:].split(":")[0]))
    return lines


def test_checks_run_side_by_side_and_print_whole_blocks_in_stage_order(
    new_project: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project()
    # The unit test passes only if data-test (the check after it) finishes while it runs.
    project_test(project, '    wait_for("data-test", "passed")\n')
    capsys.readouterr()
    assert run_cli("run", "lint", "test", "data-test", "--jobs", "3", "-C", str(project)) == 0
    captured = capsys.readouterr()
    err, out = captured.err, captured.out
    assert blocks(err) == [
        ("start", "lint"),
        ("end", "lint"),
        ("start", "test"),
        ("end", "test"),
        ("start", "data-test"),
        ("end", "data-test"),
    ]
    # The stages' own output (stdout) in stage order too: pytest's, then the contract's.
    pytest_last_line = re.search(r"^\d+ passed in ", out, re.MULTILINE)
    assert pytest_last_line is not None
    assert pytest_last_line.start() < out.index("holdout: passed, ")
    rows = [line.split()[:2] for line in err.splitlines() if line.startswith(("lint ", "test ", "data-test "))]
    assert rows == [["lint", "passed"], ["test", "passed"], ["data-test", "passed"]]
    run = record(project, "run")
    assert (run["status"], run["exit_code"]) == ("passed", 0)
    assert [s["stage"] for s in run["stages"]] == ["lint", "test", "data-test"]
    assert all(record(project, stage)["status"] == "passed" for stage in ("lint", "test", "data-test"))


def test_jobs_1_runs_one_stage_after_another(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    # One after another: when the unit test runs, data-test has not started.
    project_test(project, '    assert status("lint") == "passed"\n    assert status("data-test") == "pending"\n')
    assert run_cli("run", "lint", "test", "data-test", "--jobs", "1", "-C", str(project)) == 0
    assert [s["status"] for s in record(project, "run")["stages"]] == ["passed", "passed", "passed"]
    assert run_cli("run", "--jobs", "0", "-C", str(project)) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "mlci: error: --jobs 0: give 1 or more (1 runs the stages one after another)"
    )


def test_a_failing_check_lets_the_running_ones_finish_and_starts_nothing_more(
    new_project: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project()
    package = next(p for p in (project / "src").iterdir() if p.is_dir() and not p.name.endswith(".egg-info"))
    (package / "unused.py").write_text("import os\n")  # lint fails: F401
    # Two at a time: lint and test start; lint fails while test runs, so data-test never starts.
    project_test(project, '    wait_for("lint", "failed")\n')
    capsys.readouterr()
    code = run_cli("run", "lint", "test", "data-test", "train", "--jobs", "2", "-C", str(project))
    assert code == 1
    err = capsys.readouterr().err
    assert blocks(err) == [("start", "lint"), ("end", "lint"), ("start", "test"), ("end", "test")]
    names = ("lint ", "test ", "data-test ", "train ")
    rows = [line.split()[:2] for line in err.splitlines() if line.startswith(names)]
    assert rows == [["lint", "FAILED"], ["test", "passed"], ["data-test", "skipped"], ["train", "skipped"]]
    run = record(project, "run")
    assert (run["status"], run["exit_code"]) == ("failed", 1)
    assert run["summary"].startswith("run failed: lint failed: ")  # the check that ended it, not test
    assert [s["status"] for s in run["stages"]] == ["failed", "passed", "skipped", "skipped"]
    assert record(project, "data-test")["summary"] == "not run: lint failed"
    assert record(project, "train")["status"] == "skipped"


def test_sigterm_stops_every_running_check_and_records_it(new_project: Any) -> None:
    project = new_project()
    inside = project / "inside-test"
    project_test(
        project,
        '    pathlib.Path(MARK).write_text("in")\n    time.sleep(120)\n',
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mlci", "run", "lint", "test", "data-test", "--jobs", "3"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "MLCI_TEST_MARK": str(inside)},
    )
    try:
        deadline = time.monotonic() + 300
        # The signal comes while pytest sleeps and the other two checks are done.
        while not (inside.exists() and all(record_status(project, s) == "passed" for s in ("lint", "data-test"))):
            assert process.poll() is None and time.monotonic() < deadline, "the checks never got there"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert blocks(out) == [
        ("start", "lint"),
        ("end", "lint"),
        ("start", "test"),
        ("end", "test"),
        ("start", "data-test"),
        ("end", "data-test"),
    ]
    assert "\n<== test: interrupted in " in out
    # Merged streams: each stage's output inside its block.
    assert out.index("==> [3/3] data-test") < out.index("holdout: passed, ") < out.index("<== data-test")
    rows = [line.split()[:2] for line in out.splitlines() if line.startswith(("lint ", "test ", "data-test "))]
    assert rows == [["lint", "passed"], ["test", "interrupted"], ["data-test", "passed"]]
    assert out.endswith("\nmlci: interrupted\n")
    run = record(project, "run")
    assert (run["status"], run["exit_code"]) == ("interrupted", 130)
    assert record(project, "test")["status"] == "interrupted"  # recorded by the main thread


def record_status(project: Path, stage: str) -> str | None:
    try:
        return str(record(project, stage)["status"])
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_run_with_train_hashes_each_data_file_once(
    new_project: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlci.stages import train

    project = new_project()
    hashed: list[str] = []
    real = train.file_digest

    def counting(path: Path) -> str:
        if path.parent.name == "data":
            hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(train, "file_digest", counting)
    capsys.readouterr()
    assert run_cli("run", "lint", "test", "data-test", "train", "-C", str(project)) == 0
    err = capsys.readouterr().err
    assert [stage for kind, stage in blocks(err) if kind == "start"] == ["lint", "test", "data-test", "train"]
    details = record(project, "train")["details"]
    assert sorted(hashed) == sorted(Path(details["data"][which]["path"]).name for which in ("train", "holdout"))
    for which in ("train", "holdout"):
        data = (project / details["data"][which]["path"]).read_bytes()
        assert details["data"][which]["sha256"] == hashlib.sha256(data).hexdigest()


# The review's findings on interruptions and odd endings, with the stages faked where the
# real ones would only add time: `_run_one` (a check's whole run) or `run_stage` (its work).


def passing(spec: Any, index: int, count: int, project: Any, options: Any) -> Any:
    from mlci.commands import run

    run._line(f"==> [{index}/{count}] {spec.name}")
    run._line(f"<== {spec.name}: passed in 0.0s")
    return run.Outcome(spec.name, "passed", 0.0, "ok")


def table_rows(err: str, *names: str) -> list[list[str]]:
    return [line.split()[:2] for line in err.splitlines() if line.startswith(tuple(f"{n} " for n in names))]


def test_the_warm_up_imports_mlflow_with_its_telemetry_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlci.commands import run

    for name in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
        monkeypatch.setenv(name, "")  # restored afterwards, then removed
        monkeypatch.delenv(name)
    seen: list[tuple[str | None, str | None]] = []
    monkeypatch.setattr(
        run.importlib,
        "import_module",
        lambda name: seen.append((os.environ.get("MLFLOW_DISABLE_TELEMETRY"), os.environ.get("DO_NOT_TRACK"))),
    )
    monkeypatch.setattr(run, "_TRAIN_IMPORTS", ("mlflow",))
    warm = run._warm_train_imports()
    warm.thread.join(60)
    assert seen == [("true", "true")]


def test_ctrl_c_while_waiting_for_the_warm_up_still_ends_with_the_table(
    new_project: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from mlci import console
    from mlci.commands import run

    class Interrupted:
        def is_alive(self) -> bool:
            return True

        def join(self, timeout: float | None = None) -> None:
            raise KeyboardInterrupt

    warm = run.WarmUp(Interrupted(), console.new_capture(), threading.Event())  # type: ignore[arg-type]
    monkeypatch.setattr(run, "_warm_train_imports", lambda: warm)
    monkeypatch.setattr(run, "_run_one", passing)
    project = new_project()
    capsys.readouterr()
    assert run_cli("run", "lint", "test", "train", "--jobs", "2", "-C", str(project)) == 130
    err = capsys.readouterr().err
    assert table_rows(err, "lint", "test", "train") == [["lint", "passed"], ["test", "passed"], ["train", "skipped"]]
    assert warm.cancel.is_set()
    assert (record(project, "run")["status"], record(project, "run")["exit_code"]) == ("interrupted", 130)
    assert record(project, "train")["status"] == "skipped"


def test_a_check_whose_thread_dies_still_ends_the_run_with_its_row(
    new_project: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlci.commands import run

    def exits(spec: Any, *args: Any) -> Any:
        if spec.name == "test":
            raise SystemExit(0)  # user code's sys.exit(), past _run_one's handlers
        return passing(spec, *args)

    monkeypatch.setattr(run, "_run_one", exits)
    monkeypatch.setattr(run, "_next", lambda done: done.get(timeout=30))  # never forever
    project = new_project()
    capsys.readouterr()
    assert run_cli("run", "lint", "test", "--jobs", "2", "-C", str(project)) == 3
    err = capsys.readouterr().err
    assert "<== test: ERROR in " in err
    assert table_rows(err, "lint", "test") == [["lint", "passed"], ["test", "ERROR"]]
    assert err.splitlines()[-1] == "mlci: error: unexpected SystemExit: 0"
    assert record(project, "run")["status"] == "error"
    assert record(project, "test")["status"] == "error"  # not left pending


def test_a_data_scans_progress_lines_stay_in_its_block(
    new_project: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from mlci.stages import data_test

    real = data_test.run_contract

    def with_progress(*args: Any, progress: Any = None, **kwargs: Any) -> Any:
        # As watch_progress does: a line from a thread of its own while the scan runs.
        watcher = threading.Thread(target=progress, args=("data-test: reading it: 5s so far",))
        watcher.start()
        watcher.join()
        return real(*args, progress=progress, **kwargs)

    monkeypatch.setattr(data_test, "run_contract", with_progress)
    project = new_project()
    capsys.readouterr()
    assert run_cli("run", "lint", "data-test", "--jobs", "2", "-C", str(project)) == 0
    err = capsys.readouterr().err
    assert err.index("==> [2/2] data-test") < err.index("data-test: reading it: 5s so far") < err.index("<== data-test")


def test_a_check_still_running_after_the_grace_never_overwrites_its_interrupted_record(
    new_project: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from mlci import console
    from mlci.commands import run
    from mlci.stages._result import StageResult

    release = threading.Event()

    def work(spec: Any, project: Any, options: Any) -> StageResult:
        if spec.name == "lint":
            deadline = time.monotonic() + 60
            while record_status(project.root, "data-test") != "running" and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, while data-test scans on
            while not console.stopping() and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            release.wait(120)  # a scan that ends only after the run did
        return StageResult("ok")

    monkeypatch.setattr(run, "run_stage", work)
    monkeypatch.setattr(run, "_GRACE_S", 0.2)
    project = new_project()
    capsys.readouterr()
    assert run_cli("run", "lint", "data-test", "--jobs", "2", "-C", str(project)) == 130
    assert table_rows(capsys.readouterr().err, "data-test") == [["data-test", "interrupted"]]
    assert record(project, "data-test")["status"] == "interrupted"
    result = console.result()
    release.set()
    for thread in threading.enumerate():
        if thread.name == "mlci-data-test":
            thread.join(60)
            assert not thread.is_alive()
    assert record(project, "data-test")["status"] == "interrupted"
    assert record(project, "run")["status"] == "interrupted"
    assert console.result() == result  # --json's answer is still the run's
    assert result is not None and result["stage"] == "run"


def test_ctrl_c_while_the_checks_run_stops_the_run_before_it_unwinds() -> None:
    from mlci import console
    from mlci.commands import run

    console.configure()
    before = signal.getsignal(signal.SIGINT)
    seen = None
    try:
        with run._stop_at_once():
            signal.raise_signal(signal.SIGINT)
            time.sleep(60)  # the handler raises in this thread at once
    except KeyboardInterrupt:
        # pytest, sent the same SIGINT, may already have exited: its check must read as stopped.
        seen = console.stopping()
    finally:
        console.configure()
    assert seen is True
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_while_a_block_is_printed_never_prints_it_twice(
    new_project: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlci import console
    from mlci.commands import run

    real = console.replay
    replayed: list[int] = []

    def replay(capture: Any) -> None:
        replayed.append(id(capture))
        if len(replayed) == 1:
            raise KeyboardInterrupt  # Ctrl-C half-way through printing lint's block
        real(capture)

    monkeypatch.setattr(run, "_run_one", passing)
    monkeypatch.setattr(console, "replay", replay)
    project = new_project()
    capsys.readouterr()
    assert run_cli("run", "lint", "test", "--jobs", "2", "-C", str(project)) == 130
    assert len(replayed) == len(set(replayed)) == 2
    err = capsys.readouterr().err
    assert blocks(err) == [("start", "test"), ("end", "test")]
    assert err.rstrip().endswith("mlci: interrupted")
