"""`mlci upgrade [PATH ...]`: move projects to the installed mlci's templates, keeping every edit.

Exit codes: 0 everything merged (or, with --check, nothing to do); 1 conflicts remain (or
--check found a project behind); 2 bad input (no manifest, a downgrade, a dirty file with
--require-clean, a bad mlci.yaml, another mlci holds the project lock); 3 a file could not be
written (every file left as it was, or the files that could not be put back are named).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mlci import __version__
from mlci.config import CONFIG_FILE, find_project
from mlci.errors import UsageError
from mlci.upgrade import engine, fleet


def read_repos_file(path: Path) -> list[Path]:
    """One repository per line; '#' starts a comment; relative paths are relative to the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = f"--repos-file {path}: cannot read it ({exc.strerror}); give a file with one path per line"
        raise UsageError(problem) from None
    repos = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            repo = Path(entry).expanduser()
            repos.append(repo if repo.is_absolute() else path.parent / repo)
    return repos


def repositories(args: argparse.Namespace) -> list[Path]:
    repos = [Path(p) for p in args.paths]
    if args.repos_file:
        repos += read_repos_file(Path(args.repos_file))
    if not repos:
        return [find_project(Path.cwd())]
    return repos


def main(args: argparse.Namespace) -> int:
    if (args.branch or args.commit) and (args.check or args.dry_run):
        raise UsageError("--branch/--commit make commits; they cannot be combined with --check or --dry-run")
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give 1 or more")
    options = fleet.Options(
        check=args.check,
        dry_run=args.dry_run,
        require_clean=args.require_clean,
        branch=args.branch,
        commit=args.commit,
    )
    repos = repositories(args)
    started = time.perf_counter()
    many = len(repos) > 1
    results = fleet.run_fleet(repos, options, jobs=args.jobs, progress=fleet.stderr_progress if many else None)
    elapsed = time.perf_counter() - started
    if args.report:
        fleet.write_report(Path(args.report), results, options, elapsed)
    for result in results:
        if many and (result.lines or result.error or result.diff):
            print(f"== {result.path}")
        if result.diff:
            sys.stdout.write(result.diff)
        if result.error:
            print(f"mlci: error: {result.error}", file=sys.stderr)
            continue
        if not many or result.conflicts:
            for line in result.lines:
                print(f"  {line}" if many else line)
        if not many:
            print(_one_line(result))
    if many:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(fleet.summary(results).items()))
        print(f"upgrade: {len(results)} repositories to mlci {__version__}: {counts} ({elapsed:.2f}s)")
    return fleet.exit_code(results)


def _one_line(result: fleet.RepoResult) -> str:
    moved = f"mlci {result.from_version} -> {result.to_version}"
    if result.status == fleet.BEHIND:
        why = (
            moved
            if result.from_version != result.to_version
            # mlci.yaml is "updated" only to move a detected ci.mlci_install (a new commit, same version)
            else f"{CONFIG_FILE}'s ci.mlci_install would follow the installed mlci"
            if CONFIG_FILE in result.files.get(engine.UPDATED, [])
            else "generated files drifted from mlci.yaml"
        )
        return f"upgrade --check: {result.path} is behind ({why}); run 'mlci upgrade'"
    if result.status == fleet.UP_TO_DATE:
        return f"upgrade: up to date with mlci {result.to_version}"
    if result.status == fleet.CONFLICTS:
        files = ", ".join(result.conflicts)
        return (
            f"upgrade: {len(result.conflicts)} file(s) with conflicts: {files}; resolve them "
            "(look for '<<<<<<<'), then run 'mlci upgrade' again to finish"
        )
    suffix = f"; {result.git}" if result.git else ""
    changed = sum(len(v) for v in result.files.values())
    return f"upgrade: {moved}, {changed} file(s) changed{suffix}"
