"""lint: ruff check + ruff format --check (+ pre-commit when enabled), findings as annotations."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from typing import Any

from mlci import ci_env
from mlci.config import Project
from mlci.errors import CheckFailed, UsageError
from mlci.stages._result import StageResult, execute, load_project_for, tool_env

RUFF = [sys.executable, "-m", "ruff"]
MAX_LISTED = 200  # findings kept in the JSON result; the count is always exact


def _ruff(project: Project, *arguments: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*RUFF, *arguments], cwd=project.root, capture_output=True, text=True, env=tool_env(project), check=False
    )
    if done.returncode not in (0, 1):  # 2: ruff itself failed (bad config, unreadable file)
        first = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0]
        raise UsageError(f"ruff {arguments[0]} could not run: {first}; fix the ruff configuration in pyproject.toml")
    return done


def check_findings(project: Project) -> list[dict[str, Any]]:
    done = _ruff(project, "check", "--output-format=json", "--force-exclude", *project.config.lint.paths)
    findings = []
    for item in json.loads(done.stdout or "[]"):
        path = _relative(project, item["filename"])
        findings.append(
            {
                "code": item.get("code") or "syntax-error",
                "message": item["message"],
                "file": path,
                "line": item["location"]["row"],
                "column": item["location"]["column"],
                "fixable": bool(item.get("fix")),
            }
        )
    return findings


def _relative(project: Project, path: str) -> str:
    try:
        return str(project.root.joinpath(path).resolve().relative_to(project.root))
    except ValueError:
        return path


def unformatted_files(project: Project) -> list[dict[str, Any]]:
    """Files `ruff format` would change, with the first line it would change where ruff says."""
    arguments = ["format", "--check", "--force-exclude", "--output-format=json", *project.config.lint.paths]
    done = subprocess.run(
        [*RUFF, *arguments], cwd=project.root, capture_output=True, text=True, env=tool_env(project), check=False
    )
    if done.returncode == 2 and "--output-format" in done.stderr:
        # ruff before 0.17 has no JSON for format: it lists "Would reformat: PATH" lines.
        done = _ruff(project, "format", "--check", "--force-exclude", *project.config.lint.paths)
        prefix = "Would reformat: "
        paths = sorted(line[len(prefix) :].strip() for line in done.stdout.splitlines() if line.startswith(prefix))
        return [{"file": _relative(project, p), "line": None} for p in paths]
    if done.returncode not in (0, 1):
        first = (done.stderr.strip() or "no output").splitlines()[0]
        raise UsageError(f"ruff format could not run: {first}; fix the ruff configuration in pyproject.toml")
    first_line: dict[str, int] = {}
    for item in json.loads(done.stdout or "[]"):  # one entry per changed region: keep each file's first
        path = _relative(project, item["filename"])
        first_line[path] = min(first_line.get(path, item["location"]["row"]), item["location"]["row"])
    return [{"file": path, "line": line} for path, line in sorted(first_line.items())]


def run_pre_commit(project: Project) -> bool:
    print("pre-commit run --all-files", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files", "--show-diff-on-failure"],
        cwd=project.root,
        env=tool_env(project),
        check=False,
    )
    return done.returncode == 0


def run_lint(project: Project) -> StageResult:
    findings = check_findings(project)
    for item in findings:
        where = f"{item['file']}:{item['line']}:{item['column']}"
        print(f"{where}: {item['code']} {item['message']}")
        note = ci_env.annotation(
            "error", item["message"], item["file"], item["line"], item["column"], f"ruff {item['code']}"
        )
        if note:
            print(note)
    unformatted = unformatted_files(project)
    for item in unformatted:
        print(f"{item['file']}:{item['line'] or 1}: not formatted (run 'ruff format {item['file']}')")
        note = ci_env.annotation(
            "error", "File is not formatted; run 'ruff format'.", item["file"], item["line"], title="ruff format"
        )
        if note:
            print(note)
    pre_commit_ok = run_pre_commit(project) if project.config.lint.pre_commit else None
    details = {
        "ruff_check": {
            "findings": len(findings),
            "by_code": dict(Counter(f["code"] for f in findings)),
            "fixable": sum(f["fixable"] for f in findings),
            "items": findings[:MAX_LISTED],
        },
        "ruff_format": {"unformatted": [item["file"] for item in unformatted]},
        "pre_commit": {"ran": pre_commit_ok is not None, "passed": pre_commit_ok},
    }
    problems = []
    if findings:
        problems.append(f"{len(findings)} ruff finding{'s' * (len(findings) != 1)}")
    if unformatted:
        problems.append(f"{len(unformatted)} file{'s' * (len(unformatted) != 1)} not formatted")
    if pre_commit_ok is False:
        problems.append("pre-commit hooks failed")
    if problems:
        fixable = details["ruff_check"]["fixable"]
        fix = " (run 'ruff check --fix' and 'ruff format')" if fixable or unformatted else ""
        raise CheckFailed(f"lint failed: {', '.join(problems)}{fix}", details)
    checked = "ruff check, ruff format" + (", pre-commit" if pre_commit_ok else "")
    return StageResult("lint", f"lint passed: {checked} clean", details, outputs={"findings": 0})


def main(args: argparse.Namespace) -> int:
    project = load_project_for(args)
    result = execute("lint", project, lambda: run_lint(project))
    print(result.summary)
    return 0
