"""lint and unit-test stages on real ruff and pytest runs, with CI annotations and JUnit XML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli


def result(project: Path, stage: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / ".mlci" / "out" / f"{stage}.json").read_text())
    return data


def package_dir(project: Path) -> Path:
    return next((project / "src").iterdir())


def test_lint_passes_on_a_fresh_project(new_project: Any) -> None:
    project = new_project()
    assert run_cli("lint", "-C", str(project)) == 0
    assert result(project, "lint")["details"]["ruff_check"]["findings"] == 0


def test_lint_reports_findings_as_github_annotations(
    new_project: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project()
    module = package_dir(project) / "features.py"
    module.write_text(module.read_text() + "\n\nimport os\n")  # unused import F401, misplaced E402
    (package_dir(project) / "messy.py").write_text("x = {  'a':1 }\n")  # unformatted
    output, summary = tmp_path / "gh_output", tmp_path / "gh_summary"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert run_cli("lint", "-C", str(project)) == 1
    captured = capsys.readouterr()
    relative = module.relative_to(project).as_posix()
    assert f"::error file={relative},line=" in captured.out and "title=ruff F401::" in captured.out
    assert "::error file=" + (package_dir(project) / "messy.py").relative_to(project).as_posix() in captured.out
    assert "mlci: error: lint failed: " in captured.err and "1 file not formatted" in captured.err
    details = result(project, "lint")["details"]
    assert details["ruff_check"]["by_code"]["F401"] == 1
    assert details["ruff_format"]["unformatted"] == [
        (package_dir(project) / "messy.py").relative_to(project).as_posix()
    ]
    assert "### mlci lint: failed" in summary.read_text()


def test_unit_tests_pass_with_junit_and_coverage(new_project: Any) -> None:
    project = new_project()
    assert run_cli("test", "-C", str(project)) == 0
    details = result(project, "test")["details"]
    assert details["failures"] == 0 and details["passed"] == details["tests"] >= 15
    assert details["coverage_percent"] > 80
    junit = project / details["junit_xml"]
    assert junit.is_file() and "<testcase" in junit.read_text()


def test_the_tests_process_ends_frozen_after_its_reports_are_written(new_project: Any) -> None:
    # The stage's pytest plugin freezes the heap last (no teardown collection): an atexit hook
    # of the project's conftest sees it, and the JUnit and coverage files are complete.
    project = new_project()
    conftest = project / "tests" / "conftest.py"
    seen = project / "frozen.txt"
    conftest.write_text(
        conftest.read_text()
        + "\n\nimport atexit as _atexit\nimport gc as _gc\n\n"
        + f"_atexit.register(lambda: open({str(seen)!r}, 'w').write(str(_gc.get_freeze_count() > 0)))\n"
    )
    assert run_cli("test", "-C", str(project)) == 0
    assert seen.read_text() == "True"
    details = result(project, "test")["details"]
    assert details["tests"] >= 15 and details["coverage_percent"] > 80


def test_failing_unit_test_fails_the_stage(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    (project / "tests" / "test_broken.py").write_text("def test_one_is_two():\n    assert 1 == 2\n")
    assert run_cli("test", "-C", str(project)) == 1
    err = capsys.readouterr().err
    assert "mlci: error: tests failed: " in err and "1 failed" in err and "test_one_is_two" in err
    failed = result(project, "test")["details"]["failed"]
    assert [f["test"] for f in failed] == ["tests.test_broken::test_one_is_two"]
    assert failed[0]["file"] == "tests/test_broken.py" and failed[0]["line"] == 1


def test_no_tests_collected_fails(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    for path in (project / "tests").glob("test_*.py"):
        path.unlink()
    assert run_cli("test", "-C", str(project)) == 1
    assert "no tests were collected from tests" in capsys.readouterr().err


def _hooked_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git project with lint.pre_commit: true and its (local, ruff) hooks runnable offline."""
    import os
    import sys

    assert run_cli("new", "hooked-model", "--defaults", "--output-dir", str(tmp_path)) == 0  # with git
    project = tmp_path / "hooked-model"
    config = project / "mlci.yaml"
    config.write_text(config.read_text().replace("pre_commit: false", "pre_commit: true"))
    # The hooks are `language: system`: they find ruff on PATH, as in a developer's environment.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    return project


def _tree(project: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(project)): p.read_bytes()
        for p in project.rglob("*")
        if p.is_file() and not {".git", ".mlci", ".ruff_cache", "__pycache__"} & set(p.parts)
    }


def test_pre_commit_runs_when_enabled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    project = _hooked_project(tmp_path, monkeypatch)
    assert run_cli("lint", "-C", str(project)) == 0
    pre_commit = result(project, "lint")["details"]["pre_commit"]
    assert pre_commit["ran"] is True and pre_commit["passed"] is True and pre_commit["would_change"] == []
    # A tracked file with an unused import: the ruff hook would fix it and so fails the run.
    module = project / "src" / "hooked_model" / "extra.py"
    module.write_text("import os\nimport sys\n\nprint(sys.argv)\n")
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    assert run_cli("lint", "-C", str(project)) == 1
    pre_commit = result(project, "lint")["details"]["pre_commit"]
    assert pre_commit["passed"] is False and pre_commit["would_change"] == ["src/hooked_model/extra.py"]
    assert "pre-commit hooks failed (they would change 1 file)" in capsys.readouterr().err


