"""The pipeline model: what the CI files of every provider describe, built from mlci.yaml.

Providers render this model; they never decide what runs. Each job runs exactly one `mlci`
command (or, for a gate, none) and carries the permissions and credentials it needs, so least
privilege is decided here once for every CI system.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from mlci.config import Config

TriggerKind = Literal["pull_request", "push", "manual", "schedule"]
Credential = Literal["databricks", "mlflow"]


@dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    branches: tuple[str, ...] = ()
    cron: str | None = None


@dataclass(frozen=True)
class Job:
    """One job: a stage run on a fresh runner, or a gate that only checks the jobs it needs."""

    id: str
    name: str
    command: tuple[str, ...]  # the mlci command; empty for a gate
    needs: tuple[str, ...] = ()
    # Repository permissions the job needs, as GitHub names them; others map them to their own.
    permissions: Mapping[str, str] = field(default_factory=lambda: {"contents": "read"})
    environment: str | None = None  # a deployment environment (approvals live there)
    credentials: tuple[Credential, ...] = ()
    # .mlci state (local MLflow store, stage results) carried from the jobs it needs to this one.
    restores_state: bool = False
    saves_state: bool = False
    timeout_minutes: int = 30
    gate: bool = False

    @property
    def stage(self) -> str | None:
        return self.command[1] if len(self.command) > 1 else None


@dataclass(frozen=True)
class Pipeline:
    id: str
    name: str
    triggers: tuple[Trigger, ...]
    jobs: tuple[Job, ...]
    cancel_in_progress: bool = True

    def job(self, job_id: str) -> Job:
        return next(j for j in self.jobs if j.id == job_id)


def _credentials(config: Config) -> tuple[Credential, ...]:
    if config.target == "databricks":
        return ("databricks",)
    return ("mlflow",) if config.tracking.uri is not None else ()


def _deploy_job(env: str, after: str, carry: bool, credentials: tuple[Credential, ...], last: bool) -> Job:
    return Job(
        f"deploy-{env}",
        f"Deploy to {env}",
        ("mlci", "deploy", "--env", env),
        needs=(after,),
        environment=env,
        credentials=credentials,
        restores_state=carry,
        saves_state=carry and not last,
        timeout_minutes=30,
    )


def build(config: Config) -> tuple[Pipeline, ...]:
    """The ci, cd and (when scheduled) retrain pipelines of a project."""
    branch = config.ci.default_branch
    checks = (
        Job("lint", "Lint", ("mlci", "lint"), timeout_minutes=15),
        Job("unit-test", "Unit tests", ("mlci", "test"), timeout_minutes=30),
        Job("data-test", "Data tests", ("mlci", "data-test"), timeout_minutes=30),
    )
    ci = Pipeline(
        id="ci",
        name="ci",
        triggers=(Trigger("pull_request"), Trigger("push", branches=(branch,))),
        jobs=(
            *checks,
            Job("gate", "CI gate", (), needs=tuple(j.id for j in checks), permissions={}, timeout_minutes=5, gate=True),
        ),
    )
    remote_store = config.target == "databricks" or config.tracking.uri is not None
    credentials = _credentials(config)
    # Without a shared tracking server the local MLflow store travels between jobs as state.
    carry = not remote_store
    delivery = (
        Job("train", "Train", ("mlci", "train"), credentials=credentials, saves_state=carry, timeout_minutes=60),
        Job(
            "register",
            "Register",
            ("mlci", "register"),
            needs=("train",),
            credentials=credentials,
            restores_state=carry,
            saves_state=carry,
            timeout_minutes=30,
        ),
        _deploy_job("staging", after="register", carry=carry, credentials=credentials, last=False),
        _deploy_job("production", after="deploy-staging", carry=carry, credentials=credentials, last=True),
    )
    cd = Pipeline(
        id="cd",
        name="cd",
        triggers=(Trigger("push", branches=(branch,)), Trigger("manual")),
        jobs=delivery,
        cancel_in_progress=False,  # never cancel a deployment half-way
    )
    pipelines: list[Pipeline] = [ci, cd]
    if config.ci.retrain_cron:
        pipelines.append(
            Pipeline(
                id="retrain",
                name="retrain",
                triggers=(Trigger("schedule", cron=config.ci.retrain_cron), Trigger("manual")),
                jobs=delivery,
                cancel_in_progress=False,
            )
        )
    return tuple(pipelines)
