"""The pipeline model: what the CI files of every provider describe, built from mlci.yaml.

Providers render this model; they never decide what runs. Each job runs exactly one stage of
the stage registry (`mlci.stage_specs.STAGES`) with its options (or, for a gate, none) and carries
the capabilities and credentials it needs, in neutral terms each provider maps to its own
permissions, so least privilege is decided here once for every CI system.

Guarantees decided here too, so every provider inherits them:
- A job installs only what its stage needs (`Job.install`: mlci's extras from the stage
  registry, with what mlci.yaml implies, and the project only for the stages that run its
  code), and each install has its own dependency cache (keyed on both).
- Delivery never runs for a commit whose checks failed: the cd and retrain pipelines contain
  the CI checks and their gate as jobs, and `train` needs the gate (`Pipeline.requires`).
  The ci pipeline runs on pull requests and on every push to the default branch
  (`Pipeline.every_push`): a cd run that waits for the delivery group can be replaced by a
  newer one before it starts, and its commit must still be checked. The checks of a pushed
  head commit therefore run twice, once in ci and once in cd, on purpose.
- Every delivery job acts on this run's model, never on whatever an alias points at: the run
  id and version are handed from job to job (`Job.inputs_from`), whichever store is used.
- A job may run only when an output of a job it needs has a given value (`Job.when`): the
  monitor pipeline's delivery jobs run only when the monitor job decided `retrain=true`, and
  are skipped (never failed) otherwise, the gate included.
- Without a shared tracking server, the local MLflow store is kept between delivery runs of
  the default branch (`Pipeline.registry_branch`, `Job.restores_registry`/`saves_registry`).
  A save never replaces a newer registry than the one the run started from: a re-run of an
  old run's job would otherwise drop the versions later runs registered (`Job.saves_registry`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mlci import targets
from mlci.config import ENVIRONMENTS, Config
from mlci.stage_specs import CHECKS, STAGES, StageSpec, stage_extras
from mlci.targets.base import ByProvider, Credential, EnvVar
from mlci.targets.base import Literal as LiteralValue

TriggerKind = Literal["pull_request", "push", "manual", "schedule"]
# What a job may do beyond running its stage, as every CI system can grant it: read the
# repository (check it out), and obtain the CI system's OIDC token (federation instead of a
# long-lived secret). A provider maps each to its own permission (GitHub: contents: read,
# id-token: write); a job is granted nothing else.
Capability = Literal["read-repository", "oidc-token"]
READ_REPOSITORY: Capability = "read-repository"
OIDC_TOKEN: Capability = "oidc-token"


@dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    branches: tuple[str, ...] = ()
    cron: str | None = None


@dataclass(frozen=True)
class Handover:
    """An input of a job's stage taken from an output of a job it needs, within one run."""

    input: str  # one of the consumer stage's CI inputs (`run-id`, StageSpec.inputs)
    job: str  # the job that produced it; must be among the consumer's needs
    output: str  # one of that job's stage outputs (`model-version`, StageSpec.outputs)


@dataclass(frozen=True)
class Condition:
    """A job runs only when an output of a job it needs equals `value`; otherwise it is skipped
    (not failed), and so is every job that needs it."""

    job: str  # the job that produced it; must be among the conditioned job's needs
    output: str  # one of that job's stage outputs (`retrain`, StageSpec.outputs)
    value: str


@dataclass(frozen=True)
class Install:
    """What a job's setup step installs: mlci with `extras` (pyproject.toml), and the project
    itself when `project`. A job installs what its stage needs and nothing else (the stage
    registry's StageSpec.extras and needs_project, with what mlci.yaml implies), so a lint job
    installs mlci's core only. Every provider keys a job's dependency cache on both, so a small
    install never saves under the key a bigger one restores."""

    extras: tuple[str, ...] = ()
    project: bool = False


