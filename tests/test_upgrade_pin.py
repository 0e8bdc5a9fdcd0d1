"""`mlci upgrade` and ci.mlci_install: a detected pin moves with the vendored actions, a chosen one stays.

A project is scaffolded while the "installed" mlci is an older one (its detected install source
is patched), its manifest is aged to that version (tests/upgrade_kit.py), then today's mlci
upgrades it: the vendored actions move to today's version, and so must a detected pin.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from upgrade_kit import CI, OLD_VERSION, Project, Templates, make

from mlci import __version__
from mlci.commands import new as new_command
from mlci.install_source import InstallSource, index_source
from mlci.manifest import MANIFEST_PATH
from mlci.upgrade import engine, migrations

OLD_PIN = f"mlci=={OLD_VERSION}"
NEW_PIN = f"mlci=={__version__}"
SHA1 = "1111111111111111111111111111111111111111"
SHA2 = "2222222222222222222222222222222222222222"
GIT = "https://github.com/acme/mlci"


@pytest.fixture
def tpl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Templates]:
    yield Templates(tmp_path / "templates", monkeypatch)


def installed_as(monkeypatch: pytest.MonkeyPatch, module: object, source: InstallSource) -> None:
    """Make `mlci new` (or `mlci upgrade`) see the running mlci as installed from `source`."""
    monkeypatch.setattr(module, "installed_source", lambda: source, raising=False)


def scaffold_by_old_mlci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, *data: str) -> Project:
    """A project `mlci new` wrote when mlci OLD_VERSION, installed from an index, was running."""
    installed_as(monkeypatch, new_command, index_source(OLD_VERSION))
    extra = [arg for pair in data for arg in ("--data", pair)]
    assert run_cli("new", name, "--defaults", "--no-git", "--output-dir", str(tmp_path), *extra) == 0
    project = Project(tmp_path / name)
    project.age()
    return project


def answers(project: Project) -> dict[str, object]:
    data = project.manifest["answers"]
    assert isinstance(data, dict)
    return data


def install_inputs(project: Project) -> set[str]:
    """Every `mlci-install` input the generated workflows pass to mlci's setup action."""
    found: set[str] = set()
    for workflow in sorted((project.root / ".github" / "workflows").glob("*.yml")):
        for job in yaml.safe_load(workflow.read_text(encoding="utf-8"))["jobs"].values():
            for step in job.get("steps", []):
                if "mlci-install" in step.get("with", {}):
                    found.add(step["with"]["mlci-install"])
    return found


