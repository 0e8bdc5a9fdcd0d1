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
import stat
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from mlci.config import Project
from mlci.errors import ConfigError, InfraError, UsageError
from mlci.paths import check_no_symlink


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


def _refuse_odd_lock(path: Path, opened_as: int | None = None) -> None:
    """The lock is truncated and written: a symlink committed as `.mlci/lock` would make that
    write land in the file it points to, so it (and anything but a regular file) is refused.
    `opened_as`: the st_mode of what was opened, when it is open already."""
    if path.is_symlink():
        kind = f"a symlink (to {os.readlink(path)})"
    elif (opened_as is not None and not stat.S_ISREG(opened_as)) or (path.exists() and not path.is_file()):
        kind = "not a regular file"
    else:
        return
    raise ConfigError(str(path), None, f"is {kind}, not mlci's lock file: delete it (mlci creates it), then run again")


def _open_lock(path: Path) -> IO[str]:
    """Open (create) the lock file for reading and writing, never through a symlink.

    No O_TRUNC: the holder's text stays readable until we own the lock. O_NOFOLLOW also
    refuses a link planted between the check above and this open.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError:
        _refuse_odd_lock(path)  # ELOOP: it became a symlink after the check
        raise
    try:
        _refuse_odd_lock(path, os.fstat(fd).st_mode)
    except ConfigError:
        os.close(fd)
        raise
    return os.fdopen(fd, "r+", encoding="utf-8")


def project_lock(project: Project, command: str) -> AbstractContextManager[None]:
    """Hold the project's lock for the block; exit 2 at once when another mlci holds it."""
    return root_lock(project.root, command)


@contextmanager
def root_lock(root: Path, command: str) -> Iterator[None]:
    """The project's lock by its directory alone, for commands that take it before mlci.yaml is
    read: `mlci upgrade`, and every stage (it clears its old results first, even when the file
    turns out broken)."""
    path = root_lock_path(root)
    check_no_symlink(root, ".mlci")  # a committed `.mlci -> /elsewhere` would put the lock there
    _refuse_odd_lock(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = _open_lock(path)
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
