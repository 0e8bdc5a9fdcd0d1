"""Azure Pipelines from the pipeline model: one `azure-pipelines.yml` for the model's ci, cd and
retrain pipelines, stage templates under `.azure/templates/`, and the weekly upgrade pipeline.

Azure runs one pipeline definition per file, so the model's pipelines become one file: the
checks (the jobs of the pipeline that runs on pull requests) are one stage of parallel jobs and
their gate; every other job is a stage of its own whose `condition:` admits exactly the run
reasons of the model's pipelines that contain it (docs/azure.md, parse.py reads it back).

A pipeline whose jobs run on another job's decision (`Job.when`: the monitor pipeline) is told
apart from the others in the same file by its schedule's `displayName` (its id, read back from
`Build.CronSchedule.DisplayName`) or, run by hand, by a boolean runtime parameter of that name.
The deciding job is a stage of its own that runs only for such a run; every stage holding one
of the decided jobs depends on it and runs when it was skipped (another kind of run: cd and
retrain as ever) or decided the value, and is skipped, not failed, otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci import pipeline as pipeline_model
from mlci.errors import InfraError
from mlci.pipeline import OIDC_TOKEN, READ_REPOSITORY, Condition, Decided, Job, Pipeline, TriggerKind
from mlci.providers.base import RenderContext
from mlci.stage_specs import STAGES, Input, StageSpec
from mlci.targets.base import EnvValue, Literal, Secret, Variable
from mlci.template_env import compiled, version_text, yaml_str

NAME = "azure"  # the provider this module renders (its package names it too: NAME)
SHIPPED_TEMPLATES = Path(__file__).parent / "templates"

PIPELINE_FILE = "azure-pipelines.yml"
TEMPLATES = ".azure/templates"
UPGRADE_FILE = ".azure/mlci-upgrade.yml"
REMOTE_TEMPLATES = "azure/templates"  # in the mlci repository (published.py), referenced as `<path>@mlci`
CHECKS_STAGE = "checks"
# The Build.Reason values each trigger of the model starts a run with (Azure's predefined variable).
REASONS: dict[TriggerKind, tuple[str, ...]] = {
    "push": ("IndividualCI", "BatchedCI"),
    "manual": ("Manual",),
    "schedule": ("Schedule",),
    "pull_request": ("PullRequest",),
}
SERVICE_CONNECTION = "azureServiceConnection"  # the pipeline parameter naming the ARM service connection
# Why a step runs logged in through the service connection, when no credential gives a reason.
OIDC_REASON = "workload identity federation: no long-lived secret"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Azure expands these in any value it reads: a fixed value holding one would not stay fixed.
_MACRO = re.compile(r"\$\(|\$\[|\$\{\{")


def azure_name(model_id: str) -> str:
    """A model id as an Azure stage or job name (A-Z, a-z, 0-9 and `_` only)."""
    name = model_id.replace("-", "_")
    if not _NAME.fullmatch(name) or "_" in model_id:
        raise ValueError(f"job id {model_id!r} has no reversible Azure name")
    return name


def model_id(name: str) -> str:
    return name.replace("_", "-")


def parameter_name(input_name: str) -> str:
    """A stage input (`run-id`) as a template parameter (`runId`): `${{ parameters.x }}` needs an identifier."""
    first, *rest = input_name.split("-")
    return first + "".join(part.capitalize() for part in rest)


def handover_variable(input_name: str) -> str:
    return "MLCI_HANDOVER_" + input_name.upper().replace("-", "_")


def input_env(input_name: str) -> str:
    """The variable a template parameter reaches its script through (never `${{ }}` in a script)."""
    return "MLCI_IN_" + input_name.upper().replace("-", "_")


def choices_of(spec: StageSpec, stage_input: Input) -> tuple[str, ...] | None:
    """The closed set of values an input takes ("" first: not passed), or None when it is open."""
    option = next(o for o in spec.options if stage_input.flag in o.flags)
    return ("", *option.choices) if option.choices else None


def env_value(value: EnvValue) -> str:
    """One credential variable as the pipeline writes it: `$(NAME)` for a secret or a variable,
    a fixed value as a quoted scalar that holds no Azure macro."""
    if isinstance(value, Secret | Variable):
        if not _NAME.fullmatch(value.name):
            raise ValueError(f"{value.name!r} is not an Azure Pipelines variable name")
        return f"$({value.name})"
    text = value.value if isinstance(value, Literal) else value.value_for(NAME)
    if _MACRO.search(text):
        raise ValueError(f"the fixed credential value {text!r} holds Azure macro syntax")
    return yaml_str(text)


@dataclass(frozen=True)
class AzureJob:
    job: Job
    name: str
    deployment: bool  # a deployment job bound to job.environment
    depends_on: tuple[str, ...]  # jobs of its own stage it needs
    variables: tuple[tuple[str, str], ...]  # job variables: hand-overs, gate results
    parameters: tuple[tuple[str, str], ...]  # the stage template's parameters (name, rendered value)
    env: tuple[tuple[str, str], ...]
    secret_env: tuple[tuple[str, str], ...]
    oidc_reason: str | None  # runs logged in through the service connection, and why
    registry_branch: str | None  # the branch whose runs keep the registry (it restores or saves it)


@dataclass(frozen=True)
class AzureStage:
    name: str
    display: str
    depends_on: tuple[str, ...]
    condition: str | None
    lock_group: str | None  # the model's concurrency group: lockBehavior sequential
    jobs: tuple[AzureJob, ...]


def decided_pipelines(pipelines: tuple[Pipeline, ...]) -> tuple[Decided, ...]:
    """The model's decided pipelines; each one's id is also its runtime parameter's name."""
    found = pipeline_model.decided_pipelines(pipelines, "Azure")
    for decided in found:
        if not _NAME.fullmatch(decided.pipeline.id):
            raise ValueError(f"pipeline id {decided.pipeline.id!r} is no Azure parameter name")
    return found


