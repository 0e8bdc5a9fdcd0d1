"""`.mlci/manifest.json` is untrusted input: validated whole, confined to the files mlci renders.

A pull request can edit the manifest like any other file; `mlci upgrade` and `mlci render`
must never be steered by it outside the managed set (no `../victim.txt`, no team file, no
write through a symlink leaving the project), and a malformed manifest is one clear line,
exit 2, never a traceback. Also here: the conflict markers, BOM and downgrade rules of a
resolved upgrade (issue 9 items 8-10).

One project is made by `mlci new` per module and copied for each test (no re-render).
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from upgrade_kit import CI, CI_TEMPLATE, OLD_VERSION, Project, Templates, files_of

from mlci import __version__
from mlci.errors import ConfigError, UsageError
from mlci.manifest import MANIFEST_PATH, load_manifest, sha256
from mlci.paths import path_problem
from mlci.upgrade.engine import plan_upgrade
from mlci.upgrade.merge import TextStyle, conflict_marker, normalise

RESTORE = "restore .mlci/manifest.json from git (it is never edited by hand)"


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project `mlci new` made once for the module, its manifest aged to an older mlci."""
    parent = tmp_path_factory.mktemp("seed")
    assert run_cli("new", "churn", "--defaults", "--no-git", "--output-dir", str(parent)) == 0
    project = Project(parent / "churn")
    project.age()
    return project.root


@pytest.fixture
def proj(seed: Path, tmp_path: Path) -> Project:
    root = tmp_path / "work" / "churn"
    shutil.copytree(seed, root, symlinks=True)
    return Project(root)


@pytest.fixture
def bare(seed: Path, tmp_path: Path) -> Project:
    """Only the seed's manifest, for tests that load it and render nothing."""
    (tmp_path / ".mlci").mkdir()
    shutil.copy(seed / MANIFEST_PATH, tmp_path / MANIFEST_PATH)
    return Project(tmp_path)


@pytest.fixture
def tpl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Templates]:
    yield Templates(tmp_path / "templates", monkeypatch)


def write_manifest(proj: Project, data: dict[str, Any]) -> None:
    (proj.root / MANIFEST_PATH).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def mlci(command: str, root: Path) -> int:
    """`mlci upgrade DIR` or `mlci render -C DIR`, in-process."""
    return run_cli(command, str(root)) if command == "upgrade" else run_cli(command, "-C", str(root))


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def claim(proj: Project, section: str, path: str, base: str = "") -> None:
    """Edit the manifest as a hostile pull request would: `path` recorded in `section`."""
    data = proj.manifest
    if section == "managed":
        data["managed"][path] = {"sha256": sha256(base.encode("utf-8")), "base": base}  # type: ignore[index]
    elif section == "pending":
        data["pending"] = {path: {"removed": True}}
    elif section == "opted_out":
        data["opted_out"] = [path]
    else:
        data["seeded"][path] = sha256(b"")  # type: ignore[index]
    write_manifest(proj, data)


# ------------------------------------------------------------------ item 1: confined to the managed set


