"""The target conformance kit: every target in `mlci.targets.NAMES` keeps the Target contract.

In-process and on mlci.yaml text: no MLflow store, no server. A new target gets all of these
by adding its line to the registry.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import MINIMAL_CONFIG, REPO, run_cli, scaffold, stage_json

from mlci import answers, pipeline, targets, templates
from mlci.config import Config
from mlci.errors import ConfigError, UsageError
from mlci.project import project_from_text
from mlci.targets.base import ByProvider, Credential, EnvValue, EnvVar, Literal, Secret, Variable

NAMES = tuple(targets.NAMES)
# Every command that works on a target: the stages that need one and the registry commands.
COMMANDS = ("train", "register", "deploy", "serve", "promote", "rollback", "status")
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|_KEY$|CREDENTIAL")
UC_NAME = "main.ml.churn"


def config_text(target: str, model_name: str = UC_NAME, tracking_uri: str | None = None) -> str:
    text = MINIMAL_CONFIG.replace("register:\n", f"register:\n  model_name: {model_name}\n")
    if tracking_uri:
        text += f"tracking:\n  uri: {tracking_uri}\n"
    return text + f"target: {target}\n"


def config_of(target: str, model_name: str = UC_NAME, tracking_uri: str | None = None) -> Config:
    from mlci.config import parse_config

    return parse_config(config_text(target, model_name, tracking_uri), "mlci.yaml")[0]


def test_the_registry_names_each_target_and_refuses_others() -> None:
    assert targets.DEFAULT == "local" and NAMES == ("local", "databricks")
    for name in NAMES:
        assert targets.get(name).name == name
    with pytest.raises(UsageError) as caught:
        targets.get("sagemaker")
    assert caught.value.message == "unknown target 'sagemaker'; targets: local, databricks"


def test_config_reads_the_names_without_importing_a_target() -> None:
    """config.py is the lowest layer: it reads NAMES, and no target's code comes with it."""
    code = "import sys, mlci.config; print(sorted(m for m in sys.modules if m.startswith('mlci.targets.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
    from mlci.answers import choices_of

    assert choices_of(Config, "target") == NAMES  # the loader, the schema and `mlci new` read these


@pytest.mark.parametrize("name", NAMES)
def test_a_unity_catalog_name_is_valid_on_every_target(name: str, tmp_path: Path) -> None:
    assert targets.get(name).validate(config_of(name)) == ()
    assert project_from_text(config_text(name), tmp_path).config.model_name == UC_NAME


@pytest.mark.parametrize("name", NAMES)
def test_each_problem_is_a_config_error_at_its_key(name: str, tmp_path: Path) -> None:
    text = config_text(name, model_name="churn_model")
    problems = targets.get(name).validate(config_of(name, model_name="churn_model"))
    if not problems:
        assert project_from_text(text, tmp_path).config.model_name == "churn_model"
        return
    with pytest.raises(ConfigError) as caught:
        project_from_text(text, tmp_path)
    line = text.splitlines().index("  model_name: churn_model") + 1
    assert caught.value.message == f"{tmp_path / 'mlci.yaml'}:{line}: {problems[0].message}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("model_name", ["churn", "a.b", UC_NAME, "main.ml-x.churn_2", "main._x.y"])
def test_mlci_new_and_mlci_yaml_apply_the_one_model_name_rule(name: str, model_name: str) -> None:
    target = targets.get(name)
    problem = target.model_name_problem(model_name)
    keys = [p.key for p in target.validate(config_of(name, model_name=model_name))]
    assert ("register.model_name" in keys) == (problem is not None)
    if problem is None:
        answers.check_model_name(model_name, name, "--data model_name")
    else:
        with pytest.raises(UsageError) as caught:
            answers.check_model_name(model_name, name, "--data model_name")
        assert caught.value.message == f"--data model_name {model_name!r}: {problem}"


