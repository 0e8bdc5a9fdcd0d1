"""Upgrade one repository or a fleet of them: per-repo results, a progress line, a JSON report.

Each repository is planned and applied on its own (atomically); one repository's error never
stops the others. `--jobs N` runs N repositories at a time in threads. Git is spawned only
for `--require-clean` and for `--branch/--commit`; a clean upgrade itself spawns nothing.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlci import __version__, fs, git
from mlci.errors import EXIT_CHECK_FAILED, EXIT_INFRA, EXIT_OK, MlciError, UsageError
from mlci.manifest import MANIFEST_PATH
from mlci.upgrade import engine, transaction

UPDATED, UP_TO_DATE, CONFLICTS, ERROR, BEHIND = "updated", "up-to-date", "conflicts", "error", "behind"


@dataclass(frozen=True)
class Options:
    check: bool = False
    dry_run: bool = False
    require_clean: bool = False
    branch: str | None = None
    commit: bool = False


@dataclass
class RepoResult:
    path: str
    status: str = UP_TO_DATE
    from_version: str | None = None
    to_version: str = __version__
    files: dict[str, list[str]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    error: str | None = None
    exit_code: int = EXIT_OK
    seconds: float = 0.0
    git: str | None = None
    commit: str | None = None
    lines: list[str] = field(default_factory=list)  # what a user reads, one per file
    diff: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("lines")
        data.pop("diff")
        return data


def describe(change: engine.FileChange) -> str:
    detail = f" ({change.detail})" if change.detail else ""
    return f"{change.action:<9} {change.path}{detail}"


def _locked(root: Path, options: Options) -> AbstractContextManager[None]:
    """The project lock (lock.py): one upgrade, and no stage, at a time in a project.

    A directory without `.mlci/` is no mlci project: the upgrade refuses it without creating one.
    """
    from mlci.lock import root_lock

    if not (root / ".mlci").is_dir():
        return contextlib.nullcontext()
    mode = " --check" if options.check else " --dry-run" if options.dry_run else ""
    return root_lock(root, f"upgrade{mode}")


def upgrade_repo(root: Path, options: Options) -> RepoResult:
    started = time.perf_counter()
    result = RepoResult(path=str(root))
    try:
        with _locked(root, options):
            to_commit = _upgrade_locked(root, options, result)
        if to_commit is not None:
            _git_branch_commit(root, to_commit, options, result)
    except MlciError as exc:
        result.status, result.error, result.exit_code = ERROR, exc.message, exc.exit_code
    # No claim about the files here: an error may come after recovery restored some, or after
    # the upgrade was applied (git); apply_plan says "every file was left as it was" itself,
    # once its rollback has finished.
    except OSError as exc:
        result.status, result.error, result.exit_code = ERROR, f"{root}: {exc}", EXIT_INFRA
    except Exception as exc:  # one repository's surprise must not abort the fleet or lose its report
        result.status, result.exit_code = ERROR, EXIT_INFRA
        result.error = f"{root}: unexpected {type(exc).__name__}: {exc}"
    finally:
        result.seconds = round(time.perf_counter() - started, 4)
    return result


def _upgrade_locked(root: Path, options: Options, result: RepoResult) -> engine.Plan | None:
    """Recover, plan and apply; returns the plan when it is still to be committed with git."""
    if options.check or options.dry_run:
        # A finished upgrade's clean-up, or a journal never committed, leaves nothing to restore.
        interrupted = transaction.needs_recovery(root)
        if interrupted:
            raise UsageError(
                f"{root}: an interrupted upgrade left {interrupted[0].name} in .mlci/; "
                "run 'mlci upgrade' to restore the files it had replaced"
            )
    else:
        for note in transaction.recover(root):
            result.lines.append(f"restored  {note} (left half-upgraded by an interrupted run)")
    plan = engine.plan_upgrade(root)
    result.from_version = plan.from_version
    for change in plan.changes:
        result.files.setdefault(change.action, []).append(change.path)
        result.lines.append(describe(change))
    result.lines += [f"note      {note}" for note in plan.notes]
    result.conflicts = [c.path for c in plan.conflicts]
    if options.check:
        result.status = BEHIND if plan.needed else UP_TO_DATE
        result.exit_code = EXIT_CHECK_FAILED if plan.needed else EXIT_OK
        if plan.needed and not plan.changes:
            result.lines.append(f"manifest  {MANIFEST_PATH} (records mlci {plan.from_version})")
        return None
    if options.dry_run:
        result.diff = "".join(engine.unified_diff(c) for c in plan.changes if c.writes or c.deletes)
    else:
        if options.require_clean:
            engine.check_clean(plan)
        if plan.needed:
            transaction.apply_plan(plan)
    if plan.conflicts:
        result.status, result.exit_code = CONFLICTS, EXIT_CHECK_FAILED
    elif plan.needed:
        result.status = UPDATED
        if not options.dry_run and (options.branch or options.commit):
            return plan  # committed once the lock is released: a git hook may run mlci
    return None


def _git_branch_commit(root: Path, plan: engine.Plan, options: Options, result: RepoResult) -> None:
    """Create the branch and/or commit the upgrade (only for repos that upgraded cleanly)."""
    if git.toplevel(root) is None:
        result.git = "not a git repository: files upgraded, no branch or commit made"
        return
    if options.branch:
        done = git.call(root, "switch", "-c", options.branch)
        if done.returncode != 0:
            result.git = f"branch {options.branch} not created: {done.stderr.strip()}"
            return
        result.git = f"branch {options.branch}"
    if not options.commit:
        return
    paths = sorted({c.path for c in plan.changes if c.writes or c.deletes} | {MANIFEST_PATH})
    message = f"Upgrade to mlci {plan.to_version}\n\nFrom mlci {plan.from_version} by 'mlci upgrade'."
    done = git.call(root, "add", "-A", "--", *paths)
    if done.returncode != 0:
        result.git = f"git add failed: {done.stderr.strip()}"
        return
    done = git.commit(root, message)
    if done.returncode != 0:
        result.git = f"git commit failed: {(done.stderr or done.stdout).strip()}"
        return
    result.commit = git.output(root, "rev-parse", "HEAD") or ""
    result.git = f"{result.git + ', ' if result.git else ''}commit {result.commit[:12]}"


def run_fleet(
    roots: Sequence[Path],
    options: Options,
    jobs: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[RepoResult]:
    """Upgrade every repository, `jobs` at a time; results in the order given."""
    results: dict[int, RepoResult] = {}
    total = len(roots)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(upgrade_repo, root, options): index for index, root in enumerate(roots)}
        for count, future in enumerate(as_completed(futures), start=1):
            index = futures[future]
            result = future.result()
            results[index] = result
            if progress is not None:
                status = result.status + (f": {result.error}" if result.error else "")
                progress(f"[{count}/{total}] {Path(result.path).name}: {status} ({result.seconds:.2f}s)")
    return [results[i] for i in range(total)]


def exit_code(results: Sequence[RepoResult]) -> int:
    return max((r.exit_code for r in results), default=EXIT_OK)


def summary(results: Sequence[RepoResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts


def write_report(path: Path, results: Sequence[RepoResult], options: Options, seconds: float) -> None:
    """The JSON report, written atomically and never through a symlink (mlci.fs.write_atomic)."""
    payload = {
        "mlci_version": __version__,
        "mode": "check" if options.check else "dry-run" if options.dry_run else "upgrade",
        "seconds": round(seconds, 3),
        "exit_code": exit_code(results),
        "summary": summary(results),
        "repos": [r.to_json() for r in results],
    }
    fs.write_atomic(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