@pytest.mark.parametrize("command", ["upgrade", "render"])
def test_a_manifest_entry_outside_the_project_deletes_nothing(
    proj: Project, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = proj.root.parent / "victim.txt"
    victim.write_text("keep me\n", encoding="utf-8")
    claim(proj, "managed", "../victim.txt", "keep me\n")  # recorded as unedited: "no longer generated"
    proj.snapshot()
    assert mlci(command, proj.root) == 2
    assert victim.read_text(encoding="utf-8") == "keep me\n"
    assert proj.unchanged_since_snapshot()
    err = one_error_line(capsys)
    assert err.endswith(
        f'{proj.root / MANIFEST_PATH}: managed["../victim.txt"] is not a normalised relative path '
        f"(an empty, '.' or '..' segment); {RESTORE}"
    )


@pytest.mark.parametrize("command", ["upgrade", "render"])
def test_a_manifest_entry_naming_the_teams_own_code_deletes_nothing(
    proj: Project, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    train = proj.root / "src/churn/train.py"
    claim(proj, "managed", "src/churn/train.py", train.read_text(encoding="utf-8"))
    proj.snapshot()
    assert mlci(command, proj.root) == 2
    assert proj.unchanged_since_snapshot()
    assert one_error_line(capsys).endswith(
        f'managed["src/churn/train.py"] is not a file mlci generates (CI files, hook config, schemas); {RESTORE}'
    )


@pytest.mark.parametrize("section", ["managed", "pending", "opted_out", "seeded"])
@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../victim.txt", "is not a normalised relative path"),
        (".github/workflows/../../src/churn/train.py", "is not a normalised relative path"),
        (".github/./workflows/ci.yml", "is not a normalised relative path"),
        (".github//workflows/ci.yml", "is not a normalised relative path"),
        ("/etc/passwd", "is an absolute path"),
        ("C:/Windows/win.ini", "is an absolute path"),
        (".github\\workflows\\ci.yml", "holds a backslash"),
        (".github/workflows/ci.yml\0", "holds a control character"),
        (".github/workflows/ci\n.yml", "holds a control character"),
        ("", "is an empty path"),
    ],
)
def test_every_manifest_path_is_a_normalised_relative_path(
    bare: Project, section: str, path: str, problem: str
) -> None:
    claim(bare, section, path)
    with pytest.raises(ConfigError) as caught:
        load_manifest(bare.root)
    where = "opted_out[0]" if section == "opted_out" else f"{section}[{json.dumps(path)}]"
    assert caught.value.problem.startswith(f"{where} {problem}")
    assert caught.value.problem.endswith(RESTORE) and caught.value.path == str(bare.root / MANIFEST_PATH)


@pytest.mark.parametrize("section", ["managed", "pending", "opted_out"])
@pytest.mark.parametrize("path", ["src/churn/train.py", "mlci.yaml", "Jenkinsfile.local", ".mlci/manifest.json"])
def test_only_files_mlci_renders_can_be_managed_pending_or_opted_out(bare: Project, section: str, path: str) -> None:
    claim(bare, section, path)
    with pytest.raises(ConfigError, match="is not a file mlci generates"):
        load_manifest(bare.root)


def test_a_seeded_path_may_be_any_team_file(bare: Project) -> None:
    claim(bare, "seeded", "src/churn/new_module.py")
    assert "src/churn/new_module.py" in load_manifest(bare.root).seeded


def test_path_problem_accepts_what_mlci_writes(bare: Project) -> None:
    assert all(path_problem(path) is None for path in [*bare.manifest["managed"], *bare.manifest["seeded"]])  # type: ignore[misc]


def move_out(proj: Project, folder: str) -> Path:
    """Replace `folder` of the project with a symlink to a copy outside it; returns the copy."""
    outside = proj.root.parent.parent / "elsewhere"
    shutil.move(str(proj.root / folder), outside)
    (proj.root / folder).symlink_to(outside, target_is_directory=True)
    return outside