def parameter(decided: Decided) -> str:
    """The boolean runtime parameter a manual run of `decided` sets: the pipeline's id."""
    return decided.pipeline.id


def is_run_of(decided: Decided) -> str:
    """The condition that holds exactly in a run of the decided pipeline: its schedule fired, or
    a manual run set its parameter (a scheduled or CI run takes the default, false)."""
    parts = []
    if decided.schedule is not None:
        parts.append(f"eq(variables['Build.CronSchedule.DisplayName'], '{decided.pipeline.id}')")
    if decided.manual:
        parts.append(f"eq('${{{{ parameters.{parameter(decided)} }}}}', 'true')")
    return parts[0] if len(parts) == 1 else f"or({', '.join(parts)})"


def decision(stage: str, when: Condition, deciding: Job) -> str:
    """Holds when the deciding stage did not run (a run of another pipeline) or decided `when`."""
    prefix = f"{azure_name(deciding.id)}." if deciding.environment else ""
    output = f"dependencies.{stage}.outputs['{prefix}{azure_name(deciding.id)}.stage.{when.output}']"
    return f"or(eq(dependencies.{stage}.result, 'Skipped'), eq({output}, {_literal(when.value)}))"


def _literal(value: str) -> str:
    """A string literal of an Azure expression: single-quoted, a quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def undecided(job: Job) -> Job:
    """A job as the pipelines that do not run it on a decision have it."""
    if job.when is None:
        return job
    return dataclasses.replace(job, needs=tuple(n for n in job.needs if n != job.when.job), when=None)


def registry_key(branch: str) -> str:
    return f'"mlci-registry" | "{branch}"'


def registry_lookup_key(branch: str) -> str:
    """The key of a Cache step that only reads the registry. Cache@2 has no restore-only mode:
    every restore also saves its path when the job ends (post-job steps run in reverse order,
    so after the real save), and a copy saved under the registry's own prefix would become the
    newest registry. This first segment is one the registry's restoreKeys never match."""
    return f'"mlci-registry-lookup" | "{branch}"'


def _reasons(pipelines: tuple[Pipeline, ...], job_id: str) -> tuple[str, ...]:
    kinds = {t.kind for p in pipelines if any(j.id == job_id for j in p.jobs) for t in p.triggers}
    return tuple(reason for kind, reasons in REASONS.items() if kind in kinds for reason in reasons)