@dataclass(frozen=True)
class Job:
    """One job: a stage run on a fresh runner, or a gate that only checks the jobs it needs."""

    id: str
    name: str
    stage: StageSpec | None  # the stage it runs; None for a gate
    # Values of the stage's CI inputs fixed by the model (deploy: {"env": "staging"}), by input name.
    options: Mapping[str, str] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    capabilities: frozenset[Capability] = frozenset({READ_REPOSITORY})
    environment: str | None = None  # a deployment environment (approvals live there)
    credentials: tuple[Credential, ...] = ()
    # .mlci state (local MLflow store, stage results) carried from the jobs it needs to this one.
    restores_state: bool = False
    saves_state: bool = False
    # Inputs of the stage taken from outputs of jobs it needs in the same run.
    inputs_from: tuple[Handover, ...] = ()
    # The local MLflow store (runs, registered versions, aliases) kept between runs of the
    # pipeline's registry_branch: restored before the job's stage, saved after it. A save is
    # guarded: it happens only while the newest kept registry is the one this run restored, or
    # one this run saved itself; otherwise a newer run's registry exists and is left alone.
    # The restored registry's identity travels with the state, so a saving job carries state
    # from the job that restored it (checked by Pipeline).
    restores_registry: bool = False
    saves_registry: bool = False
    timeout_minutes: int = 30
    gate: bool = False
    only_on_branch: str | None = None  # deployments run only from this branch, whoever triggers them
    when: Condition | None = None  # runs only when an output of a job it needs has this value
    # Files (relative to the project) the job keeps as the run's artifacts, whether its stage
    # passed or not: what a reviewer of the run reads (the monitor's decision and report).
    reports: tuple[str, ...] = ()
    # What its setup step installs (a gate installs nothing and sets nothing up).
    install: Install = Install()


