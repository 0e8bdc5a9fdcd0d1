"""GitHub's workflows read back into the pipeline model: parse_back(render(model)) is the model,
as far as a CI file can show it (pipeline.as_rendered), for every option combination. In-process:
the model is built from mlci.yaml text, rendered and parsed without a project on disk."""

from __future__ import annotations

import itertools

import pytest
from conftest import MINIMAL_CONFIG

from mlci import __version__, pipeline, providers
from mlci.config import Config, parse_config
from mlci.pipeline import Job, Pipeline
from mlci.providers.base import RenderContext
from mlci.stage_specs import STAGES
from mlci.targets.base import ByProvider, Credential, EnvVar, Literal, Secret, Variable

GITHUB = providers.get("github")
SHA = "0123456789abcdef0123456789abcdef01234567"
# target (and where its tracking lives) x where the actions come from x a retrain schedule x branch
STORES = {
    "local": "",
    "tracking-server": "tracking:\n  uri: https://mlflow.example.com\n",
    "databricks": "target: databricks\n",
}
ACTIONS = {
    "vendored": "  actions: vendored\n",
    "remote": f"  actions: remote\n  mlci_repository: mlci-dev/mlci\n  mlci_ref: '{SHA}'\n",
}
RETRAIN = {"no-retrain": "", "retrain": "  retrain_cron: '0 3 * * 1'\n", "monitor": "  retrain_cron: '0 3 * * 1'\n"}
MONITOR = "monitor:\n  schedule: '0 6 * * *'\n  output: reports/monitor\n"  # with retrain: both at once
BRANCH = {"main": "", "trunk": "  default_branch: release/v-2\n"}
COMBOS = list(itertools.product(STORES, ACTIONS, RETRAIN, BRANCH))


def config_of(store: str, actions: str, retrain: str, branch: str) -> Config:
    base = MINIMAL_CONFIG
    if store == "databricks":  # a Unity Catalog model name
        base = base.replace("register:\n", "register:\n  model_name: main.default.churn_model\n")
    text = base + STORES[store] + "ci:\n" + ACTIONS[actions] + RETRAIN[retrain] + BRANCH[branch]
    text += MONITOR if retrain == "monitor" else ""
    return parse_config(text, "mlci.yaml")[0]


def render(pipelines: tuple[Pipeline, ...], config: Config) -> dict[str, bytes]:
    return GITHUB.render(pipelines, RenderContext.of(config, __version__), GITHUB.shipped_templates())


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_every_pipeline_parses_back_into_the_model(combo: tuple[str, str, str, str]) -> None:
    config = config_of(*combo)
    model = pipeline.build(config)
    assert GITHUB.parse_back(render(model, config)) == tuple(
        pipeline.as_rendered(p, "github") for p in sorted(model, key=lambda p: p.id)
    )


def test_the_combinations_cover_what_the_model_varies() -> None:
    """Each field the parse-back recovers takes more than one value across COMBOS, so a
    parse-back that ignored it would fail above."""
    jobs = [j for combo in COMBOS for p in pipeline.build(config_of(*combo)) for j in p.jobs]
    pipes = [p for combo in COMBOS for p in pipeline.build(config_of(*combo))]
    assert {p.id for p in pipes} == {"ci", "cd", "retrain", "monitor"}
    assert {t.kind for p in pipes for t in p.triggers} == {"pull_request", "push", "manual", "schedule"}
    assert {p.registry_branch for p in pipes} == {None, "main", "release/v-2"}
    assert {p.concurrency_group for p in pipes} == {None, "delivery"} and {p.every_push for p in pipes} == {True, False}
    assert {j.stage.name for j in jobs if j.stage} == {spec.name for spec in STAGES}
    assert {frozenset(j.capabilities) for j in jobs} == {
        frozenset(),
        frozenset({"read-repository"}),
        frozenset({"read-repository", "oidc-token"}),
    }
    assert {c.name for j in jobs for c in j.credentials} == {"mlflow", "databricks"}
    assert {j.when for j in jobs} == {None, pipeline.RETRAIN_WHEN}
    assert {j.reports for j in jobs} == {
        (),
        ("reports/monitor/decision.json", "reports/monitor/report.html", ".mlci/out/monitor.xml"),
    }
    for flag in ("restores_state", "saves_state", "restores_registry", "saves_registry", "gate"):
        assert {getattr(j, flag) for j in jobs} == {True, False}, flag