def condition(
    reasons: tuple[str, ...], branch: str | None, needed: tuple[str, ...] = (), decided: str | None = None
) -> str:
    """A stage's condition: its needs passed, the run's reason is one of its pipelines', on
    `branch` if given, and with `decided` (a decision clause) the needs named: succeeded()
    would count the deciding stage, skipped in every run but its own pipeline's."""
    if decided is None:
        passed = ["succeeded()"]
    else:
        # A condition without a status function runs even in a cancelled run: not(canceled()).
        passed = [
            "not(canceled())",
            *(f"in(dependencies.{n}.result, 'Succeeded', 'SucceededWithIssues')" for n in needed),
        ]
    parts = [*passed, "in(variables['Build.Reason'], " + ", ".join(f"'{r}'" for r in reasons) + ")"]
    if branch:
        parts.append(f"eq(variables['Build.SourceBranch'], 'refs/heads/{branch}')")
    if decided is not None:
        parts.append(decided)
    return f"and({', '.join(parts)})"


def _one(values: set[Any], what: str) -> Any:
    if len(values) != 1:
        raise ValueError(f"the pipelines disagree on {what}: {sorted(map(str, values))}")
    return next(iter(values))


def checks_of(pipelines: tuple[Pipeline, ...]) -> Pipeline:
    """The one pipeline that runs on pull requests: its jobs are the checks stage."""
    found = [p for p in pipelines if any(t.kind == "pull_request" for t in p.triggers)]
    if len(found) != 1:
        raise ValueError(f"Azure renders one pipeline run on pull requests, not {len(found)}")
    return found[0]


