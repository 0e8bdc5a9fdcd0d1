"""What `mlci run` and the global output flags report: the summary table on every ending,
run.json, no stale results, --quiet, --json, help texts, a closed pipe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from mlci.cli import build_parser


def record(project: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / ".mlci" / "out" / f"{name}.json").read_text())
    return data


def test_summary_table_aligns_with_short_stage_names(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    assert run_cli("run", "lint", "-C", str(project)) == 0
    table = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("stage", "lint", "total"))]
    assert [line.index("result") if line.startswith("stage") else line.index("passed") for line in table[:2]] == [
        7,
        7,
    ]
    assert table[2].startswith("total ")
    run = record(project, "run")
    assert run["status"] == "passed" and run["exit_code"] == 0
    assert [(s["stage"], s["status"]) for s in run["stages"]] == [("lint", "passed")]


def test_unexpected_error_still_prints_the_stage_line_and_table_and_skips_are_recorded(
    new_project: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project()
    # Results of an earlier run: a later failure must not leave them looking current.
    assert run_cli("run", "lint", "data-test", "-C", str(project)) == 0
    assert record(project, "data-test")["status"] == "passed"
    capsys.readouterr()
    # A pytest plugin that corrupts the JUnit report: mlci's parser fails in a way it did not expect.
    (project / "tests" / "conftest.py").write_text(
        (project / "tests" / "conftest.py").read_text() + "\n\ndef pytest_unconfigure(config):\n"
        "    if config.option.xmlpath:\n"
        "        Path(config.option.xmlpath).write_text('not xml')\n"
    )
    assert run_cli("run", "test", "data-test", "--jobs", "1", "-C", str(project)) == 3  # one after another
    err = capsys.readouterr().err
    assert "<== test: ERROR in " in err
    rows = [line.split()[:2] for line in err.splitlines() if line.startswith(("test ", "data-test "))]
    assert rows == [["test", "ERROR"], ["data-test", "skipped"]]
    assert "not run: test error" in err
    assert err.splitlines()[-1].startswith("mlci: error: unexpected ParseError: ")
    assert record(project, "data-test")["status"] == "skipped"
    run = record(project, "run")
    assert (run["status"], run["exit_code"]) == ("error", 3)
    assert run["summary"].startswith("run error: test error: unexpected ParseError: ")  # the stage that ended it
    assert [s["status"] for s in run["stages"]] == ["error", "skipped"]


def test_interrupted_run_prints_the_summary_on_a_new_line(new_project: Any) -> None:
    project = new_project()
    inside = project / "inside-test-b"
    (project / "tests" / "test_slow.py").write_text(
        "import os, pathlib, time\n\ndef test_a():\n    pass\n\n"
        "def test_b():\n    pathlib.Path(os.environ['MLCI_TEST_MARK']).write_text('in')\n    time.sleep(120)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mlci", "run", "test"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "MLCI_TEST_MARK": str(inside)},
    )
    try:
        # test_b says when it runs (test_a's dot is then on the screen): SIGTERM mlci alone
        # then, as a CI system cancelling a job does. A marker, not a guess at timing.
        deadline = time.monotonic() + 300
        while not inside.exists():
            assert process.poll() is None and time.monotonic() < deadline, "pytest never reached test_b"
            time.sleep(0.2)
        time.sleep(0.5)  # let mlci relay the dot it has been sent
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "\n<== test: interrupted in " in out
    assert [line.split()[:2] for line in out.splitlines() if line.startswith("test ")] == [["test", "interrupted"]]
    assert out.endswith("\nmlci: interrupted\n")
    assert record(project, "run")["status"] == "interrupted"


def test_quiet_and_json(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    capsys.readouterr()
    assert run_cli("--quiet", "run", "lint", "data-test", "-C", str(project)) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("run passed: 2 stages in ")
    assert len(captured.out.splitlines()) == 1
    assert run_cli("data-test", "--json", "-C", str(project)) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)  # nothing but the JSON on stdout
    assert payload["stage"] == "data-test" and payload["status"] == "passed"
    assert "data contract passed" in captured.err
    (project / "src" / next((project / "src").iterdir()).name / "extra.py").write_text("import os\n")
    assert run_cli("run", "lint", "--json", "-C", str(project)) == 1
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["stage"] == "run" and payload["status"] == "failed" and payload["stages"][0]["status"] == "failed"


def test_every_subcommand_describes_itself_and_deploy_says_smoke_test_first() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    choices: dict[str, Any] = dict(actions[0].choices)  # type: ignore[attr-defined]
    for sub in [choices["data"]]:
        nested = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction")
        choices.update({f"data {k}": v for k, v in nested.choices.items()})
    for name, sub in choices.items():
        assert sub.description and len(sub.description) > 20, name
    assert choices["deploy"].description.startswith("Serve a version on loopback, smoke-test it")
    assert "promote the challenger and smoke-test" not in parser.format_help()


def test_closed_pipe_exits_quietly() -> None:
    done = subprocess.run(
        f"{sys.executable} -m mlci data schema | head -n 1", shell=True, capture_output=True, text=True, check=False
    )
    assert done.stdout == "{\n" and done.stderr == ""


def test_json_answers_in_json_when_the_command_fails_before_any_stage_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mlci.yaml").write_text("schema: 1\nproject: [\n")  # not YAML: fails while loading
    assert run_cli("data-test", "--json", "-C", str(tmp_path)) == 2
    captured = capsys.readouterr()
    payload = json.loads(captured.out)  # stdout is still nothing but JSON
    assert (payload["stage"], payload["status"], payload["exit_code"]) == ("data-test", "error", 2)
    assert "invalid YAML" in payload["summary"] and "mlci: error: " in captured.err
