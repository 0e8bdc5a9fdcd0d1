"""The project paths mlci reads from its manifest and writes: confined to the project.

A pull request can edit `.mlci/manifest.json` like any other file, so every path in it is
untrusted input: it must be a normalised relative POSIX path (nothing an OS could read as
absolute or as a parent). And a pull request can commit symlinks: every file mlci writes or
deletes below a project (`mlci upgrade`, `mlci render`, `mlci new --force`, its lock and
results) is refused when any part of its path is a symlink, wherever the link points. A link
inside the project is no safer than one leaving it: `.github/x -> src/pkg` would make the
team's own `train.py` a "managed" file, to be overwritten or deleted. One policy, here.
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


def _points_to(link: Path) -> str:
    try:
        return str(link.resolve())
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        return "itself (a loop)"


def check_no_symlink(root: Path, relative: str, alternative: str = "") -> None:
    """Refuse (ConfigError, exit 2) writing or deleting `root/relative` when any part of it below
    `root` is a symlink, or a part that must be a directory is something else.

    `root` itself may be a symlink (a checkout reached through a linked home directory); what
    is below it is looked at with lstat, the file itself included. `alternative` is a second
    fix the caller can offer (`mlci new`: another --output-dir).
    """
    current = root
    parts = relative.split("/")
    for index, part in enumerate(parts):
        current = current / part
        last = index == len(parts) - 1
        if current.is_symlink():
            # What to put in its place: a directory on the way, or where the link stands for one.
            kind = "file" if last and not current.is_dir() else "directory"
            raise ConfigError(
                str(current),
                None,
                f"is a symlink (to {_points_to(current)}) on the way to {relative}, and mlci never writes or "
                f"deletes through a symlink: replace it with a real {kind}{alternative}",
            )
        if not last and current.exists() and not current.is_dir():
            raise ConfigError(
                str(current),
                None,
                f"is a file where mlci writes a directory (on the way to {relative}): move it away{alternative}",
            )


def check_confined(root: Path, relative: str) -> None:
    """The guard `mlci upgrade` and `mlci render` apply to every path they read, write or delete."""
    check_no_symlink(root, relative)
