"""Answers to `mlci new` cannot inject YAML or TOML, hostile names are refused, and --force never
writes through a symlink. Everything here runs in-process on small inputs (issue 9: 2, 4, 14)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_cli, scaffold
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlci import __version__
from mlci.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 has no TOML reader: the TOML halves of these tests need 3.11+
    tomllib = None

# Bounded and derandomized: the same examples on every run, so the suite is never flaky.
PROPERTY = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# What YAML and TOML readers treat specially, mixed into arbitrary text so examples hit it often.
TRICKY = st.sampled_from(
    ["\n", "\r", "\x85", "\u2028", "\x7f", "\x00", "\t", "\ufeff", ":", ": ", " #", "'", '"', "\\", "{", "[", "&a",
     "*a", "!!python/object", "- ", "---", "...", "${{ x }}", "on", "null", "3.11", "vendored", "😀", "é", "\u202e"]
)  # fmt: skip
TEXT = st.lists(st.one_of(TRICKY, st.text(max_size=4)), max_size=6).map("".join)


def emitted(template_answers: dict[str, Any]) -> dict[str, bytes]:
    from mlci.templates import render_tree, shipped_dir

    wanted = ("mlci.yaml", "pyproject.toml")
    return render_tree(shipped_dir("scaffold"), template_answers, keep=lambda path: path in wanted)


# ---------------------------------------------------------------- 2. YAML injection


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (  # the issue's own example
            'actions=vendored\n  mlci_install: "evil-mlci==6.6.6"',
            "--data actions 'vendored\\n  mlci_install: \"evil-mlci==6.6.6\"' is not one of vendored, remote; "
            "choose one of them",
        ),
        (
            "actions=vendored\n  runs_on: attacker-box",
            "--data actions 'vendored\\n  runs_on: attacker-box' is not one of vendored, remote; choose one of them",
        ),
        ("actions=Vendored", "--data actions 'Vendored' is not one of vendored, remote; choose one of them"),
        (
            "description=churn\n  evil: 1",
            "--data description 'churn\\n  evil: 1' spans more than one line; give it as one line",
        ),
        ("description=a\u2028b", "--data description 'a\\u2028b' spans more than one line; give it as one line"),
        ("author=Ada\x1b[31m", "--data author 'Ada\\x1b[31m' contains the control character U+001B; remove it"),
        (
            "author=evil\u202etxt.exe",
            "--data author 'evil\\u202etxt.exe' contains the control character U+202E; remove it",
        ),
        (
            "retrain_cron=0 3 * * 1\n  runs_on: x",
            "--data retrain_cron: 'ci.retrain_cron' is '0 3 * * 1\\n  runs_on: x', which does not match "
            "^[0-9*/,\\-A-Za-z?]+( [0-9*/,\\-A-Za-z?]+){4}$",
        ),
    ],
    ids=["issue-example", "runs-on", "case", "newline", "line-separator", "escape", "bidi", "ci-answer"],
)
def test_answers_that_would_inject_yaml_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: str, message: str
) -> None:
    assert scaffold("inject-model", tmp_path, "--data", answer) == 2
    assert capsys.readouterr().err == f"mlci: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


@PROPERTY
@given(
    answers=st.dictionaries(
        st.sampled_from(
            ["description", "author", "actions", "mlci_install", "retrain_cron", "model_name", "python_version"]
        ),
        TEXT,
        max_size=4,
    )
)
def test_any_text_answer_loads_back_exactly_or_is_refused(answers: dict[str, str]) -> None:
    """For arbitrary text answers, mlci.yaml and pyproject.toml read back exactly the answered
    values and nothing else; an answer that cannot be written so is refused with UsageError."""
    from mlci.commands.new import collect_answers
    from mlci.install_source import index_source

    data = {"author": "Ada", "mlci_install": f"mlci=={__version__}", **answers}
    try:
        collected = collect_answers("prop-model", None, None, data, False, install=index_source(__version__))
    except UsageError:
        return
    files = emitted(collected)
    config = yaml.safe_load(files["mlci.yaml"].decode("utf-8"))
    assert set(config) == {"schema", "project", "target", "ci", "data", "data_test", "train", "register"} | {
        "deploy",
        "lint",
        "test",
    }
    assert config["project"] == {
        "name": "prop-model",
        "package": "prop_model",
        "description": data.get("description", collected["description"]),
    }
    ci_keys = {key: data[key] for key in ("mlci_install", "retrain_cron") if key in data}
    assert config["ci"] == {
        "provider": "github",
        "python": collected["python_version"],
        "default_branch": "main",
        "actions": data.get("actions", "vendored"),
        **ci_keys,
    }
    assert config["register"]["model_name"] == data.get("model_name", "prop_model")
    if tomllib is None:
        return
    pyproject = tomllib.loads(files["pyproject.toml"].decode("utf-8"))["project"]
    assert (pyproject["description"], pyproject["authors"]) == (
        config["project"]["description"],
        [{"name": data["author"]}],
    )


@PROPERTY
@given(text=st.one_of(TEXT, st.text(max_size=30)))
def test_emitters_write_any_text_as_exactly_that_value(text: str) -> None:
    from mlci.templates import toml_str, yaml_scalar, yaml_str

    for emit in (yaml_str, yaml_scalar):
        written = emit(text)
        assert "\n" not in written and yaml.safe_load(f"key: {written}\nnext: 1") == {"key": text, "next": 1}
    if tomllib is not None:
        assert tomllib.loads(f"key = {toml_str(text)}\nnext = 1") == {"key": text, "next": 1}


# ---------------------------------------------------------------- 14. hostile names and text


def test_text_outside_the_basic_multilingual_plane_is_valid_toml(tmp_path: Path) -> None:
    if tomllib is None:
        pytest.skip("no tomllib before Python 3.11")
    description, author = "Predicts churn 📉 for 🇪🇺 shops", "Ada 😀 Lovelace"
    assert scaffold("emoji-model", tmp_path, "--data", f"description={description}", "--data", f"author={author}") == 0
    text = (tmp_path / "emoji-model" / "pyproject.toml").read_text(encoding="utf-8")
    project = tomllib.loads(text)["project"]
    assert (project["description"], project["authors"]) == (description, [{"name": author}])
    assert f'description = "{description}"' in text  # written as itself, not as escapes
    config = yaml.safe_load((tmp_path / "emoji-model" / "mlci.yaml").read_text(encoding="utf-8"))
    assert config["project"]["description"] == description


UNSUPPORTED = "is not a supported Python; use 3.10 or newer, e.g. 3.11"
ARABIC_INDIC_11, FULLWIDTH_11, FULLWIDTH_3 = "\u0661\u0661", "\uff11\uff11", "\uff13"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (f"python_version=3.{ARABIC_INDIC_11}", f"--data python_version '3.{ARABIC_INDIC_11}' {UNSUPPORTED}"),
        (f"python_version=3.{FULLWIDTH_11}", f"--data python_version '3.{FULLWIDTH_11}' {UNSUPPORTED}"),
        (f"python_version={FULLWIDTH_3}.11", f"--data python_version '{FULLWIDTH_3}.11' {UNSUPPORTED}"),
        ("python_version=3.11\n", f"--data python_version '3.11\\n' {UNSUPPORTED}"),
        (
            "package=json",
            "--data package: package 'json' would shadow Python's standard-library module 'json'; "
            "choose another name, e.g. --data package=json_model",
        ),
        (
            "package=sqlalchemy",
            "--data package: package 'sqlalchemy' would shadow the 'sqlalchemy' module the pipeline imports; "
            "choose another name, e.g. --data package=sqlalchemy_model",
        ),
        (
            "package=com7",
            "--data package: package 'com7' is a device name Windows reserves, so src/com7/ could not be checked "
            "out there; choose another name, e.g. --data package=com7_model",
        ),
        (
            "package=caf\u00e9",
            "--data package: package 'caf\u00e9' is not a lowercase Python identifier; e.g. 'churn_model'",
        ),
    ],
    ids=[
        "arabic-indic",
        "fullwidth-minor",
        "fullwidth-major",
        "trailing-newline",
        "stdlib",
        "dependency",
        "windows",
        "non-ascii",
    ],
)
def test_hostile_names_and_versions_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: str, message: str
) -> None:
    assert scaffold("hostile-model", tmp_path, "--data", answer) == 2
    assert capsys.readouterr().err == f"mlci: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_windows_reserved_names_match_any_case_and_extension() -> None:
    from mlci.answers import is_windows_reserved

    assert all(is_windows_reserved(name) for name in ("con", "CON", "Nul.txt", "aux.tar.gz", "com9", "lpt1 .md"))
    assert not any(is_windows_reserved(name) for name in ("console", "com10", "lpt0", "null", "con-model", "auxiliary"))


# ---------------------------------------------------------------- 4. --force and symlinks


@pytest.fixture
def existing(tmp_path: Path) -> Path:
    """An existing, non-empty project directory (what --force writes into) and a directory beside it."""
    project = tmp_path / "out" / "link-model"
    project.mkdir(parents=True)
    (project / "notes.txt").write_text("mine\n")
    (tmp_path / "elsewhere").mkdir()
    return project


def contents(root: Path) -> dict[str, bytes | str]:
    return {
        p.relative_to(root).as_posix(): (os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "/")
        for p in root.rglob("*")
    }


@pytest.mark.parametrize(
    ("link", "points_to", "written", "kind"),
    [
        (".github", "../../elsewhere", ".github/workflows/ci.yml", "directory"),
        ("src", "tests", "src/link_model/__init__.py", "directory"),  # inside the project: files would alias
        ("README.md", "../../elsewhere/readme.md", "README.md", "file"),  # dangling, outside
        ("mlci.yaml", "notes.txt", "mlci.yaml", "file"),
    ],
    ids=["dir-outside", "dir-inside", "file-outside", "file-inside"],
)
def test_force_never_writes_through_a_symlink(
    existing: Path, capsys: pytest.CaptureFixture[str], link: str, points_to: str, written: str, kind: str
) -> None:
    (existing / link).symlink_to(points_to)
    before, beside = contents(existing), contents(existing.parents[1])
    assert scaffold("link-model", existing.parent, "--force", "--overwrite", "mlci.yaml") == 2
    resolved = (existing / link).resolve()
    assert capsys.readouterr().err == (
        f"mlci: error: {existing / link}: is a symlink (to {resolved}) on the way to {written}, and mlci never "
        f"writes or deletes through a symlink: replace it with a real {kind} or choose another --output-dir\n"
    )
    assert contents(existing) == before and contents(existing.parents[1]) == beside  # nothing written anywhere


def test_force_refuses_a_file_where_a_directory_belongs(existing: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (existing / ".github").write_text("not a directory\n")
    before = contents(existing)
    assert scaffold("link-model", existing.parent, "--force") == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {existing / '.github'}: is a file where mlci writes a directory (on the way to "
        ".github/workflows/ci.yml): move it away or choose another --output-dir\n"
    )
    assert contents(existing) == before


def test_the_writer_itself_never_follows_a_symlink(existing: Path, tmp_path: Path) -> None:
    """A link that appears after the check (a race) still cannot steer the write out of the project."""
    from mlci.fs import NO_FOLLOW_DIRS, replace_no_follow

    if not NO_FOLLOW_DIRS:
        pytest.skip("no O_NOFOLLOW/dir_fd on this platform: the up-front check is the guard")
    (existing / ".github").symlink_to(tmp_path / "elsewhere")
    staged = tmp_path / "ci.yml"
    staged.write_text("on: push\n")
    with pytest.raises(UsageError, match=r"^refusing to write \.github/workflows/ci\.yml: \.github changed into a"):
        replace_no_follow(staged, existing, ".github/workflows/ci.yml")
    assert list((tmp_path / "elsewhere").iterdir()) == [] and staged.is_file()
    replace_no_follow(staged, existing, "sub/dir/ci.yml")  # real directories are made and written into
    assert (existing / "sub" / "dir" / "ci.yml").read_text() == "on: push\n"


def test_force_writes_beside_unrelated_symlinks(existing: Path) -> None:
    (existing / "shared").symlink_to("../../elsewhere")  # not on the way to any file mlci writes
    assert run_cli("new", "link-model", "--defaults", "--no-git", "--force", "--output-dir", str(existing.parent)) == 0
    assert (existing / "mlci.yaml").is_file() and list((existing.parents[1] / "elsewhere").iterdir()) == []
