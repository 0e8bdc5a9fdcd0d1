"""Faults of the local MLflow store (`.mlci/mlflow.db` and `.mlci/artifacts`) as one line each.

MLflow reports a broken sqlite store as a multi-line SQLAlchemy error (wrapped in an
MlflowException, sometimes chained behind a second failure while it cleans up), and a full
disk or a deleted artifact folder as a bare OSError. `classify()` is where
those become an InfraError (exit 3) naming the store and the fix; every command that touches
the local store runs inside it. `check_store()` probes the store with sqlite itself before
MLflow is imported, so a locked, corrupt, unreadable or read-only store fails at once, before
a model is trained or an alias is read.

Nothing here moves an alias: a fault raised inside a stage leaves the registry as the stage's
own restore logic (deploy.release) left it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from mlci.config import Project
from mlci.errors import InfraError

# How long a command waits for another process's write lock on the store before it gives up
# (seconds). MLflow's own sessions wait 20 s; the same by default.
TIMEOUT_ENV = "MLCI_STORE_TIMEOUT"
DEFAULT_TIMEOUT = 20.0

# sqlite's own words (sqlite3_errstr) for each kind of fault; MLflow and SQLAlchemy pass them on.
_LOCKED = ("database is locked", "database table is locked")
_CORRUPT = ("file is not a database", "database disk image is malformed", "malformed database schema")
_READ_ONLY = ("attempt to write a readonly database", "readonly database")
_CANNOT_OPEN = ("unable to open database file",)
_FULL = ("database or disk is full",)
_IO = ("disk I/O error",)
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def timeout() -> float:
    """MLCI_STORE_TIMEOUT (seconds), else 20; a value that is not a positive number is exit 2."""
    from mlci.errors import UsageError

    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 86400:  # also refuses nan and inf
        raise UsageError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds between 0 and 86400; fix or unset it")
    return value


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI; None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path else None


def check_store(path: Path, *, writes: bool) -> None:
    """Open the store with sqlite and, for a command that writes, take and release its write
    lock with a no-op write: the faults MLflow would hit half-way, found before any work."""
    if not path.exists():
        return  # MLflow creates it (the first `mlci train`)
    wait = timeout()
    step = "open"
    try:
        connection = sqlite3.connect(f"file:{path.as_posix()}?mode=rw", uri=True, timeout=wait, isolation_level=None)
    except sqlite3.Error as exc:
        raise _sqlite_fault(exc, path, step, wait) from None
    try:
        step = "read"
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if writes:
            step = "lock"
            connection.execute("BEGIN IMMEDIATE")
            step = "write"
            # Rewriting the header's user_version makes sqlite create its journal next to the
            # file: a read-only file or directory fails here, not in MLflow's first commit.
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            connection.execute(f"PRAGMA user_version = {int(version)}")
            connection.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise _sqlite_fault(exc, path, step, wait) from None
    finally:
        connection.close()


def _sqlite_fault(exc: sqlite3.Error, path: Path, step: str, wait: float) -> InfraError:
    fault = classify(exc, [path], wait=wait)
    return fault or InfraError(
        f"the MLflow store {path} failed its check ({step}: sqlite: {exc}); restore it from a backup, "
        "or move it aside to start an empty store"
    )


def active_stores() -> list[Path]:
    """The sqlite files MLflow is pointed at now (configure_mlflow set them)."""
    import mlflow

    paths = [sqlite_path(uri) for uri in (mlflow.get_tracking_uri(), mlflow.get_registry_uri())]
    return list(dict.fromkeys(p for p in paths if p is not None))


def artifacts_dir(project: Project) -> Path:
    return project.root / ".mlci" / "artifacts"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's .orig) and what it was raised from or during."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                todo.append(inner)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def classify(
    exc: BaseException, stores: list[Path], *, artifacts: Path | None = None, wait: float | None = None
) -> InfraError | None:
    """The InfraError for a fault of the local store somewhere in `exc`'s chain, else None."""
    store = " or ".join(str(p) for p in stores) or "the MLflow store"
    for current in _chain(exc):
        if isinstance(current, OSError) and current.errno is not None:
            fault = _os_fault(current, stores, artifacts)
            if fault is not None:
                return fault
        text = _first_line(current).lower()
        if not stores:
            continue  # sqlite words from a store mlci does not own (a remote server) are passed on
        if _has(text, _LOCKED):
            waited = f", waited {wait:g}s" if wait is not None else ""
            return _fault(
                "locked",
                stores,
                f"the MLflow store {store} is locked by another process (sqlite: database is locked{waited}); "
                "let it finish or stop it (an open sqlite3 shell, 'mlflow ui', a second mlci on the same store), "
                f"then run again ({TIMEOUT_ENV} sets the wait in seconds)",
            )
        if _has(text, _CORRUPT):
            return _fault(
                "corrupt",
                stores,
                f"the MLflow store {store} is not a valid sqlite database (sqlite: {_word(text, _CORRUPT)}); "
                "restore it from a backup, or move it aside to start an empty store (its runs, versions and "
                "aliases stay in the moved file)",
            )
        if _has(text, (*_READ_ONLY, *_CANNOT_OPEN)):
            # sqlite says only "readonly" or "unable to open": the file system says which and why.
            kind, message = _unwritable(stores, _word(text, (*_READ_ONLY, *_CANNOT_OPEN)))
            return _fault(kind, stores, message)
        if _has(text, (*_FULL, *_IO)):
            said = _word(text, (*_FULL, *_IO))
            return _fault(
                "full",
                stores,
                f"cannot write the MLflow store {store} (sqlite: {said}): the disk or a quota is full, a file "
                "size limit was reached, or the disk is failing; free space on its filesystem (df), then run again",
            )
    return None


