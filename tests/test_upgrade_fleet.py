"""`mlci upgrade` across a fleet: many paths, --repos-file, --jobs, the JSON report, --branch/--commit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli
from upgrade_kit import CI, CI_TEMPLATE, OLD_VERSION, Project, Templates, git, make

from mlci import __version__
from mlci.manifest import MANIFEST_PATH


@pytest.fixture
def tpl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Templates]:
    yield Templates(tmp_path / "templates", monkeypatch)


def newer(tpl: Templates) -> None:
    tpl.replace(
        CI_TEMPLATE, "timeout-minutes: <%= job.timeout_minutes %>", "timeout-minutes: <%= job.timeout_minutes + 100 %>"
    )


def test_fleet_of_50_gives_the_right_report(tmp_path: Path, tpl: Templates, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    expected: dict[str, str] = {}
    projects: list[Project] = []
    for i in range(20):  # untouched: replaced
        projects.append(make(fleet, f"plain{i:02}"))
        expected[f"plain{i:02}"] = "updated"
    for i in range(10):  # clean edits: merged
        proj = make(fleet, f"edited{i:02}")
        proj.edit(CI, "  pull_request:\n", f"  pull_request:\n    branches: [main, team-{i}]\n")
        projects.append(proj)
        expected[f"edited{i:02}"] = "updated"
    for i in range(10):  # the same line on both sides: conflicts
        proj = make(fleet, f"clash{i:02}")
        proj.edit(CI, "timeout-minutes: 15", f"timeout-minutes: {30 + i}")
        projects.append(proj)
        expected[f"clash{i:02}"] = "conflicts"
    for i in range(3):  # no manifest: bad input
        proj = make(fleet, f"nomanifest{i}")
        (proj.root / MANIFEST_PATH).unlink()
        expected[f"nomanifest{i}"] = "error"
    for i in range(2):  # made by a newer mlci: a downgrade, refused
        make(fleet, f"future{i}").age("99.0")
        expected[f"future{i}"] = "error"
    newer(tpl)
    for i in range(5):  # already rendered by the new templates
        make(fleet, f"current{i}", age=False)
        expected[f"current{i}"] = "up-to-date"
    for proj in projects:
        proj.snapshot()
    assert len(expected) == 50
    report = tmp_path / "out" / "report.json"
    paths = [str(fleet / name) for name in sorted(expected)]
    assert run_cli("upgrade", "--jobs", "2", "--report", str(report), *paths) == 2  # errors dominate

    data = json.loads(report.read_text())
    assert data["mlci_version"] == __version__ and data["exit_code"] == 2 and data["mode"] == "upgrade"
    got = {Path(r["path"]).name: r["status"] for r in data["repos"]}
    assert got == expected
    assert data["summary"] == {"updated": 30, "conflicts": 10, "error": 5, "up-to-date": 5}
    by_name = {Path(r["path"]).name: r for r in data["repos"]}
    assert [r["path"] for r in data["repos"]] == paths  # in the order given
    assert by_name["clash03"]["conflicts"] == [CI] and by_name["clash03"]["exit_code"] == 1
    assert by_name["edited04"]["files"] == {"merged": [CI], "updated": [".github/workflows/cd.yml"]}
    assert by_name["plain00"]["from_version"] == OLD_VERSION and by_name["plain00"]["to_version"] == __version__
    assert "no manifest" in by_name["nomanifest1"]["error"] and by_name["future0"]["exit_code"] == 2
    assert all(r["seconds"] >= 0 for r in data["repos"])
    captured = capsys.readouterr()
    progress = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert len(progress) == 50 and progress[-1].startswith("[50/50] ")
    assert "upgrade: 50 repositories" in captured.out and "10 conflicts" in captured.out
    for proj in projects:
        proj.assert_no_user_line_lost()
        ci = proj.read(CI)
        assert "timeout-minutes: 130" in ci


def test_repos_file_and_branch_commit(tmp_path: Path, tpl: Templates, capsys: pytest.CaptureFixture[str]) -> None:
    repos = tmp_path / "repos"
    repos.mkdir()
    clean = make(repos, "clean", git_repo=True)
    clean.edit(CI, "  pull_request:\n", "  pull_request:\n    branches: [main, ours]\n")
    git(clean.root, "commit", "-qam", "our edit")
    clash = make(repos, "clash", git_repo=True)
    clash.edit(CI, "timeout-minutes: 15", "timeout-minutes: 40")
    git(clash.root, "commit", "-qam", "our edit")
    plain = make(repos, "plain")  # no git at all
    listing = repos / "fleet.txt"
    listing.write_text("# our repositories\nclean\n\nclash   # the tricky one\n" + str(plain.root) + "\n")
    newer(tpl)
    report = tmp_path / "r.json"
    code = run_cli(
        "upgrade", "--repos-file", str(listing), "--branch", "mlci/upgrade", "--commit", "--report", str(report)
    )
    assert code == 1
    data = {Path(r["path"]).name: r for r in json.loads(report.read_text())["repos"]}
    assert data["clean"]["status"] == "updated" and data["clean"]["commit"]
    assert git(clean.root, "branch", "--show-current").strip() == "mlci/upgrade"
    assert git(clean.root, "status", "--porcelain") == ""
    assert git(clean.root, "log", "-1", "--format=%s").strip() == f"Upgrade to mlci {__version__}"
    assert data["clash"]["status"] == "conflicts" and data["clash"]["commit"] is None
    assert git(clash.root, "branch", "--show-current").strip() == "main"
    assert data["plain"]["status"] == "updated" and "not a git repository" in data["plain"]["git"]
    for proj in (clean, clash):
        proj.assert_no_user_line_lost()


def test_fleet_check_mode_lists_behind_repos(tmp_path: Path, tpl: Templates) -> None:
    behind = make(tmp_path, "behind")
    current = make(tmp_path, "current", age=False)
    behind.snapshot()
    report = tmp_path / "check.json"
    assert run_cli("upgrade", "--check", "--report", str(report), str(behind.root), str(current.root)) == 1
    data = json.loads(report.read_text())
    assert data["mode"] == "check" and [r["status"] for r in data["repos"]] == ["behind", "up-to-date"]
    assert behind.unchanged_since_snapshot()


def test_missing_repos_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("upgrade", "--repos-file", str(tmp_path / "nope.txt")) == 2
    assert "--repos-file" in capsys.readouterr().err


def test_one_broken_repository_does_not_stop_the_fleet(
    tmp_path: Path, tpl: Templates, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlci.upgrade import engine

    good = make(tmp_path, "good")
    bad_yaml = make(tmp_path, "bad-yaml")
    surprise = make(tmp_path, "surprise")
    with (bad_yaml.root / "mlci.yaml").open("a") as config:
        config.write("# form\x0cfeed\n")  # a character YAML refuses
    newer(tpl)
    real_plan = engine.plan_upgrade

    def plan(root: Path) -> engine.Plan:
        if root.name == "surprise":
            raise RuntimeError("disk on fire")  # stands for any bug below the fleet
        return real_plan(root)

    monkeypatch.setattr(engine, "plan_upgrade", plan)
    report = tmp_path / "report.json"
    code = run_cli(
        "upgrade", "--jobs", "2", "--report", str(report), str(good.root), str(bad_yaml.root), str(surprise.root)
    )
    assert code == 3
    repos = {Path(r["path"]).name: r for r in json.loads(report.read_text())["repos"]}
    assert repos["good"]["status"] == "updated"
    assert repos["bad-yaml"]["status"] == "error" and repos["bad-yaml"]["exit_code"] == 2
    assert "invalid YAML" in repos["bad-yaml"]["error"] and "mlci.yaml:" in repos["bad-yaml"]["error"]
    assert (
        repos["surprise"]["status"] == "error" and "unexpected RuntimeError: disk on fire" in repos["surprise"]["error"]
    )
    assert "timeout-minutes: 115" in good.read(CI)
