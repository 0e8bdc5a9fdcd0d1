"""Apply an upgrade plan as one transaction that survives a kill at any moment.

The protocol (docs/upgrades.md, "Interrupted upgrades"), in a work directory
`.mlci/upgrade-<id>/`:

1. stage: every new file is written there in full (`new-<i>`) and every file the upgrade
   replaces or deletes is hard-linked (or copied) there as its backup (`old-<i>`);
2. commit the journal: `journal.json` lists, per file, its backup and the hash of what it
   held before (`old`) and of what the upgrade leaves there (`new`, null: deleted), the
   directories the upgrade creates and those its deletions leave empty (`removed_dirs`,
   written only when there is one; removed after the files, recreated first on a rollback).
   It is written to a temporary name, fsynced and renamed into place: from here on, and
   only from here on, files may have been swapped;
3. swap: each file is renamed into place (or deleted), its directory fsynced;
4. finish: an empty `done` file is created and fsynced: the upgrade is complete;
5. clean up: the journal goes first, `done` last, then the directory.

A kill at any point leaves the work directory; `recover()` (the next `mlci upgrade`) reads
its state: `done` present -> finished, only clean-up is left; no journal (or one that cannot
be read: it was never renamed into place) -> nothing was swapped, the directory is dropped;
a journal without `done` -> every file is put back by its hashes, never by whether a backup
exists, so a recovery killed half-way is simply done again. A file that is neither its old
nor its new text was edited after the crash: it stays, its old copy written beside it as
`<name>.mlci-orig`.

Every filesystem mutation goes through `Disk`, one step each, which is also the seam the
kill-anywhere test (tests/test_upgrade_crash.py) uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import stat
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.config import CONFIG_FILE
from mlci.errors import ConfigError, InfraError, MlciError
from mlci.fs import fsync_dir
from mlci.manifest import MANIFEST_PATH, sha256
from mlci.paths import check_confined, path_problem
from mlci.templates import is_managed

if TYPE_CHECKING:
    from mlci.upgrade.engine import Plan

JOURNAL = "journal.json"
DONE = "done"
WORK_PREFIX = "upgrade-"
JOURNAL_FORMAT = 1
# Test seam: with MLCI_CRASH_AT_STEP=N set, the process is killed (SIGKILL where there is
# one) right after the Nth filesystem step of an apply_plan() or recover() call. Only the
# kill-anywhere tests set it; nothing else reads it.
CRASH_ENV = "MLCI_CRASH_AT_STEP"
_BACKUP = re.compile(r"old-[0-9]+")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
# Every name an upgrade writes in its work directory: the journal (and its temporary name while
# it is written), the `done` marker, staged files and backups.
_WORK_FILE = re.compile(r"journal\.json|done|(new|old)-[0-9]+|.*\.tmp")


class Disk:
    """Every filesystem mutation of one transaction, each a counted step, each durable.

    A step is a change another process can see (create, write, rename, link, unlink,
    mkdir, rmdir); after it the file or directory is fsynced so the change also survives a
    power loss where the filesystem honours fsync. fsync itself is no step: a kill cannot
    tell whether it ran.
    """

    def __init__(self) -> None:
        raw = os.environ.get(CRASH_ENV, "")
        self.crash_at = int(raw) if raw.isdigit() else 0
        self.steps = 0

    def _step(self) -> None:
        self.steps += 1
        if self.steps == self.crash_at:
            if sys.platform != "win32":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(137)  # pragma: no cover - Windows has no SIGKILL

    def write(self, path: Path, data: bytes, mode: int | None = None) -> None:
        """Create `path` (it must not exist) holding `data`, fsynced with its directory."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            if mode is not None:
                os.chmod(path, mode)
            self._step()
            if data:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                self._step()
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Replace `path` with `data` all at once: a reader sees the old file or the new one."""
        temp = path.with_name(f".{path.name}.tmp")
        self.unlink(temp, missing_ok=True)
        self.write(temp, data)
        self.replace(temp, path)

    def replace(self, source: Path, target: Path) -> None:
        os.replace(source, target)
        self._step()
        fsync_dir(target.parent)
        if source.parent != target.parent:
            fsync_dir(source.parent)

    def link(self, source: Path, target: Path) -> None:
        """`target` becomes a copy of `source`: a hard link where the filesystem has them."""
        try:
            os.link(source, target)
        except OSError:
            self.write(target, source.read_bytes(), stat.S_IMODE(source.stat().st_mode))
            return
        self._step()
        fsync_dir(target.parent)

    def unlink(self, path: Path, missing_ok: bool = False) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            if missing_ok:
                return
            raise
        self._step()
        fsync_dir(path.parent)

    def mkdir(self, path: Path) -> None:
        path.mkdir()
        self._step()
        fsync_dir(path.parent)

    def rmdir(self, path: Path) -> None:
        path.rmdir()
        self._step()
        fsync_dir(path.parent)


@dataclass(frozen=True)
class Entry:
    """One file of the transaction, as the journal records it."""

    target: str  # relative to the project root, POSIX
    backup: str | None  # name of its pre-upgrade copy in the work directory (None: it did not exist)
    old: str | None  # sha256 of what it held before (None: absent)
    new: str | None  # sha256 of what the upgrade leaves there (None: the upgrade deletes it)


@dataclass(frozen=True)
class Journal:
    entries: list[Entry]
    dirs: list[str]  # directories the upgrade creates, parents first
    removed_dirs: list[str] = field(default_factory=list)  # directories its deletions empty, deepest first


def _hash_of(path: Path) -> str | None:
    return sha256(path.read_bytes()) if path.is_file() else None


def apply_plan(plan: Plan) -> None:
    """Write every change of `plan`, then the manifest, as one transaction.

    On an error every file is put back before the error propagates; a file that cannot be
    put back is named in an InfraError and the work directory stays for the next run.
    """
    root: Path = plan.root
    ops: list[tuple[str, bytes | None]] = [(c.path, c.new) for c in plan.changes if c.writes]
    ops += [(c.path, None) for c in plan.changes if c.deletes]
    ops.append((MANIFEST_PATH, plan.manifest_text.encode("utf-8")))
    command = plan.command  # named in every message: `mlci render` applies plans too
    disk = Disk()
    work = root / ".mlci" / f"{WORK_PREFIX}{secrets.token_hex(6)}"
    disk.mkdir(work)
    try:
        journal = _stage(disk, root, work, ops, plan.removed_dirs)
    except BaseException as exc:
        _remove_work(disk, work)  # nothing was swapped yet
        _raise_as_left_as_it_was(root, exc, command)
        raise
    try:
        _swap_all(disk, root, work, journal)
        disk.write(work / DONE, b"")  # the commit point: from here on the upgrade stands
    except BaseException as exc:
        _, failed = _roll_back(disk, root, work, journal)
        if failed:
            why = f"the {command} failed ({exc})"
            raise InfraError(_unrestored_message(root, work, failed, why, command, command)) from exc
        with contextlib.suppress(OSError):  # the files are back: a directory left is dropped next run
            _remove_work(disk, work)
        _raise_as_left_as_it_was(root, exc, command)
        raise
    with contextlib.suppress(OSError):  # finished: a directory left here is cleaned by the next run
        _remove_work(disk, work)


def _raise_as_left_as_it_was(root: Path, exc: BaseException, command: str) -> None:
    """Once every file is back, say so: only here is "every file was left as it was" known true.

    An interrupt (KeyboardInterrupt, SystemExit) and mlci's own errors propagate as they are.
    """
    if isinstance(exc, MlciError) or not isinstance(exc, Exception):
        return
    reason = str(exc) if isinstance(exc, OSError) else f"unexpected {type(exc).__name__}: {exc}"
    raise InfraError(f"{root}: the {command} failed ({reason}); every file was left as it was") from exc


def _stage(disk: Disk, root: Path, work: Path, ops: list[tuple[str, bytes | None]], removed_dirs: list[str]) -> Journal:
    entries: list[Entry] = []
    dirs: list[str] = []
    for index, (path, data) in enumerate(ops):
        target = root / path
        existed = target.is_file()
        if data is not None:
            disk.write(work / f"new-{index}", data, stat.S_IMODE(target.stat().st_mode) if existed else None)
        old = None
        if existed:
            old = _hash_of(target)
            disk.link(target, work / f"old-{index}")
        elif data is not None:
            for parent in reversed(Path(path).parents[:-1]):
                if not (root / parent).exists() and parent.as_posix() not in dirs:
                    dirs.append(parent.as_posix())
        new = sha256(data) if data is not None else None
        entries.append(Entry(path, f"old-{index}" if existed else None, old, new))
    journal = Journal(entries, dirs, list(removed_dirs))
    payload: dict[str, object] = {"format": JOURNAL_FORMAT, "entries": [asdict(e) for e in entries], "dirs": dirs}
    if removed_dirs:  # optional, so a journal without removed directories reads as it always did
        payload["removed_dirs"] = list(removed_dirs)
    disk.write_atomic(work / JOURNAL, json.dumps(payload, indent=1).encode("utf-8"))
    return journal


def _swap_all(disk: Disk, root: Path, work: Path, journal: Journal) -> None:
    for index, entry in enumerate(journal.entries):
        target = root / entry.target
        if entry.new is None:
            disk.unlink(target)
            continue
        for parent in reversed(Path(entry.target).parents[:-1]):
            if parent.as_posix() in journal.dirs and not (root / parent).exists():
                disk.mkdir(root / parent)
        disk.replace(work / f"new-{index}", target)
    for directory in journal.removed_dirs:  # deepest first, each emptied by the deletions above
        with contextlib.suppress(OSError):  # someone put a file in it meanwhile: it stays, theirs
            disk.rmdir(root / directory)


def _roll_back(disk: Disk, root: Path, work: Path, journal: Journal) -> tuple[list[str], list[str]]:
    """Put every file back to its old text; returns (notes, files that could not be put back).

    Idempotent: each decision is made from the file's hash now, so running it again after a
    kill half-way only redoes what is left. One file that fails never stops the others.
    """
    notes: list[str] = []
    failed: list[str] = []
    for directory in reversed(journal.removed_dirs):  # parents first: the deleted files go back into them
        with contextlib.suppress(OSError):  # a file there now: restoring into it fails below, named
            if not (root / directory).exists():
                disk.mkdir(root / directory)
    for entry in reversed(journal.entries):
        try:
            note = _restore(disk, root, work, entry)
        except (OSError, _Unrestorable) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            failed.append(f"{entry.target} ({reason})")
            continue
        if note:
            notes.append(note)
    for directory in reversed(journal.dirs):
        with contextlib.suppress(OSError):  # absent already, or someone put a file in it: theirs
            disk.rmdir(root / directory)
    return notes, failed


class _Unrestorable(Exception):
    pass


def _restore(disk: Disk, root: Path, work: Path, entry: Entry) -> str | None:
    target = root / entry.target
    current = _hash_of(target)
    if current == entry.old:
        return None  # never swapped, or already put back
    backup = work / entry.backup if entry.backup is not None else None
    backup_ok = backup is not None and _hash_of(backup) == entry.old
    if current != entry.new:  # neither old nor what the upgrade wrote: edited after the crash
        if backup is not None and backup_ok:
            keep = target.with_name(target.name + ".mlci-orig")
            disk.write_atomic(keep, backup.read_bytes())
            return f"{entry.target} (edited after the interrupted upgrade: kept; old copy in {keep.name})"
        return None  # a file created after the crash where there was none: theirs
    if entry.old is None:
        disk.unlink(target)  # added by the upgrade
        return entry.target
    if backup is None or not backup_ok:
        missing = f"its backup {entry.backup} is {'changed' if backup is not None and backup.exists() else 'missing'}"
        raise _Unrestorable(missing)
    disk.replace(backup, target)
    return entry.target


def _remove_work(disk: Disk, work: Path) -> None:
    """Delete a work directory: the journal first and `done` last, so a kill half-way leaves
    a directory that reads as finished or as never swapped, never as half-applied.

    Only the files an upgrade writes there are removed, each checked before the first goes
    (`_work_files`): anything else is refused, untouched."""
    if not _is_real_dir(work):
        return
    files = _work_files(work)
    disk.unlink(work / JOURNAL, missing_ok=True)
    for child in files:
        if child.name not in (JOURNAL, DONE):
            disk.unlink(child)
    disk.unlink(work / DONE, missing_ok=True)
    disk.rmdir(work)


def _is_real_dir(path: Path) -> bool:
    """A directory itself, not a symlink to one (lstat: a symlink is never followed)."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _work_files(work: Path) -> list[Path]:
    """The files of a work directory, each a regular file named as an upgrade names them.

    A work directory is untrusted input (a pull request can commit `.mlci/upgrade-x/`): recovery
    reads its backups and clean-up deletes its files, so a symlink, a subdirectory or a file
    mlci never writes there is refused before anything is read or removed.
    """
    files = sorted(work.iterdir())
    for child in files:
        if not _WORK_FILE.fullmatch(child.name) or not stat.S_ISREG(child.lstat().st_mode):
            raise ConfigError(
                str(child),
                None,
                f"is not a file mlci writes in an upgrade's work directory; mlci never reads or deletes it: "
                f"check the files with 'git status', then delete {work}",
            )
    return files


