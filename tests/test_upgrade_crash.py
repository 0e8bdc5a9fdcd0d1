"""`mlci upgrade` survives a kill at any moment, and two upgrades never overlap.

The kill-anywhere test forks a child that runs the real apply (or recovery) with the test
seam MLCI_CRASH_AT_STEP=N (transaction.Disk): the child gets SIGKILL right after its Nth
filesystem mutation, with no finally block, rollback or flush. It does so for every N of a
small upgrade, and for each N again for every step M of the recovery that follows, then
checks the project is byte for byte all-old or all-new and that `--check` agrees.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import run_cli, run_cli_process
from upgrade_kit import CI, LOCK, PRE_COMMIT, Project, Templates, files_of, make

from mlci.cli import main as cli_main
from mlci.config import load_project
from mlci.errors import ConfigError, InfraError, UsageError
from mlci.lock import project_lock
from mlci.manifest import MANIFEST_PATH, sha256
from mlci.upgrade import engine, transaction

NESTED = ".github/nested/deeper.yml"  # a new file in a new directory
KILLED = -1
Tree = tuple[dict[str, tuple[bytes, int]], frozenset[str]]


@pytest.fixture
def tpl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Templates]:
    yield Templates(tmp_path / "templates", monkeypatch)


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs directory where there is one: the kill test makes ~1000 trees, and fsync on a
    real disk costs milliseconds each (fsync cannot be tested by a kill anyway)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="mlci-crash-", dir=shm))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def hash_of(path: Path) -> str:
    return sha256(path.read_bytes())


def without_seeded(root: Path) -> Callable[[str, list[str]], set[str]]:
    """For copytree: leave out the team's code, tests and data (an upgrade never reads them)."""
    return lambda directory, names: {"src", "tests", "data"} & set(names) if Path(directory) == root else set()


def small_upgrade(tpl: Templates) -> None:
    """A few writes (every workflow's timeouts), one delete, one new directory, the manifest."""
    tpl.replace(
        "providers/github/workflow.yml.j2",
        "timeout-minutes: <%= job.timeout_minutes %>",
        "timeout-minutes: <%= job.timeout_minutes + 100 %>",
    )
    tpl.remove(f"scaffold/{PRE_COMMIT}")
    tpl.add(f"scaffold/{NESTED}.j2", "name: deeper\n")


USER_LINE = b"# a line the user added after the crash\n"


def user_edit(root: Path) -> None:
    """The user adds a line to ci.yml as an editor saves: a new file renamed over the old one."""
    temp = root / f"{CI}.swp"
    temp.write_bytes((root / CI).read_bytes() + USER_LINE)
    os.replace(temp, root / CI)


def tree(root: Path) -> Tree:
    """Every file (bytes and mode bits) and every directory, the lock file aside."""
    files: dict[str, tuple[bytes, int]] = {}
    dirs: set[str] = set()
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_dir():
            dirs.add(relative)
        elif relative != LOCK:
            files[relative] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return files, frozenset(dirs)


CHILD_TIMEOUT = 60.0  # seconds; a child normally ends in milliseconds


def project_files(root: Path) -> dict[str, tuple[bytes, int]]:
    """The files of `tree`, an upgrade's work directory aside."""
    return {p: v for p, v in tree(root)[0].items() if not p.startswith(f".mlci/{transaction.WORK_PREFIX}")}


