"""Faults of the local MLflow store: corrupt, unreadable, read-only, locked, full, artifacts
gone. Each ends in one line naming the store and the fix, exit 3, aliases untouched. And a
register started while a deploy holds the project lock is refused, never interleaved.

One project is trained, registered and deployed to staging once per module; each test works
on a copy of it (the copy's store still points at the original's artifacts, which are only
ever read here, and put back by the one test that hides them)."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import aliases, client_for, run_cli, run_cli_process, scaffold, stage_json

from mlci.config import load_project


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1 registered and in staging (verified there), nothing in production."""
    root = tmp_path_factory.mktemp("store-faults")
    name = f"storefaults{os.getpid()}"
    assert scaffold(name, root) == 0
    project = root / name
    for stage in ("train", "register", "deploy"):
        assert run_cli(stage, "-C", str(project)) == 0
    return project


@pytest.fixture
def project(deployed: Path, tmp_path: Path) -> Path:
    copy = tmp_path / deployed.name
    shutil.copytree(deployed, copy)
    return copy


def store_of(project: Path) -> Path:
    return project / ".mlci" / "mlflow.db"


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("mlci: error:")]


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """stderr holds exactly one error line and no SQLAlchemy or traceback text."""
    err = capsys.readouterr().err
    assert "SQLAlchemy" not in err and "Traceback" not in err and "[SQL:" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("mlci: error:")]
    assert len(lines) == 1, err
    return lines[0]


# --- the faults, each made for real on the copy's .mlci/mlflow.db -----------------------------


def _corrupt(project: Path) -> None:
    with store_of(project).open("r+b") as handle:
        handle.write(os.urandom(4096))  # the header and the first page: random bytes


def _truncated(project: Path) -> None:
    os.truncate(store_of(project), 40_000)  # a copy cut short, as a full disk or a killed cp leaves it


def _directory(project: Path) -> None:
    # Unreadable as root too (chmod 000 does not stop root): a directory where the file belongs.
    store_of(project).unlink()
    store_of(project).mkdir()