def _unrestored_message(root: Path, work: Path, failed: list[str], why: str, writer: str, command: str) -> str:
    """`writer` wrote the files left (the render or upgrade that failed or was interrupted);
    `command` is the one to run again, whose recovery finishes restoring them."""
    where = work.relative_to(root).as_posix()
    return (
        f"{root}: {why}; could not put back {len(failed)} file(s), left as the {writer} wrote them: "
        f"{', '.join(failed)}; every other file is as it was. Fix the cause, then run 'mlci {command}' "
        f"to finish restoring them from {where}/ (or restore them from git and delete {where}/)"
    )


def leftovers(root: Path) -> list[Path]:
    """Work directories of upgrades that were killed before they could clean up.

    Anything named `upgrade-*` in `.mlci/` that is not a real directory (a symlink a pull
    request committed, a file) is refused without following it: clean-up deletes the files of
    a work directory, so a symlink to another directory would delete that one's.
    """
    mlci_dir = root / ".mlci"
    if not mlci_dir.is_dir():
        return []
    check_confined(root, ".mlci")  # recovery runs before the plan's own checks
    works = sorted(p for p in mlci_dir.iterdir() if p.name.startswith(WORK_PREFIX))
    for work in works:
        if not _is_real_dir(work):
            kind = "a symlink" if work.is_symlink() else "not a directory"
            raise ConfigError(
                str(work),
                None,
                f"is {kind}, not an upgrade's work directory; mlci never follows or deletes through it: delete it",
            )
        _work_files(work)
    return works