def test_detected_pin_moves_with_the_vendored_actions(
    tmp_path: Path, tpl: Templates, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = scaffold_by_old_mlci(tmp_path, monkeypatch, "moves")
    assert answers(proj)["mlci_install"] == OLD_PIN and answers(proj).get("mlci_install_detected") is True
    assert install_inputs(proj) == {OLD_PIN}
    proj.edit("mlci.yaml", f'mlci_install: "{OLD_PIN}"', f'mlci_install: "{OLD_PIN}"  # detected by mlci new')
    before = proj.read("mlci.yaml")
    capsys.readouterr()

    assert proj.upgrade("--dry-run") == 0
    diff = capsys.readouterr().out
    assert f'-  mlci_install: "{OLD_PIN}"  # detected by mlci new\n' in diff
    assert f'+  mlci_install: "{NEW_PIN}"  # detected by mlci new\n' in diff
    assert proj.unchanged_since_snapshot()

    assert proj.upgrade() == 0
    out = capsys.readouterr().out
    # Just that scalar moved: every other byte of mlci.yaml, the comment on its line included.
    assert proj.read("mlci.yaml") == before.replace(f'"{OLD_PIN}"', f'"{NEW_PIN}"')
    assert install_inputs(proj) == {NEW_PIN}
    assert answers(proj)["mlci_install"] == NEW_PIN and answers(proj).get("mlci_install_detected") is True
    assert f"updated   mlci.yaml (ci.mlci_install {OLD_PIN} -> {NEW_PIN}, with the vendored actions)\n" in out
    assert (
        f"note      pyproject.toml's dev extra still installs {OLD_PIN.replace('mlci', 'mlci[all]', 1)} "
        f"(your file: left as is); change it to {NEW_PIN.replace('mlci', 'mlci[all]', 1)} to develop against "
        "the mlci CI installs\n"
    ) in out
    assert f'dev = ["{OLD_PIN.replace("mlci", "mlci[all]", 1)}"]' in proj.read(
        "pyproject.toml"
    )  # seeded: the team's file
    proj.snapshot()
    assert proj.upgrade() == 0 and proj.unchanged_since_snapshot()
    assert "up to date" in capsys.readouterr().out


def test_pin_edited_by_hand_is_kept_and_reported(
    tmp_path: Path, tpl: Templates, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = scaffold_by_old_mlci(tmp_path, monkeypatch, "edited")
    hand = f"mlci @ git+{GIT}@{SHA1}"
    proj.edit("mlci.yaml", f'mlci_install: "{OLD_PIN}"', f"mlci_install: '{hand}'")
    before = proj.read("mlci.yaml")
    capsys.readouterr()
    assert proj.upgrade() == 0
    assert proj.read("mlci.yaml") == before
    assert install_inputs(proj) == {hand}
    out = capsys.readouterr().out
    assert (
        f"note      ci.mlci_install pinned by you: left as is ({hand}); vendored actions now at mlci {__version__}\n"
    ) in out
    assert answers(proj)["mlci_install"] == OLD_PIN  # the detected default stays recorded, unused


def test_explicit_answer_is_never_moved(
    tmp_path: Path, tpl: Templates, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same text a detected default would have: only the recorded answer tells them apart.
    proj = scaffold_by_old_mlci(tmp_path, monkeypatch, "explicit", f"mlci_install={OLD_PIN}")
    assert answers(proj).get("mlci_install_detected") is False
    before = proj.read("mlci.yaml")
    capsys.readouterr()
    assert proj.upgrade() == 0
    assert proj.read("mlci.yaml") == before and install_inputs(proj) == {OLD_PIN}
    assert f"ci.mlci_install pinned by you: left as is ({OLD_PIN})" in capsys.readouterr().out
    assert answers(proj).get("mlci_install_detected") is False


def test_manifest_from_before_the_key(
    tmp_path: Path, tpl: Templates, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An older mlci recorded no key: `mlci==<its version>` was its default, anything else an answer."""

    def forget_the_key(project: Project) -> None:
        path = project.root / MANIFEST_PATH
        data = json.loads(path.read_text(encoding="utf-8"))
        data["answers"].pop("mlci_install_detected", None)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    default = scaffold_by_old_mlci(tmp_path, monkeypatch, "legacy-default")
    forget_the_key(default)
    assert default.upgrade() == 0
    assert f'mlci_install: "{NEW_PIN}"' in default.read("mlci.yaml") and install_inputs(default) == {NEW_PIN}
    assert answers(default).get("mlci_install_detected") is True

    chosen = f"mlci @ git+{GIT}@{SHA1}"
    answer = scaffold_by_old_mlci(tmp_path, monkeypatch, "legacy-answer", f"mlci_install={chosen}")
    forget_the_key(answer)
    capsys.readouterr()
    assert answer.upgrade() == 0
    assert f'mlci_install: "{chosen}"' in answer.read("mlci.yaml") and install_inputs(answer) == {chosen}
    assert "pinned by you: left as is" in capsys.readouterr().out
    # Decided while the manifest still named the old version, and recorded: a later upgrade
    # cannot mistake it for a default once the versions line up.
    assert answers(answer).get("mlci_install_detected") is False


def test_check_is_behind_when_only_the_pin_would_move(
    tmp_path: Path, tpl: Templates, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same mlci version, a newer commit of it: nothing but the detected git pin is behind."""
    installed_as(monkeypatch, new_command, InstallSource(f"mlci @ git+{GIT}@{SHA1}", "git"))
    proj = make(tmp_path, "commit", age=False)
    installed_as(monkeypatch, engine, InstallSource(f"mlci @ git+{GIT}@{SHA2}", "git"))
    proj.snapshot()
    capsys.readouterr()
    assert proj.upgrade("--check") == 1
    assert proj.unchanged_since_snapshot()
    out = capsys.readouterr().out
    assert "is behind (mlci.yaml's ci.mlci_install would follow the installed mlci); run 'mlci upgrade'" in out
    assert proj.upgrade() == 0
    assert install_inputs(proj) == {f"mlci @ git+{GIT}@{SHA2}"}
    assert proj.upgrade("--check") == 0


def test_detected_git_pin_stays_when_the_running_mlci_is_unreachable(
    tmp_path: Path, tpl: Templates, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pinned = f"mlci @ git+{GIT}@{SHA1}"
    installed_as(monkeypatch, new_command, InstallSource(pinned, "git"))
    proj = make(tmp_path, "local")
    why = "mlci runs from the local directory /src/mlci, which CI cannot reach"
    installed_as(monkeypatch, engine, index_source(__version__, why))
    before = proj.read("mlci.yaml")
    capsys.readouterr()
    assert proj.upgrade() == 0
    assert proj.read("mlci.yaml") == before and install_inputs(proj) == {pinned}
    assert f"note      ci.mlci_install left as is ({pinned}): {why}\n" in capsys.readouterr().out


def test_pin_moves_in_the_same_edit_as_a_schema_migration(
    tmp_path: Path, tpl: Templates, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rename = migrations.Migration(0, 1, renames=(("ci.python_version", "ci.python"),), note="test rename")
    monkeypatch.setattr(migrations, "MIGRATIONS", [rename])
    proj = scaffold_by_old_mlci(tmp_path, monkeypatch, "both")
    proj.edit("mlci.yaml", "schema: 1", "schema: 0  # old format")
    proj.edit("mlci.yaml", 'python: "3.11"', 'python_version: "3.12"  # our python')
    before = proj.read("mlci.yaml")
    capsys.readouterr()
    assert proj.upgrade() == 0
    expected = (
        before.replace("schema: 0", "schema: 1")
        .replace("python_version:", "python:")
        .replace(f'"{OLD_PIN}"', f'"{NEW_PIN}"')
    )
    assert proj.read("mlci.yaml") == expected
    assert install_inputs(proj) == {NEW_PIN} and 'python-version: "3.12"' in proj.read(CI)
    out = capsys.readouterr().out
    assert (
        "migrated  mlci.yaml (renamed ci.python_version -> ci.python; schema 0 -> 1 (test rename); "
        f"ci.mlci_install {OLD_PIN} -> {NEW_PIN}, with the vendored actions)\n"
    ) in out


def test_pin_that_cannot_be_edited_in_place_is_reported(
    tmp_path: Path, tpl: Templates, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = scaffold_by_old_mlci(tmp_path, monkeypatch, "block")
    proj.edit("mlci.yaml", f'mlci_install: "{OLD_PIN}"', f"mlci_install: >-\n    {OLD_PIN}")
    before = proj.read("mlci.yaml")
    capsys.readouterr()
    assert proj.upgrade() == 0
    assert proj.read("mlci.yaml") == before
    assert (
        f"ci.mlci_install left as is ({OLD_PIN}): not a one-line plain or quoted value mlci can edit in place; "
        f"set it to {NEW_PIN!r} yourself"
    ) in capsys.readouterr().out


def test_set_scalar_changes_only_that_value() -> None:
    text = "# top\nci:\n  a: 1  # one\n  mlci_install: mlci==0.0.9   # plain\n  b: 'x'\n"
    assert migrations.set_scalar(text, "ci.mlci_install", 'mlci @ git+https://h/o"r@1', "mlci.yaml") == (
        '# top\nci:\n  a: 1  # one\n  mlci_install: "mlci @ git+https://h/o\\"r@1"   # plain\n  b: \'x\'\n'
    )
    for refused in ("ci:\n  mlci_install: &p mlci==1\n  x: *p\n", "ci:\n  mlci_install: !!str mlci==1\n"):
        assert migrations.set_scalar(refused, "ci.mlci_install", "mlci==2", "mlci.yaml") is None
    assert migrations.set_scalar("ci: {}\n", "ci.mlci_install", "mlci==2", "mlci.yaml") is None


def test_render_warns_when_a_newer_mlci_renders_past_a_detected_pin(
    tmp_path: Path, tpl: Templates, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = scaffold_by_old_mlci(tmp_path, monkeypatch, "render")
    capsys.readouterr()
    assert run_cli("render", "-C", str(proj.root)) == 0
    assert (
        f"warning: the vendored actions are mlci {__version__}'s, but ci.mlci_install still installs {OLD_PIN} "
        f"(detected for mlci {OLD_VERSION}); run 'mlci upgrade' to move the pin with them\n"
    ) in capsys.readouterr().err
    assert f'mlci_install: "{OLD_PIN}"' in proj.read("mlci.yaml")  # render renders what mlci.yaml says
    # A pin the user chose is theirs: no warning.
    chosen = scaffold_by_old_mlci(tmp_path, monkeypatch, "render-chosen", f"mlci_install={OLD_PIN}")
    capsys.readouterr()
    assert run_cli("render", "-C", str(chosen.root)) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_index_pin_moved_by_an_mlci_not_from_an_index_says_what_ci_needs() -> None:
    from mlci.install_source import index_source
    from mlci.upgrade.pin import plan_pin

    answers = {"mlci_install": "mlci==0.1.0", "mlci_install_detected": True, "mlci_version": "0.1.0"}

    def plan(from_index: bool) -> tuple[str | None, list[str]]:
        decided = plan_pin(
            answers, "0.1.0", "mlci==0.1.0", "vendored", "0.2.0", lambda: index_source("0.2.0"), lambda: from_index
        )
        return decided.new, decided.notes

    assert plan(True) == ("mlci==0.2.0", [])
    new, notes = plan(False)  # e.g. a git checkout of mlci 0.2.0 that no index serves yet
    assert new == "mlci==0.2.0"
    assert notes == [
        "ci.mlci_install moves to mlci==0.2.0, but the mlci running this upgrade was not installed from a "
        "package index: make sure mlci==0.2.0 is on yours, or set ci.mlci_install to a source CI can reach"
    ]
