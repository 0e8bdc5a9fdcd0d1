"""unit-test: pytest with JUnit XML under .mlci/out/ and a line-coverage figure."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from mlci import console, providers
from mlci.config import Project
from mlci.errors import CheckFailed, InfraError, UsageError
from mlci.stages._result import JUNIT_REPORTS, OTHER_REPORTS, StageOptions, StageResult, tool_env


def parse_junit(path: Path) -> dict[str, Any]:
    """Counts and failed cases from a JUnit XML report."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    failed = []
    for case in root.iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            failed.append(
                {
                    "test": f"{case.get('classname')}::{case.get('name')}",
                    "file": case.get("file"),
                    "line": int(case.get("line", 0)) + 1 if case.get("line") else None,
                    "message": (problem.get("message") or "").splitlines()[0][:500] if problem.get("message") else "",
                }
            )
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed": failed, "time_s": round(sum(float(s.get("time", 0)) for s in suites), 3)}


def collection_errors(junit: Path, root: Path) -> list[dict[str, Any]]:
    """Modules pytest could not collect (a syntax or import error), with file, line and the
    error line, from the JUnit report; pytest exits 2 for these, as it does when interrupted."""
    if not junit.is_file():
        return []
    errors = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        problem = case.find("error")
        if problem is None or problem.get("message") != "collection failure":
            continue
        file = case.get("file") or case.get("name", "").replace(".", "/") + ".py"
        text = problem.text or ""
        errors.append({"file": file, "line": _error_line(text, file, root), "message": _error_message(text)})
    return errors


def _error_line(text: str, file: str, root: Path) -> int | None:
    # A SyntaxError names the line as `File "/abs/path", line N`; an import error shows the
    # module's frame as `tests/test_x.py:N: in <module>`.
    absolute = re.escape(str((root / file).resolve()))
    for pattern in (rf'File "(?:{absolute}|[^"]*{re.escape(file)})", line (\d+)', rf"{re.escape(file)}:(\d+): in "):
        found = re.findall(pattern, text)
        if found:
            return int(found[-1])
    return None


def _error_message(text: str) -> str:
    lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return (errors or lines or ["cannot be imported"])[-1][:300]


def pytest_command(project: Project, junit: Path, coverage_json: Path) -> list[str]:
    cfg = project.config
    # Failures first: by default pytest prints progress dots, the failures and a short summary;
    # --verbose lists every test and the coverage of every file.
    shown = ["-v", "--cov-report=term-missing"] if console.verbose() else ["-q", "--no-header"]
    return [
        sys.executable,
        "-m",
        "pytest",
        *cfg.test.paths,
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit1",  # xunit1 keeps file and line for annotations
        "-p",
        "pytest_cov",
        f"--cov={cfg.project.package}",
        f"--cov-report=json:{coverage_json}",
        *shown,
        "-p",
        "no:cacheprovider",
        "-p",
        "mlci.stages._pytest_exit",  # ends the process without a teardown collection
    ]


def run_tests(project: Project) -> StageResult:
    cfg = project.config
    out = project.out_dir
    out.mkdir(parents=True, exist_ok=True)
    # execute() removed both before the stage started (an earlier run's never pass for this one's).
    junit = out / JUNIT_REPORTS["test"]
    coverage_json = out / OTHER_REPORTS["test"][0]
    code, output = console.run_tool(
        pytest_command(project, junit, coverage_json), cwd=project.root, env=tool_env(project)
    )
    if code != 0 and console.quiet():
        console.dump(output)  # --quiet hid pytest's output; a failure needs it
    ci = providers.detect()
    # pytest's exit codes: 0 passed, 1 tests failed, 2 interrupted or a collection error,
    # 3 internal error, 4 usage error, 5 no tests collected.
    if code == 4:
        raise UsageError(f"pytest rejected its arguments (test.paths {cfg.test.paths}); fix test.paths in mlci.yaml")
    if code == 3:
        raise InfraError("pytest hit an internal error; see its output above")
    if code == 5:
        raise CheckFailed(
            f"no tests were collected from {', '.join(cfg.test.paths)}; add tests or fix test.paths in mlci.yaml",
            {"tests": 0},
            outputs={"tests": 0},
        )
    if code == 2:
        broken = collection_errors(junit, project.root)
        if not broken:
            # A Ctrl-C or SIGTERM meant for this job reaches mlci too and unwinds it before
            # this line; here pytest stopped on its own (pytest.exit(), a plugin, a signal
            # sent to pytest alone): the tests did not pass, it is not mlci being cancelled.
            lines = [line.strip() for line in output.splitlines() if line.strip()]
            # pytest names why it stopped between rows of '!': "!!! _pytest.outcomes.Exit: why !!!".
            banner = [m.group(1) for line in lines if (m := re.match(r"^!{3,} (.+?) !{3,}$", line))]
            last = banner[-1] if banner else (lines[-1] if lines else "no output")
            raise CheckFailed(
                f"pytest stopped the session (exit 2) before the tests finished: {last[:300]}",
                {"pytest_exit_code": 2},
                outputs={"tests": 0},
            )
        for item in broken:
            console.annotation(
                ci.annotation("error", item["message"], item["file"], item["line"], title="collection error")
                if ci
                else None
            )
        first = broken[0]
        where = f"{first['file']}:{first['line']}" if first["line"] else first["file"]
        more = f" and {len(broken) - 1} more file(s)" if len(broken) > 1 else ""
        raise CheckFailed(
            f"collection error in {where}: {first['message']}{more}; fix it so pytest can import the tests",
            {"collection_errors": broken, "junit_xml": str(junit.relative_to(project.root))},
            outputs={"tests": 0},
        )
    if not junit.is_file():
        raise InfraError(f"pytest exited {code} without writing {junit}")
    report = parse_junit(junit)
    coverage = None
    if coverage_json.is_file():
        coverage = round(float(json.loads(coverage_json.read_text())["totals"]["percent_covered"]), 2)
    details = {**report, "coverage_percent": coverage, "junit_xml": str(junit.relative_to(project.root))}
    outputs = {"tests": report["tests"], "coverage": coverage}
    for case in report["failed"]:
        console.annotation(
            ci.annotation("error", case["message"] or "test failed", case["file"], case["line"], title=case["test"])
            if ci
            else None
        )
    counts = f"{report['passed']} passed, {report['failures'] + report['errors']} failed, {report['skipped']} skipped"
    cov_text = f", coverage {coverage:.1f}%" if coverage is not None else ""
    if code != 0 or report["failures"] or report["errors"]:
        names = ", ".join(c["test"] for c in report["failed"][:5])
        raise CheckFailed(f"tests failed: {counts}{cov_text}; failing: {names}", details, outputs)
    if cfg.test.coverage_min is not None and (coverage or 0.0) < cfg.test.coverage_min:
        raise CheckFailed(
            f"coverage {coverage or 0:.1f}% is below test.coverage_min {cfg.test.coverage_min:g}% "
            f"({project.config_path.name}:{project.line_of('test.coverage_min')}); add tests or lower it",
            details,
            outputs,
        )
    return StageResult(f"tests passed: {counts}{cov_text}", details, outputs=outputs)


def run(project: Project, options: StageOptions) -> StageResult:
    """The stage as `mlci test` and `mlci run` call it (mlci.stage_specs.STAGES names it)."""
    return run_tests(project)
