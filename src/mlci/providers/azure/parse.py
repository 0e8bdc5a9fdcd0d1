"""The rendered azure-pipelines.yml read back into the pipeline model (the kit's parse-back).

One Azure pipeline holds the model's pipelines; they are recovered by the rules render.py
writes them with (docs/azure.md):
- `ci`: the jobs of the `checks` stage (they run for every run reason), triggered by `pr:` and
  `trigger:`; it cancels superseded runs when `pr: autoCancel` is true and gives every push its
  own run when `trigger: batch` is false.
- `cd`: every job that runs for a CI push (`IndividualCI`), triggered by `trigger:` and, when
  the delivery stages admit `Manual`, by hand.
- `retrain` (a schedule whose displayName is `retrain`): every job that runs for `Schedule`,
  and by hand.
- a decided pipeline (`monitor`; a schedule whose displayName, or the boolean runtime parameter
  the deciding stage's condition reads, is its id): the deciding job (its stage runs only for
  that schedule or parameter), then every job whose stage carries the decision clause
  (`or(eq(dependencies.<stage>.result, 'Skipped'), eq(dependencies.<stage>.outputs[...], v))`),
  each needing the deciding job and run on its output; in the other pipelines they need what
  they need without it.
Delivery pipelines never cancel a run; their concurrency group is the one the
`lockBehavior: sequential` comment names. A stage depending on another needs its last job.
Credentials come back as one unnamed credential per job (pipeline.as_rendered): `settings`
are variables (`$(X)`) or fixed values, `secrets` are secrets, the OIDC reason is the comment
next to the service connection.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from mlci.pipeline import OIDC_TOKEN, READ_REPOSITORY, Capability, Condition, Handover, Install, Job, Pipeline, Trigger
from mlci.providers.azure.render import (
    OIDC_REASON,
    PIPELINE_FILE,
    REMOTE_TEMPLATES,
    SERVICE_CONNECTION,
    TEMPLATES,
    handover_variable,
    model_id,
    parameter_name,
    undecided,
)
from mlci.stage_specs import STAGES, StageSpec
from mlci.targets.base import Credential, EnvValue, EnvVar, Literal, Secret, Variable

_STAGE_OF_TEMPLATE = {spec.ci_id: spec for spec in STAGES}
_REASONS = re.compile(r"in\(variables\['Build\.Reason'\], (?P<reasons>[^)]*)\)")
_BRANCH = re.compile(r"eq\(variables\['Build\.SourceBranch'\], 'refs/heads/(?P<branch>[^']+)'\)")
_HANDOVER = re.compile(
    r"\$\[ stageDependencies\.\w+\.(?P<job>\w+)\.outputs\['(?:\w+\.)?stage\.(?P<output>[\w-]+)'\] \]"
)
_MACRO = re.compile(r"\$\((?P<name>\w+)\)")
_REGISTRY = re.compile(r'"mlci-registry" \| "(?P<branch>[^"]+)"')
_JOB_HEADER = re.compile(r"      - (?:job|deployment): (?P<job>\w+)")
_OIDC = re.compile(rf" +{SERVICE_CONNECTION}: \$\{{\{{ parameters\.{SERVICE_CONNECTION} \}}\}}  # (?P<reason>.*)")
_RUN_OF_SCHEDULE = re.compile(r"eq\(variables\['Build\.CronSchedule\.DisplayName'\], '(?P<id>\w+)'\)")
_RUN_OF_PARAMETER = re.compile(r"eq\('\$\{\{ parameters\.(?P<id>\w+) \}\}', 'true'\)")
_DECISION = re.compile(
    r"or\(eq\(dependencies\.(?P<stage>\w+)\.result, 'Skipped'\), "
    r"eq\(dependencies\.(?P=stage)\.outputs\['(?:\w+\.)?(?P<job>\w+)\.stage\.(?P<output>[\w-]+)'\], "
    r"'(?P<value>(?:[^']|'')*)'\)\)"
)
_LOCK = re.compile(r" +# The (?P<group>[\w-]+) group: runs take the environments' exclusive locks in order\.")


def parse_back(files: Mapping[str, bytes]) -> tuple[Pipeline, ...]:
    import yaml

    if PIPELINE_FILE not in files:
        return ()
    text = files[PIPELINE_FILE].decode("utf-8")
    try:
        return _pipelines(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)), text)
    except (KeyError, ValueError, TypeError, StopIteration) as exc:
        raise ValueError(f"{PIPELINE_FILE}: not a pipeline mlci renders ({exc!r})") from None


def _pipelines(doc: dict[str, Any], text: str) -> tuple[Pipeline, ...]:
    reasons = {m["job"]: m["reason"] for m in _comments(text, _OIDC)}
    groups = {m["group"] for m in _comments(text, _LOCK)}
    push = Trigger("push", branches=tuple(doc["trigger"]["branches"]["include"]))
    stages = doc["stages"]
    last_job = {s["stage"]: _name(s["jobs"][-1]) for s in stages}
    runs_for: dict[str, set[str] | None] = {}
    jobs: list[Job] = []
    deciding: dict[str, tuple[str, bool]] = {}  # deciding job -> (its pipeline's id, run by hand)
    registry_branch = None
    for stage in stages:
        condition = stage.get("condition")
        found = _REASONS.search(condition) if condition else None
        branch = _BRANCH.search(condition) if condition else None
        decision = _DECISION.search(condition) if condition else None
        run_of = _run_of(condition, bool(found or decision))
        for entry in stage["jobs"]:
            job = _job(entry, stage, last_job, reasons.get(_name(entry), ""), branch["branch"] if branch else None)
            if decision is not None:
                when = Condition(model_id(decision["job"]), decision["output"], decision["value"].replace("''", "'"))
                job = dataclasses.replace(job, when=when)
            runs_for[job.id] = {r.strip(" '") for r in found["reasons"].split(",")} if found else None
            if run_of is not None:
                deciding[job.id] = run_of
                runs_for[job.id] = set()  # in no pipeline but its own
            jobs.append(job)
            registry_branch = registry_branch or _registry_branch(_steps(entry))
    for job in jobs:
        # A stage depends on a deciding stage only to run on its decision, and only on its own.
        if job.when is not None and job.when.job not in deciding:
            raise ValueError(f"job {job.id} runs on {job.when.job}'s decision, which runs in every pipeline")
        if job.when is None and set(job.needs) & set(deciding):
            raise ValueError(f"job {job.id} needs {sorted(set(job.needs) & set(deciding))} without its decision")
    group = next(iter(groups)) if len(groups) == 1 else None
    manual = any(r is not None and "Manual" in r for r in runs_for.values())
    plain = [undecided(j) for j in jobs]
    checks = tuple(j for j in plain if runs_for[j.id] is None)
    ci = Pipeline(
        id="ci",
        name="ci",
        triggers=(Trigger("pull_request"), push),
        jobs=checks,
        cancel_in_progress=_flag(doc["pr"]["autoCancel"]),
        every_push=not _flag(doc["trigger"]["batch"]),
    )
    pipelines = [ci]

    def delivery(pipeline_id: str, reason: str, first: Trigger) -> Pipeline:
        return Pipeline(
            id=pipeline_id,
            name=pipeline_id,
            triggers=(first, Trigger("manual")) if manual else (first,),
            jobs=tuple(j for j in plain if runs_for[j.id] is None or reason in (runs_for[j.id] or ())),
            cancel_in_progress=False,  # Azure never cancels a CI or scheduled run for a newer one
            concurrency_group=group,
            registry_branch=registry_branch,
        )

    pipelines.append(delivery("cd", "IndividualCI", push))
    crons = {str(s["displayName"]): s["cron"] for s in doc.get("schedules") or ()}
    for display, cron in crons.items():
        if display not in {p for p, _ in deciding.values()}:
            pipelines.append(delivery("retrain", "Schedule", Trigger("schedule", cron=cron)))
    for job_id, (pipeline_id, by_hand) in deciding.items():
        schedule = (Trigger("schedule", cron=crons[pipeline_id]),) if pipeline_id in crons else ()
        pipelines.append(
            Pipeline(
                id=pipeline_id,
                name=pipeline_id,
                triggers=(*schedule, Trigger("manual")) if by_hand else schedule,
                jobs=tuple(j for j in jobs if j.id == job_id or (j.when is not None and j.when.job == job_id)),
                cancel_in_progress=False,
                concurrency_group=group,
                registry_branch=registry_branch,
            )
        )
    return tuple(pipelines)


def _run_of(condition: str | None, other: bool) -> tuple[str, bool] | None:
    """(pipeline id, run by hand) of a deciding stage's condition: it runs only for a run of that
    pipeline (its schedule's displayName, or its runtime parameter set), or None for any other."""
    if condition is None or other:
        return None
    schedule = _RUN_OF_SCHEDULE.search(condition)
    parameter = _RUN_OF_PARAMETER.search(condition)
    ids = {m["id"] for m in (schedule, parameter) if m is not None}
    if not ids:
        return None
    if len(ids) != 1:
        raise ValueError(f"stage condition {condition!r} names two pipelines")
    return next(iter(ids)), parameter is not None


def _comments(text: str, pattern: re.Pattern[str]) -> list[dict[str, str]]:
    """Comments of the file (YAML drops them), each with the job it is under."""
    found = []
    job = ""
    for line in text.splitlines():
        if (header := _JOB_HEADER.fullmatch(line)) is not None:
            job = header["job"]
        elif (match := pattern.fullmatch(line)) is not None:
            found.append({"job": job, **match.groupdict()})
    return found


def _flag(value: Any) -> bool:
    return str(value).lower() == "true"


def _name(entry: Mapping[str, Any]) -> str:
    return str(entry.get("job") or entry["deployment"])


def _steps(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "deployment" in entry:
        return list(entry["strategy"]["runOnce"]["deploy"]["steps"])
    return list(entry["steps"])


def _registry_branch(steps: list[dict[str, Any]]) -> str | None:
    for step in steps:
        if step.get("name") in ("registry", "newest_registry"):
            match = _REGISTRY.fullmatch(step["inputs"]["restoreKeys"])
            if match is None:
                raise ValueError(f"registry cache {step['inputs']['restoreKeys']!r}")
            return match["branch"]
    return None


def _stage_of(ref: str) -> StageSpec | None:
    for prefix in (f"{TEMPLATES}/", f"{REMOTE_TEMPLATES}/"):
        if ref.startswith(prefix):
            name = ref.removeprefix(prefix).removesuffix("@mlci").removesuffix(".yml")
            return None if name == "setup" else _STAGE_OF_TEMPLATE[name]
    raise ValueError(f"template {ref!r}")


def _job(
    entry: Mapping[str, Any], stage: Mapping[str, Any], last_job: Mapping[str, str], reason: str, branch: str | None
) -> Job:
    name = _name(entry)
    steps = _steps(entry)
    stage_step = next((s for s in steps if "template" in s and _stage_of(s["template"]) is not None), None)
    spec = _stage_of(stage_step["template"]) if stage_step else None
    parameters = dict((stage_step or {}).get("parameters") or {})
    variables = dict(entry.get("variables") or {})
    options: dict[str, str] = {}
    handovers: list[Handover] = []
    for stage_input in spec.inputs if spec else ():
        value = parameters.get(parameter_name(stage_input.name))
        if value is None:
            continue
        if value == f"$({handover_variable(stage_input.name)})":
            found = _HANDOVER.fullmatch(variables[handover_variable(stage_input.name)])
            if found is None:
                raise ValueError(f"job {name}: hand-over {variables[handover_variable(stage_input.name)]!r}")
            handovers.append(Handover(stage_input.name, model_id(found["job"]), found["output"]))
        else:
            options[stage_input.name] = str(value)
    oidc = SERVICE_CONNECTION in parameters
    capabilities: set[Capability] = {OIDC_TOKEN} if oidc else set()
    if any(s.get("checkout") == "self" for s in steps):
        capabilities.add(READ_REPOSITORY)
    needs = [model_id(n) for n in entry.get("dependsOn") or ()]
    # A stage's dependsOn holds for each of its jobs (a stage of one job, or the checks stage on a decision).
    needs += [model_id(last_job[s]) for s in stage.get("dependsOn") or ()]
    tasks = [str(s.get("task", "")).split("@")[0] for s in steps]
    return Job(
        id=model_id(name),
        name=entry["displayName"],
        stage=spec,
        options=options,
        needs=tuple(needs),
        capabilities=frozenset(capabilities),
        environment=entry.get("environment"),
        credentials=_credentials(parameters, oidc, reason),
        restores_state="DownloadPipelineArtifact" in tasks,
        saves_state=any(
            str(s.get("task", "")).startswith("PublishPipelineArtifact@")
            and str(s["inputs"]["artifact"]).startswith("mlci-state-")
            for s in steps
        ),
        inputs_from=tuple(handovers),
        restores_registry=any(s.get("name") == "registry" for s in steps),
        saves_registry=any(s.get("name") == "newest_registry" for s in steps),
        timeout_minutes=int(entry["timeoutInMinutes"]),
        gate=entry.get("condition") == "always()",
        only_on_branch=branch,
        reports=next(
            (tuple(str(s["env"]["MLCI_REPORTS"]).split("\n")) for s in steps if "MLCI_REPORTS" in (s.get("env") or {})),
            (),
        ),
        install=_install(next((s for s in steps if "template" in s and _stage_of(s["template"]) is None), None)),
    )


def _install(step: Mapping[str, Any] | None) -> Install:
    """What the setup template installs; a job without it (a gate) installs nothing."""
    if step is None:
        return Install()
    parameters = step.get("parameters") or {}
    project = str(parameters.get("installProject", "true")).lower()
    if project not in ("true", "false"):
        raise ValueError(f"installProject {project!r}")
    return Install(tuple(e for e in str(parameters.get("extras", "")).split(",") if e), project == "true")


def _credentials(parameters: Mapping[str, Any], oidc: bool, reason: str) -> tuple[Credential, ...]:
    env = [EnvVar(k, _value(str(v))) for k, v in (parameters.get("settings") or {}).items()]
    env += [EnvVar(k, Secret(_MACRO.fullmatch(str(v))["name"])) for k, v in (parameters.get("secrets") or {}).items()]  # type: ignore[index]
    if not env:
        return ()
    return (Credential("", oidc=oidc, env=tuple(env), reason="" if reason == OIDC_REASON else reason),)


def _value(text: str) -> EnvValue:
    found = _MACRO.fullmatch(text)
    return Variable(found["name"]) if found else Literal(text)
