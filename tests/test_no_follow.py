"""No file mlci writes follows a symlink a repository committed (issue 9, items 1.3, 1.4, 1.8).

A pull request can commit a symlink under any name mlci writes: a temporary name
(`.ci.yml.mlci-tmp`, `train.json.tmp`), the lock `.mlci/lock`, a result, or a directory on
the way. Each test plants a real link to a file outside the project and proves that file is
byte for byte what it was, and that mlci either wrote a real file of its own or refused with
one line naming the link (exit 2). One project is made by `mlci new` per module and copied.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from conftest import run_cli

from mlci import fs
from mlci.contracts import drift
from mlci.errors import ConfigError, UsageError
from mlci.lock import root_lock
from mlci.stages._result import write_errored_junit, write_json
from mlci.upgrade import fleet

SECRET = b"outside the project: never written\n"
CI = ".github/workflows/ci.yml"


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parent = tmp_path_factory.mktemp("seed")
    assert run_cli("new", "churn", "--defaults", "--no-git", "--output-dir", str(parent)) == 0
    return parent / "churn"


@pytest.fixture
def root(seed: Path, tmp_path: Path) -> Path:
    project = tmp_path / "work" / "churn"
    shutil.copytree(seed, project, symlinks=True)
    return project


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the project that a planted link points to."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(SECRET)
    return victim


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def re_render_ci(root: Path) -> None:
    """An edit of mlci.yaml that makes `mlci render` rewrite ci.yml."""
    config = root / "mlci.yaml"
    text = config.read_text(encoding="utf-8")
    assert 'python: "' in text
    config.write_text(text.replace('python: "3.', 'python: "3.1', 1), encoding="utf-8")


# ------------------------------------------------------------------ 1.3 render


def test_render_never_writes_through_a_planted_temp_file_link(root: Path, outside: Path) -> None:
    re_render_ci(root)
    (root / ".github/workflows/.ci.yml.mlci-tmp").symlink_to(outside)
    assert run_cli("render", "-C", str(root)) == 0
    assert outside.read_bytes() == SECRET
    ci = root / CI
    assert not ci.is_symlink() and b"python-version" in ci.read_bytes()
    leftovers = sorted(p.name for p in ci.parent.iterdir() if p.name.endswith(fs.TEMP_SUFFIX))
    assert leftovers == [".ci.yml.mlci-tmp"]  # the planted link, untouched; no temp file of mlci's


def test_render_refuses_a_managed_file_that_is_a_symlink(
    root: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    re_render_ci(root)
    (root / CI).unlink()
    (root / CI).symlink_to(outside)
    assert run_cli("render", "-C", str(root)) == 2
    assert outside.read_bytes() == SECRET and (root / CI).is_symlink()
    assert one_error_line(capsys) == (
        f"mlci: error: {root / CI}: is a symlink (to {outside}) on the way to {CI}, and mlci never writes or "
        "deletes through a symlink: replace it with a real file"
    )


def test_render_holds_the_project_lock(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    re_render_ci(root)
    before = (root / CI).read_bytes()
    with root_lock(root, "upgrade"):
        assert run_cli("render", "-C", str(root)) == 2
    assert (root / CI).read_bytes() == before
    assert "another mlci run is active" in one_error_line(capsys)
    assert run_cli("render", "-C", str(root)) == 0 and (root / CI).read_bytes() != before


# ------------------------------------------------------------------ 1.4 the lock


def test_a_committed_lock_symlink_is_refused(root: Path, outside: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = root / ".mlci" / "lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside)
    assert run_cli("upgrade", "--check", str(root)) == 2
    assert outside.read_bytes() == SECRET and lock.is_symlink()
    assert one_error_line(capsys) == (
        f"mlci: error: {lock}: is a symlink (to {outside}), not mlci's lock file: delete it (mlci creates it), "
        "then run again"
    )


def test_a_lock_that_is_not_a_regular_file_is_refused(root: Path) -> None:
    lock = root / ".mlci" / "lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    with pytest.raises(ConfigError) as caught, root_lock(root, "lint"):
        pass
    assert caught.value.message == (
        f"{lock}: is not a regular file, not mlci's lock file: delete it (mlci creates it), then run again"
    )


def test_a_linked_mlci_directory_never_takes_the_lock_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / ".mlci").symlink_to(tmp_path / "elsewhere")
    refused = r"/p/\.mlci: is a symlink .* on the way to \.mlci, and mlci never"
    with pytest.raises(ConfigError, match=refused), root_lock(tmp_path / "p", "lint"):
        pass
    assert list((tmp_path / "elsewhere").iterdir()) == []


# ------------------------------------------------------------------ 1.4 results and reports


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    out = tmp_path / "p" / ".mlci" / "out"
    out.mkdir(parents=True)
    return out


def test_a_stage_result_never_follows_its_old_temp_name(out_dir: Path, outside: Path) -> None:
    (out_dir / "lint.json.tmp").symlink_to(outside)  # the fixed name mlci used to write through
    write_json(out_dir / "lint.json", {"status": "passed"})
    assert outside.read_bytes() == SECRET
    assert not (out_dir / "lint.json").is_symlink() and b'"passed"' in (out_dir / "lint.json").read_bytes()


def test_the_errored_junit_report_never_follows_its_old_temp_name(out_dir: Path, outside: Path) -> None:
    (out_dir / "junit.xml.tmp").symlink_to(outside)
    write_errored_junit(out_dir, "test", "boom")
    assert outside.read_bytes() == SECRET
    assert b'errors="1"' in (out_dir / "junit.xml").read_bytes()


def test_a_result_that_is_a_symlink_is_refused(out_dir: Path, outside: Path) -> None:
    (out_dir / "train.json").symlink_to(outside)
    with pytest.raises(ConfigError) as caught:
        write_json(out_dir / "train.json", {"status": "passed"})
    assert caught.value.message == (
        f"{out_dir / 'train.json'}: is a symlink (to {outside}) on the way to .mlci/out/train.json, and mlci never "
        "writes or deletes through a symlink: replace it with a real file"
    )
    assert outside.read_bytes() == SECRET


def test_a_linked_out_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "p" / ".mlci").mkdir(parents=True)
    (tmp_path / "p" / ".mlci" / "out").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match=r"\.mlci/out: is a symlink .* replace it with a real directory$"):
        write_json(tmp_path / "p" / ".mlci" / "out" / "run.json", {})
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_the_stage_path_leaves_no_temp_file_behind(root: Path, outside: Path) -> None:
    out = root / ".mlci" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / ".junit.xml.0123456789abcdef.mlci-tmp").write_bytes(b"a killed write's")
    (out / "junit.xml.tmp").symlink_to(outside)
    (root / "mlci.yaml").write_text("schema: [\n", encoding="utf-8")  # broken: the stage errors before it starts
    assert run_cli("test", "-C", str(root)) == 2
    assert outside.read_bytes() == SECRET
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "test.json"]


# ------------------------------------------------------------------ the other writers: one helper


def test_a_reference_profile_that_is_a_symlink_is_refused(root: Path, outside: Path) -> None:
    path = root / "data" / "reference_profile.json"
    profile = drift.load_profile(path)
    path.unlink()
    path.symlink_to(outside)
    with pytest.raises(ConfigError, match=r"reference_profile\.json: is a symlink \(to .*\), and mlci never writes"):
        drift.write_profile(profile, path)
    assert outside.read_bytes() == SECRET


def test_a_fleet_report_that_is_a_symlink_is_refused(tmp_path: Path, outside: Path) -> None:
    report = tmp_path / "report.json"
    report.symlink_to(outside)
    with pytest.raises(ConfigError, match=r"report\.json: is a symlink"):
        fleet.write_report(report, [], fleet.Options(check=True), 0.0)
    assert outside.read_bytes() == SECRET
    report.unlink()
    fleet.write_report(report, [], fleet.Options(check=True), 0.0)
    assert b'"mode": "check"' in report.read_bytes()


def test_concurrent_writers_never_share_a_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.json"
    texts = {f"writer {n}\n".encode() * 200 for n in range(8)}
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(25):
                fs.write_atomic(path, data, durable=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(data,)) for data in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and path.read_bytes() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]


def test_a_directory_swapped_for_a_link_mid_move_is_not_followed(tmp_path: Path) -> None:
    """fs.replace_no_follow: a link made after the check still cannot steer the write."""
    if not fs.NO_FOLLOW_DIRS:
        pytest.skip("no O_NOFOLLOW/dir_fd on this platform: the up-front check is the guard")
    (tmp_path / "p").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "p" / "a").symlink_to(tmp_path / "elsewhere")
    staged = tmp_path / "staged"
    staged.write_bytes(b"x")
    with pytest.raises(UsageError, match=r"^refusing to write a/b: a changed into a symlink or a file while mlci"):
        fs.replace_no_follow(staged, tmp_path / "p", "a/b")
    assert list((tmp_path / "elsewhere").iterdir()) == []
