"""The pipeline model's guarantees, which every provider inherits: delivery only after the
checks passed, every pushed commit checked, every delivery job acting on this run's model, and a
local registry kept only by the default branch and never replaced by an older run's."""

from __future__ import annotations

import pytest
from conftest import MINIMAL_CONFIG

from mlci import pipeline
from mlci.config import Config, parse_config
from mlci.stage_specs import STAGES

BASE = MINIMAL_CONFIG
VARIANTS = {
    "local": "ci:\n  retrain_cron: '0 3 * * 1'\n",
    "tracking-server": "tracking:\n  uri: https://mlflow.example.com\nci:\n  retrain_cron: '0 3 * * 1'\n",
    "databricks": "target: databricks\nci:\n  retrain_cron: '0 3 * * 1'\n  default_branch: trunk\n",
}
DELIVERY = ("train", "register", "deploy")


def config_of(variant: str) -> Config:
    return parse_config(BASE + VARIANTS[variant], "mlci.yaml")[0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_delivery_requires_every_check(variant: str) -> None:
    """P4: no train, register or deploy job can run for a commit whose checks failed."""
    model = {p.id: p for p in pipeline.build(config_of(variant))}
    assert set(model) == {"ci", "cd", "retrain"}
    for pipe in model.values():
        for job in pipe.jobs:
            if job.stage is not None and job.stage.name in DELIVERY:
                assert pipe.requires(job.id) >= {"lint", "unit-test", "data-test", "gate"}, (pipe.id, job.id)
        if pipe.id != "ci":
            assert pipe.job("train").needs == ("gate",)
            assert pipe.job("gate").gate and set(pipe.job("gate").needs) == {"lint", "unit-test", "data-test"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_commit_pushed_to_the_default_branch_is_checked(variant: str) -> None:
    """H2: a pending cd run can be replaced by a newer one before it starts, so ci checks every
    push to the default branch in a run of its own; pull requests run only ci."""
    model = {p.id: p for p in pipeline.build(config_of(variant))}
    branch = config_of(variant).ci.default_branch
    ci = model["ci"]
    assert ci.triggers == (pipeline.Trigger("pull_request"), pipeline.Trigger("push", branches=(branch,)))
    assert ci.every_push and ci.concurrency_group is None
    assert [j.id for j in ci.jobs] == ["lint", "unit-test", "data-test", "gate"]
    on_pull_request = [p.id for p in model.values() if any(t.kind == "pull_request" for t in p.triggers)]
    assert on_pull_request == ["ci"]
    # cd shares its group with retrain and waits instead: it is never the only check of a push.
    assert not model["cd"].every_push and model["cd"].concurrency_group == "delivery"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_delivery_job_acts_on_this_runs_model(variant: str) -> None:
    """H3: with a shared tracking server there is no carried state to find the last train in, so
    register takes train's run id, and each deploy the version the job before it answered."""
    model = {p.id: p for p in pipeline.build(config_of(variant))}
    for pipe_id in ("cd", "retrain"):
        pipe = model[pipe_id]
        handovers = {j.id: j.inputs_from for j in pipe.jobs if j.inputs_from}
        assert handovers == {
            "register": (pipeline.Handover("run-id", "train", "run-id"),),
            "deploy-staging": (pipeline.Handover("version", "register", "model-version"),),
            "deploy-production": (pipeline.Handover("version", "deploy-staging", "model-version"),),
        }
        assert pipe.outputs_of("train") == ("run-id",)
        assert pipe.outputs_of("register") == ("model-version",)
        assert pipe.outputs_of("deploy-staging") == ("model-version",)
        assert pipe.outputs_of("deploy-production") == ()
    assert not any(j.inputs_from for j in model["ci"].jobs)


def test_a_job_takes_inputs_only_from_a_job_it_needs() -> None:
    train = pipeline.stage_job("train")
    gate = pipeline.Job("gate", "Gate", None, gate=True)
    register = pipeline.stage_job(
        "register", needs=("gate",), inputs_from=(pipeline.Handover("run-id", "train", "run-id"),)
    )
    with pytest.raises(ValueError, match=r"pipeline p: job register takes run-id from train, which it does not need"):
        pipeline.Pipeline("p", "p", (), (train, gate, register))


def test_the_local_registry_is_kept_by_the_default_branch_only() -> None:
    model = {p.id: p for p in pipeline.build(config_of("local"))}
    assert model["ci"].registry_branch is None
    for pipe_id in ("cd", "retrain"):
        pipe = model[pipe_id]
        assert pipe.registry_branch == "main"
        assert pipe.concurrency_group == "delivery"  # one writer of the registry at a time
        assert [j.id for j in pipe.jobs if j.restores_registry] == ["train"]
        assert [j.id for j in pipe.jobs if j.saves_registry] == ["register", "deploy-staging", "deploy-production"]
        # Each saving job carries state back to train, which records the registry it restored:
        # the guard that a save never replaces a newer registry depends on it.
        for job in pipe.jobs:
            if job.saves_registry:
                chain = [job.id]
                while not pipe.job(chain[-1]).restores_registry:
                    assert pipe.job(chain[-1]).restores_state, chain
                    chain.append(pipe.job(chain[-1]).needs[0])
                    assert pipe.job(chain[-1]).saves_state, chain
                assert chain[-1] == "train"


def test_a_registry_save_must_know_the_registry_this_run_restored() -> None:
    """H1: a job saving the registry without state from the job that restored it could not tell
    a newer run's registry from its own, and would replace it."""
    train = pipeline.stage_job("train", restores_registry=True)
    register = pipeline.stage_job("register", needs=("train",), saves_registry=True)
    with pytest.raises(
        ValueError, match=r"pipeline p: job register saves the registry without knowing which one this run restored"
    ):
        pipeline.Pipeline("p", "p", (), (train, register), registry_branch="main")
    carrying = pipeline.stage_job("register", needs=("train",), restores_state=True, saves_registry=True)
    assert pipeline.Pipeline("p", "p", (), (train, carrying), registry_branch="main").registry_branch == "main"


@pytest.mark.parametrize("variant", ["tracking-server", "databricks"])
def test_a_shared_registry_is_not_kept_locally(variant: str) -> None:
    for pipe in pipeline.build(config_of(variant)):
        assert pipe.registry_branch is None
        assert not any(j.restores_registry or j.saves_registry or j.saves_state for j in pipe.jobs)


def test_a_job_cannot_need_a_job_defined_after_it() -> None:
    late = pipeline.stage_job("lint", id="b", needs=("c",))
    with pytest.raises(ValueError, match=r"pipeline p: job b needs \['c'\], not defined before it"):
        pipeline.Pipeline("p", "p", (), (late, pipeline.stage_job("test", id="c")))


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_job_is_its_stage_specs(variant: str) -> None:
    """A job's id, name and timeout are its stage spec's; deploy has one job per environment."""
    specs = {spec.name: spec for spec in STAGES}
    for pipe in pipeline.build(config_of(variant)):
        for job in pipe.jobs:
            if job.stage is None:
                assert job.gate and job.capabilities == frozenset() and not job.options
                continue
            assert job.stage is specs[job.stage.name]
            assert job.timeout_minutes == job.stage.timeout_minutes
            if job.stage.name == "deploy":
                env = job.options["env"]
                assert (job.id, job.name, job.environment) == (f"deploy-{env}", f"Deploy to {env}", env)
            else:
                assert (job.id, job.name, job.options) == (job.stage.ci_id, job.stage.job_name, {})


def test_capabilities_are_neutral_and_oidc_only_where_a_credential_federates() -> None:
    for variant in VARIANTS:
        for pipe in pipeline.build(config_of(variant)):
            for job in pipe.jobs:
                expected = set() if job.gate else {"read-repository"}
                if job.credentials and variant == "databricks":
                    expected.add("oidc-token")
                assert job.capabilities == expected, (variant, pipe.id, job.id)


@pytest.mark.parametrize(
    ("handover", "message"),
    [
        (
            pipeline.Handover("run", "train", "run-id"),
            "pipeline p: job register takes run from train, but its stage has no CI input run",
        ),
        (
            pipeline.Handover("run-id", "train", "run"),
            "pipeline p: job register takes run-id from train, which has no output run",
        ),
    ],
)
def test_a_handover_names_an_input_of_the_consumer_and_an_output_of_the_producer(
    handover: pipeline.Handover, message: str
) -> None:
    register = pipeline.stage_job("register", needs=("train",), inputs_from=(handover,))
    with pytest.raises(ValueError) as raised:
        pipeline.Pipeline("p", "p", (), (pipeline.stage_job("train"), register))
    assert str(raised.value) == message


def test_a_job_option_is_an_input_of_its_stage() -> None:
    with pytest.raises(ValueError) as raised:
        pipeline.Pipeline("p", "p", (), (pipeline.stage_job("train", options={"env": "staging"}),))
    assert str(raised.value) == "pipeline p: job train: stage train has no CI input env"
    with pytest.raises(ValueError) as raised:
        pipeline.Pipeline("p", "p", (), (pipeline.Job("gate", "Gate", None, options={"env": "x"}, gate=True),))
    assert str(raised.value) == "pipeline p: job gate runs no stage but is given inputs"