def _read_journal(work: Path) -> Journal | None:
    """The journal of an upgrade that may have swapped files; None when there is nothing to undo."""
    if (work / DONE).exists():
        return None  # finished: only clean-up was left
    try:
        payload = json.loads((work / JOURNAL).read_bytes())
    except FileNotFoundError:
        return None  # killed while staging
    except (ValueError, UnicodeDecodeError):
        # Empty or truncated: it was never renamed into place whole, so no file was swapped.
        return None
    except RecursionError:  # nested deeper than the parser's stack: mlci writes a flat journal
        raise ConfigError(
            str(work / JOURNAL),
            None,
            "nested too deeply to be a journal this mlci wrote; check the files with 'git status', "
            "then delete its directory",
        ) from None
    where = str(work / JOURNAL)
    if not isinstance(payload, dict) or payload.get("format") != JOURNAL_FORMAT:
        raise ConfigError(
            where, None, "not a journal this mlci wrote; check the files with 'git status', then delete its directory"
        )
    try:
        raw_entries, raw_dirs = payload["entries"], payload["dirs"]
        raw_removed = payload.get("removed_dirs", [])
        if not all(isinstance(raw, list) for raw in (raw_entries, raw_dirs, raw_removed)):
            raise TypeError("'entries', 'dirs' and 'removed_dirs' must be lists")
        entries = [Entry(e["target"], e["backup"], e["old"], e["new"]) for e in raw_entries]
        dirs, removed_dirs = list(raw_dirs), list(raw_removed)
    except (KeyError, TypeError) as exc:
        raise ConfigError(where, None, f"malformed journal ({exc}); check the files with 'git status'") from None
    _check_journal_paths(work, entries, dirs, removed_dirs)
    return Journal(entries, dirs, removed_dirs)