@dataclass(frozen=True)
class Pipeline:
    id: str
    name: str
    triggers: tuple[Trigger, ...]
    jobs: tuple[Job, ...]
    cancel_in_progress: bool = True
    # Pipelines with the same group never run at once for one branch (None: this pipeline's
    # own group). cd and retrain share one: both write the same registry.
    concurrency_group: str | None = None
    # The only branch whose runs may save the kept registry; None: there is none to keep
    # (a shared tracking server, or a pipeline that never touches the registry).
    registry_branch: str | None = None
    # Every push gets its own run, never cancelled or replaced by a later push (pull requests
    # still cancel the run a newer commit supersedes).
    every_push: bool = False

    def __post_init__(self) -> None:
        seen: set[str] = set()
        knows_restored_registry: set[str] = set()  # jobs whose state says which registry was restored
        for job in self.jobs:
            unknown = [need for need in job.needs if need not in seen]
            if unknown:  # a model bug: jobs are listed in an order every provider can render
                raise ValueError(f"pipeline {self.id}: job {job.id} needs {unknown}, not defined before it")
            if (job.saves_registry or job.restores_registry) and self.registry_branch is None:
                raise ValueError(f"pipeline {self.id}: job {job.id} keeps a registry but the pipeline has no branch")
            self._check_stage(job)
            self._check_credentials(job)
            for handover in job.inputs_from:
                if handover.job not in job.needs:  # only a job it needs has run and has outputs
                    raise ValueError(
                        f"pipeline {self.id}: job {job.id} takes {handover.input} from {handover.job}, "
                        "which it does not need"
                    )
                self._check_handover(job, handover)
            if job.when is not None:
                self._check_condition(job, job.when)
            carried = job.restores_state and bool(job.needs) and job.needs[0] in knows_restored_registry
            if job.restores_registry or carried:
                knows_restored_registry.add(job.id)
            if job.saves_registry and job.id not in knows_restored_registry:
                raise ValueError(
                    f"pipeline {self.id}: job {job.id} saves the registry without knowing which one this run restored"
                )
            seen.add(job.id)

    def _check_stage(self, job: Job) -> None:
        """A job's options and hand-overs name inputs its stage has; a gate has neither."""
        where = f"pipeline {self.id}: job {job.id}"
        if job.stage is None:
            if job.options or job.inputs_from:
                raise ValueError(f"{where} runs no stage but is given inputs")
            return
        inputs = {i.name for i in job.stage.inputs}
        unknown = sorted(set(job.options) - inputs)
        if unknown:
            raise ValueError(f"{where}: stage {job.stage.name} has no CI input {', '.join(unknown)}")
        twice = sorted(set(job.options) & {h.input for h in job.inputs_from})
        if twice:
            raise ValueError(f"{where} is given {', '.join(twice)} both as an option and from another job")

    def _check_credentials(self, job: Job) -> None:
        """A credential that federates gets the OIDC token; no two set one variable."""
        where = f"pipeline {self.id}: job {job.id}"
        federated = [c.name for c in job.credentials if c.oidc]
        if federated and OIDC_TOKEN not in job.capabilities:
            raise ValueError(f"{where} uses {', '.join(federated)} through OIDC without the {OIDC_TOKEN} capability")
        names = [var.name for credential in job.credentials for var in credential.env]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"{where}: credentials set {', '.join(twice)} more than once")

    def _check_handover(self, job: Job, handover: Handover) -> None:
        where = f"pipeline {self.id}: job {job.id} takes {handover.input} from {handover.job}"
        if job.stage is None or handover.input not in {i.name for i in job.stage.inputs}:
            raise ValueError(f"{where}, but its stage has no CI input {handover.input}")
        producer = self.job(handover.job).stage
        if producer is None or handover.output not in {o.name for o in producer.outputs}:
            raise ValueError(f"{where}, which has no output {handover.output}")

    def _check_condition(self, job: Job, when: Condition) -> None:
        where = f"pipeline {self.id}: job {job.id} runs when {when.job}'s {when.output} is {when.value!r}"
        if when.job not in job.needs:  # only a job it needs has run and has outputs (GitHub's needs.<job>)
            raise ValueError(f"{where}, but it does not need {when.job}")
        producer = self.job(when.job).stage
        if producer is None or when.output not in {o.name for o in producer.outputs}:
            raise ValueError(f"{where}, which has no output {when.output}")
        if not when.value:
            raise ValueError(f"{where}: an empty value is what a skipped or failed job outputs")

    def job(self, job_id: str) -> Job:
        return next(j for j in self.jobs if j.id == job_id)

    def outputs_of(self, job_id: str) -> tuple[str, ...]:
        """The outputs of `job_id` that later jobs take as inputs or run on, in first-use order."""
        wanted = []
        for job in self.jobs:
            wanted += [h.output for h in job.inputs_from if h.job == job_id]
            if job.when is not None and job.when.job == job_id:
                wanted.append(job.when.output)
        return tuple(dict.fromkeys(wanted))

    def requires(self, job_id: str) -> frozenset[str]:
        """Every job that must succeed before `job_id` runs: its needs, transitively.

        A gate (`if: always()`) runs whatever its needs did, but fails unless they all
        succeeded, so a job that needs a gate still requires everything the gate checks."""
        required: set[str] = set()
        pending = list(self.job(job_id).needs)
        while pending:
            need = pending.pop()
            if need not in required:
                required.add(need)
                pending.extend(self.job(need).needs)
        return frozenset(required)


def _capabilities(credentials: tuple[Credential, ...]) -> frozenset[Capability]:
    """Checking out the repository, and the OIDC token when a credential federates through it."""
    oidc = any(credential.oidc for credential in credentials)
    return frozenset({READ_REPOSITORY, OIDC_TOKEN}) if oidc else frozenset({READ_REPOSITORY})


_SPECS = {spec.name: spec for spec in STAGES}


def stage_job(stage: str, config: Config | None = None, **fields: Any) -> Job:
    """The job running `stage`: its id, display name, timeout and install are the stage spec's
    (with what `config` implies: stage_extras)."""
    spec = _SPECS[stage]
    extras = stage_extras(spec, config) if config is not None else spec.extras
    defaults: dict[str, Any] = {
        "id": spec.ci_id,
        "name": spec.job_name,
        "timeout_minutes": spec.timeout_minutes,
        "install": Install(extras, spec.needs_project),
    }
    return Job(stage=spec, **(defaults | fields))