def _immutable(path: Path) -> Callable[[], None]:
    """Make `path` unwritable even for root; returns the undo."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        return lambda: path.chmod(mode)
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: nothing makes a file read-only for root here")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"running as root and chattr +i is refused here ({done.stderr.strip()})")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


@contextmanager
def fault(kind: str, project: Path) -> Iterator[None]:
    undo: Callable[[], None] | None = None
    holder: sqlite3.Connection | None = None
    if kind == "corrupt":
        _corrupt(project)
    elif kind == "truncated":
        _truncated(project)
    elif kind == "directory":
        _directory(project)
    elif kind == "chmod 000":
        if os.geteuid() == 0:
            pytest.skip("root reads a chmod 000 file; 'directory' makes the store unopenable for root too")
        store_of(project).chmod(0)
        undo = lambda: store_of(project).chmod(0o644)  # noqa: E731
    elif kind == "read-only file":
        undo = _immutable(store_of(project))
    elif kind == "read-only .mlci":
        undo = _immutable(project / ".mlci")
    elif kind == "locked":
        holder = sqlite3.connect(store_of(project), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process's write transaction, as sqlite3 or mlflow ui hold it
    try:
        yield
    finally:
        if undo is not None:
            undo()
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()


EXPECTED = {
    "corrupt": "is not a valid sqlite database (sqlite: file is not a database); restore it from a backup, "
    "or move it aside",
    "truncated": "is not a valid sqlite database (sqlite: database disk image is malformed); restore it",
    "directory": "it is a directory, not a database file; move it aside",
    "chmod 000": "permission denied; give this user read and write access (chmod u+rw",
    "read-only file": "is read-only (sqlite: attempt to write a readonly database); make it writable",
    "read-only .mlci": "sqlite cannot create its journal in {mlci} (sqlite: ",
    "locked": "is locked by another process (sqlite: database is locked, waited 0.2s); let it finish or stop it",
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_a_broken_store_is_one_line_naming_it_and_the_fix_exit_3(
    kind: str, project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLCI_STORE_TIMEOUT", "0.2")
    store = store_of(project)
    expected = EXPECTED[kind].format(mlci=project / ".mlci")
    before = aliases(project)
    capsys.readouterr()
    # train last: after it fails, register rightly refuses before it would touch the store.
    commands = [("register",), ("deploy", "--env", "production"), ("promote", "--env", "production", "--version", "1")]
    if kind not in ("read-only file", "read-only .mlci"):
        commands.append(("status",))  # status only reads: a read-only store serves it (below)
    commands.append(("train",))
    with fault(kind, project):
        for command in commands:
            assert run_cli(*command, "-C", str(project)) == 3, command
            line = one_line(capsys)
            assert str(store) in line and expected in line, (command, line)
        if kind in ("read-only file", "read-only .mlci"):
            assert run_cli("status", "-C", str(project)) == 0
    assert stage_json(project, "register")["status"] == "error"
    assert stage_json(project, "register")["details"] == {"store": [str(store)], "fault": _fault_name(kind)}
    if kind in ("corrupt", "truncated", "directory"):
        return  # the store itself is gone: there are no aliases to compare
    assert aliases(project) == before == {"staging": "1"}


def _fault_name(kind: str) -> str:
    return {
        "corrupt": "corrupt",
        "truncated": "corrupt",
        "directory": "unopenable",
        "chmod 000": "unopenable",
        "read-only file": "read-only",
        "read-only .mlci": "read-only-directory",
        "locked": "locked",
    }[kind]


def test_a_lock_file_that_cannot_be_created_is_one_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / ".mlci" / "lock").unlink()
    with fault("read-only .mlci", project):
        assert run_cli("register", "-C", str(project)) == 3
    line = one_line(capsys)
    assert f"cannot create the project lock file {project / '.mlci' / 'lock'} (" in line
    assert f"make {project / '.mlci'} writable for this user" in line


# --- a full disk, half-way through a command ------------------------------------------------


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process: the kernel refuses every write at or past `limit` bytes
    into any file with EFBIG (SIGXFSZ ignored, so the write fails instead of killing us), as a
    full disk refuses them with ENOSPC. Python's own output is in capsys's memory meanwhile."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_full_disk_during_train_register_and_deploy_changes_no_alias(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = store_of(project)
    client = client_for(project)
    name = load_project(project).config.model_name
    versions = len(client.search_model_versions(f"name='{name}'"))
    runs = stage_json(project, "train")["details"]["run_id"]
    capsys.readouterr()
    # The store is ~1 MB: past 256 KB every page and a journal of more than a few pages fail.
    for command in (("train",), ("register", "--run-id", runs), ("deploy", "--env", "production")):
        with file_size_limit(256 * 1024):
            code = run_cli(*command, "-C", str(project))
        line = one_line(capsys)
        assert code == 3, (command, line)
        assert f"cannot write the MLflow store {store} (sqlite: disk I/O error): the disk or a quota is full" in line
        assert "free space on its filesystem (df), then run again" in line
    assert aliases(project) == {"staging": "1"}
    assert len(client.search_model_versions(f"name='{name}'")) == versions
    assert stage_json(project, "deploy")["status"] == "error"
    # An artifact file past the limit: the kernel's own EFBIG, through the same translation.
    from mlci.errors import InfraError
    from mlci.targets.local_store import store_faults

    big = project / ".mlci" / "artifacts" / "big.bin"
    with pytest.raises(InfraError) as caught, file_size_limit(256 * 1024), store_faults(load_project(project)):
        big.write_bytes(b"0" * 300 * 1024)
    # write() errors carry no file name: the line names the store.
    store_and_artifacts = f"cannot write to the MLflow store {store} or its artifacts (File too large): the disk"
    assert caught.value.message.startswith(store_and_artifacts)
    big.unlink()
    # Space again: the same store works, nothing was left half-written.
    assert run_cli("deploy", "--env", "production", "-C", str(project)) == 0
    assert aliases(project) == {"staging": "1", "production": "1", "champion": "1"}


# --- the champion's artifacts deleted -------------------------------------------------------


def test_missing_champion_artifacts_fail_register_deploy_and_serve_in_one_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = load_project(project).config.model_name
    client = client_for(project)
    assert run_cli("promote", "--env", "production", "--version", "1", "-C", str(project)) == 0
    config = project / "mlci.yaml"
    config.write_text(config.read_text().replace("C: 1.0", "C: 0.5"))  # a new candidate to compare
    assert run_cli("train", "-C", str(project)) == 0
    # The copy's store points at the module project's artifacts: hide them, and put them back.
    location = Path(client.get_model_version_download_uri(name, "1").removeprefix("file://"))
    hidden = location.with_name("artifacts-hidden")
    capsys.readouterr()
    location.rename(hidden)
    try:
        codes = [
            run_cli("register", "-C", str(project)),
            run_cli("serve", "-C", str(project)),
        ]
        lines = error_lines(capsys)
    finally:
        hidden.rename(location)
    assert codes == [3, 3], lines
    assert len(lines) == 2
    for line in lines:
        assert (
            f"the artifacts of models:/{name}/1 are missing from the MLflow store ({location} does not exist)" in line
        )
        assert "restore them from a backup, or train, register and deploy a new version" in line
    assert aliases(project) == {"staging": "1", "production": "1", "champion": "1"}
    assert len(client.search_model_versions(f"name='{name}'")) == 1


def test_deploy_with_missing_artifacts_says_so_and_keeps_the_environment(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = load_project(project).config.model_name
    location = Path(client_for(project).get_model_version_download_uri(name, "1").removeprefix("file://"))
    hidden = location.with_name("artifacts-hidden")
    capsys.readouterr()
    location.rename(hidden)
    try:
        code = run_cli("deploy", "--env", "production", "-C", str(project))
    finally:
        hidden.rename(location)
    line = one_line(capsys)
    assert code == 3
    assert line.startswith(f"mlci: error: deploy of {name} v1 to production failed: the artifacts of models:/{name}/1")
    assert line.endswith("; no version was in production")
    assert aliases(project) == {"staging": "1"}


# --- register while a deploy holds the project lock -----------------------------------------


def test_register_while_a_deploy_promotes_is_refused_and_the_champion_is_what_deploy_released(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two real processes on one project: this one deploys to production and holds .mlci/lock
    (kept waiting on the store, which the test locks meanwhile); a `mlci register` process
    started then is refused with exit 2 instead of deciding against a champion that moves
    under it."""
    lock = project / ".mlci" / "lock"
    monkeypatch.setenv("MLCI_STORE_TIMEOUT", "120")
    holder = sqlite3.connect(store_of(project), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    codes: list[int] = []
    deploy = threading.Thread(target=lambda: codes.append(run_cli("deploy", "--env", "production", "-C", str(project))))
    deploy.start()
    try:
        deadline = time.monotonic() + 60
        while not (lock.is_file() and '"command": "deploy"' in lock.read_text()):
            assert deploy.is_alive() and time.monotonic() < deadline, "deploy never took the lock"
            time.sleep(0.05)
        register = run_cli_process("register", cwd=project)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        deploy.join(timeout=300)
    assert register.returncode == 2, register.stderr
    assert f"mlci: error: another mlci run is active (pid {os.getpid()}, started " in register.stderr
    assert "'mlci deploy')" in register.stderr
    assert codes == [0]
    assert aliases(project) == {"staging": "1", "production": "1", "champion": "1"}
    # The register after it decides against the champion the deploy released.
    assert run_cli("register", "-C", str(project)) == 0
    assert stage_json(project, "register")["details"]["champion_existed"] is True
    assert aliases(project) == {"staging": "1", "production": "1", "champion": "1"}


def test_a_fault_mlflow_hits_half_way_is_classified_through_its_wrappers(project: Path) -> None:
    """A lock taken after the up-front check: MLflow wraps sqlite's error in SQLAlchemy's and
    that in an MlflowException, and a failing clean-up may raise a third one during it. The
    one translation point finds sqlite's words anywhere in that chain."""
    import sqlalchemy
    from mlflow.exceptions import MlflowException

    from mlci.errors import InfraError
    from mlci.targets.local_store import store_faults

    store = store_of(project)
    engine = sqlalchemy.create_engine(f"sqlite:///{store}", connect_args={"timeout": 0})
    with fault("locked", project), pytest.raises(InfraError) as caught, store_faults(load_project(project)):
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql("UPDATE experiments SET name = name")
        except sqlalchemy.exc.OperationalError as error:
            try:
                raise MlflowException(message=str(error)) from error  # as mlflow.store.db.utils does
            except MlflowException:
                raise RuntimeError("ending the run failed too") from None  # only __context__ links it
    engine.dispose()
    assert caught.value.exit_code == 3
    assert caught.value.message.startswith(f"the MLflow store {store} is locked by another process")
    # Anything else passes unchanged: a bug stays a bug.
    with pytest.raises(KeyError), store_faults(load_project(project)):
        raise KeyError("not the store")