def _with_credentials(*credentials: Credential) -> tuple[Pipeline, ...]:
    train = pipeline.stage_job(
        "train", capabilities=frozenset({"read-repository", "oidc-token"}), credentials=credentials
    )
    return (Pipeline("cd", "cd", (pipeline.Trigger("manual"),), (train,)),)


def test_credentials_are_rendered_from_their_data_and_read_back() -> None:
    """A target's credentials reach the workflow as data: secrets and variables by name, fixed
    values through the YAML emitter (quoted when plain text would not read back as the same
    string), a per-CI-system value by GitHub's entry, OIDC as id-token: write with their reason."""
    model = _with_credentials(
        Credential("store", oidc=False, env=(EnvVar("STORE_TOKEN", Secret("STORE_TOKEN")),)),
        Credential(
            "cloud",
            oidc=True,
            env=(
                EnvVar("CLOUD_HOST", Variable("CLOUD_HOST")),
                EnvVar("CLOUD_AUTH", ByProvider((("azure", "azure-oidc"), ("github", "github-oidc")))),
                EnvVar("CLOUD_FLAG", Literal("on")),
                EnvVar("CLOUD_NOTE", Literal("a: b # c")),
            ),
            reason="OIDC token for the cloud",
        ),
    )
    config = config_of("local", "vendored", "no-retrain", "main")
    text = render(model, config)[".github/workflows/cd.yml"].decode()
    assert "      id-token: write  # OIDC token for the cloud\n" in text
    assert (
        "        env:\n"
        "          STORE_TOKEN: ${{ secrets.STORE_TOKEN }}\n"
        "          CLOUD_HOST: ${{ vars.CLOUD_HOST }}\n"
        "          CLOUD_AUTH: github-oidc\n"
        '          CLOUD_FLAG: "on"\n'
        '          CLOUD_NOTE: "a: b # c"\n'
    ) in text
    (back,) = GITHUB.parse_back(render(model, config))
    assert back == pipeline.as_rendered(model[0], "github")
    assert back.jobs[0].credentials == (
        Credential(
            "",
            oidc=True,
            env=(
                EnvVar("STORE_TOKEN", Secret("STORE_TOKEN")),
                EnvVar("CLOUD_HOST", Variable("CLOUD_HOST")),
                EnvVar("CLOUD_AUTH", Literal("github-oidc")),
                EnvVar("CLOUD_FLAG", Literal("on")),
                EnvVar("CLOUD_NOTE", Literal("a: b # c")),
            ),
            reason="OIDC token for the cloud",
        ),
    )


def test_a_federating_credential_without_the_oidc_capability_is_a_model_bug() -> None:
    credential = Credential("cloud", oidc=True, env=(EnvVar("CLOUD_HOST", Variable("CLOUD_HOST")),))
    with pytest.raises(ValueError) as raised:
        Pipeline("cd", "cd", (), (pipeline.stage_job("train", credentials=(credential,)),))
    assert str(raised.value) == "pipeline cd: job train uses cloud through OIDC without the oidc-token capability"


def test_a_workflow_with_what_the_model_has_no_word_for_is_refused() -> None:
    config = config_of("local", "vendored", "no-retrain", "main")
    files = render(pipeline.build(config), config)
    edited = files[".github/workflows/ci.yml"].replace(b"contents: read", b"contents: write", 1)
    with pytest.raises(ValueError) as raised:
        GITHUB.parse_back({**files, ".github/workflows/ci.yml": edited})
    assert str(raised.value) == (
        ".github/workflows/ci.yml: not a workflow mlci renders (ValueError('permission contents: write'))"
    )


def test_a_gate_and_a_deploy_job_read_back_exactly() -> None:
    """Spot checks of single fields, so a failure above is easy to read."""
    config = config_of("local", "remote", "no-retrain", "main")
    back = {p.id: p for p in GITHUB.parse_back(render(pipeline.build(config), config))}
    gate = back["cd"].job("gate")
    assert (gate.stage, gate.gate, gate.capabilities, gate.timeout_minutes) == (None, True, frozenset(), 5)
    deploy = back["cd"].job("deploy-production")
    assert isinstance(deploy, Job) and deploy.stage is not None
    assert (deploy.stage.name, deploy.name, dict(deploy.options), deploy.environment, deploy.only_on_branch) == (
        "deploy",
        "Deploy to production",
        {"env": "production"},
        "production",
        "main",
    )
    assert deploy.inputs_from == (pipeline.Handover("version", "deploy-staging", "model-version"),)
