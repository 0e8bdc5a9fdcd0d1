"""lint: ruff check + ruff format --check (+ pre-commit when enabled), findings as annotations."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

from mlci import console, git, providers
from mlci.config import Project
from mlci.errors import CheckFailed, UsageError
from mlci.stages._result import StageOptions, StageResult, tool_env

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
    items = _json_list(done.stdout)
    if done.returncode not in (0, 1) and (items is None or not any(_is_syntax_error(i) for i in items)):
        first = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0]
        raise UsageError(f"ruff format could not run: {first}; fix the ruff configuration in pyproject.toml")
    first_line: dict[str, int] = {}
    for item in items or []:  # one entry per changed region: keep each file's first
        if _is_syntax_error(item):
            continue  # a file ruff cannot parse: ruff check reports it as invalid-syntax, with its line
        path = _relative(project, item["filename"])
        first_line[path] = min(first_line.get(path, item["location"]["row"]), item["location"]["row"])
    return [{"file": path, "line": line} for path, line in sorted(first_line.items())]


def _json_list(text: str) -> list[dict[str, Any]] | None:
    try:
        value = json.loads(text or "[]")
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def _is_syntax_error(item: dict[str, Any]) -> bool:
    return item.get("code") in ("invalid-syntax", None) or item.get("name") == "invalid-syntax"


def _git(project: Project, *arguments: str, stdin: str | None = None) -> str:
    done = git.call(project.root, *arguments, stdin=stdin, timeout=None)
    if done.returncode != 0:
        first = (done.stderr.strip() or "no output").splitlines()[0]
        raise UsageError(
            f"git {arguments[0]} failed in {project.root}: {first}; lint.pre_commit needs a git repository"
        )
    return done.stdout


def _tracked_blobs(project: Project, write: bool) -> dict[str, str | None]:
    """Each tracked file (the files `pre-commit run --all-files` hands its hooks) and the git
    blob of its content now; None for a file missing from the tree. With `write`, the blobs
    are stored, so the content can be put back byte for byte."""
    paths = [p for p in _git(project, "ls-files", "-z").split("\0") if p]
    present = [p for p in paths if (project.root / p).is_file() and not (project.root / p).is_symlink()]
    blobs: dict[str, str | None] = dict.fromkeys(paths)
    if present:
        # --no-filters: the bytes on disk, not what autocrlf or .gitattributes would commit, so a
        # hook that only changed line endings is seen and the restore is exact.
        hashed = _git(
            project,
            "hash-object",
            *(["-w"] if write else []),
            "--no-filters",
            "--stdin-paths",
            stdin="\n".join(present),
        )
        blobs.update(zip(present, hashed.split(), strict=True))
    return blobs


def untracked_files(project: Project) -> list[str]:
    """Files git does not track (and does not ignore): pre-commit's hooks never see them."""
    return [p for p in _git(project, "ls-files", "--others", "--exclude-standard", "-z").split("\0") if p]


def _restore(project: Project, before: dict[str, str | None]) -> list[str]:
    """Put back, byte for byte, every tracked file whose content differs from its stored blob."""
    after = _tracked_blobs(project, write=False)
    restored = []
    for path, blob in before.items():
        if blob is not None and after.get(path) != blob:
            content = git.blob(project.root, blob)
            (project.root / path).write_bytes(content)
            restored.append(path)
    return restored


def run_pre_commit(project: Project, *, fix: bool = False) -> dict[str, Any]:
    """`pre-commit run --all-files`. A check must never edit the tree, yet the hooks may
    (`ruff check --fix`, `ruff format`): the tracked files are stored as git blobs first and
    any file a hook changed is put back, byte for byte, and named. With `fix` the hooks'
    edits are kept."""
    before = {} if fix else _tracked_blobs(project, write=True)
    console.say("pre-commit run --all-files" + (" (fixing)" if fix else ""))
    restored: list[str] = []
    try:
        code, output = console.run_tool(
            [sys.executable, "-m", "pre_commit", "run", "--all-files", "--show-diff-on-failure", "--color=never"],
            cwd=project.root,
            env=tool_env(project),
        )
    finally:
        # Also when interrupted (Ctrl-C, SIGTERM) half-way through the hooks.
        if not fix:
            restored = _restore(project, before)
    if code != 0 and console.quiet():
        console.dump(output)
    for path in restored:
        console.say(f"{path}: a pre-commit hook would change it; restored (run 'mlci lint --fix' to apply)")
    untracked = untracked_files(project)
    if untracked:
        listed = ", ".join(untracked[:5]) + (f" and {len(untracked) - 5} more" if len(untracked) > 5 else "")
        console.say(
            f"pre-commit checks tracked files only; not checked by its hooks: {listed} "
            "('git add' them; ruff above did check them)"
        )
    return {
        "ran": True,
        # A hook that changed a file failed the check, even where pre-commit did not see it
        # (git's own filters hide a change of line endings from it).
        "passed": code == 0 and not restored,
        "would_change": restored,
        "untracked_not_checked": untracked[:MAX_LISTED],
    }