def test_databricks_wants_the_three_levels() -> None:
    databricks = targets.get("databricks")
    assert [databricks.model_name_problem(n) is None for n in ("churn", "a.b", UC_NAME, "a.b.c.d", "1a.b.c")] == [
        False,
        False,
        True,
        False,
        False,
    ]
    assert databricks.default_model_name("churn_model") == "main.default.churn_model"
    assert databricks.model_name_problem(databricks.default_model_name("churn_model")) is None


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tracking_uri", [None, "https://mlflow.example.com"])
def test_credentials_are_data_without_a_secret_in_the_open(name: str, tracking_uri: str | None) -> None:
    config = config_of(name, tracking_uri=tracking_uri)
    credentials = targets.get(name).credentials(config)
    assert all(isinstance(c, Credential) for c in credentials)
    assert len({c.name for c in credentials}) == len(credentials)
    env = [var for c in credentials for var in c.env]
    assert len({var.name for var in env}) == len(env)
    for var in env:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", var.name), var
        assert isinstance(var.value, Secret | Variable | Literal | ByProvider), var
        if SECRET_NAME.search(var.name):
            assert isinstance(var.value, Secret), f"{var.name} must come from the CI system's secrets"
        if isinstance(var.value, Secret | Variable):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", var.value.name), var
    assert all(c.reason for c in credentials if c.oidc)  # a provider says why it grants the token
    # The pipeline model hands exactly these to every job that reaches the target.
    cd = next(p for p in pipeline.build(config) if p.id == "cd")
    assert {job.credentials for job in cd.jobs if job.stage and job.stage.uses_tracking} == {credentials}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tracking_uri", [None, "https://mlflow.example.com"])
def test_carries_state_is_what_the_pipeline_does(name: str, tracking_uri: str | None) -> None:
    config = config_of(name, tracking_uri=tracking_uri)
    cd = next(p for p in pipeline.build(config) if p.id == "cd")
    register = next(job for job in cd.jobs if job.id == "register")
    assert targets.get(name).carries_state(config) == register.restores_state == register.saves_state


def github(value: EnvValue) -> str:
    """A credential value as the GitHub workflow reads (an oracle apart from render.env_value)."""
    if isinstance(value, Secret):
        return f"${{{{ secrets.{value.name} }}}}"
    if isinstance(value, Variable):
        return f"${{{{ vars.{value.name} }}}}"
    if isinstance(value, ByProvider):
        return value.value_for("github")
    return value.value


def test_a_value_per_ci_system_is_refused_alike_where_a_provider_has_no_entry() -> None:
    """The one resolver (ByProvider.value_for) serves the model's rendered view and GitHub's
    renderer: a CI provider without an entry is a UsageError (exit 2), never an empty value."""
    from mlci.providers.github.render import env_value

    value = ByProvider((("azure", "azure-cli"), ("jenkins", "x")), target="databricks")
    refusal = (
        "the databricks target cannot federate from CI provider 'github': "
        "use ci.provider azure or jenkins (mlci new --provider), or another target"
    )
    job = pipeline.Job("j", "j", None, credentials=(Credential("c", oidc=False, env=(EnvVar("AUTH", value),)),))
    model = pipeline.Pipeline("p", "p", (), (job,))
    for resolve in (
        lambda: value.value_for("github"),
        lambda: env_value(value),
        lambda: pipeline.as_rendered(model, "github"),
    ):
        with pytest.raises(UsageError) as refused:
            resolve()
        assert str(refused.value) == refusal
    assert env_value(ByProvider((("github", "github-oidc"),))) == "github-oidc"


def test_the_databricks_credential_is_what_the_github_workflow_sets_today() -> None:
    (credential,) = targets.get("databricks").credentials(config_of("databricks"))
    expected = {var.name: github(var.value) for var in credential.env}
    cd = yaml.safe_load((REPO / "tests/golden/github/databricks-vendored-retrain/.github/workflows/cd.yml").read_text())
    envs = [
        step["env"] for job in cd["jobs"].values() for step in job["steps"] if "DATABRICKS_HOST" in step.get("env", {})
    ]
    assert envs and all(env == expected for env in envs)
    granted = [job for job in cd["jobs"].values() if job.get("permissions", {}).get("id-token") == "write"]
    assert credential.oidc and granted


