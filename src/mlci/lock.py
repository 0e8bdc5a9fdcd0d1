"""One mlci at a time per project: `.mlci/lock`.

`mlci run`, every stage command, promote/rollback and `mlci upgrade` hold it, so two runs in one project
cannot register or deploy each other's model, nor overwrite each other's .mlci/out results.
The lock is an OS file lock (flock on POSIX, msvcrt on Windows), which the kernel releases
when its process dies: a lock file left by a killed run is simply taken over. The file's
text (pid, start time, command) only serves the message of the one who is refused.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from mlci.config import Project
from mlci.errors import InfraError, UsageError


def lock_path(project: Project) -> Path:
    return root_lock_path(project.root)


def root_lock_path(root: Path) -> Path:
    return root / ".mlci" / "lock"


def _try_lock(handle: IO[str]) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']}, started {info['started']}, 'mlci {info['command']}'"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


def project_lock(project: Project, command: str) -> AbstractContextManager[None]:
    """Hold the project's lock for the block; exit 2 at once when another mlci holds it."""
    return root_lock(project.root, command)


@contextmanager
def root_lock(root: Path, command: str) -> Iterator[None]:
    """The project's lock by its directory alone, for commands that take it before mlci.yaml is
    read: `mlci upgrade`, and every stage (it clears its old results first, even when the file
    turns out broken)."""
    path = root_lock_path(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # "a" never truncates: the holder's text stays readable until we own the lock.
        handle = path.open("a+", encoding="utf-8")
    except OSError as exc:  # a read-only .mlci (or checkout), a full disk
        raise InfraError(
            f"cannot create the project lock file {path} ({exc.strerror or exc}); "
            f"make {path.parent} writable for this user, then run again"
        ) from None
    try:
        if not _try_lock(handle):
            raise UsageError(f"another mlci run is active ({_holder(path)}); wait for it to finish (lock file {path})")
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started": started, "command": command}) + "\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the OS lock; the text stays, harmless once unlocked