def apply_fixes(project: Project) -> None:
    """`mlci lint --fix`: the edits a check refuses to make, made deliberately."""
    paths = project.config.lint.paths
    console.say("ruff check --fix; ruff format")
    for arguments in (["check", "--fix", "--force-exclude", "--quiet"], ["format", "--force-exclude", "--quiet"]):
        # Exit 1 (findings left that cannot be fixed) is reported by the check that follows.
        # Through console: ruff's own lines must never reach stdout when it carries --json.
        console.run_tool([*RUFF, *arguments, *paths], cwd=project.root, env=tool_env(project))
    if project.config.lint.pre_commit:
        run_pre_commit(project, fix=True)


def run_lint(project: Project, fix: bool = False) -> StageResult:
    if fix:
        apply_fixes(project)
    findings = check_findings(project)
    ci = providers.detect()
    for item in findings:
        where = f"{item['file']}:{item['line']}:{item['column']}"
        console.say(f"{where}: {item['code']} {item['message']}")
        console.annotation(
            ci.annotation("error", item["message"], item["file"], item["line"], item["column"], f"ruff {item['code']}")
            if ci
            else None
        )
    unformatted = unformatted_files(project)
    for item in unformatted:
        console.say(f"{item['file']}:{item['line'] or 1}: not formatted (run 'ruff format {item['file']}')")
        console.annotation(
            ci.annotation(
                "error", "File is not formatted; run 'ruff format'.", item["file"], item["line"], title="ruff format"
            )
            if ci
            else None
        )
    pre_commit: dict[str, Any] = (
        run_pre_commit(project) if project.config.lint.pre_commit else {"ran": False, "passed": None}
    )
    details = {
        "ruff_check": {
            "findings": len(findings),
            "by_code": dict(Counter(f["code"] for f in findings)),
            "fixable": sum(f["fixable"] for f in findings),
            "items": findings[:MAX_LISTED],
        },
        "ruff_format": {"unformatted": [item["file"] for item in unformatted]},
        "pre_commit": pre_commit,
    }
    problems = []
    syntax = [f for f in findings if f["code"] in ("invalid-syntax", "syntax-error")]
    if syntax:
        first = syntax[0]
        problems.append(f"syntax error in {first['file']}:{first['line']}:{first['column']} ({first['message']})")
    if findings:
        problems.append(f"{len(findings)} ruff finding{'s' * (len(findings) != 1)}")
    if unformatted:
        problems.append(f"{len(unformatted)} file{'s' * (len(unformatted) != 1)} not formatted")
    if pre_commit["passed"] is False:
        changed = pre_commit.get("would_change") or []
        problems.append(
            f"pre-commit hooks failed (they would change {len(changed)} file{'s' * (len(changed) != 1)})"
            if changed
            else "pre-commit hooks failed"
        )
    if problems:
        fixable = details["ruff_check"]["fixable"]
        fix_hint = " (run 'mlci lint --fix')" if fixable or unformatted or pre_commit.get("would_change") else ""
        raise CheckFailed(f"lint failed: {', '.join(problems)}{fix_hint}", details, outputs={"findings": len(findings)})
    checked = "ruff check, ruff format" + (", pre-commit" if pre_commit["passed"] else "")
    return StageResult(f"lint passed: {checked} clean", details, outputs={"findings": 0})


def run(project: Project, options: StageOptions) -> StageResult:
    """The stage as `mlci lint` and `mlci run` call it (mlci.stage_specs.STAGES names it)."""
    return run_lint(project, fix=bool(options["fix"]))
