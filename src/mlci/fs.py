"""The one way mlci writes a file outside an upgrade's transaction: atomically, never through a symlink.

A repository can commit symlinks, and CI runs mlci with write access to the checkout (and
often deploy credentials). A write that opens a fixed temporary name (`ci.yml.mlci-tmp`,
`train.json.tmp`) follows a link planted under that name and overwrites whatever it points
to. So every temporary file here gets a random name and is created with O_CREAT|O_EXCL
(which never follows a link: an existing name, link or not, fails) plus O_NOFOLLOW where the
OS has it; a destination that is itself a symlink is refused rather than replaced, and two
writers of one file never share a temporary name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path

from mlci.errors import ConfigError, UsageError
from mlci.paths import check_no_symlink

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
TEMP_SUFFIX = ".mlci-tmp"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | getattr(os, "O_BINARY", 0)


def temp_glob(name: str) -> str:
    """The glob of the temporary files a write of `name` makes (for removing a killed write's)."""
    return f".{name}.*{TEMP_SUFFIX}"


def refuse_symlink(path: Path) -> None:
    """Refuse (ConfigError, exit 2) a destination that is a symlink: mlci replaces files, not links."""
    if path.is_symlink():
        raise ConfigError(
            str(path),
            None,
            f"is a symlink (to {os.readlink(path)}), and mlci never writes through a symlink: "
            "delete it (or replace it with a real file), then run again",
        )


def create_temp(path: Path, data: bytes, *, durable: bool = False, mode: int = 0o666) -> Path:
    """A new file beside `path` with a random name holding `data` (fsynced when `durable`).

    The caller renames it over `path` (os.replace) or removes it.
    """
    for _ in range(16):  # a collision of 64 random bits is a planted file: try another name
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}{TEMP_SUFFIX}")
        try:
            fd = os.open(temp, _CREATE, mode)
        except FileExistsError:
            continue
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return temp
    raise FileExistsError(f"no free temporary name beside {path}")


def write_atomic(path: Path, data: bytes, *, root: Path | None = None, durable: bool = False) -> None:
    """Replace `path` with `data` at once: a reader sees the old file or the new one, never half.

    With `root`, no part of `path` below it may be a symlink (paths.check_no_symlink); the
    destination itself never may. Missing parent directories are made. `durable` fsyncs the
    file and its directory, so the new text also survives a power loss.
    """
    if root is not None:
        check_no_symlink(root, path.relative_to(root).as_posix())
    refuse_symlink(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = create_temp(path, data, durable=durable)
    try:
        os.replace(temp, path)  # rename replaces the name: it never follows a link that appeared since
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename, creation or removal in `path` durable (POSIX; Windows cannot open a directory)."""
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Moves that cannot follow a symlink even if one appears after the check: each directory is
# opened relative to its parent with O_NOFOLLOW. Where the OS has no dir_fd (Windows), the
# check (paths.check_no_symlink) is all there is.
NO_FOLLOW_DIRS = hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY") and os.open in os.supports_dir_fd


def replace_no_follow(source: Path, target: Path, relative: str) -> None:
    """os.replace(source, target/relative), never following a symlink below `target`;
    missing directories are made."""
    parts = relative.split("/")
    if not NO_FOLLOW_DIRS:
        check_no_symlink(target, relative)
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target / relative)
        return
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    directory = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index, part in enumerate(parts[:-1]):
            try:
                try:
                    opened = os.open(part, flags, dir_fd=directory)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):  # made by another writer meanwhile
                        os.mkdir(part, dir_fd=directory)
                    opened = os.open(part, flags, dir_fd=directory)
            except OSError as exc:  # ELOOP/ENOTDIR: it became a symlink or a file after the check
                shown = "/".join(parts[: index + 1])
                raise UsageError(
                    f"refusing to write {relative}: {shown} changed into a symlink or a file while mlci "
                    f"was writing ({exc.strerror}); check {target} and run again"
                ) from exc
            os.close(directory)
            directory = opened
        os.replace(source, parts[-1], dst_dir_fd=directory)  # rename replaces a link, never follows it
    finally:
        os.close(directory)