@pytest.mark.parametrize("command", ["upgrade", "render"])
@pytest.mark.parametrize("where", ["outside", "inside"])
def test_no_write_goes_through_a_symlink(
    proj: Project, command: str, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Wherever the link points: one inside the project would alias another of its files."""
    proj.edit("mlci.yaml", 'python: "3.11"', 'python: "3.12"')  # ci.yml re-renders: a write under .github/
    if where == "outside":
        target = move_out(proj, ".github")
    else:
        target = proj.root / "ci-config"
        shutil.move(str(proj.root / ".github"), target)
        (proj.root / ".github").symlink_to("ci-config", target_is_directory=True)
    before = files_of(target)
    proj.snapshot()
    assert mlci(command, proj.root) == 2
    assert files_of(target) == before and proj.unchanged_since_snapshot()
    err = one_error_line(capsys)
    assert err.startswith(f"mlci: error: {proj.root / '.github'}: is a symlink (to {target.resolve()}) on the way to .")
    assert err.endswith(", and mlci never writes or deletes through a symlink: replace it with a real directory")


@pytest.mark.parametrize("command", ["upgrade", "render"])
def test_a_manifest_entry_through_a_linked_directory_never_reaches_team_code(
    proj: Project, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`.github/x -> ../src/churn` makes `.github/x/train.py` a "managed" path that is the team's train.py."""
    train = proj.root / "src/churn/train.py"
    team_code = train.read_bytes()
    (proj.root / ".github/x").symlink_to("../src/churn", target_is_directory=True)
    claim(proj, "managed", ".github/x/train.py", team_code.decode("utf-8"))  # unedited: "no longer generated"
    assert mlci(command, proj.root) == 2
    assert train.read_bytes() == team_code
    assert one_error_line(capsys).endswith(
        f"{proj.root / '.github/x'}: is a symlink (to {train.parent.resolve()}) on the way to .github/x/train.py, "
        "and mlci never writes or deletes through a symlink: replace it with a real directory"
    )


def test_the_project_root_itself_may_be_a_symlink(proj: Project, tmp_path: Path) -> None:
    linked = tmp_path / "linked-checkout"
    linked.symlink_to(proj.root, target_is_directory=True)
    assert plan_upgrade(linked).conflicts == []


# ------------------------------------------------------------------ item 8: every marker line refuses


def test_a_conflict_resolved_by_deleting_only_the_first_marker_is_refused(
    proj: Project, tpl: Templates, capsys: pytest.CaptureFixture[str]
) -> None:
    proj.edit(CI, "timeout-minutes: 15", "timeout-minutes: 45")
    tpl.replace(CI_TEMPLATE, "timeout-minutes: <%= job.timeout_minutes %>", "timeout-minutes: 115")
    assert proj.upgrade() == 1
    text = proj.read(CI)
    lines = text.splitlines(True)
    first = next(i for i, line in enumerate(lines) if line.startswith("<<<<<<< "))
    (proj.root / CI).write_text("".join(lines[:first] + lines[first + 1 :]), encoding="utf-8")
    proj.snapshot()
    capsys.readouterr()
    assert proj.upgrade() == 1  # still a conflict: nothing written, the manifest still pending
    assert proj.unchanged_since_snapshot() and CI in proj.manifest["pending"]  # type: ignore[operator]
    out = capsys.readouterr().out
    assert (
        f"conflict marker '||||||| base (mlci {OLD_VERSION})' from an earlier merge left at line {first + 2}; "
        "finish resolving it and run 'mlci upgrade' again"
    ) in out
    assert CI in out


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("a\n<<<<<<< ours (your edit)\nb\n", (2, "<<<<<<< ours (your edit)")),
        ("a\n||||||| base (mlci 0.0.9)\n", (2, "||||||| base (mlci 0.0.9)")),
        ("a\r\nb\r\n=======\r\n", (3, "=======")),  # CRLF: `$` must not need a bare LF
        ("\ufeff>>>>>>> mlci 0.2.0\n", (1, ">>>>>>> mlci 0.2.0")),  # after a BOM
        ("a\n======== b\n# =======\n<<<<<<<x\n", None),  # near misses are text
    ],
)
def test_conflict_marker_finds_any_one_marker_line(text: str, found: tuple[int, str] | None) -> None:
    assert conflict_marker(text) == found


# ------------------------------------------------------------------ item 9: a BOM is kept, not merged


def test_a_bom_is_kept_and_the_text_merged_cleanly(proj: Project, tpl: Templates) -> None:
    proj.edit(CI, "timeout-minutes: 15", "timeout-minutes: 45")
    ci = proj.root / CI
    ci.write_bytes(b"\xef\xbb\xbf" + ci.read_bytes())  # an editor saved it with a BOM
    tpl.replace(CI_TEMPLATE, "# Generated by mlci", "# Rendered by mlci")  # the new mlci changes line 1
    assert proj.upgrade() == 0
    data = ci.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf# Rendered by mlci") and data.count(b"\xef\xbb\xbf") == 1
    assert "timeout-minutes: 45" in data.decode("utf-8") and "pending" not in proj.manifest
    assert not proj.manifest["managed"][CI]["base"].startswith("\ufeff")  # type: ignore[index]


