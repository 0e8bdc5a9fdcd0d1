"""The project paths mlci reads from its manifest and writes: confined to the project.

A pull request can edit `.mlci/manifest.json` like any other file, so every path in it is
untrusted input: it must be a normalised relative POSIX path (nothing an OS could read as
absolute or as a parent), and a write or delete must never pass through a symlink that leads
out of the project. One place checks both, for `mlci upgrade` and `mlci render` alike.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlci.errors import ConfigError

_DRIVE = re.compile(r"^[A-Za-z]:")


def path_problem(path: str) -> str | None:
    """Why `path` is not a normalised relative POSIX path inside a project; None when it is."""
    if not path:
        return "is an empty path"
    if any(not char.isprintable() for char in path):  # NUL, newlines, escapes: never a file mlci writes
        return "holds a control character"
    if "\\" in path:
        return "holds a backslash (paths are POSIX, '/'-separated)"
    if path.startswith("/") or _DRIVE.match(path):
        return "is an absolute path"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "is not a normalised relative path (an empty, '.' or '..' segment)"
    return None


def check_confined(root: Path, relative: str) -> None:
    """Refuse `root/relative` when an existing part of it is a symlink leading out of the project.

    A symlink inside the project is followed as the OS would; one leaving it (a `.github` linked
    to another checkout, a workflow linked to a secret) would make mlci write, delete or read a
    file that is not the project's.
    """
    real_root = root.resolve()
    current = root
    for part in relative.split("/"):
        current = current / part
        if not current.is_symlink():
            continue
        try:
            resolved: Path | None = current.resolve()
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
            resolved = None
        if resolved is None or not resolved.is_relative_to(real_root):
            where = f"to {str(resolved)!r}" if resolved is not None else "in a loop"
            raise ConfigError(
                str(current),
                None,
                f"is a symlink leading out of the project ({where}); mlci never writes, deletes or reads "
                "through it: replace it with a real file or directory",
            )