def layout(pipelines: tuple[Pipeline, ...]) -> tuple[AzureStage, ...]:
    """The stages of the one Azure pipeline holding every pipeline of the model."""
    checks_pipeline = checks_of(pipelines)
    decided = decided_pipelines(pipelines)
    jobs: dict[str, Job] = {}
    owner: dict[str, Pipeline] = {}
    deciding = {d.when.job: d.pipeline for d in decided}
    decided_by: dict[str, Condition] = {}
    for p in pipelines:
        for job in p.jobs:
            if job.id in deciding and deciding[job.id] is not p:
                raise ValueError(f"job {job.id} decides for pipeline {deciding[job.id].id} and runs in {p.id} too")
            # The decided jobs are the other pipelines' jobs, each run on the decision too.
            base = undecided(job)
            if jobs.setdefault(job.id, base) != base:
                raise ValueError(f"job {job.id} differs between pipelines")
            if job.when is not None and decided_by.setdefault(job.id, job.when) != job.when:
                raise ValueError(f"job {job.id} runs on two decisions")
            owner.setdefault(job.id, p)
    checks = tuple(j.id for j in checks_pipeline.jobs)
    stage_of = {job_id: CHECKS_STAGE if job_id in checks else azure_name(job_id) for job_id in jobs}
    sink = {CHECKS_STAGE: checks[-1], **{azure_name(j): j for j in jobs if j not in checks}}
    check_decisions = {decided_by.get(j) for j in checks}
    if len(check_decisions) != 1:
        raise ValueError("the checks run on a decision in one pipeline each or none: Azure runs them as one stage")
    check_decision = next(iter(check_decisions))

    def decision_of(when: Condition | None) -> tuple[tuple[str, ...], str | None]:
        """(the deciding stage to depend on, the clause) of a stage whose jobs run on `when`."""
        if when is None:
            return (), None
        return (stage_of[when.job],), decision(stage_of[when.job], when, jobs[when.job])

    def checks_condition(clause: str | None) -> str | None:
        # A condition without a status function runs even in a cancelled run: not(canceled()).
        return None if clause is None else f"and(not(canceled()), {clause})"

    def azure_job(job: Job) -> AzureJob:
        pipeline = owner[job.id]
        variables = (
            [
                (f"MLCI_RESULT_{azure_name(need).upper()}", f"$[ dependencies.{azure_name(need)}.result ]")
                for need in job.needs
            ]
            if job.gate
            else []
        )
        parameters: list[tuple[str, str]] = []
        for stage_input in job.stage.inputs if job.stage else ():
            if stage_input.name in job.options:
                parameters.append((parameter_name(stage_input.name), yaml_str(job.options[stage_input.name])))
        for handover in job.inputs_from:
            producer = jobs[handover.job]
            prefix = f"{azure_name(producer.id)}." if producer.environment else ""
            source = f"stageDependencies.{stage_of[producer.id]}.{azure_name(producer.id)}"
            variables.append(
                (handover_variable(handover.input), f"$[ {source}.outputs['{prefix}stage.{handover.output}'] ]")
            )
            parameters.append((parameter_name(handover.input), f"$({handover_variable(handover.input)})"))
        env = [(v.name, env_value(v.value)) for c in job.credentials for v in c.env if not isinstance(v.value, Secret)]
        secrets = [(v.name, env_value(v.value)) for c in job.credentials for v in c.env if isinstance(v.value, Secret)]
        oidc = None
        if OIDC_TOKEN in job.capabilities:
            oidc = "; ".join(dict.fromkeys(c.reason for c in job.credentials if c.oidc and c.reason)) or OIDC_REASON
        keeps = job.restores_registry or job.saves_registry
        return AzureJob(
            job=job,
            name=azure_name(job.id),
            deployment=job.environment is not None,
            depends_on=tuple(azure_name(n) for n in job.needs if stage_of[n] == stage_of[job.id]),
            variables=tuple(variables),
            parameters=tuple(parameters),
            env=tuple(env),
            secret_env=tuple(secrets),
            oidc_reason=oidc,
            registry_branch=pipeline.registry_branch if keeps else None,
        )

    on_decision, check_clause = decision_of(check_decision)
    check_stage = AzureStage(
        CHECKS_STAGE,
        "Checks",
        on_decision,
        checks_condition(check_clause),
        None,
        tuple(azure_job(jobs[j]) for j in checks),
    )
    stages = []
    for job_id, job in jobs.items():
        if job_id in checks:
            continue
        for need in job.needs:
            if sink[stage_of[need]] != need:
                raise ValueError(f"job {job_id} needs {need}, which is not the last job of its stage")
        groups = {p.concurrency_group for p in pipelines if any(j.id == job_id for j in p.jobs)}
        needed = tuple(dict.fromkeys(stage_of[n] for n in job.needs))
        on_decision, clause = decision_of(decided_by.get(job_id))
        if job_id in deciding:
            runs = is_run_of(next(d for d in decided if d.when.job == job_id))
            stage_condition = f"and(succeeded(), {runs})" if needed else runs
        elif clause is None:
            stage_condition = condition(_reasons(pipelines, job_id), job.only_on_branch)
        else:
            # Not succeeded(): the deciding stage is skipped in every other kind of run.
            stage_condition = condition(_reasons(pipelines, job_id), job.only_on_branch, needed, clause)
        stages.append(
            AzureStage(
                name=stage_of[job_id],
                display=job.name,
                depends_on=(*needed, *on_decision),
                condition=stage_condition,
                lock_group=_one(groups, f"the concurrency group of {job_id}"),
                jobs=(azure_job(job),),
            )
        )
    # The deciding stages first: the checks stage, which depends on them, must follow them.
    first = [s for s in stages if model_id(s.name) in deciding]
    return (*first, check_stage, *(s for s in stages if s not in first))


def _check_yaml(text: str, what: str) -> None:
    """Refuse to write a pipeline that is not YAML: a template bug must never reach a repository."""
    import yaml

    try:
        yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise InfraError(f"mlci rendered an invalid {what} ({exc}); this is a bug in mlci, please report it") from None


def task_pins(templates: Path) -> dict[str, Any]:
    pins: dict[str, Any] = json.loads((templates / "task-pins.json").read_text(encoding="utf-8"))
    return pins


def install_spec(ctx: RenderContext) -> str:
    """What the setup template installs mlci from: the project's pin, else this mlci (vendored)
    or the pinned mlci repository's commit (remote)."""
    if ctx.mlci_install:
        return ctx.mlci_install
    if ctx.actions == "vendored":
        return f"mlci=={ctx.mlci_version}"
    return f"mlci @ git+https://github.com/{ctx.mlci_repository}@{ctx.mlci_ref}"