def in_child(crash_at: int, action: Callable[..., object], *args: object) -> int:
    """Run `action` in a forked child with the crash seam at step `crash_at`: KILLED, or its exit code.

    A child that hangs (a lock never released, a deadlock inherited through fork) is killed
    after CHILD_TIMEOUT seconds and the test fails naming the step, instead of hanging pytest.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.environ[transaction.CRASH_ENV] = str(crash_at)
            action(*args)
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    deadline = time.monotonic() + CHILD_TIMEOUT
    pause = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(
                f"{getattr(action, '__name__', action)} crashing at step {crash_at}: no end after {CHILD_TIMEOUT}s"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return KILLED
    return os.WEXITSTATUS(status)


def protocol_steps(plan: engine.Plan, root: Path) -> int:
    """The filesystem steps of applying `plan` as transaction.py's protocol lists them, each a kill point."""
    written = [c.new for c in plan.changes if c.writes] + [plan.manifest_text.encode("utf-8")]
    replaced = [c.path for c in plan.changes if c.writes or c.deletes if (root / c.path).is_file()]
    backups = len(replaced) + 1  # + the manifest
    new_dirs = {p.as_posix() for c in plan.changes if c.writes for p in Path(c.path).parents[:-1]}
    new_dirs = {d for d in new_dirs if not (root / d).exists()}
    stage = 1 + sum(2 if data else 1 for data in written) + backups  # mkdir, create+write each, link each
    journal = 3  # create + write the temporary name, rename into place
    swap = len(written) + sum(c.deletes for c in plan.changes) + len(new_dirs)
    clean_up = 1 + backups + 1 + 1  # the journal, every backup, `done`, the directory
    return stage + journal + swap + 1 + clean_up  # + `done`


def test_kill_at_every_step_of_apply_and_of_recovery_leaves_all_old_or_all_new(
    fast_dir: Path, tpl: Templates, capsys: pytest.CaptureFixture[str]
) -> None:
    pristine = make(fast_dir, "pristine").root
    for seeded in without_seeded(pristine)(str(pristine), os.listdir(pristine)):  # ~500 copies follow
        shutil.rmtree(pristine / seeded)
    small_upgrade(tpl)
    plan = engine.plan_upgrade(pristine)
    actions = {c.path: c.action for c in plan.changes}
    assert actions[PRE_COMMIT] == engine.REMOVED and actions[NESTED] == engine.ADDED
    assert sum(a == engine.UPDATED for a in actions.values()) >= 2, actions
    all_old = tree(pristine)
    finished = fast_dir / "finished"
    shutil.copytree(pristine, finished)
    transaction.apply_plan(dataclasses.replace(plan, root=finished))
    all_new = tree(finished)
    assert all_new != all_old and NESTED in all_new[0] and ".github/nested" not in all_old[1]

    def copy(source: Path, name: str) -> Path:
        shutil.copytree(source, fast_dir / name, copy_function=shutil.copy)
        return fast_dir / name

    apply_points = recovery_points = 0
    half_applied: int | None = None  # the first step that leaves a mix of old and new files
    outcomes: list[str] = []
    checked: dict[str, int] = {}
    for n in range(1, 1000):
        crashed = copy(pristine, f"a{n}")
        ended = in_child(n, transaction.apply_plan, dataclasses.replace(plan, root=crashed))
        if ended != KILLED:
            assert ended == 0 and tree(crashed) == all_new  # ran to the end: every step was a kill point
            break
        apply_points += 1
        if half_applied is None and project_files(crashed) not in (all_old[0], all_new[0]):
            half_applied = n
        for m in range(1, 1000):
            again = copy(crashed, f"a{n}r{m}")
            ended = in_child(m, transaction.recover, again)
            if ended != KILLED:
                assert ended == 0
                shutil.rmtree(again)
                break
            recovery_points += 1
            transaction.recover(again)  # the recovery after a killed recovery
            state = tree(again)
            assert state in (all_old, all_new), f"apply killed at {n}, recovery at {m}: neither all-old nor all-new"
            outcomes.append(f"{n}/{m}:{'new' if state == all_new else 'old'}")
            shutil.rmtree(again)
        edited = copy(crashed, f"a{n}e")
        transaction.recover(crashed)
        assert not transaction.leftovers(crashed)
        state = tree(crashed)
        assert state in (all_old, all_new), f"apply killed at step {n}: neither all-old nor all-new"
        expected = "new" if state == all_new else "old"
        assert all(o.endswith(expected) for o in outcomes if o.startswith(f"{n}/")), f"step {n}: recoveries disagree"
        # The same crash, then the user edits ci.yml before the next run: the edit is kept, every
        # other file ends like the recovery above, the old text (if it had been replaced) beside it.
        swapped = (edited / CI).read_bytes() == all_new[0][CI][0]
        user_edit(edited)
        transaction.recover(edited)
        kept, orig = tree(edited)[0], f"{CI}.mlci-orig"
        assert kept.pop(CI)[0].endswith(USER_LINE), f"step {n}: the user's edit was lost"
        if orig in kept:
            assert kept.pop(orig)[0] == all_old[0][CI][0], f"step {n}: {orig} is not the old text"
        else:
            assert not swapped or expected == "new", f"step {n}: the old text of {CI} is gone"
        assert kept == {p: v for p, v in state[0].items() if p != CI}, f"step {n}: other files differ"
        shutil.rmtree(edited)
        if expected not in checked:  # --check reads only the bytes compared above: once per state
            checked[expected] = run_cli("upgrade", "--check", str(crashed))
        shutil.rmtree(crashed)
    capsys.readouterr()
    assert checked == {"old": 1, "new": 0}  # behind before, up to date after: never "interrupted"
    # Kill points: staging, journal, each swap, the new directory, `done`, every file of the clean-up.
    assert apply_points == protocol_steps(plan, pristine), apply_points
    assert recovery_points >= apply_points, recovery_points  # every killed apply leaves a directory to remove
    print(f"kill points: {apply_points} in apply, {recovery_points} in the recoveries after them")
    # Once through the CLI as well: `mlci upgrade` (lock, recovery, plan, apply) killed half-way,
    # then the next `mlci upgrade` puts the files back and upgrades.
    assert half_applied is not None
    through_cli = copy(pristine, "cli")
    assert in_child(half_applied, mlci_upgrade, through_cli) == KILLED
    assert project_files(through_cli) not in (all_old[0], all_new[0])
    assert run_cli("upgrade", str(through_cli)) == 0
    assert "(left half-upgraded by an interrupted run)" in capsys.readouterr().out
    assert tree(through_cli) == all_new and not transaction.leftovers(through_cli)