def test_text_style_keeps_a_bom() -> None:
    text = "\ufeffa\r\nb"
    style = TextStyle.of(text)
    assert style == TextStyle(newline="\r\n", final_newline=False, bom=True)
    assert normalise(text) == "a\nb\n" and style.apply(normalise(text)) == text
    assert TextStyle.of("a\n").apply("a\n") == "a\n"


# ------------------------------------------------------------------ item 10: render refuses a downgrade


def test_render_refuses_a_project_a_newer_mlci_generated_as_upgrade_does(
    proj: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    proj.age("99.0.0")
    proj.edit("mlci.yaml", 'python: "3.11"', 'python: "3.12"')  # something to render
    proj.snapshot()
    capsys.readouterr()
    assert mlci("render", proj.root) == 2
    render_line = one_error_line(capsys)
    assert proj.unchanged_since_snapshot()
    assert mlci("upgrade", proj.root) == 2
    assert one_error_line(capsys) == render_line
    assert render_line.endswith(
        f"{proj.root / MANIFEST_PATH}: generated by mlci 99.0.0, newer than the installed "
        f"{__version__}; "
        "downgrades are not supported: install mlci>=99.0.0"
    )


# ------------------------------------------------------------------ item 12: the manifest's structure


def _managed(data: dict[str, Any]) -> dict[str, Any]:
    managed: dict[str, Any] = data["managed"]
    return managed


MALFORMED = [
    (lambda d: _managed(d)[CI].pop("base"), f'managed["{CI}"].base is missing'),
    (lambda d: _managed(d)[CI].pop("sha256"), f'managed["{CI}"].sha256 is missing, not a \'sha256:<64 hex'),
    (lambda d: _managed(d).__setitem__(CI, "text"), f'managed["{CI}"] is a string, not a JSON object'),
    (lambda d: _managed(d)[CI].__setitem__("base", 7), f'managed["{CI}"].base is a number, not a string'),
    (lambda d: _managed(d)[CI].__setitem__("sha256", "md5:x"), f'managed["{CI}"].sha256 is a string, not a'),
    (lambda d: _managed(d)[CI].__setitem__("base", "\ud800"), f'managed["{CI}"].base holds an unpaired surrogate'),
    (lambda d: d.__setitem__("managed", []), "managed is a list, not a JSON object"),
    (lambda d: d.__setitem__("seeded", ["README.md"]), "seeded is a list, not a JSON object"),
    (lambda d: d["seeded"].__setitem__("README.md", None), 'seeded["README.md"] is missing, not a'),
    (lambda d: d.__setitem__("opted_out", {CI: True}), "opted_out is an object, not a list of paths"),
    (lambda d: d.__setitem__("opted_out", [3]), "opted_out[0] is a number, not a path"),
    (lambda d: d.__setitem__("pending", {CI: "theirs"}), f'pending["{CI}"] is a string, not a JSON object'),
    (lambda d: d.__setitem__("pending", {CI: {}}), f'pending["{CI}"] must be {{"theirs": "<text>"}} or'),
    (lambda d: d.__setitem__("pending", {CI: {"removed": "yes"}}), f'pending["{CI}"] must be'),
    (lambda d: d.__setitem__("pending", {CI: {"theirs": None}}), f'pending["{CI}"].theirs is missing'),
    (lambda d: d.__setitem__("answers", ["name"]), "answers is a list, not a JSON object"),
    (lambda d: d["answers"].__setitem__("name", {"x": 1}), 'answers["name"] is an object, not a string or'),
    (lambda d: d.__setitem__("mlci_version", 1), "mlci_version is a number, not a string"),
    (lambda d: d.__setitem__("mlci_version", "latest"), "mlci_version 'latest' is not a version"),
    (lambda d: d.__setitem__("format", True), "format is true/false, not the number 1"),
    (lambda d: d.pop("format"), "format is missing"),
    (lambda d: d.__setitem__("answers_digest", 0), "answers_digest is a number, not a string"),
]


@pytest.mark.parametrize(("mutate", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_a_malformed_manifest_names_the_key_path_and_the_fix(bare: Project, mutate: Any, message: str) -> None:
    data = bare.manifest
    mutate(data)
    write_manifest(bare, data)
    with pytest.raises(ConfigError) as caught:
        load_manifest(bare.root)
    assert caught.value.problem.startswith(message), caught.value.problem
    assert caught.value.problem.endswith(RESTORE)
    assert str(caught.value).startswith(f"{bare.root / MANIFEST_PATH}: ")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"format": 1, "mlci_version": "0.1.0\xff"}', ":1: is not UTF-8 text (byte 36 is 0xff); "),
        (b"[" * 100_000, ": invalid JSON (nested too deeply); "),
        (b'{"format": 1' + b"1" * 5000 + b"}", ": invalid JSON (holds a number Python refuses); "),
        (b'{"format": 1,', ":1: invalid JSON (Expecting property name enclosed in double quotes); "),
    ],
    ids=["non-utf8", "deep", "huge-int", "truncated"],
)
def test_unreadable_manifest_bytes_are_one_line_exit_2(
    proj: Project, raw: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (proj.root / MANIFEST_PATH).write_bytes(raw)
    assert mlci("upgrade", proj.root) == 2
    assert one_error_line(capsys).endswith(f"{proj.root / MANIFEST_PATH}{message}{RESTORE}")


# A JSON value of any shape: what a mutation puts in place of one part of a real manifest.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["\ud800", "../x", ".github/x.yml", "sha256:" + "0" * 64, "99.0.0", "0.0.1", "{{", "<%= x %>"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated(draw: st.DrawFn, original: dict[str, Any]) -> dict[str, Any]:
    """The manifest with one to three parts replaced, deleted or added, anywhere in its tree."""
    data = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        parent: Any = data
        while True:
            keys = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = parent[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                parent = child
                continue
            operation = draw(st.sampled_from(["replace", "delete", "add"]))
            if operation == "replace":
                parent[key] = draw(JSON_VALUES)
            elif operation == "delete":
                del parent[key]
            elif isinstance(parent, dict):
                parent[draw(st.sampled_from([CI, "../victim.txt", "pending", "opted_out", "x"]))] = draw(JSON_VALUES)
            else:
                parent.append(draw(JSON_VALUES))
            break
    return data


@pytest.fixture(scope="module")
def fuzz_root(seed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "churn"
    shutil.copytree(seed, root)
    data = json.loads((root / MANIFEST_PATH).read_text(encoding="utf-8"))
    # Every optional section present, so mutations reach them too.
    data["opted_out"] = [".github/workflows/cd.yml"]
    data["pending"] = {CI: {"theirs": data["managed"][CI]["base"]}, ".pre-commit-config.yaml": {"removed": True}}
    # The bases are long texts: keep the tree small so mutations land on structure, not in text.
    for entry in data["managed"].values():
        entry["base"] = entry["base"][:200]
        entry["sha256"] = sha256(entry["base"].encode("utf-8"))
    (root / MANIFEST_PATH).write_text(json.dumps(data), encoding="utf-8")
    return root


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_structurally_mutated_manifests_only_ever_raise_config_or_usage_errors(
    fuzz_root: Path, data: st.DataObject
) -> None:
    original = json.loads((fuzz_root / MANIFEST_PATH).read_text(encoding="utf-8"))
    manifest = data.draw(mutated(original))
    (fuzz_root / MANIFEST_PATH).write_text(json.dumps(manifest), encoding="utf-8")
    try:
        load_manifest(fuzz_root)
        event("loaded")
        plan_upgrade(fuzz_root)
        event("planned")
    except (ConfigError, UsageError) as error:
        event(f"refused: {type(error).__name__}")
        assert "\n" not in str(error), str(error)
    finally:
        (fuzz_root / MANIFEST_PATH).write_text(json.dumps(original), encoding="utf-8")
