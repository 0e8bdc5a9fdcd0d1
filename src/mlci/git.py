"""The one way mlci runs git: every git process of `mlci new`, `upgrade`, `train` and `lint` starts here.

Git is optional for most of mlci (a clean upgrade spawns nothing; `mlci new` skips `git init`
without it), so callers choose: `call` and `run` raise InfraError (exit 3) when git is missing,
hangs or fails, naming the command and the fix; `output` is the best-effort form for facts
that are nice to have (lineage tags, the install source) and returns None instead.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlci.errors import InfraError, UsageError

# The one identity mlci commits as when the machine has none configured (a fresh CI runner, a
# container): a commit without one fails, and mlci's own commits must not depend on the user.
FALLBACK_IDENTITY = ("-c", "user.name=mlci", "-c", "user.email=mlci@users.noreply.localhost")
TIMEOUT = 120


def available() -> bool:
    return shutil.which("git") is not None


def call(
    cwd: Path, *args: str, stdin: str | None = None, timeout: float | None = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """`git ARGS` in `cwd`, whatever its exit code; InfraError when git cannot run at all."""
    try:
        # -C, not cwd=: a missing directory is git's error to report, so FileNotFoundError means no git.
        return subprocess.run(
            ["git", "-C", str(cwd), *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise InfraError(f"git {args[0]}: git is not installed (or not on PATH); install git and run again") from None
    except subprocess.TimeoutExpired:
        raise InfraError(f"git {args[0]} in {cwd} took longer than {timeout:.0f}s; check the repository") from None
    except OSError as exc:
        raise InfraError(f"git {args[0]} in {cwd} could not start ({exc.strerror or exc}); check git") from None


def run(cwd: Path, *args: str, stdin: str | None = None, timeout: float | None = TIMEOUT) -> str:
    """`git ARGS` in `cwd`, its standard output; InfraError naming git's first line when it fails."""
    done = call(cwd, *args, stdin=stdin, timeout=timeout)
    if done.returncode != 0:
        raise InfraError(f"git {args[0]} failed in {cwd}: {first_line(done)}")
    return done.stdout


def output(cwd: Path, *args: str, timeout: float = 10) -> str | None:
    """`git ARGS`' stripped output, or None when git is missing, fails or says nothing."""
    try:
        done = call(cwd, *args, timeout=timeout)
    except InfraError:
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def first_line(done: subprocess.CompletedProcess[str]) -> str:
    text = (done.stderr or done.stdout or "").strip()
    return text.splitlines()[0] if text else f"exit code {done.returncode}"


def toplevel(root: Path) -> Path | None:
    """The git work tree holding `root` (it may be a monorepo above it), or None."""
    if not available():
        return None
    top = output(root, "rev-parse", "--show-toplevel", timeout=60)
    return Path(top) if top else None


def dirty_files(root: Path, paths: list[str]) -> list[str]:
    """Of `paths`, those with uncommitted changes in git (for `mlci upgrade --require-clean`)."""
    if not paths:
        return []
    if toplevel(root) is None:
        raise UsageError(f"{root}: --require-clean needs a git repository; commit the project first or drop the flag")
    done = call(root, "status", "--porcelain", "-z", "--", *paths, timeout=60)
    if done.returncode != 0:
        raise UsageError(f"{root}: git status failed: {done.stderr.strip()}")
    return sorted({entry[3:] for entry in done.stdout.split("\0") if len(entry) > 3})


def commit(root: Path, message: str) -> subprocess.CompletedProcess[str]:
    """`git commit` of what is staged, hooks skipped; as FALLBACK_IDENTITY when the machine has none."""
    done = call(root, "commit", "-q", "--no-verify", "-m", message)
    if done.returncode != 0:  # no identity configured on this machine: commit as mlci
        done = call(root, *FALLBACK_IDENTITY, "commit", "-q", "--no-verify", "-m", message)
    return done


def init_and_commit(root: Path, message: str) -> None:
    """`git init` on branch main, add everything, one commit; InfraError when a step fails."""
    run(root, "init", "-q", "-b", "main", timeout=60)
    run(root, "add", "-A", timeout=60)
    done = commit(root, message)
    if done.returncode != 0:
        raise InfraError(f"git commit failed in {root}: {first_line(done)}")


def blob(cwd: Path, sha: str) -> bytes:
    """The exact bytes of a git blob (`git cat-file blob`); InfraError when git cannot give them."""
    try:
        done = subprocess.run(["git", "-C", str(cwd), "cat-file", "blob", sha], capture_output=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"git cat-file in {cwd} could not run ({exc}); check git") from None
    if done.returncode != 0:
        raise InfraError(f"git cat-file blob {sha} failed in {cwd}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def user_name() -> str | None:
    """`git config user.name`, or None (no git, none configured)."""
    return output(Path.cwd(), "config", "user.name", timeout=5)


@dataclass(frozen=True)
class Head:
    commit: str
    branch: str  # "HEAD" when detached, "" when git could not say
    dirty: bool  # tracked files differ from the commit


def head_info(root: Path) -> Head | None:
    """The commit checked out at `root`, or None outside a git repository (or without git)."""
    sha = output(root, "rev-parse", "HEAD")
    if not sha:
        return None
    status = output(root, "status", "--porcelain", "--untracked-files=no")
    return Head(sha, output(root, "rev-parse", "--abbrev-ref", "HEAD") or "", bool(status))