def mlci_upgrade(root: Path) -> None:
    assert cli_main(["upgrade", str(root)]) == 0


def kill_apply_when(root: Path, plan: engine.Plan, backed_up_swaps: int) -> list[dict[str, str]]:
    """Kill a real apply (a forked child, SIGKILL) at the first step where `backed_up_swaps`
    files that existed before are swapped; returns those journal entries."""
    for n in range(1, 1000):
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(plan.root, root, ignore=without_seeded(plan.root))
        assert in_child(n, transaction.apply_plan, dataclasses.replace(plan, root=root)) == KILLED
        journal = transaction.leftovers(root)[0] / transaction.JOURNAL
        if not journal.exists():
            continue
        entries = json.loads(journal.read_bytes())["entries"]
        now = {e["target"]: root / e["target"] for e in entries}
        swapped = [
            e for e in entries if e["backup"] and now[e["target"]].is_file() and e["new"] == hash_of(now[e["target"]])
        ]
        if len(swapped) == backed_up_swaps:
            return swapped
    raise AssertionError(f"no step with {backed_up_swaps} swaps")


def test_a_missing_backup_is_never_read_as_absent(
    tmp_path: Path, fast_dir: Path, tpl: Templates, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = make(tmp_path, "lost-backup")
    small_upgrade(tpl)
    plan = engine.plan_upgrade(proj.root)
    crashed = fast_dir / "crashed"
    (first,) = kill_apply_when(crashed, plan, 1)
    work = transaction.leftovers(crashed)[0]
    (work / first["backup"]).unlink()  # e.g. a clean-up script, or a disk error
    swapped = (crashed / first["target"]).read_bytes()
    assert run_cli("upgrade", str(crashed)) == 3
    err = capsys.readouterr().err
    assert f"could not put back 1 file(s), left as the upgrade wrote them: {first['target']} (its backup " in err
    assert "is missing); every other file is as it was" in err and "run 'mlci upgrade'" in err
    assert (crashed / first["target"]).read_bytes() == swapped  # kept, never deleted
    assert transaction.leftovers(crashed) == [work]  # the journal stays for the next try
    # Restored by hand (from git here: the pristine copy), the next run finishes the recovery and upgrades.
    shutil.copy2(proj.root / first["target"], crashed / first["target"])
    assert run_cli("upgrade", str(crashed)) == 0
    assert not transaction.leftovers(crashed) and run_cli("upgrade", "--check", str(crashed)) == 0


@pytest.mark.parametrize("journal", [b"", b'{"format": 1, "entries": [{"target": ".github/wor'])
def test_an_empty_or_truncated_journal_means_nothing_was_swapped(
    proj_and_tpl: tuple[Project, Templates], journal: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    proj, tpl = proj_and_tpl
    small_upgrade(tpl)
    work = proj.root / ".mlci" / "upgrade-killed"
    work.mkdir()
    (work / "new-0").write_bytes(b"half")
    (work / transaction.JOURNAL).write_bytes(journal)
    proj.snapshot()
    assert run_cli("upgrade", "--check", str(proj.root)) == 1  # behind, not "interrupted"
    assert run_cli("upgrade", str(proj.root)) == 0
    assert not work.exists() and not transaction.leftovers(proj.root)
    assert run_cli("upgrade", "--check", str(proj.root)) == 0
    capsys.readouterr()


@pytest.fixture
def proj_and_tpl(tmp_path: Path, tpl: Templates) -> tuple[Project, Templates]:
    return make(tmp_path, "journal"), tpl


def test_a_file_that_cannot_be_put_back_does_not_stop_the_rollback_and_is_named(
    tmp_path: Path, tpl: Templates, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = make(tmp_path, "stuck")
    small_upgrade(tpl)
    proj.snapshot()
    real_replace = transaction.Disk.replace
    swaps: list[str] = []
    stuck: list[str] = []

    def replace(disk: transaction.Disk, source: Path, target: Path) -> None:
        relative = target.relative_to(proj.root).as_posix()
        if not relative.startswith(".mlci/upgrade-"):
            if source.name.startswith("new-"):
                swaps.append(relative)
                if len(swaps) == 3:
                    raise OSError(28, "No space left on device")
            elif not stuck:  # putting the first file back fails too
                stuck.append(relative)
                raise PermissionError(13, "Permission denied")
        real_replace(disk, source, target)

    monkeypatch.setattr(transaction.Disk, "replace", replace)
    assert proj.upgrade() == 3
    err = capsys.readouterr().err
    assert len(swaps) == 3 and len(stuck) == 1
    assert "the upgrade failed ([Errno 28] No space left on device); could not put back 1 file(s)" in err
    assert f"left as the upgrade wrote them: {stuck[0]} (Permission denied); every other file is as it was" in err
    assert "every file was left as it was" not in err
    before, after = proj.before, tree(proj.root)[0]
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p, (None,))[0]}
    assert {p for p in changed if not p.startswith(".mlci/upgrade-")} == {stuck[0]}  # only that one is new
    # Once the cause is fixed, the next run puts it back and upgrades.
    monkeypatch.setattr(transaction.Disk, "replace", real_replace)
    assert proj.upgrade() == 0
    assert f"restored  {stuck[0]}" in capsys.readouterr().out
    assert not transaction.leftovers(proj.root) and run_cli("upgrade", "--check", str(proj.root)) == 0


def test_recovery_refuses_a_journal_it_did_not_write(proj_and_tpl: tuple[Project, Templates]) -> None:
    proj, _ = proj_and_tpl
    work = proj.root / ".mlci" / "upgrade-old"
    work.mkdir()
    (work / transaction.JOURNAL).write_text('[{"target": "x", "backup": null}]')
    with pytest.raises(ConfigError, match="not a journal this mlci wrote; check the files with 'git status'") as raised:
        transaction.recover(proj.root)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize(
    ("target", "backup", "problem"),
    [
        ("src/journal/train.py", None, "is not a file mlci upgrades"),
        ("../victim.txt", None, "is not a normalised relative path (an empty, '.' or '..' segment)"),
        (CI, "../../../victim.txt", "has a backup '../../../victim.txt' outside its work directory"),
        (CI, "old-0", "has a hash that is not a sha256"),
    ],
)
def test_a_planted_journal_cannot_make_recovery_delete_or_replace_other_files(
    proj_and_tpl: tuple[Project, Templates], target: str, backup: str | None, problem: str
) -> None:
    """A pull request can add `.mlci/upgrade-*/journal.json` like any file: recovery deletes a
    target whose hash matches its `new` (here: a team file, a file outside the project) and
    replaces one from its backup, so a journal naming anything else is refused, untouched."""
    proj, _ = proj_and_tpl
    victim = proj.root.parent / "victim.txt"
    victim.write_text("not the project's\n")
    on_disk = proj.root / target if not target.startswith("..") else victim
    work = proj.root / ".mlci" / "upgrade-planted"
    work.mkdir()
    old = (sha256(b"x") if problem != "has a hash that is not a sha256" else "x") if backup else None
    entry = {"target": target, "backup": backup, "old": old, "new": hash_of(on_disk)}
    (work / transaction.JOURNAL).write_text(json.dumps({"format": 1, "entries": [entry], "dirs": []}))
    proj.snapshot()
    with pytest.raises(
        ConfigError, match=f"target '{re.escape(target)}' {re.escape(problem)}; mlci never wrote"
    ) as raised:
        transaction.recover(proj.root)
    assert raised.value.exit_code == 2
    assert victim.read_text() == "not the project's\n"
    assert files_of(proj.root) == proj.before


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line the CLI printed on stderr (and nothing else there)."""
    (line,) = capsys.readouterr().err.splitlines()
    return line


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `mlci new` per module for the refusal tests below (each works on a copy)."""
    return make(tmp_path_factory.mktemp("scaffolded"), "refused").root


@pytest.fixture
def refused(scaffolded: Path, tmp_path: Path) -> Project:
    proj = Project(tmp_path / "refused")
    shutil.copytree(scaffolded, proj.root, symlinks=True)
    return proj


def victim_dir(tmp_path: Path) -> Path:
    """A directory outside the project holding files named as a work directory's are, and one more."""
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("journal.json", "done", "new-0", "old-0", "precious.txt"):
        (victim / name).write_text(f"not the project's {name}\n")
    return victim


@pytest.mark.parametrize("kind", ["symlink to a directory", "file"])
def test_an_upgrade_directory_that_is_no_directory_is_refused_and_never_followed(
    refused: Project, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pull request can commit `.mlci/upgrade-x` as a symlink: clean-up used to follow it and
    delete every file of its target, then say every file was left as it was."""
    victim = victim_dir(tmp_path)
    planted = refused.root / ".mlci" / "upgrade-evil"
    if kind == "file":
        planted.write_text("{}\n")
    else:
        planted.symlink_to(victim, target_is_directory=True)
    before = files_of(victim)
    refused.snapshot()
    what = "a symlink" if kind != "file" else "not a directory"
    for mode in ((), ("--check",)):
        assert run_cli("upgrade", *mode, str(refused.root)) == 2
        assert one_error_line(capsys) == (
            f"mlci: error: {planted}: is {what}, not an upgrade's work directory; "
            "mlci never follows or deletes through it: delete it"
        )
    assert files_of(victim) == before and files_of(refused.root) == refused.before
    planted.unlink()  # the fix the line names
    assert run_cli("upgrade", str(refused.root)) == 0


def test_a_symlinked_mlci_directory_leading_out_is_refused_before_recovery(refused: Project, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    shutil.move(refused.root / ".mlci", outside)
    (refused.root / ".mlci").symlink_to(outside, target_is_directory=True)
    shutil.copytree(victim_dir(tmp_path), outside / "upgrade-x")
    before = files_of(outside)
    refusal = r"is a symlink \(to .*\) on the way to \.mlci, .*: replace it with a real directory$"
    with pytest.raises(ConfigError, match=refusal) as raised:
        transaction.recover(refused.root)
    assert raised.value.exit_code == 2 and raised.value.path == str(refused.root / ".mlci")
    assert files_of(outside) == before


@pytest.mark.parametrize("planted", ["sub", "old-0", "notes.txt"])
def test_a_work_directory_holding_anything_mlci_does_not_write_is_refused_untouched(
    refused: Project, tmp_path: Path, planted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A subdirectory next to `done` gave IsADirectoryError (exit 3) on every run; a symlinked
    backup would be renamed into the project; a stranger file would be deleted."""
    victim = victim_dir(tmp_path)
    work = refused.root / ".mlci" / "upgrade-planted"
    work.mkdir()
    (work / transaction.DONE).write_bytes(b"")
    if planted == "sub":
        (work / planted).mkdir()
        (work / planted / "keep.txt").write_text("mine\n")
    elif planted == "old-0":
        (work / planted).symlink_to(victim / "precious.txt")
    else:
        (work / planted).write_text("mine\n")
    refused.snapshot()
    before = files_of(victim)
    assert run_cli("upgrade", str(refused.root)) == 2
    assert one_error_line(capsys) == (
        f"mlci: error: {work / planted}: is not a file mlci writes in an upgrade's work directory; mlci never "
        f"reads or deletes it: check the files with 'git status', then delete {work}"
    )
    assert files_of(refused.root) == refused.before and files_of(victim) == before
    assert (work / transaction.DONE).exists()


def test_a_deeply_nested_journal_is_refused_in_one_line(refused: Project, capsys: pytest.CaptureFixture[str]) -> None:
    work = refused.root / ".mlci" / "upgrade-deep"
    work.mkdir()
    (work / transaction.JOURNAL).write_text("[" * 100_000)
    assert run_cli("upgrade", str(refused.root)) == 2
    assert one_error_line(capsys) == (
        f"mlci: error: {work / transaction.JOURNAL}: nested too deeply to be a journal this mlci wrote; "
        "check the files with 'git status', then delete its directory"
    )
    assert work.exists()


@pytest.mark.parametrize("directory", ["notebooks", ".github/out/empty"])
def test_a_journal_directory_must_be_one_the_upgrade_created(refused: Project, tmp_path: Path, directory: str) -> None:
    """Rollback removes the journal's `dirs` when empty: a team's empty folder, or one outside
    the project through a symlink, is not the parent of a file the journal names: refused."""
    outside = tmp_path / "outside"
    (outside / "empty").mkdir(parents=True)
    (refused.root / ".github" / "out").symlink_to(outside, target_is_directory=True)
    (refused.root / "notebooks").mkdir()
    work = refused.root / ".mlci" / "upgrade-dirs"
    work.mkdir()
    now = hash_of(refused.root / CI)  # a file as it was: the entry itself changes nothing
    entry = {"target": CI, "backup": "old-0", "old": now, "new": sha256(b"new")}
    (work / transaction.JOURNAL).write_text(json.dumps({"format": 1, "entries": [entry], "dirs": [directory]}))
    problem = f"directory '{directory}' is not the directory of a file this journal names; mlci never wrote"
    with pytest.raises(ConfigError, match=re.escape(problem)) as raised:
        transaction.recover(refused.root)
    assert raised.value.exit_code == 2
    assert (refused.root / "notebooks").is_dir() and (outside / "empty").is_dir()


# `mlci render` applies its plan through the same transaction: its failure once said "the upgrade failed".
@pytest.mark.parametrize(
    ("command", "argv"), [("upgrade", ("upgrade", "{root}")), ("render", ("render", "-C", "{root}"))]
)
def test_a_failed_run_says_every_file_was_left_as_it_was_only_once_rolled_back_naming_its_command(
    refused: Project,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    argv: tuple[str, ...],
) -> None:
    refused.edit("mlci.yaml", 'python: "3.11"', 'python: "3.12"')
    refused.snapshot()
    real_replace = transaction.Disk.replace
    swaps: list[str] = []

    def replace(disk: transaction.Disk, source: Path, target: Path) -> None:
        if source.name.startswith("new-"):
            swaps.append(target.name)
            if len(swaps) == 2:
                raise OSError(28, "No space left on device")
        real_replace(disk, source, target)

    monkeypatch.setattr(transaction.Disk, "replace", replace)
    assert run_cli(*(arg.format(root=refused.root) for arg in argv)) == 3
    assert one_error_line(capsys) == (
        f"mlci: error: {refused.root}: the {command} failed ([Errno 28] No space left on device); "
        "every file was left as it was"
    )
    assert files_of(refused.root) == refused.before


def test_a_recovery_that_fails_after_putting_files_back_never_says_they_were_left_as_they_were(
    proj_and_tpl: tuple[Project, Templates],
    fast_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proj, tpl = proj_and_tpl
    small_upgrade(tpl)
    plan = engine.plan_upgrade(proj.root)
    crashed = fast_dir / "crashed"
    (first,) = kill_apply_when(crashed, plan, 1)
    work = transaction.leftovers(crashed)[0]
    real_rmdir = transaction.Disk.rmdir

    def rmdir(disk: transaction.Disk, path: Path) -> None:
        if path == work:
            raise OSError(5, "Input/output error")
        real_rmdir(disk, path)

    monkeypatch.setattr(transaction.Disk, "rmdir", rmdir)
    assert run_cli("upgrade", str(crashed)) == 3
    line = one_error_line(capsys)
    assert line.startswith(
        f"mlci: error: {crashed}: finishing the interrupted upgrade in .mlci/{work.name}/ failed "
        "([Errno 5] Input/output error) after putting back "
    ), line
    assert line.endswith(" file(s); fix the cause, then run 'mlci upgrade' again to finish"), line
    assert "left as it was" not in line
    assert (crashed / first["target"]).read_bytes() == (proj.root / first["target"]).read_bytes()  # put back
    monkeypatch.setattr(transaction.Disk, "rmdir", real_rmdir)
    assert run_cli("upgrade", str(crashed)) == 0
    assert not transaction.leftovers(crashed)
    capsys.readouterr()


# ------------------------------------------------------------------ item 7: one upgrade at a time

# A real `mlci upgrade` that stops right after its first swap until its stdin closes.
PAUSED_UPGRADE = (
    "import sys\n"
    "from mlci.upgrade import transaction\n"
    "real = transaction.Disk.replace\n"
    "def replace(disk, source, target):\n"
    "    real(disk, source, target)\n"
    "    if source.name.startswith('new-'):\n"
    "        print('swapped', flush=True)\n"
    "        sys.stdin.readline()\n"
    "transaction.Disk.replace = replace\n"
    "from mlci.cli import main\n"
    "sys.exit(main(['upgrade', sys.argv[1]]))\n"
)


def test_a_second_upgrade_is_refused_at_once_while_one_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = make(tmp_path, "busy")
    proj.edit("mlci.yaml", 'python: "3.11"', 'python: "3.12"')
    first = subprocess.Popen(
        [sys.executable, "-c", PAUSED_UPGRADE, str(proj.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None and first.stdout.readline() == "swapped\n"
        half_way = tree(proj.root)
        holder = f"another mlci run is active (pid {first.pid}, started "
        second = run_cli_process("upgrade", str(proj.root), cwd=tmp_path, timeout=60)  # a second real process
        assert second.returncode == 2, second.stderr
        (line,) = second.stderr.splitlines()
        assert line.startswith(f"mlci: error: {holder}"), line
        assert line.endswith(f", 'mlci upgrade'); wait for it to finish (lock file {proj.root / LOCK})"), line
        capsys.readouterr()
        for mode in ("--check", "--dry-run"):
            assert run_cli("upgrade", mode, str(proj.root)) == 2
            assert capsys.readouterr().err.startswith(f"mlci: error: {holder}")
        refused = rf"another mlci run is active \(pid {first.pid}, .*'mlci upgrade'\)"
        with pytest.raises(UsageError, match=refused), project_lock(load_project(proj.root), "train"):
            pass  # the stages wait for it too
        assert tree(proj.root) == half_way  # the refused runs touched nothing
        _, err = first.communicate("\n", timeout=60)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, err
    assert run_cli("upgrade", "--check", str(proj.root)) == 0
    capsys.readouterr()


def test_recover_names_every_file_it_cannot_put_back_in_one_error(
    proj_and_tpl: tuple[Project, Templates], fast_dir: Path
) -> None:
    """The error is an InfraError (exit 3) and the message the CLI prints is one line."""
    proj, tpl = proj_and_tpl
    small_upgrade(tpl)
    plan = engine.plan_upgrade(proj.root)
    crashed = fast_dir / "crashed"
    kill_apply_when(crashed, plan, 2)
    work = transaction.leftovers(crashed)[0]
    for backup in work.glob("old-*"):
        backup.unlink()
    with pytest.raises(InfraError) as raised:
        transaction.recover(crashed)
    assert "\n" not in raised.value.message and "could not put back 2 file(s)" in raised.value.message
    assert MANIFEST_PATH not in raised.value.message  # the manifest was not swapped yet: it is as it was