def test_on_jenkins_the_databricks_credential_is_a_service_principals_oauth_secret() -> None:
    """Jenkins core issues no OIDC token: OAuth M2M, the client secret a secret, the rest settings.
    (ci.provider jenkins is refused by mlci.yaml until Jenkins renders: the config is built here.)"""
    import dataclasses

    config = config_of("databricks")
    jenkins = dataclasses.replace(config, ci=dataclasses.replace(config.ci, provider="jenkins"))
    (credential,) = targets.get("databricks").credentials(jenkins)
    assert (credential.name, credential.oidc) == ("databricks", False)
    assert {var.name: var.value for var in credential.env} == {
        "DATABRICKS_HOST": Variable("DATABRICKS_HOST"),
        "DATABRICKS_CLIENT_ID": Variable("DATABRICKS_CLIENT_ID"),
        "DATABRICKS_CLIENT_SECRET": Secret("DATABRICKS_CLIENT_SECRET"),
        "DATABRICKS_AUTH_TYPE": Literal("oauth-m2m"),
        "MLFLOW_TRACKING_URI": Literal("databricks"),
        "MLFLOW_REGISTRY_URI": Literal("databricks-uc"),
    }
    assert [var.name for var in credential.env if SECRET_NAME.search(var.name)] == ["DATABRICKS_CLIENT_SECRET"]
    # Every job reaching the workspace gets it, and the model reads it back without a per-system value.
    cd = next(p for p in pipeline.build(jenkins) if p.id == "cd")
    assert {job.credentials for job in cd.jobs if job.stage and job.stage.uses_tracking} == {(credential,)}
    pipeline.as_rendered(cd, "jenkins")
    # GitHub and Azure keep their OIDC federation.
    for provider in ("github", "azure"):
        (oidc,) = targets.get("databricks").credentials(
            dataclasses.replace(config, ci=dataclasses.replace(config.ci, provider=provider))
        )
        assert oidc.oidc and "DATABRICKS_CLIENT_SECRET" not in {var.name for var in oidc.env}


@pytest.mark.parametrize("name", NAMES)
def test_managed_paths_are_relative_and_kept_current_by_upgrade(name: str) -> None:
    for path in targets.get(name).managed:
        assert not path.startswith("/") and "\\" not in path and ".." not in path.split("/"), path
        assert templates.is_managed(path + "job.yml" if path.endswith("/") else path), path


@pytest.fixture(scope="module")
def databricks_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("databricks")
    assert scaffold("dbx-contract", root, "--target", "databricks") == 0
    return root / "dbx-contract"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_target_runs_every_model_command(name: str, command: str, databricks_project: Path) -> None:
    from mlci.project import load_project

    assert targets.get(name).require(load_project(databricks_project), command) is None


NO_WORKSPACE = (
    "mlci.yaml:{line}: no workspace for environment staging: set databricks.environments.staging.host or "
    "databricks.host in mlci.yaml, or the DATABRICKS_HOST variable"
)


def _databricks_line(root: Path) -> int:
    lines = (root / "mlci.yaml").read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.startswith("databricks:"))


def test_mlci_run_goes_through_the_configured_target(
    databricks_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mlci run` deploys to mlci.yaml's target: a Databricks project without a workspace is
    told which key to set, and nothing is deployed from (or written to) a local store."""
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    assert run_cli("run", "deploy", "-C", str(databricks_project)) == 2
    err = capsys.readouterr().err
    assert NO_WORKSPACE.format(line=_databricks_line(databricks_project)) in err
    assert stage_json(databricks_project, "deploy")["status"] == "error"
    assert not (databricks_project / ".mlci" / "mlflow.db").exists()


def test_registry_commands_ask_the_target_too(
    databricks_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    assert run_cli("status", "-C", str(databricks_project)) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith(NO_WORKSPACE.format(line=_databricks_line(databricks_project)))
    assert not (databricks_project / ".mlci" / "mlflow.db").exists()


@pytest.mark.parametrize("name", NAMES)
def test_mlci_new_prints_the_targets_own_note(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert scaffold("noted", tmp_path, "--target", name) == 0
    out = capsys.readouterr().out
    note = targets.get(name).scaffold_note
    if note:
        assert f"  note: {note[0]}\n" in out and all(f"    {line}\n" in out for line in note[1:])
    else:
        assert "note:" not in out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("env", [None, "staging"])
def test_doctor_reports_checks_writes_nothing_and_prints_no_secret(
    name: str, env: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every target answers `mlci doctor` with its own checks (Target.doctor): lines of ok, warn or
    fail, never an exception, never a file written, never a secret's value. (staging without a
    workspace host: the Databricks sign-in fails as a check, before any network call.)"""
    from mlci.targets.base import FAIL, OK, WARN, Check

    for variable in ("DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    marker = "contract-secret-MARKER-91c2"
    for variable in ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.setenv(variable, marker)
    project = project_from_text(config_text(name), tmp_path)
    checks = targets.get(name).doctor(project, env, None)
    assert checks and all(isinstance(check, Check) for check in checks)
    for check in checks:
        assert check.status in (OK, WARN, FAIL) and check.what and check.detail, check
        assert "\n" not in check.detail and marker not in check.detail, check
        assert not check.infra or check.status == FAIL, check
    assert list(tmp_path.iterdir()) == []