def _has(text: str, words: tuple[str, ...]) -> bool:
    return any(word.lower() in text for word in words)


def _word(text: str, words: tuple[str, ...]) -> str:
    """sqlite's phrase as sqlite writes it (`text` is lower-cased)."""
    return next(word for word in words if word.lower() in text)


def _fault(kind: str, stores: list[Path], message: str) -> InfraError:
    return InfraError(message, {"store": [str(p) for p in stores], "fault": kind})


def _unwritable(stores: list[Path], said: str) -> tuple[str, str]:
    """The kind and the line for a store sqlite could not open or write."""
    for path in stores:
        if path.is_dir():
            return "unopenable", (
                f"cannot open the MLflow store {path}: it is a directory, not a database file; move it aside "
                "(or put the database file back), then run again"
            )
        if path.exists() and not os.access(path, os.R_OK):
            return "unopenable", (
                f"cannot open the MLflow store {path}: permission denied; give this user read and write access "
                f"(chmod u+rw {path}), then run again"
            )
        if path.exists() and not os.access(path, os.W_OK):  # access() also sees chattr +i and ro mounts
            return "read-only", (
                f"the MLflow store {path} is read-only (sqlite: {said}); make it writable for this user "
                "(chmod u+w, chattr -i, or a writable mount), or point --tracking-uri at a writable store"
            )
        if not os.access(path.parent, os.W_OK):
            return "read-only-directory", (
                f"cannot write the MLflow store {path}: sqlite cannot create its journal in {path.parent} "
                f"(sqlite: {said}); make that directory writable for this user (chmod u+w, chattr -i, or a "
                "writable mount), then run again"
            )
    return "read-only", (
        f"cannot write the MLflow store {' or '.join(map(str, stores))} (sqlite: {said}); make it and its "
        "directory writable for this user, or point --tracking-uri at a writable store"
    )


def _os_fault(exc: OSError, stores: list[Path], artifacts: Path | None) -> InfraError | None:
    store = " or ".join(str(p) for p in stores) or "the MLflow store"
    listed = [str(p) for p in stores]
    filename = exc.filename if isinstance(exc.filename, str) else None
    where = f" {filename}" if filename else ""
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "")
    if exc.errno in _NO_SPACE:
        # write() errors carry no file name: then the store (or its artifacts) is what was written.
        target = filename or f"to the MLflow store {store} or its artifacts"
        return InfraError(
            f"cannot write {target} ({reason}): the disk or a quota is full, or a file size limit was reached; "
            "free space on its filesystem (df), then run again",
            {"store": listed, "fault": "full", "file": filename},
        )
    under_artifacts = artifacts is not None and filename is not None and _under(Path(filename), artifacts)
    if exc.errno == errno.ENOENT and under_artifacts:
        return InfraError(
            f"model artifacts are missing from the MLflow store: {filename} does not exist; restore "
            f"{artifacts} from a backup, or train and register a new version ('mlci train', 'mlci register')",
            {"store": listed, "fault": "artifacts-missing", "file": filename},
        )
    if exc.errno in _NOT_WRITABLE and under_artifacts:
        return InfraError(
            f"cannot write the MLflow artifacts{where} ({reason}); make {artifacts} writable for this user, "
            "then run again",
            {"store": listed, "fault": "artifacts-read-only", "file": filename},
        )
    return None


def missing_artifacts(model_uri: str) -> InfraError:
    """The line for a registered model whose artifact folder is gone (tracking.model_dir)."""
    where = _artifact_location(model_uri)
    return InfraError(
        f"the artifacts of {model_uri} are missing from the MLflow store"
        + (f" ({where} does not exist)" if where else "")
        + "; restore them from a backup, or train, register and deploy a new version",
        {"fault": "artifacts-missing", "model_uri": model_uri, "location": where},
    )


def _artifact_location(model_uri: str) -> str | None:
    """The folder a `models:/NAME/VERSION` URI's artifacts live in, as a path when local."""
    from urllib.parse import unquote, urlsplit

    from mlflow.tracking import MlflowClient

    parts = model_uri.removeprefix("models:/").split("/")
    if not model_uri.startswith("models:/") or len(parts) != 2 or not parts[1].isdigit():
        return None
    try:
        uri = MlflowClient().get_model_version_download_uri(parts[0], parts[1])
    except Exception:  # the location is only a hint in an error message already being raised
        return None
    return unquote(urlsplit(uri).path) if uri.startswith("file:") else uri


def _under(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False