def _check_journal_paths(work: Path, entries: list[Entry], dirs: list[str], removed_dirs: list[str]) -> None:
    """A journal is untrusted input like the manifest (a pull request can add one): recovery
    deletes and replaces its targets, so they must be files an upgrade writes, and every
    backup a file of its own work directory."""
    where = str(work / JOURNAL)
    root = work.parent.parent  # <root>/.mlci/upgrade-<id>
    for entry in entries:
        problem = path_problem(entry.target) if isinstance(entry.target, str) else "is not a path"
        if problem is None and entry.target not in (MANIFEST_PATH, CONFIG_FILE) and not is_managed(entry.target):
            problem = "is not a file mlci upgrades"
        if problem is None and entry.backup is not None and not _BACKUP.fullmatch(str(entry.backup)):
            problem = f"has a backup {entry.backup!r} outside its work directory"
        if problem is None and not all(
            h is None or (isinstance(h, str) and _SHA256.fullmatch(h)) for h in (entry.old, entry.new)
        ):
            problem = "has a hash that is not a sha256"
        if problem is None and (entry.backup is None) != (entry.old is None):
            problem = "has a backup without a hash of what it held, or a hash without a backup"
        if problem is not None:
            raise ConfigError(
                where, None, f"target {entry.target!r} {problem}; mlci never wrote this journal: delete its directory"
            )
        check_confined(root, entry.target)
    # Rollback removes the directories the upgrade created (when empty): only a parent of one
    # of the journal's targets is one an upgrade may create, and as the targets were checked
    # above, each such parent is confined and passes through no symlink leading out.
    parents = {parent.as_posix() for entry in entries for parent in Path(entry.target).parents[:-1]}
    # Likewise a directory a rollback recreates must hold a file the journal deletes.
    deleted_in = {p.as_posix() for e in entries if e.new is None for p in Path(e.target).parents[:-1]}
    for directory, allowed in [*((d, parents) for d in dirs), *((d, deleted_in) for d in removed_dirs)]:
        problem = path_problem(directory) if isinstance(directory, str) else "is not a path"
        if problem is None and directory not in allowed:
            problem = "is not the directory of a file this journal names"
        if problem is not None:
            raise ConfigError(
                where, None, f"directory {directory!r} {problem}; mlci never wrote this journal: delete its directory"
            )


