"""The Jenkins provider's rendering (issue 12): the Jenkinsfile reads back to the same model
graph as GitHub's workflows for every option combination, in both of its forms (declarative
stages, or one call of the shared library's mlciPipeline); hostile project text never reaches
it; every value Groovy reads is a single-quoted literal; and models Jenkins cannot express
are refused. The Groovy stub (tests/jenkins_stub.py) parses and runs the same files.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from provider_kit import COMBOS, Combo, model_graph
from update_golden import combo_answers, combo_name, config_text, render_ci_files

from mlci import pipeline, providers, templates
from mlci.project import project_from_text
from mlci.providers.jenkins import render
from mlci.targets.base import Credential, EnvVar, Literal, Secret, Variable

JENKINS = providers.get("jenkins")


def library_files(combo: Combo, root: Path, **jenkins: str) -> tuple[dict[str, bytes], tuple[pipeline.Pipeline, ...]]:
    """The Jenkins files of `combo` with `ci.jenkins.library: true` (and any other ci.jenkins
    keys), and the model they render."""
    answers = combo_answers("jenkins", combo)
    settings = "".join(f"    {key}: {value!r}\n" for key, value in {"library": True, **jenkins}.items())
    text = config_text(answers).replace("\nci:\n", f"\nci:\n  jenkins:\n{settings}", 1)
    assert "library: true" in text.replace("True", "true") or "library: True" in text
    config = project_from_text(text, root).config
    return templates.render_ci(text, answers, root), pipeline.build(config)


@pytest.mark.parametrize("combo", COMBOS, ids=[combo_name(c) for c in COMBOS])
def test_jenkins_and_github_parse_back_to_the_same_graph(combo: Combo, tmp_path: Path) -> None:
    github = providers.get("github").parse_back(render_ci_files("github", combo, tmp_path))
    jenkins = JENKINS.parse_back(render_ci_files("jenkins", combo, tmp_path))
    library, model = library_files(combo, tmp_path)
    # The library form reads back to the model as well: its one call says what varies.
    assert JENKINS.parse_back(library) == tuple(pipeline.as_rendered(p, "jenkins") for p in model)
    assert {p.id for p in jenkins} == ({"ci", "cd", "retrain"} if combo[2] == "retrain" else {"ci", "cd"})
    if combo[0] == "local":
        assert model_graph(jenkins) == model_graph(github)
        return
    # Databricks: GitHub federates through its OIDC token; Jenkins issues none, so its jobs use
    # the service principal's OAuth M2M secret, bound by withCredentials (docs/jenkins.md).
    assert model_graph(jenkins, credentials=False) == model_graph(github, credentials=False)
    train = {p.id: p for p in jenkins}["cd"].job("train")
    (credential,) = train.credentials
    assert not credential.oidc and pipeline.OIDC_TOKEN not in train.capabilities
    assert [v.name for v in credential.env if isinstance(v.value, Secret)] == ["DATABRICKS_CLIENT_SECRET"]
    assert EnvVar("DATABRICKS_AUTH_TYPE", Literal("oauth-m2m")) in credential.env


@pytest.mark.parametrize(
    ("text", "problem"),
    [("pipeline {\n  stages {\n", "line 2: stages is not closed"), ("pipeline {\n}\n}\n", "line 3: unmatched '}'")],
)
def test_a_rendered_file_that_does_not_read_is_refused(text: str, problem: str) -> None:
    from mlci.errors import InfraError

    with pytest.raises(InfraError, match=f"mlci rendered an invalid Jenkinsfile \\({problem}\\); this is a bug"):
        render._check_groovy(text, "Jenkinsfile")


def test_groovy_literals_escape_what_groovy_would_read() -> None:
    assert render.groovy_str("it's $HOME ${x} \\n") == "'it\\'s $HOME ${x} \\\\n'"
    assert render.groovy_str("TZ=UTC\n0 3 * * 1") == "'TZ=UTC\\n0 3 * * 1'"
    assert render.groovy_script("a\\b ''' c\n") == "'''a\\\\b \\'\\'\\' c\n'''"
    with pytest.raises(ValueError, match="control character"):
        render.groovy_str("a\x00b")


def test_every_sh_step_takes_a_script_variable_or_a_single_quoted_literal(tmp_path: Path) -> None:
    # No file holds an interpolating Groovy string (double-quoted with a `$`), and every sh step
    # of a Jenkinsfile names its script.
    from mlci.providers.jenkins.groovy import parse, tokens

    for combo in COMBOS:
        files = render_ci_files("jenkins", combo, tmp_path)
        library, _ = library_files(combo, tmp_path)
        for name, data in {**files, **library}.items():
            if not name.endswith((".groovy", "Jenkinsfile", "Jenkinsfile.upgrade")) or name.endswith(".txt"):
                continue
            text = data.decode("utf-8")
            if name.endswith(".groovy"):  # slashy regexes: beyond the reader; a plain search
                code = re.sub(r"'''.*?'''|'(?:\\.|[^'\\\n])*'", "''", text, flags=re.DOTALL)
                assert re.findall(r'"[^"\n]*\$[^"\n]*"', code) == [], name
                continue
            assert [t for t in tokens(text) if t.kind == "gstring" and "$" in t.text] == [], name
            if name.startswith("Jenkinsfile"):
                steps = [s for top in parse(text) for s in top.walk() if s.name == "sh"]
                assert all("script" in s.named() for s in steps), name
                assert steps or b"mlciPipeline(" in data, name


def _model(tmp_path: Path) -> tuple[pipeline.Pipeline, ...]:
    text = config_text(combo_answers("jenkins", ("local", "vendored", "retrain")))
    return pipeline.build(project_from_text(text, tmp_path).config)


def _with_train(found: tuple[pipeline.Pipeline, ...], **changes: object) -> tuple[pipeline.Pipeline, ...]:
    return tuple(
        dataclasses.replace(p, jobs=tuple(dataclasses.replace(j, **changes) if j.id == "train" else j for j in p.jobs))
        for p in found
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"capabilities": frozenset({pipeline.READ_REPOSITORY, pipeline.OIDC_TOKEN})},
            "job train needs an OIDC token, which Jenkins does not issue",
        ),
        (
            {"credentials": (Credential("x", False, (EnvVar("TOKEN", Secret("OTHER_ID")),)),)},
            "TOKEN is bound from credentials id OTHER_ID: Jenkins binds by name",
        ),
        (
            {"credentials": (Credential("x", False, (EnvVar("A", Literal("1")), EnvVar("B", Variable("B")))),)},
            "job train: Jenkins lists a job's variables, then its secrets, then its fixed values",
        ),
        (
            {"credentials": (Credential("x", False, (EnvVar("A B", Variable("A B")),)),)},
            "'A B' is not a Jenkins credentials id or variable name",
        ),
    ],
)
def test_a_model_jenkins_cannot_express_is_refused(changes: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render.layout(_with_train(_model(tmp_path), **changes))


@pytest.mark.parametrize("combo", [c for c in COMBOS if c[1] == "remote"], ids=combo_name)
def test_remote_mode_loads_the_published_library_pinned_by_commit(combo: Combo, tmp_path: Path) -> None:
    from render_actions import published_files
    from update_golden import SHA

    declarative = render_ci_files("jenkins", combo, tmp_path)
    library, _ = library_files(combo, tmp_path)
    for files in (declarative, library):
        assert not any(name.startswith(".jenkins/") for name in files), "remote mode vendors no library"
    first = next(line for line in library["Jenkinsfile"].decode().splitlines() if not line.startswith("//"))
    assert first == f"@Library('mlci@{SHA}') _"
    published = published_files()
    vendored = render_ci_files("jenkins", ("local", "vendored", combo[2]), tmp_path)
    # The published files are the vendored ones: one source.
    assert {f"jenkins/{name.removeprefix('.jenkins/')}" for name in vendored if name.startswith(".jenkins/")} == {
        name for name in published if name.startswith("jenkins/vars/")
    }
    for name, data in vendored.items():
        if name.startswith(".jenkins/"):
            assert published[f"jenkins/{name.removeprefix('.jenkins/')}"] == data.decode()


def test_render_switches_a_github_project_to_jenkins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import run_cli, scaffold

    assert scaffold("switchy", tmp_path / "github", "--provider", "github") == 0
    assert scaffold("switchy", tmp_path / "jenkins", "--provider", "jenkins") == 0
    project, fresh = tmp_path / "github" / "switchy", tmp_path / "jenkins" / "switchy"
    config = project / "mlci.yaml"
    config.write_text(config.read_text().replace("  provider: github\n", "  provider: jenkins\n"))
    capsys.readouterr()
    assert run_cli("render", cwd=project) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("render: switched CI from github to jenkins: 6 added, ")
    assert not (project / ".github").exists()
    ci_files = [
        "Jenkinsfile",
        "Jenkinsfile.upgrade",
        *(
            f".jenkins/vars/{n}"
            for n in ("mlciStage.groovy", "mlciStage.txt", "mlciPipeline.groovy", "mlciPipeline.txt")
        ),
    ]
    for name in ci_files:
        assert (project / name).read_bytes() == (fresh / name).read_bytes(), name
    assert run_cli("upgrade", "--check", str(project)) == 0


# --- parse-back refuses a Jenkinsfile that does not hold the model ---------------------------

TRAIN_RUN = "          sh(label: 'mlci train', script: MLCI_TRAIN)\n"
TRAIN_SECRET = (
    "        withCredentials([\n"
    "          string(credentialsId: 'DATABRICKS_CLIENT_SECRET', variable: 'DATABRICKS_CLIENT_SECRET'),\n"
    "        ]) {\n" + TRAIN_RUN + "        }\n"
)
TRAIN_INSTALL = "        sh(label: 'Install mlci and the project', script: MLCI_SETUP)\n" + TRAIN_SECRET
CRON = "cron(env.BRANCH_NAME == 'main' ? 'TZ=UTC\\n0 3 * * 1' : '')"
ABORT = "disableConcurrentBuilds(abortPrevious: env.CHANGE_ID != null)"
PRODUCTION_INPUT = (
    "      input {\n"
    "        message 'Deploy the model version this build verified to production?'\n"
    "        ok 'Deploy'\n"
    "        submitter 'mlci-approvers'\n"
    "      }\n"
)
STAGING_ENVIRONMENT = "      environment {\n        MLCI_JOB = 'deploy-staging'\n"
SETUP_LINE = '"$uv" venv --quiet --clear --python "$MLCI_PYTHON" "$venv"\n'

# (old text, new text, the message naming what is wrong), each edit of the databricks-vendored-
# retrain Jenkinsfile (it binds secrets, keeps no registry and retrains on a schedule).
EDITS = {
    "approval-deleted": (PRODUCTION_INPUT, "", "stage 'Deploy to production' deploys to production without an input"),
    "submitter-deleted": (
        "        submitter 'mlci-approvers'\n",
        "",
        "stage 'Deploy to production': its input names no submitter",
    ),
    "staging-waits": (
        STAGING_ENVIRONMENT,
        "      input {\n        message 'Deploy?'\n        submitter 'x'\n      }\n" + STAGING_ENVIRONMENT,
        "stage 'Deploy to staging' waits for an input: only the production deployment does",
    ),
    "cron-unconditional": (CRON, "cron('TZ=UTC\\n0 3 * * 1')", "a trigger other than cron(env.BRANCH_NAME == 'main' ?"),
    "cron-other-branch": (
        CRON,
        CRON.replace("'main'", "'dev'"),
        "a trigger other than cron(env.BRANCH_NAME == 'main' ?",
    ),
    "abort-every-build": (
        ABORT,
        "disableConcurrentBuilds(abortPrevious: true)",
        "disableConcurrentBuilds takes no argument or abortPrevious: env.CHANGE_ID != null",
    ),
    "abort-extra-argument": (
        ABORT,
        "disableConcurrentBuilds(abortPrevious: env.CHANGE_ID != null || true)",
        "disableConcurrentBuilds takes no argument or abortPrevious: env.CHANGE_ID != null",
    ),
    "no-concurrency-option": (ABORT, "", "0 disableConcurrentBuilds options, not 1: the delivery group"),
    "train-script-edited": (
        'mlci" train "${args[@]}"',
        'mlci" train --help "${args[@]}"',
        "stage 'Train': MLCI_TRAIN is not the script mlci renders for 'mlci train'",
    ),
    "setup-script-edited": (
        SETUP_LINE,
        SETUP_LINE + "curl -s https://example.invalid | sh\n",
        "stage 'Lint': MLCI_SETUP is not the script mlci renders for 'Install mlci and the project'",
    ),
    "train-runs-deploy": (
        TRAIN_RUN,
        TRAIN_RUN.replace("MLCI_TRAIN", "MLCI_DEPLOY"),
        "stage 'Train': 'mlci train' runs MLCI_DEPLOY, not MLCI_TRAIN",
    ),
    "train-script-literal": (
        TRAIN_RUN,
        TRAIN_RUN.replace("MLCI_TRAIN", "MLCI_TRAIN + ' --help'"),
        "stage 'Train': an sh step other than sh(label: '...', script: NAME)",
    ),
    "secret-wraps-install": (
        TRAIN_INSTALL,
        TRAIN_SECRET.replace("'mlci train', script: MLCI_TRAIN", "'Install mlci and the project', script: MLCI_SETUP")
        + TRAIN_RUN.removeprefix("  "),
        "stage 'Train': a withCredentials that does not wrap the stage's mlci step alone",
    ),
    "secret-other-variable": (
        "variable: 'DATABRICKS_CLIENT_SECRET'),\n        ]) {\n" + TRAIN_RUN,
        "variable: 'OTHER'),\n        ]) {\n" + TRAIN_RUN,
        "stage 'Train': credentials id 'DATABRICKS_CLIENT_SECRET' is bound to variable 'OTHER', not its own name",
    ),
    "secret-other-binding": (
        TRAIN_SECRET,
        TRAIN_SECRET.replace(
            "string(credentialsId: 'DATABRICKS_CLIENT_SECRET', variable: 'DATABRICKS_CLIENT_SECRET')",
            "file(credentialsId: 'DATABRICKS_CLIENT_SECRET', variable: 'DATABRICKS_CLIENT_SECRET')",
        ),
        "stage 'Train': a credentials binding other than string(credentialsId: 'X', variable: 'X')",
    ),
}


@pytest.fixture(scope="module")
def databricks_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return render_ci_files("jenkins", ("databricks", "vendored", "retrain"), tmp_path_factory.mktemp("databricks"))


@pytest.mark.parametrize("edit", EDITS)
def test_parse_back_refuses_a_jenkinsfile_that_does_not_hold_the_model(
    edit: str, databricks_files: dict[str, bytes]
) -> None:
    old, new, message = EDITS[edit]
    text = databricks_files["Jenkinsfile"].decode()
    assert text.count(old) >= 1, f"the rendered Jenkinsfile has no {old!r}"
    edited = text.replace(old, new, 1 if edit.startswith(("train", "secret")) else -1)
    with pytest.raises(ValueError) as raised:
        JENKINS.parse_back({**databricks_files, "Jenkinsfile": edited.encode()})
    error = str(raised.value)
    assert error.startswith("Jenkinsfile: not a pipeline mlci renders (") and "\n" not in error
    assert message in error.replace("\\'", "'").replace('\\"', '"')


# The widest values mlci.yaml's patterns admit (src/mlci/config.py) for every setting the
# Jenkins files hold, and the forms they take there (a cron is prefixed by its time zone, a
# Python version names the interpreter).
HOSTILE_SETTINGS = {
    "default_branch": "release/v1.2-x_Y",
    "jenkins.agent": "(linux || mac) && !arm64",
    "jenkins.approvers": "ml-leads,alice+ci@acme.com,Domain Admins,team/*",
    "retrain_cron": "*/5 0-3 ? JAN-MAR MON,FRI",
    "python": "3.13",
}
HOSTILE_INSTALLS = (
    "mlci @ git+https://github.com/o-1/m.x@" + "0123456789abcdef" * 2 + "01234567",
    "mlci[dev, test] >=0.1.0, !=0.2.0, ~=0.1, <1",
)


def _hostile_config(install: str, library: bool) -> str:
    s = HOSTILE_SETTINGS
    text = config_text(combo_answers("jenkins", ("local", "vendored", "retrain")))
    for old, new in [
        ("  default_branch: main\n", f"  default_branch: {s['default_branch']!r}\n"),
        ('  mlci_install: "mlci==0.1.0"\n', f"  mlci_install: {install!r}\n"),
        ('  retrain_cron: "0 3 * * 1"\n', f"  retrain_cron: {s['retrain_cron']!r}\n"),
        ('  python: "3.11"\n', f"  python: {s['python']!r}\n"),
        (
            "\nci:\n",
            f"\nci:\n  jenkins:\n    agent: {s['jenkins.agent']!r}\n    approvers: {s['jenkins.approvers']!r}\n"
            f"    library: {str(library).lower()}\n",
        ),
    ]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@pytest.mark.jenkins
def test_hostile_ci_settings_reach_the_jenkins_files_as_single_quoted_strings_only(tmp_path: Path) -> None:
    from jenkins_stub import validate

    from mlci.providers.jenkins.groovy import tokens

    answers = combo_answers("jenkins", ("local", "vendored", "retrain"))
    checked: list[Path] = []
    for number, install in enumerate(HOSTILE_INSTALLS):
        values = {**HOSTILE_SETTINGS, "mlci_install": install}
        forms = {**{k: {v} for k, v in values.items()}, "retrain_cron": {values["retrain_cron"]}}
        forms["retrain_cron"].add("TZ=UTC\n" + values["retrain_cron"])
        forms["python"].add("python" + values["python"])
        for library in (False, True):
            text = _hostile_config(install, library)
            root = tmp_path / f"{number}-{'library' if library else 'stages'}"
            files = templates.render_ci(text, answers, root)
            model = pipeline.build(project_from_text(text, root).config)
            assert JENKINS.parse_back(files) == tuple(pipeline.as_rendered(p, "jenkins") for p in model)
            for name in ("Jenkinsfile", "Jenkinsfile.upgrade"):
                source = files[name].decode()
                code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("//"))
                found = tokens(source)
                for key, value in values.items():
                    holding = [t for t in found if value in t.text]
                    # Every occurrence outside a comment is the whole text of a single-quoted string.
                    assert {(t.kind, t.text) for t in holding} <= {("string", form) for form in forms[key]}, (name, key)
                    assert code.count(value) == sum(t.text.count(value) for t in holding), (name, key)
                    if name == "Jenkinsfile":
                        assert holding, (name, key, library)
            for name, data in files.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(data)
            checked += [root / "Jenkinsfile", root / "Jenkinsfile.upgrade"]
    # One JVM for all of them; the library form loads the vendored library of its own render.
    results = validate(checked, libraries={"mlci": tmp_path / "0-library" / ".jenkins"})
    assert [(r["file"], r["syntax_error"], r["errors"]) for r in results if not r["ok"]] == []


def _scripts(tmp_path: Path) -> dict[str, str]:
    """The shell scripts a rendered Jenkinsfile defines at its top (`def NAME = '''...'''`)."""
    from mlci.providers.jenkins.groovy import tokens

    text = render_ci_files("jenkins", ("local", "vendored", "retrain"), tmp_path)["Jenkinsfile"].decode()
    found = tokens(text)
    return {
        found[i + 1].text: found[i + 3].text
        for i in range(len(found) - 3)
        if found[i].text == "def" and found[i + 2].text == "=" and found[i + 3].kind == "string"
    }


def _run(script: str, workspace: Path, build: int, job: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "BUILD_NUMBER": str(build), "MLCI_JOB": job}
    return subprocess.run(["bash", "-c", script], cwd=workspace, env=env, capture_output=True, text=True, check=False)


def test_the_kept_registry_moves_forward_and_a_stale_build_never_replaces_it(tmp_path: Path) -> None:
    """The registry scripts of the Jenkinsfile, run by bash in a workspace: the first build starts
    empty and keeps what it registered; a later build finds it; a replayed older build (the
    newest kept registry is not in its lineage) keeps nothing; a restarted stage of the newest
    build (it is) keeps its own; a build that restored a registry but lost its store fails."""
    scripts = _scripts(tmp_path)
    find, restore, save = (scripts[f"MLCI_REGISTRY_{n}"] for n in ("FIND", "RESTORE", "SAVE"))
    first = tmp_path / "first"
    first.mkdir()
    assert _run(find, first, 1, "registry").returncode == 0
    assert (first / "mlci-registry" / "key").read_text() == ""
    assert _run(restore, first, 1, "train").returncode == 0
    (first / ".mlci" / "mlflow.db").write_text("v1")
    done = _run(save, first, 1, "register")
    assert done.returncode == 0 and "Registry: kept for the next build (1-register)" in done.stdout
    assert (first / "mlci-registry" / "mlflow.db").read_text() == "v1"
    assert (first / ".mlci" / "registry-lineage").read_text().split() == ["1-register"]
    # The second build finds it (the Registry stage copied it to mlci-newest/) and restores it.
    second = tmp_path / "second"
    shutil.copytree(first / "mlci-registry", second / "mlci-newest" / "mlci-registry")
    done = _run(find, second, 2, "registry")
    assert "kept by an earlier build (1-register)" in done.stdout and not (second / "mlci-newest").exists()
    assert _run(restore, second, 2, "train").returncode == 0
    assert (second / ".mlci" / "mlflow.db").read_text() == "v1"
    # A replay of build 1 after build 2 kept "2-register": not its lineage, so it keeps nothing.
    stale = tmp_path / "stale"
    shutil.copytree(first / ".mlci", stale / ".mlci")
    (stale / "mlci-newest" / "mlci-registry").mkdir(parents=True)
    (stale / "mlci-newest" / "mlci-registry" / "key").write_text("2-register\n")
    done = _run(save, stale, 3, "deploy-staging")
    assert done.returncode == 0 and "a newer registry exists (2-register" in done.stdout
    assert not (stale / "mlci-registry").exists()
    # A restarted stage of build 1 (nothing kept since its register): its own lineage.
    (stale / "mlci-newest" / "mlci-registry").mkdir(parents=True)
    (stale / "mlci-newest" / "mlci-registry" / "key").write_text("1-register\n")
    done = _run(save, stale, 4, "deploy-staging")
    assert "Registry: kept for the next build (4-deploy-staging)" in done.stdout
    # Restored a kept registry but has no store left: refused, nothing kept.
    (stale / ".mlci" / "mlflow.db").unlink()
    done = _run(save, stale, 5, "deploy-production")
    assert done.returncode == 3 and "refusing to replace it with an empty one" in done.stderr
    assert not (stale / "mlci-registry").exists()
