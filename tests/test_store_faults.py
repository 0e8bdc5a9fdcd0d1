"""Faults of the local MLflow store: corrupt, unreadable, read-only, locked, full, artifacts
gone. Each ends in one line naming the store and the fix, exit 3, aliases untouched. And a
register started while a deploy holds the project lock is refused, never interleaved.

One project is trained, registered and deployed to staging once per module; each test works
on a copy of it (the copy's store still points at the original's artifacts, which are only
ever read here, and put back by the one test that hides them)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def single_error_line(err: str) -> str:
    """`err` holds exactly one error line and no SQLAlchemy or traceback text."""
    assert "SQLAlchemy" not in err and "Traceback" not in err and "[SQL:" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("mlci: error:")]
    assert len(lines) == 1, err
    return lines[0]


# A child process that runs mlci commands one after the other, as run_cli does here, and
# prints [[exit code, stderr], ...] as JSON as its last stdout line: one interpreter start
# (MLflow imported once) for commands that must run under another process's limits or user.
# Its stdout is a pipe, which RLIMIT_FSIZE does not limit.
_COMMANDS_CHILD = """
import contextlib, io, json, sys
from mlci.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    results.append([code, err.getvalue()])
print("\\n" + json.dumps(results))  # on a line of its own, whatever a stage left open
"""


def run_commands_in_child(commands: list[tuple[str, ...]], project: Path, **popen: Any) -> list[tuple[int, str]]:
    """Run `mlci COMMAND -C project` for each command in one child process (see above)."""
    argv = [[*command, "-C", str(project)] for command in commands]
    done = subprocess.run(
        [sys.executable, "-c", _COMMANDS_CHILD, json.dumps(argv)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        **popen,
    )
    assert done.returncode == 0, done.stderr
    return [(int(code), str(err)) for code, err in json.loads(done.stdout.splitlines()[-1])]


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
    elif kind == "chmod 000":  # as root, the commands run as NOBODY (see unprivileged_copy)
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


NOBODY = 65534  # the conventional unprivileged uid and gid ("nobody", "nogroup")


@contextmanager
def unprivileged_copy(project: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Root reads a chmod 000 file, so as root the commands run as NOBODY in a child: on a copy
    of `project` owned by NOBODY, in a directory NOBODY can reach (pytest's temp root is 0700).
    Yields the copy and the subprocess arguments that drop to NOBODY. Skips when NOBODY cannot
    run this Python at all (an interpreter under /root, say): that says nothing about mlci."""
    base = Path(tempfile.mkdtemp(prefix="mlci-store-nobody-"))
    try:
        copy = base / project.name
        shutil.copytree(project, copy)
        for path in (base, copy, *copy.rglob("*")):
            os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
        as_nobody: dict[str, Any] = {
            "user": NOBODY,
            "group": NOBODY,
            "extra_groups": [],
            "env": {**os.environ, "HOME": str(base)},
        }
        try:
            probe = subprocess.run(
                [sys.executable, "-c", "import mlci.cli"], cwd=copy, capture_output=True, text=True, **as_nobody
            )
            reason = probe.stderr.strip().splitlines()[-1] if probe.returncode else ""
        except OSError as error:
            reason = str(error)
        if reason:
            pytest.skip(f"running as root, and uid {NOBODY} cannot run {sys.executable} ({reason})")
        yield copy, as_nobody
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_a_broken_store_is_one_line_naming_it_and_the_fix_exit_3(
    kind: str, project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLCI_STORE_TIMEOUT", "0.2")
    with contextlib.ExitStack() as stack:
        as_nobody: dict[str, Any] | None = None
        if kind == "chmod 000" and os.geteuid() == 0:
            project, as_nobody = stack.enter_context(unprivileged_copy(project))
        _check_a_broken_store(kind, project, capsys, as_nobody)


def _check_a_broken_store(
    kind: str, project: Path, capsys: pytest.CaptureFixture[str], as_nobody: dict[str, Any] | None
) -> None:
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
        if as_nobody is not None:
            results = run_commands_in_child(commands, project, **as_nobody)
        else:
            results = []
            for command in commands:
                results.append((run_cli(*command, "-C", str(project)), capsys.readouterr().err))
        for command, (code, err) in zip(commands, results, strict=True):
            line = single_error_line(err)
            assert code == 3, (command, line)
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


def file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn: RLIMIT_FSIZE for the child only, so the kernel refuses its every write at
    or past `limit` bytes into any file with EFBIG (SIGXFSZ ignored, so the write fails instead
    of killing it), as a full disk refuses them with ENOSPC. The test process, its logs and
    its capture files keep writing freely meanwhile."""

    def limit_this_child() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return limit_this_child


# An artifact file written past the limit, inside the one translation point.
_ARTIFACT_CHILD = """
import sys
from pathlib import Path
from mlci.config import load_project
from mlci.errors import InfraError
from mlci.targets.local.tracking import store_faults
project = Path(sys.argv[1])
try:
    with store_faults(load_project(project)):
        (project / ".mlci" / "artifacts" / "big.bin").write_bytes(b"0" * 300 * 1024)
except InfraError as error:
    print(error.exit_code, error.message)
"""


def test_a_full_disk_during_train_register_and_deploy_changes_no_alias(project: Path) -> None:
    store = store_of(project)
    client = client_for(project)
    name = load_project(project).config.model_name
    versions = len(client.search_model_versions(f"name='{name}'"))
    runs = stage_json(project, "train")["details"]["run_id"]
    # The store is ~1 MB: past 256 KB every page and a journal of more than a few pages fail.
    limit = file_size_limit(256 * 1024)
    commands = [("train",), ("register", "--run-id", runs), ("deploy", "--env", "production")]
    for command, (code, err) in zip(commands, run_commands_in_child(commands, project, preexec_fn=limit), strict=True):
        line = single_error_line(err)
        assert code == 3, (command, line)
        assert f"cannot write the MLflow store {store} (sqlite: disk I/O error): the disk or a quota is full" in line
        assert "free space on its filesystem (df), then run again" in line
    assert aliases(project) == {"staging": "1"}
    assert len(client.search_model_versions(f"name='{name}'")) == versions
    assert stage_json(project, "deploy")["status"] == "error"
    # An artifact file past the limit: the kernel's own EFBIG, through the same translation.
    big = project / ".mlci" / "artifacts" / "big.bin"
    done = subprocess.run(
        [sys.executable, "-c", _ARTIFACT_CHILD, str(project)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        preexec_fn=limit,
    )
    # write() errors carry no file name: the line names the store.
    store_and_artifacts = f"cannot write to the MLflow store {store} or its artifacts (File too large): the disk"
    assert done.stdout.startswith(f"3 {store_and_artifacts}"), done.stdout + done.stderr
    assert big.stat().st_size == 256 * 1024  # the write really was cut at the limit
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


def _lock_holder(lock: Path) -> tuple[int, str] | None:
    """(pid, command) the project lock file names; None while it names nobody yet."""
    try:
        info = json.loads(lock.read_text())
        return int(info["pid"]), str(info["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, or half-written at this instant


def test_register_while_a_deploy_promotes_is_refused_and_the_champion_is_what_deploy_released(
    project: Path, tmp_path: Path
) -> None:
    """Two real `mlci` processes on one project: a deploy to production holds .mlci/lock,
    kept waiting on the store, which this test locks meanwhile; a `mlci register` process
    started then is refused with exit 2 instead of deciding against a champion that moves
    under it. The lock file the copy brings along already names the module's own deploy:
    only the deploy process's own pid in it says that process holds the lock."""
    lock = project / ".mlci" / "lock"
    holder = sqlite3.connect(store_of(project), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # deploy's up-front store check waits on it, lock held
    with (tmp_path / "deploy.log").open("w") as log:
        deploy = subprocess.Popen(
            [sys.executable, "-m", "mlci", "deploy", "--env", "production", "-C", str(project)],
            cwd=project,
            env={**os.environ, "MLCI_STORE_TIMEOUT": "120"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while _lock_holder(lock) != (deploy.pid, "deploy"):
            assert deploy.poll() is None, (tmp_path / "deploy.log").read_text()
            assert time.monotonic() < deadline, "the deploy process never took the project lock"
            time.sleep(0.02)  # polling the lock file; no step depends on how long this takes
        register = run_cli_process("register", cwd=project)
        assert deploy.poll() is None, "the deploy ended while register ran: nothing was concurrent"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        try:
            deploy.wait(timeout=300)
        except subprocess.TimeoutExpired:
            deploy.kill()
            deploy.wait()
    line = single_error_line(register.stderr)
    assert register.returncode == 2, register.stderr
    assert re.fullmatch(
        rf"mlci: error: another mlci run is active \(pid {deploy.pid}, started [0-9T:+-]+, 'mlci deploy'\); "
        rf"wait for it to finish \(lock file {re.escape(str(lock))}\)",
        line,
    ), line
    assert deploy.returncode == 0, (tmp_path / "deploy.log").read_text()
    assert aliases(project) == {"staging": "1", "production": "1", "champion": "1"}
    # The register after it reads the champion the deploy released. (The same run again is
    # "unchanged": scoring a new candidate against v1 would cost ~12 s more on this budget.)
    assert run_cli("register", "-C", str(project)) == 0
    details = stage_json(project, "register")["details"]
    assert (details["champion_existed"], details["unchanged"], details["version"]) == (True, True, "1")
    assert aliases(project) == {"staging": "1", "production": "1", "champion": "1"}


def test_a_fault_mlflow_hits_half_way_is_classified_through_its_wrappers(project: Path) -> None:
    """A lock taken after the up-front check: MLflow wraps sqlite's error in SQLAlchemy's and
    that in an MlflowException, and a failing clean-up may raise a third one during it. The
    one translation point finds sqlite's words anywhere in that chain."""
    import sqlalchemy
    from mlflow.exceptions import MlflowException

    from mlci.errors import InfraError
    from mlci.targets.local.tracking import store_faults

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