def _deploy_job(
    config: Config, env: str, after: str, carry: bool, credentials: tuple[Credential, ...], last: bool, branch: str
) -> Job:
    spec = _SPECS["deploy"]
    return stage_job(
        "deploy",
        config,
        id=f"{spec.ci_id}-{env}",
        name=f"{spec.job_name} to {env}",
        options={"env": env},
        needs=(after,),
        # The first environment deploys the version this run's register answered; each later
        # one exactly the version the one before it serves and verified (mlci deploy refuses others).
        inputs_from=(Handover("version", after, "model-version"),),
        environment=env,
        capabilities=_capabilities(credentials),
        credentials=credentials,
        restores_state=carry,
        saves_state=carry and not last,
        saves_registry=carry,  # the aliases it moved
        only_on_branch=branch,
    )


_CHECKS = CHECKS  # the stages every commit is checked by (stage_specs.CHECKS)
CHECK_STAGES = tuple(_SPECS[name].ci_id for name in _CHECKS)  # the job ids of the checks
GATE = "gate"


def _checks(config: Config) -> tuple[Job, ...]:
    """The checks and the one gate that fails unless all of them succeeded."""
    checks = tuple(stage_job(name, config) for name in _CHECKS)
    gate = Job(
        GATE, "CI gate", None, needs=tuple(j.id for j in checks), capabilities=frozenset(), timeout_minutes=5, gate=True
    )
    return (*checks, gate)


def build(config: Config) -> tuple[Pipeline, ...]:
    """The ci, cd and (when scheduled) retrain and monitor pipelines of a project."""
    branch = config.ci.default_branch
    checks = _checks(config)
    # Pull requests, and every push to the default branch: cd runs these checks too (delivery
    # cannot start before they passed), but a pending cd run is replaced by a newer one, so
    # only ci checks every commit that reaches the default branch.
    ci = Pipeline(
        id="ci",
        name="ci",
        triggers=(Trigger("pull_request"), Trigger("push", branches=(branch,))),
        jobs=checks,
        every_push=True,
    )
    # What a job that trains, registers or deploys needs to reach the target, as data.
    target = targets.get(config.target)
    credentials = target.credentials(config)
    capabilities = _capabilities(credentials)
    # Without a shared tracking server the local MLflow store travels between jobs as state,
    # and between runs of the default branch as the kept registry.
    carry = target.carries_state(config)
    delivery = (
        *checks,
        stage_job(
            "train",
            config,
            needs=(GATE,),
            capabilities=capabilities,
            credentials=credentials,
            saves_state=carry,
            restores_registry=carry,
        ),
        stage_job(
            "register",
            config,
            needs=("train",),
            inputs_from=(Handover("run-id", "train", "run-id"),),  # this run's model, not the last trained
            capabilities=capabilities,
            credentials=credentials,
            restores_state=carry,
            saves_state=carry,
            saves_registry=carry,
        ),
        # One deploy job per environment of the promotion chain, each after the one before.
        *(
            _deploy_job(
                config,
                env,
                after="register" if index == 0 else f"deploy-{ENVIRONMENTS[index - 1]}",
                carry=carry,
                credentials=credentials,
                last=index == len(ENVIRONMENTS) - 1,
                branch=branch,
            )
            for index, env in enumerate(ENVIRONMENTS)
        ),
    )
    registry_branch = branch if carry else None
    cd = Pipeline(
        id="cd",
        name="cd",
        triggers=(Trigger("push", branches=(branch,)), Trigger("manual")),
        jobs=delivery,
        cancel_in_progress=False,  # never cancel a deployment half-way
        concurrency_group="delivery",
        registry_branch=registry_branch,
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
                concurrency_group="delivery",
                registry_branch=registry_branch,
            )
        )
    # A target that monitors in its own workspace runs monitor.schedule there (Databricks' check job).
    if config.monitor.schedule and not target.monitors_in_workspace(config):
        pipelines.append(_monitor(config, delivery, credentials, carry, registry_branch))
    return tuple(pipelines)


MONITOR = "monitor"  # the monitor pipeline's first job (the monitor stage's ci_id)
RETRAIN_WHEN = Condition(MONITOR, "retrain", "true")


