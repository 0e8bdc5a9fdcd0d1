"""`mlci new`: the rendered project, its manifest, git, and every bad input refused cleanly."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, scaffold

from mlci import __version__, providers, targets
from mlci.config import load_project
from mlci.templates import is_managed

VENDORED_ACTIONS = {
    f".github/actions/mlci-{name}/action.yml"
    for name in ("setup", "lint", "unit-test", "data-test", "train", "register", "deploy", "monitor")
}
EXPECTED_FILES = VENDORED_ACTIONS | {
    ".github/workflows/ci.yml",
    ".github/workflows/cd.yml",
    ".github/workflows/mlci-upgrade.yml",
    ".gitignore",
    ".mlci/contract.schema.json",
    ".mlci/manifest.json",
    ".mlci/mlci.schema.json",
    ".pre-commit-config.yaml",
    "README.md",
    "data/README.md",
    "data/contract.yml",
    "data/holdout.csv",
    "data/reference_profile.json",
    "data/train.csv",
    "mlci.yaml",
    "pyproject.toml",
    "src/churn_model/__init__.py",
    "src/churn_model/features.py",
    "src/churn_model/train.py",
    "tests/conftest.py",
    "tests/test_data.py",
    "tests/test_features.py",
    "tests/test_train.py",
}


def files_under(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def test_new_renders_the_whole_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("new", "churn-model", "--defaults", "--output-dir", str(tmp_path)) == 0
    project = tmp_path / "churn-model"
    assert files_under(project) == EXPECTED_FILES  # nothing missing, nothing unexpected
    out = capsys.readouterr().out
    assert f"Created {project} (" in out and "git repository initialised with an initial commit" in out
    # mlci.yaml is valid and describes this project.
    config = load_project(project).config
    assert (config.project.name, config.project.package, config.model_name) == (
        "churn-model",
        "churn_model",
        "churn_model",
    )
    assert config.train.entrypoint == "churn_model.train:train"
    # No template syntax survives rendering.
    for path in files_under(project):
        text = (project / path).read_bytes()
        assert b"<%" not in text and b"[[package]]" not in path.encode(), path
    # The generated workflow is secure by default: pinned actions, no credentials kept.
    workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
    assert workflow["permissions"] == {}
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    for step in steps:
        if "uses" in step and not step["uses"].startswith("$/"):  # $/: this repository, same commit
            ref = step["uses"].split("@")[1]
            assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref), step["uses"]
    assert all(
        s["with"]["persist-credentials"] is False for s in steps if s.get("uses", "").startswith("actions/checkout")
    )


def test_git_initial_commit_holds_every_file(tmp_path: Path) -> None:
    assert run_cli("new", "churn-model", "--defaults", "--output-dir", str(tmp_path)) == 0
    project = tmp_path / "churn-model"
    listed = subprocess.run(["git", "ls-files"], cwd=project, capture_output=True, text=True, check=True).stdout.split()
    assert set(listed) == files_under(project)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True, check=True)
    assert status.stdout == ""


def test_manifest_records_answers_and_managed_bases(tmp_path: Path) -> None:
    assert scaffold("churn-model", tmp_path, "--data", "author=Ada Lovelace") == 0
    project = tmp_path / "churn-model"
    manifest = json.loads((project / ".mlci/manifest.json").read_text())
    assert manifest["format"] == 1 and manifest["mlci_version"] == __version__
    assert manifest["answers"]["author"] == "Ada Lovelace" and manifest["answers"]["package"] == "churn_model"
    answers_json = json.dumps(manifest["answers"], sort_keys=True, separators=(",", ":")).encode()
    assert manifest["answers_digest"] == "sha256:" + hashlib.sha256(answers_json).hexdigest()
    assert set(manifest["managed"]) == VENDORED_ACTIONS | {
        ".github/workflows/ci.yml",
        ".github/workflows/cd.yml",
        ".github/workflows/mlci-upgrade.yml",
        ".pre-commit-config.yaml",
        ".mlci/mlci.schema.json",
        ".mlci/contract.schema.json",
    }
    for path, entry in manifest["managed"].items():
        on_disk = (project / path).read_bytes()
        assert entry["base"].encode() == on_disk
        assert entry["sha256"] == "sha256:" + hashlib.sha256(on_disk).hexdigest()
    assert set(manifest["seeded"]) == files_under(project) - set(manifest["managed"]) - {".mlci/manifest.json"}
    assert all(not is_managed(p) for p in manifest["seeded"])


def test_rendered_project_is_lint_clean_and_its_tests_pass(tmp_path: Path) -> None:
    assert scaffold("churn-model", tmp_path) == 0
    project = tmp_path / "churn-model"
    for command in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        done = subprocess.run(
            [sys.executable, "-m", *command], cwd=project, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert " passed" in done.stdout


def test_hostile_description_stays_data(tmp_path: Path) -> None:
    hostile = 'Say "hi" ${{ github.event.issue.title }} $(rm -rf ~) `id` # not a comment: x'
    assert scaffold("churn-model", tmp_path, "--data", f"description={hostile}") == 0
    project = tmp_path / "churn-model"
    assert load_project(project).config.project.description == hostile
    import tomllib

    assert tomllib.loads((project / "pyproject.toml").read_text())["project"]["description"] == hostile
    assert "github.event.issue" not in (project / ".github/workflows/ci.yml").read_text()  # the answer stayed data


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "",
            "project name is empty; use lowercase letters, digits, '-' and '_', starting with a letter "
            "(e.g. 'churn-model')",
        ),
        ("a/b", "project name 'a/b' contains a path separator; give a bare name and put the location in --output-dir"),
        (
            "a\\b",
            "project name 'a\\\\b' contains a path separator; give a bare name and put the location in --output-dir",
        ),
        (
            "..",
            "project name '..' contains '..'; use lowercase letters, digits, '-' and '_', starting with a letter "
            "(e.g. 'churn-model')",
        ),
        (
            "a..b",
            "project name 'a..b' contains '..'; use lowercase letters, digits, '-' and '_', starting with a letter "
            "(e.g. 'churn-model')",
        ),
        (
            ".hidden",
            "project name '.hidden' starts with a dot, which would hide the project; use lowercase letters, "
            "digits, '-' and '_', starting with a letter (e.g. 'churn-model')",
        ),
        (
            "my model",
            "project name 'my model' contains ' ', special in YAML or a shell; use lowercase letters, digits, "
            "'-' and '_', starting with a letter (e.g. 'churn-model')",
        ),
        (
            "a:b#c",
            "project name 'a:b#c' contains '#' ':', special in YAML or a shell; use lowercase letters, digits, "
            "'-' and '_', starting with a letter (e.g. 'churn-model')",
        ),
        (
            "$(id)",
            "project name '$(id)' contains '$' '(' ')', special in YAML or a shell; use lowercase letters, "
            "digits, '-' and '_', starting with a letter (e.g. 'churn-model')",
        ),
        ("Churn", "project name 'Churn' has uppercase letters; use 'churn'"),
        (
            "1model",
            "project name '1model' is not valid; use lowercase letters, digits, '-' and '_', starting with a "
            "letter (e.g. 'churn-model')",
        ),
        (
            "model-",
            "project name 'model-' is not valid; use lowercase letters, digits, '-' and '_', starting with a "
            "letter (e.g. 'churn-model')",
        ),
        ("class", "project name 'class': package 'class' is not a lowercase Python identifier; e.g. 'churn_model'"),
        (
            "mlflow",
            "project name 'mlflow': package 'mlflow' would shadow the 'mlflow' module the pipeline imports; "
            "choose another name, e.g. --data package=mlflow_model",
        ),
        (
            "json",
            "project name 'json': package 'json' would shadow Python's standard-library module 'json'; "
            "choose another name, e.g. --data package=json_model",
        ),
        (  # installed with mlci (PyYAML): the project's src/ would be imported instead of it
            "yaml",
            "project name 'yaml': package 'yaml' would shadow the 'yaml' module the pipeline imports; "
            "choose another name, e.g. --data package=yaml_model",
        ),
        *(
            (
                reserved,
                f"project name {reserved!r} is a device name Windows reserves, so the repository could not be "
                f"checked out there; choose another, e.g. '{reserved.lower()}-model'",
            )
            for reserved in ("con", "NUL", "aux", "prn", "com1", "LPT9")
        ),
    ],
)
def test_invalid_names_are_refused_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    assert run_cli("new", name, "--defaults", "--output-dir", str(tmp_path)) == 2
    assert capsys.readouterr().err == f"mlci: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("descripton=x", "--data descripton: unknown key; did you mean 'description'?"),
        (
            "colour=x",
            "--data colour: unknown key; known keys: description, author, python_version, package, model_name, "
            "actions, mlci_repository, mlci_ref, mlci_install, retrain_cron",
        ),
        ("novalue", "--data 'novalue' is not KEY=VALUE; e.g. --data description='Churn model'"),
        ("python_version=2.7", "--data python_version '2.7' is not a supported Python; use 3.10 or newer, e.g. 3.11"),
        ("python_version=3.9", "--data python_version '3.9' is not a supported Python; use 3.10 or newer, e.g. 3.11"),
        (
            "package=Bad-Name",
            "--data package: package 'Bad-Name' is not a lowercase Python identifier; e.g. 'churn_model'",
        ),
        ("model_name=a.b.c.d", "--data model_name 'a.b.c.d' is not a model name; use 'name' or 'catalog.schema.name'"),
    ],
)
def test_bad_answers_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: str, message: str) -> None:
    assert run_cli("new", "churn-model", "--defaults", "--output-dir", str(tmp_path), "--data", data) == 2
    assert capsys.readouterr().err == f"mlci: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_databricks_target_needs_unity_catalog_model_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_cli(
            "new",
            "churn-model",
            "--defaults",
            "--target",
            "databricks",
            "--output-dir",
            str(tmp_path),
            "--data",
            "model_name=churn",
        )
        == 2
    )
    assert "on Databricks the model name must be Unity Catalog's 'catalog.schema.model'" in capsys.readouterr().err
    assert (
        run_cli("new", "churn-model", "--defaults", "--no-git", "--target", "databricks", "--output-dir", str(tmp_path))
        == 0
    )
    assert load_project(tmp_path / "churn-model").config.model_name == "main.default.churn_model"


def test_existing_non_empty_directory_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "churn-model"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    assert run_cli("new", "churn-model", "--defaults", "--output-dir", str(tmp_path)) == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {target} is not empty; choose another name or --output-dir, or pass --force\n"
    )
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert run_cli("new", "churn-model", "--defaults", "--no-git", "--force", "--output-dir", str(tmp_path)) == 0
    assert (target / "notes.txt").read_text() == "mine" and (target / "mlci.yaml").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".churn-model.mlci-")]  # no staging left


def test_empty_existing_directory_is_used(tmp_path: Path) -> None:
    (tmp_path / "churn-model").mkdir()
    assert scaffold("churn-model", tmp_path) == 0
    assert (tmp_path / "churn-model" / "mlci.yaml").is_file()


def test_prompts_only_on_a_tty(tmp_path: Path) -> None:
    from mlci.commands.new import collect_answers

    provider_question = f"CI provider ({'/'.join(providers.NAMES)})"
    asked: list[str] = []

    def ask(question: str, default: str) -> str:
        asked.append(question)
        return {"description": "Predicts churn", provider_question: "github"}.get(question, default)

    answers = collect_answers("churn-model", None, None, {}, interactive=True, ask=ask)
    assert asked == [
        "description",
        "author",
        "python version",
        provider_question,  # providers.NAMES: only what renders
        f"target ({'/'.join(targets.NAMES)})",
        "mlci install source for CI (ci.mlci_install)",
    ]
    assert answers["description"] == "Predicts churn" and answers["provider"] == "github"
    assert collect_answers("churn-model", None, None, {}, interactive=False, ask=ask)["provider"] == "github"
    # In a subprocess stdin is not a TTY: `mlci new` without --defaults must not hang on a prompt.
    done = subprocess.run(
        [sys.executable, "-m", "mlci", "new", "quiet-model", "--no-git", "--output-dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_train_module_honours_mlci_yaml_params_and_target(tmp_path: Path) -> None:
    """`python -m <package>.train` reports what `mlci train` logs once params and the label change."""
    assert scaffold("tuned-model", tmp_path) == 0
    project = tmp_path / "tuned-model"
    config = project / "mlci.yaml"
    text = config.read_text()
    assert "    C: 1.0\n" in text and "  target: malignant\n" in text
    text = text.replace("    C: 1.0\n", "    C: 0.002\n").replace("  target: malignant\n", "  target: label\n")
    config.write_text(text)
    for split in ("train", "holdout"):
        path = project / "data" / f"{split}.csv"
        path.write_text(path.read_text().replace(",malignant\n", ",label\n", 1))
    contract = project / "data" / "contract.yml"
    contract.write_text(contract.read_text().replace("{name: malignant,", "{name: label,"))
    done = subprocess.run(
        [sys.executable, "-m", "tuned_model.train"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project / "src")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = dict(line.split(": ") for line in done.stdout.strip().splitlines())
    assert run_cli("train", "-C", str(project)) == 0
    logged = json.loads((project / ".mlci" / "out" / "train.json").read_text())["details"]["metrics"]
    assert printed == {name: f"{logged[name]:.4f}" for name in ("accuracy", "roc_auc")}
    # C=0.002 regularises hard: the figures differ from the demo defaults (accuracy 0.9737).
    assert printed["accuracy"] != "0.9737"
    # The project's own tests follow mlci.yaml's label too.
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_data.py"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project / "src")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout


def test_force_refuses_files_that_differ_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert scaffold("churn-model", tmp_path) == 0
    project = tmp_path / "churn-model"
    # Re-running on an untouched project is fine: every file is identical.
    assert scaffold("churn-model", tmp_path, "--force") == 0
    assert "into the existing directory: 0 new, 0 replaced (--overwrite), " in capsys.readouterr().out
    (project / "data" / "train.csv").write_text("mine\n")
    config = project / "mlci.yaml"
    config.write_text(config.read_text().replace("C: 1.0", "C: 0.3"))
    (project / "src" / "churn_model" / "features.py").unlink()
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    assert scaffold("churn-model", tmp_path, "--force") == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {project}: 2 existing file(s) differ from what mlci new would write: data/train.csv, "
        "mlci.yaml; nothing was written. Keep them (choose another --output-dir), or replace each with "
        "--overwrite PATH\n"
    )
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before  # features.py not restored
    # A different package name would write a second package: refused too, on the same files.
    assert scaffold("churn-model", tmp_path, "--force", "--data", "package=other_pkg") == 2
    assert "mlci.yaml" in capsys.readouterr().err and not (project / "src" / "other_pkg").exists()
    # Asked per file: that file is replaced, the other differing one still refuses.
    assert scaffold("churn-model", tmp_path, "--force", "--overwrite", "data/train.csv") == 2
    assert "1 existing file(s) differ from what mlci new would write: mlci.yaml;" in capsys.readouterr().err
    assert scaffold("churn-model", tmp_path, "--overwrite", "data/train.csv", "--overwrite", "mlci.yaml") == 0
    assert "into the existing directory: 1 new, 2 replaced (--overwrite), " in capsys.readouterr().out
    assert "C: 1.0" in config.read_text() and (project / "src" / "churn_model" / "features.py").is_file()
    assert scaffold("churn-model", tmp_path, "--force", "--overwrite", "notes.txt") == 2
    assert capsys.readouterr().err == (
        "mlci: error: --overwrite notes.txt: mlci new does not write that file; name a file of the project\n"
    )


def test_force_does_not_follow_a_symlink_out_of_the_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    project = tmp_path / "out" / "churn-model"
    project.mkdir(parents=True)
    (project / "data").symlink_to(outside)
    assert scaffold("churn-model", tmp_path / "out", "--force") == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {project / 'data'}: is a symlink (to {outside.resolve()}) on the way to data/README.md, "
        "and mlci never writes or deletes through a symlink: replace it with a real directory or choose another "
        "--output-dir\n"
    )
    assert list(outside.iterdir()) == [] and [p.name for p in project.iterdir()] == ["data"]


# ---------------------------------------------------------------- where CI installs mlci from

SHA1 = "0123456789abcdef0123456789abcdef01234567"
SHA2 = "89abcdef0123456789abcdef0123456789abcdef"


def no_checkout(path: Path) -> tuple[str | None, str | None]:
    return None, None


@pytest.mark.parametrize(
    ("direct_url", "checkout", "requirement", "warned"),
    [
        (None, no_checkout, f"mlci=={__version__}", False),  # from an index: no direct_url.json
        (
            json.dumps({"url": "https://github.com/acme/mlci.git", "vcs_info": {"vcs": "git", "commit_id": SHA1}}),
            no_checkout,
            f"mlci @ git+https://github.com/acme/mlci.git@{SHA1}",
            False,
        ),
        (  # a token in the URL is never written into mlci.yaml
            json.dumps({"url": "https://x:tok@github.com/acme/mlci", "vcs_info": {"vcs": "git", "commit_id": SHA1}}),
            no_checkout,
            f"mlci=={__version__}",
            True,
        ),
        (
            json.dumps({"url": "https://files.example/mlci-0.1.0.tar.gz", "archive_info": {}}),
            no_checkout,
            "mlci @ https://files.example/mlci-0.1.0.tar.gz",
            False,
        ),
        (
            json.dumps({"url": "file:///src/mlci", "dir_info": {"editable": True}}),
            lambda path: ("https://github.com/acme/mlci.git", SHA2) if path == Path("/src/mlci") else (None, None),
            f"mlci @ git+https://github.com/acme/mlci.git@{SHA2}",
            False,
        ),
        (  # the ssh form of a remote: CI has no key, the https URL of the same repository works
            json.dumps({"url": "file:///src/mlci", "dir_info": {}}),
            lambda path: ("git@github.com:acme/mlci.git", SHA2),
            f"mlci @ git+https://github.com/acme/mlci.git@{SHA2}",
            False,
        ),
        (
            json.dumps({"url": "file:///src/mlci", "dir_info": {"editable": True}}),
            lambda path: ("/srv/git/mlci", SHA2),  # a local remote: unreachable from CI
            f"mlci=={__version__}",
            True,
        ),
        (json.dumps({"url": "file:///src/mlci", "dir_info": {}}), no_checkout, f"mlci=={__version__}", True),
    ],
    ids=["index", "vcs", "vcs-credentials", "archive", "editable-git", "editable-ssh", "editable-local", "dir"],
)
def test_install_source_follows_how_mlci_was_installed(
    direct_url: str | None, checkout: object, requirement: str, warned: bool
) -> None:
    from mlci.install_source import detect

    source = detect(direct_url, __version__, checkout)  # type: ignore[arg-type]
    assert source.requirement == requirement
    assert (source.warning is not None) == warned
    if direct_url and "file:///src/mlci" in direct_url and warned:
        assert source.warning == (
            "mlci runs from the local directory /src/mlci, which CI cannot reach (no https 'origin' remote); "
            f"mlci=={__version__} must be on your package index"
        )


def test_new_writes_prints_and_shares_the_install_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    git_source = f"mlci @ git+https://github.com/acme/mlci@{SHA1}"
    assert scaffold("src-model", tmp_path, "--data", f"mlci_install={git_source}") == 0
    project = tmp_path / "src-model"
    out = capsys.readouterr().out
    assert f"  CI installs {git_source!r}; change ci.mlci_install in mlci.yaml, then run 'mlci render'\n" in out
    assert load_project(project).config.ci.mlci_install == git_source
    # The same source, with every stage's extras (a laptop's `mlci run`).
    dev_source = git_source.replace("mlci @", "mlci[all] @", 1)
    assert f'dev = ["{dev_source}"]\n' in (project / "pyproject.toml").read_text()
    ci = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    assert {
        step["with"]["mlci-install"]
        for job in ci["jobs"].values()
        for step in job.get("steps", [])
        if "mlci-install" in step.get("with", {})
    } == {git_source}
    upgrade = yaml.safe_load((project / ".github" / "workflows" / "mlci-upgrade.yml").read_text())
    envs = [step.get("env", {}) for job in upgrade["jobs"].values() for step in job["steps"]]
    # The weekly upgrade looks for a newer mlci: the same repository, not the pinned commit.
    assert {"MLCI_INSTALL": "mlci @ git+https://github.com/acme/mlci"} in envs


def test_new_records_whether_the_install_source_was_the_detected_default() -> None:
    """`mlci upgrade` moves only a detected default with the vendored actions (tests/test_upgrade_pin.py)."""
    from mlci.commands.new import collect_answers
    from mlci.install_source import index_source

    source = index_source("0.0.9")

    def answered(reply: str | None, data: dict[str, str]) -> object:
        def ask(question: str, default: str) -> str:
            return reply if reply is not None and question.startswith("mlci install") else default

        return collect_answers("pin-model", None, None, data, True, ask=ask, install=source)["mlci_install_detected"]

    assert answered(None, {}) is True  # the prompt's default, accepted
    assert answered("mlci==0.0.8", {}) is False  # typed in at the prompt
    assert answered(None, {"mlci_install": "mlci==0.0.9"}) is False  # given with --data, even the same text
    assert answered(None, {"actions": "remote"}) is False  # remote actions: no pin at all


def test_new_default_install_source_is_detected_and_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlci.install_source import installed_source

    detected = installed_source()
    assert run_cli("new", "auto-model", "--defaults", "--no-git", "--output-dir", str(tmp_path)) == 0
    captured = capsys.readouterr()
    assert f"  CI installs {detected.requirement!r} ({detected.origin}); change ci.mlci_install" in captured.out
    assert load_project(tmp_path / "auto-model").config.ci.mlci_install == detected.requirement
    assert (f"  warning: {detected.warning}\n" in captured.err) == (detected.warning is not None)
    # Remote actions install mlci from their own checkout: nothing is written, and it says so.
    remote = ["--data", "actions=remote", "--data", "mlci_repository=acme/mlci", "--data", f"mlci_ref={SHA1}"]
    assert run_cli("new", "remote-model", "--defaults", "--no-git", "--output-dir", str(tmp_path), *remote) == 0
    assert "CI installs mlci from the remote actions' checkout (acme/mlci)" in capsys.readouterr().out
    project = tmp_path / "remote-model"
    assert load_project(project).config.ci.mlci_install is None
    assert f'dev = ["mlci[all] @ git+https://github.com/acme/mlci@{SHA1}"]' in (project / "pyproject.toml").read_text()


@pytest.mark.parametrize(
    "answer",
    [
        "mlci @ git+https://github.com/acme/mlci@$(curl evil)",
        "mlci; rm -rf ~",
        'mlci" && echo',
        "mlci==0.1.0\nrun: evil",
        "mlci `id`",
    ],
)
def test_install_answers_a_shell_would_interpret_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: str
) -> None:
    assert scaffold("bad-model", tmp_path, "--data", f"mlci_install={answer}") == 2
    assert "'ci.mlci_install' is " in capsys.readouterr().err
    assert not (tmp_path / "bad-model").exists()


@pytest.mark.parametrize("provider", ["gitlab"])
def test_a_provider_that_renders_nothing_is_not_offered(
    tmp_path: Path, provider: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before issue 10 these scaffolded a project with no CI files at all (P3).
    with pytest.raises(SystemExit) as exit_info:
        scaffold("other-ci", tmp_path, "--provider", provider)
    assert exit_info.value.code == 2
    assert f"argument --provider: invalid choice: '{provider}' (choose from " in capsys.readouterr().err
    assert not (tmp_path / "other-ci").exists()


@pytest.mark.parametrize(
    "answers",
    [
        ("mlci_install=mlci @ git+https://github.com/example/mlci@0123456789abcdef0123456789abcdef01234567",),
        (f"mlci_install={Path(__file__).resolve().parents[1]}",),  # a local checkout: file:// URL
        ("actions=remote", "mlci_repository=mlci-dev/mlci", "mlci_ref=0123456789abcdef0123456789abcdef01234567"),
        (f"mlci_install=mlci=={__version__}",),
    ],
    ids=["git", "local-checkout", "remote-actions", "index"],
)
def test_project_metadata_builds_whatever_the_install_source(tmp_path: Path, answers: tuple[str, ...]) -> None:
    # The dev extra names mlci as CI installs it; a URL there is a direct reference, which
    # hatchling refuses to build unless the project allows it (every CI job installs the project).
    from hatchling.metadata.core import ProjectMetadata
    from hatchling.plugin.manager import PluginManager

    extra = [arg for answer in answers for arg in ("--data", answer)]
    assert scaffold("meta-model", tmp_path, *extra) == 0
    metadata = ProjectMetadata(str(tmp_path / "meta-model"), PluginManager())
    metadata.validate_fields()  # raises ValueError for a direct reference that is not allowed
    (dev,) = metadata.core.optional_dependencies["dev"]
    assert dev.startswith("mlci")