def template_ref(name: str, ctx: RenderContext) -> str:
    if ctx.actions == "vendored":
        return f"{TEMPLATES}/{name}.yml"
    return f"{REMOTE_TEMPLATES}/{name}.yml@mlci"


def render_templates(mlci_version: str, templates: Path, vendored: bool = True) -> dict[str, str]:
    """The stage templates: {file name: text} (setup.yml and one per stage, `<ci_id>.yml`)."""
    pins = task_pins(templates)
    version = version_text(mlci_version)
    rendered = {
        "setup.yml": compiled((templates / "setup.yml.j2").read_text(encoding="utf-8")).render(
            mlci_version=version, pins=pins, vendored=vendored
        )
    }
    stage = compiled((templates / "stage.yml.j2").read_text(encoding="utf-8"))
    for spec in STAGES:
        rendered[f"{spec.ci_id}.yml"] = stage.render(
            spec=spec,
            mlci_version=version,
            pins=pins,
            vendored=vendored,
            parameter_name=parameter_name,
            input_env=input_env,
            choices_of=choices_of,
            junit=JUNIT.get(spec.name),
        )
    return rendered


# The JUnit report each stage writes under .mlci/out/ (stages/_result.py JUNIT_REPORTS).
JUNIT = {"test": "junit.xml", "data-test": "data-test.xml", "monitor": "monitor.xml"}


def reports_env(job: Job) -> str:
    """The job's report paths as one env value (a line each) for the step that gathers them."""
    for path in job.reports:
        if not path or path != path.strip() or "\n" in path or "\r" in path or _MACRO.search(path):
            raise ValueError(f"{path!r} cannot be listed as a report path of an Azure pipeline")
    return yaml_str("\n".join(job.reports))


def header_names(pipelines: tuple[Pipeline, ...]) -> str:
    names = [p.id for p in pipelines]
    return ", ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def render(pipelines: tuple[Pipeline, ...], ctx: RenderContext, templates: Path) -> dict[str, bytes]:
    settings = dataclasses.asdict(ctx)
    pins = task_pins(templates)
    stages = layout(pipelines)
    checks = checks_of(pipelines)
    decided = decided_pipelines(pipelines)
    pushes = {b for p in pipelines for t in p.triggers if t.kind == "push" for b in t.branches}
    text = compiled((templates / "azure-pipelines.yml.j2").read_text(encoding="utf-8")).render(
        **settings,
        stages=stages,
        pipeline_names=header_names(pipelines),
        push_branches=sorted(pushes),
        # (cron, displayName): a run tells the schedule that started it by Build.CronSchedule.DisplayName.
        schedules=[(t.cron, p.id) for p in pipelines for t in p.triggers if t.kind == "schedule"],
        decided_ids={d.pipeline.id for d in decided},
        manual_parameters=[parameter(d) for d in decided if d.manual],
        auto_cancel=checks.cancel_in_progress,
        batch=not checks.every_push,
        oidc=any(j.oidc_reason for s in stages for j in s.jobs),
        template_ref=lambda name: template_ref(name, ctx),
        install=install_spec(ctx),
        pins=pins,
        service_connection=SERVICE_CONNECTION,
        READ_REPOSITORY=READ_REPOSITORY,
        registry_key=registry_key,
        registry_lookup_key=registry_lookup_key,
        reports_env=reports_env,
    )
    _check_yaml(text, PIPELINE_FILE)
    files = {PIPELINE_FILE: text.encode("utf-8")}
    upgrade = compiled((templates / "mlci-upgrade.yml.j2").read_text(encoding="utf-8")).render(
        **settings, pins=pins, default_branches=sorted(pushes)
    )
    _check_yaml(upgrade, UPGRADE_FILE)
    files[UPGRADE_FILE] = upgrade.encode("utf-8")
    if ctx.actions == "vendored":
        for name, body in render_templates(ctx.mlci_version, templates).items():
            _check_yaml(body, name)
            files[f"{TEMPLATES}/{name}"] = body.encode("utf-8")
    return dict(sorted(files.items()))