def _monitor(
    config: Config,
    delivery: tuple[Job, ...],
    credentials: tuple[Credential, ...],
    carry: bool,
    registry_branch: str | None,
) -> Pipeline:
    """The monitor pipeline: the monitor stage on its schedule, then the retrain pipeline's jobs,
    each run only when the monitor decided to retrain (skipped, not failed, when it held)."""
    output = config.monitor.output.rstrip("/")
    monitor = stage_job(
        "monitor",
        config,
        # It reads the registry (the served version's baseline and registration time), so it
        # signs in as train does, and restores the kept registry to read it, never saving it.
        capabilities=_capabilities(credentials),
        credentials=credentials,
        restores_registry=carry,
        reports=(f"{output}/decision.json", f"{output}/report.html", ".mlci/out/monitor.xml"),
    )
    assert monitor.id == MONITOR
    retrain = tuple(dataclasses.replace(job, needs=(*job.needs, MONITOR), when=RETRAIN_WHEN) for job in delivery)
    return Pipeline(
        id="monitor",
        name="monitor",
        triggers=(Trigger("schedule", cron=config.monitor.schedule), Trigger("manual")),
        jobs=(monitor, *retrain),
        cancel_in_progress=False,
        concurrency_group="delivery",
        registry_branch=registry_branch,
    )


@dataclass(frozen=True)
class Decided:
    """A pipeline whose jobs run on one decision (`Job.when`, e.g. monitor's `retrain`), and how
    a run of it is told apart from the other pipelines of a one-file provider (Azure, Jenkins):
    its one schedule, or a manual run that asks for it."""

    pipeline: Pipeline
    when: Condition
    schedule: str | None
    manual: bool


def decided_pipelines(pipelines: tuple[Pipeline, ...], provider: str) -> tuple[Decided, ...]:
    """The pipelines whose jobs run on one decision, every job but the deciding one conditioned;
    a ValueError naming `provider` for a shape a one-file provider cannot tell apart."""
    found = []
    for p in pipelines:
        conditions = {job.when for job in p.jobs if job.when is not None}
        if not conditions:
            continue
        if len(conditions) != 1:
            raise ValueError(f"pipeline {p.id}: {provider} renders one decision a pipeline's jobs run on")
        when = next(iter(conditions))
        undecided = [job.id for job in p.jobs if job.when is None and job.id != when.job]
        if undecided:
            raise ValueError(f"pipeline {p.id}: jobs {undecided} do not run on {when.job}'s decision")
        crons = [t.cron for t in p.triggers if t.kind == "schedule"]
        if len(crons) > 1 or any(t.kind not in ("schedule", "manual") for t in p.triggers):
            raise ValueError(
                f"pipeline {p.id}: {provider} tells a decided pipeline apart by one schedule or by hand only"
            )
        found.append(Decided(p, when, crons[0] if crons else None, any(t.kind == "manual" for t in p.triggers)))
    return tuple(found)


def as_rendered(pipeline: Pipeline, provider: str) -> Pipeline:
    """`pipeline` as a CI file of `provider` can show it: what its parse-back recovers.

    A CI file sets a job's variables but does not say which credential set which: a job's
    credentials become one unnamed credential with all their variables, federating (`oidc`)
    when any of them does, with their reasons joined; a value given per CI system
    (`ByProvider`) is the literal of `provider`, and a UsageError when it has none (as every
    renderer refuses it). Everything else is kept as it is."""
    return dataclasses.replace(
        pipeline,
        jobs=tuple(dataclasses.replace(j, credentials=_merged(j.credentials, provider)) for j in pipeline.jobs),
    )


def _merged(credentials: tuple[Credential, ...], provider: str) -> tuple[Credential, ...]:
    env = tuple(
        EnvVar(
            var.name,
            LiteralValue(var.value.value_for(provider)) if isinstance(var.value, ByProvider) else var.value,
        )
        for credential in credentials
        for var in credential.env
    )
    if not env:
        return ()
    oidc = [c for c in credentials if c.oidc]
    reason = "; ".join(dict.fromkeys(c.reason for c in oidc if c.reason))
    return (Credential("", oidc=bool(oidc), env=env, reason=reason),)
