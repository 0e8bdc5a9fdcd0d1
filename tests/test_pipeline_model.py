"""The pipeline model's guarantees, which every provider inherits: delivery only after the
checks passed, the checks once per commit, and a local registry kept only by the default branch."""

from __future__ import annotations

import pytest

from mlci import pipeline
from mlci.config import Config, parse_config

BASE = """\
schema: 1
project:
  name: churn-model
  package: churn_model
data:
  train: data/train.csv
  holdout: data/holdout.csv
  target: label
train:
  entrypoint: churn_model.train:train
register:
  gates:
    - roc_auc >= 0.9
"""
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
            if job.stage in DELIVERY:
                assert pipe.requires(job.id) >= {"lint", "unit-test", "data-test", "gate"}, (pipe.id, job.id)
        if pipe.id != "ci":
            assert pipe.job("train").needs == ("gate",)
            assert pipe.job("gate").gate and set(pipe.job("gate").needs) == {"lint", "unit-test", "data-test"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_event_runs_the_checks_once(variant: str) -> None:
    """ci runs on pull requests, cd on pushes to the default branch: never both for one push."""
    model = pipeline.build(config_of(variant))
    branch = config_of(variant).ci.default_branch
    for kind, branches in (("pull_request", ()), ("push", (branch,)), ("schedule", ()), ("manual", ())):
        running = [p.id for p in model if any(t.kind == kind and t.branches == branches for t in p.triggers)]
        with_checks = [p for p in running if "lint" in {j.id for j in next(m for m in model if m.id == p).jobs}]
        assert len(with_checks) <= 1 or kind == "manual", (kind, running)
    assert [t.kind for t in next(p for p in model if p.id == "ci").triggers] == ["pull_request"]


def test_the_local_registry_is_kept_by_the_default_branch_only() -> None:
    model = {p.id: p for p in pipeline.build(config_of("local"))}
    assert model["ci"].registry_branch is None
    for pipe_id in ("cd", "retrain"):
        pipe = model[pipe_id]
        assert pipe.registry_branch == "main"
        assert pipe.concurrency_group == "delivery"  # one writer of the registry at a time
        assert [j.id for j in pipe.jobs if j.restores_registry] == ["train"]
        assert [j.id for j in pipe.jobs if j.saves_registry] == ["register", "deploy-staging", "deploy-production"]


@pytest.mark.parametrize("variant", ["tracking-server", "databricks"])
def test_a_shared_registry_is_not_kept_locally(variant: str) -> None:
    for pipe in pipeline.build(config_of(variant)):
        assert pipe.registry_branch is None
        assert not any(j.restores_registry or j.saves_registry or j.saves_state for j in pipe.jobs)


def test_a_job_cannot_need_a_job_defined_after_it() -> None:
    late = pipeline.Job("b", "B", ("mlci", "lint"), needs=("c",))
    with pytest.raises(ValueError, match=r"pipeline p: job b needs \['c'\], not defined before it"):
        pipeline.Pipeline("p", "p", (), (late, pipeline.Job("c", "C", ("mlci", "test"))))
