"""unit-test: pytest with JUnit XML under .mlci/out/ and a line-coverage figure."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from mlci import ci_env
from mlci.config import Project
from mlci.errors import CheckFailed, InfraError, UsageError
from mlci.stages._result import StageResult, execute, load_project_for, tool_env


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


def run_tests(project: Project) -> StageResult:
    cfg = project.config
    out = project.out_dir
    out.mkdir(parents=True, exist_ok=True)
    junit = out / "junit.xml"
    coverage_json = out / "coverage.json"
    for stale in (junit, coverage_json):
        stale.unlink(missing_ok=True)
    command = [
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
        "--cov-report=term",
        "-p",
        "no:cacheprovider",
    ]
    done = subprocess.run(command, cwd=project.root, env=tool_env(project), check=False)
    if done.returncode == 4:
        raise UsageError(f"pytest rejected its arguments (test.paths {cfg.test.paths}); fix test.paths in mlci.yaml")
    if done.returncode == 3:
        raise InfraError("pytest hit an internal error; see its output above")
    if done.returncode == 2:
        raise KeyboardInterrupt
    if done.returncode == 5:
        raise CheckFailed(
            f"no tests were collected from {', '.join(cfg.test.paths)}; add tests or fix test.paths in mlci.yaml"
        )
    if not junit.is_file():
        raise InfraError(f"pytest exited {done.returncode} without writing {junit}")
    report = parse_junit(junit)
    coverage = None
    if coverage_json.is_file():
        coverage = round(float(json.loads(coverage_json.read_text())["totals"]["percent_covered"]), 2)
    details = {**report, "coverage_percent": coverage, "junit_xml": str(junit.relative_to(project.root))}
    for case in report["failed"]:
        note = ci_env.annotation(
            "error", case["message"] or "test failed", case["file"], case["line"], title=case["test"]
        )
        if note:
            print(note)
    counts = f"{report['passed']} passed, {report['failures'] + report['errors']} failed, {report['skipped']} skipped"
    cov_text = f", coverage {coverage:.1f}%" if coverage is not None else ""
    if done.returncode != 0 or report["failures"] or report["errors"]:
        names = ", ".join(c["test"] for c in report["failed"][:5])
        raise CheckFailed(f"tests failed: {counts}{cov_text}; failing: {names}", details)
    if cfg.test.coverage_min is not None and (coverage or 0.0) < cfg.test.coverage_min:
        raise CheckFailed(
            f"coverage {coverage or 0:.1f}% is below test.coverage_min {cfg.test.coverage_min:g}% "
            f"({project.config_path.name}:{project.line_of('test.coverage_min')}); add tests or lower it",
            details,
        )
    return StageResult(
        "test", f"tests passed: {counts}{cov_text}", details, outputs={"tests": report["tests"], "coverage": coverage}
    )


def main(args: argparse.Namespace) -> int:
    project = load_project_for(args)
    result = execute("test", project, lambda: run_tests(project))
    print(result.summary)
    return 0