def test_lint_never_edits_the_tree_and_lint_fix_fixes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    project = _hooked_project(tmp_path, monkeypatch)
    package = project / "src" / "hooked_model"
    (package / "extra.py").write_text("import os\nimport sys\nx = {  'a':1 }\nprint(sys.argv, x)\n")
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    (package / "untracked.py").write_text("import json\n")  # pre-commit never sees untracked files
    before = _tree(project)
    assert run_cli("lint", "-C", str(project)) == 1
    assert _tree(project) == before  # byte for byte: the hooks' edits were put back
    out = capsys.readouterr().out
    assert "src/hooked_model/extra.py: a pre-commit hook would change it; restored" in out
    assert "pre-commit checks tracked files only; not checked by its hooks: src/hooked_model/untracked.py" in out

    assert run_cli("lint", "--fix", "-C", str(project)) == 0
    assert (package / "extra.py").read_text() == 'import sys\n\nx = {"a": 1}\nprint(sys.argv, x)\n'
    assert (package / "untracked.py").read_text() == ""  # ruff --fix removed the unused import
    assert result(project, "lint")["status"] == "passed"


def test_collection_error_is_a_failure_not_an_interruption(
    new_project: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project()
    (project / "tests" / "test_broken.py").write_text("def test_broken(:\n    pass\n")
    assert run_cli("test", "-C", str(project)) == 1
    err = capsys.readouterr().err
    assert err.endswith(
        "mlci: error: collection error in tests/test_broken.py:1: SyntaxError: invalid syntax; "
        "fix it so pytest can import the tests\n"
    )
    assert "interrupted" not in err.splitlines()[-1]
    record = result(project, "test")
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert record["details"]["collection_errors"] == [
        {"file": "tests/test_broken.py", "line": 1, "message": "SyntaxError: invalid syntax"}
    ]


def test_import_error_in_a_test_module_names_its_line(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    (project / "tests" / "test_imports.py").write_text("\nimport no_such_module_x\n")
    assert run_cli("test", "-C", str(project)) == 1
    assert (
        "collection error in tests/test_imports.py:2: ModuleNotFoundError: No module named 'no_such_module_x'"
        in capsys.readouterr().err
    )


def test_lint_syntax_error_is_a_finding_with_file_and_line(
    new_project: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project()
    (project / "tests" / "test_broken.py").write_text("def test_broken(:\n    pass\n")
    assert run_cli("lint", "-C", str(project)) == 1
    err = capsys.readouterr().err
    assert "mlci: error: lint failed: syntax error in tests/test_broken.py:1:17 (" in err
    assert "ruff configuration" not in err


def test_outputs_are_written_on_failure_too(new_project: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = new_project()
    (project / "tests" / "test_broken.py").write_text("def test_one_is_two():\n    assert 1 == 2\n")
    (package_dir(project) / "extra.py").write_text("import os\n")
    output = tmp_path / "gh_output"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    assert run_cli("lint", "-C", str(project)) == 1
    assert output.read_text().splitlines() == ["findings=1", "result=failed"]
    output.unlink()
    assert run_cli("test", "-C", str(project)) == 1
    lines = dict(line.split("=", 1) for line in output.read_text().splitlines())
    tests = result(project, "test")["details"]["tests"]
    assert lines["result"] == "failed" and lines["tests"] == str(tests) and float(lines["coverage"]) > 50


def test_pytest_exit_in_a_test_is_a_failure_not_an_interruption(
    new_project: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # pytest.exit() ends the session with exit 2, as a collection error or pytest's own Ctrl-C
    # would: mlci must not report a cancelled job (130) when nobody cancelled it.
    project = new_project()
    (project / "tests" / "test_stops.py").write_text(
        "import pytest\n\ndef test_stops():\n    pytest.exit('database fixture unavailable')\n"
    )
    assert run_cli("test", "-C", str(project)) == 1
    err = capsys.readouterr().err
    assert "mlci: error: pytest stopped the session (exit 2) before the tests finished: " in err
    assert "database fixture unavailable" in err
    record = json.loads((project / ".mlci" / "out" / "test.json").read_text())
    assert (record["status"], record["exit_code"]) == ("failed", 1)


def test_a_hook_that_only_changes_line_endings_is_restored_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # With `text=auto`, git's filters normalise CRLF to LF when hashing, so a CRLF file and
    # its LF rewrite look the same: the check must compare the bytes on disk.
    import subprocess
    import sys

    project = _hooked_project(tmp_path, monkeypatch)
    (project / ".gitattributes").write_text("*.txt text=auto\n")
    notes = project / "notes.txt"
    notes.write_bytes(b"first\r\nsecond\r\n")
    hooks = project / ".pre-commit-config.yaml"
    rewrite = "import pathlib; p = pathlib.Path('notes.txt'); p.write_bytes(p.read_bytes().replace(b'\\r\\n', b'\\n'))"
    hooks.write_text(
        hooks.read_text() + f'      - id: to-lf\n        name: to LF\n        entry: {sys.executable} -c "{rewrite}"\n'
        "        language: system\n        pass_filenames: false\n        always_run: true\n"
    )
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    assert run_cli("lint", "-C", str(project)) == 1  # the hook failed by changing a file
    assert notes.read_bytes() == b"first\r\nsecond\r\n"
    assert "notes.txt: a pre-commit hook would change it; restored" in capsys.readouterr().out