def needs_recovery(root: Path) -> list[Path]:
    """Work directories of upgrades killed after swapping files and before finishing."""
    return [work for work in leftovers(root) if _read_journal(work) is not None]


def recover(root: Path, command: str = "upgrade") -> list[str]:
    """Finish what killed upgrades (and renders) left: undo a half-applied one, clean up the rest.

    `command` is the mlci command recovering (render or upgrade): the one its messages say to
    run again.

    Returns one line per file put back (or kept as edited). A file that cannot be put back
    raises InfraError naming it; its work directory stays so the next run can try again.
    """
    disk = Disk()
    notes: list[str] = []
    problems: list[str] = []
    for work in leftovers(root):
        journal = _read_journal(work)
        try:
            if journal is not None:
                restored, failed = _roll_back(disk, root, work, journal)
                notes += restored
                if failed:
                    why = "an interrupted upgrade cannot be undone"
                    problems.append(_unrestored_message(root, work, failed, why, "upgrade", command))
                    continue
            _remove_work(disk, work)
        except OSError as exc:  # files may be restored already: say so, never "left as it was"
            where = work.relative_to(root).as_posix()
            raise InfraError(
                f"{root}: finishing the interrupted upgrade in {where}/ failed ({exc}) after putting back "
                f"{len(set(notes))} file(s); fix the cause, then run 'mlci {command}' again to finish"
            ) from exc
    if problems:
        raise InfraError("; ".join(problems))
    return sorted(set(notes))
