"""The rendered Jenkinsfile read back into the pipeline model (the kit's parse-back).

One Jenkinsfile holds the model's pipelines; they are recovered by the rules render.py writes
them with (its docstring, docs/jenkins.md):
- `ci`: the stages admitting pull request builds (`changeRequest()`: the `Checks` stage's
  parallel stages and the gate), triggered by pull requests and pushes to the branches they
  admit; a newer pull request commit aborts the build it supersedes when
  `disableConcurrentBuilds(abortPrevious: env.CHANGE_ID != null)`, and every push builds.
- `cd`: the stages admitting pushes (`branch 'B'`), and manual builds when they admit them.
- `retrain` (when there is a `cron` trigger): the stages admitting `TimerTrigger`.
Stages run one after another, so each needs the stage before it (all of a parallel stage's).
A stage's job is its `MLCI_JOB`; its stage the `mlci <stage>` sh step; its options `MLCI_IN_*`;
its hand-overs `MLCI_FROM_*` (`job:output`). Credentials come back as one unnamed credential
per job (pipeline.as_rendered): the `MLCI_REQUIRED` variables, the fixed values of its
environment, then the `withCredentials` secrets.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from mlci.pipeline import READ_REPOSITORY, Capability, Handover, Job, Pipeline, Trigger, TriggerKind
from mlci.providers.jenkins.groovy import Statement, parse
from mlci.providers.jenkins.render import (
    CANONICAL_BRANCH,
    JENKINSFILE,
    JOB_VARIABLE,
    REGISTRY_STASH,
    REQUIRED,
    canonical_pipelines,
    from_env,
    input_env,
)
from mlci.stage_specs import STAGES
from mlci.targets.base import Credential, EnvValue, EnvVar, Literal, Secret, Variable

_SPECS = {spec.name: spec for spec in STAGES}
_GROUP = re.compile(r"^ *// The (?P<group>[\w-]+) group: ", re.MULTILINE)
_SAVE_LABEL = "Keep this registry for the next build"


def parse_back(files: Mapping[str, bytes]) -> tuple[Pipeline, ...]:
    if JENKINSFILE not in files:
        return ()
    text = files[JENKINSFILE].decode("utf-8")
    try:
        statements = parse(text)
        library = [s for s in statements if s.name == "mlciPipeline"]
        if library:
            return _library_pipelines(_one(library, "mlciPipeline"))
        return _pipelines(statements, text)
    except (KeyError, ValueError, TypeError, IndexError, StopIteration) as exc:
        raise ValueError(f"{JENKINSFILE}: not a pipeline mlci renders ({exc!r})") from None


def _library_pipelines(call: Statement) -> tuple[Pipeline, ...]:
    """A Jenkinsfile that calls mlciPipeline: the shared library's pipeline is the model's
    shape (render.py renders it from a representative model); the call's settings are what
    varies: the default branch, the schedule, the kept registry and the delivery credentials."""
    settings = _map_arguments(call)
    keep = settings["keepRegistry"] == "true"
    branch = str(settings["defaultBranch"])
    cron = str(settings["retrainCron"])
    required, secrets, fixed = settings["required"], settings["secrets"], settings["settings"]
    if not (isinstance(required, list) and isinstance(secrets, list) and isinstance(fixed, dict)):
        raise ValueError("mlciPipeline: required, secrets and settings must be a list, a list and a map")
    env: list[EnvVar] = [EnvVar(name, Variable(name)) for name in required]
    env += [EnvVar(name, Secret(name)) for name in secrets]
    env += [EnvVar(name, Literal(value)) for name, value in fixed.items()]
    credentials = (Credential("", oidc=False, env=tuple(env)),) if env else ()

    def moved(name: str | None) -> str | None:
        return branch if name == CANONICAL_BRANCH else name

    def job(j: Job) -> Job:
        return dataclasses.replace(
            j, credentials=credentials if _delivers(j) else (), only_on_branch=moved(j.only_on_branch)
        )

    found = []
    for p in canonical_pipelines(keep):
        if p.id == "retrain" and not cron:
            continue
        triggers = tuple(
            dataclasses.replace(t, branches=tuple(moved(b) or b for b in t.branches), cron=cron if t.cron else None)
            for t in p.triggers
        )
        found.append(
            dataclasses.replace(
                p,
                triggers=triggers,
                jobs=tuple(job(j) for j in p.jobs),
                registry_branch=moved(p.registry_branch),
                cancel_in_progress=settings["abortSuperseded"] == "true" if p.id == "ci" else p.cancel_in_progress,
            )
        )
    return tuple(found)


def _delivers(job: Job) -> bool:
    """A stage job after the gate: the jobs mlciPipeline passes the delivery credentials to."""
    return job.stage is not None and job.stage.name in {"train", "register", "deploy"}


def _map_arguments(call: Statement) -> dict[str, object]:
    """The named arguments of `mlciPipeline(...)`: strings, booleans, lists of strings and maps
    of strings, as render.py writes them."""
    tokens = call.tokens
    found: dict[str, object] = {}
    i = 2  # after `mlciPipeline (`
    while i < len(tokens) and tokens[i].text != ")":
        key = tokens[i].text
        if tokens[i + 1].text != ":":
            raise ValueError(f"line {tokens[i].line}: mlciPipeline argument {key}")
        value = tokens[i + 2]
        if value.text == "[":
            end = i + 3
            depth = 1
            while depth:
                depth += {"[": 1, "]": -1}.get(tokens[end].text, 0)
                end += 1
            inner = tokens[i + 3 : end - 1]
            if inner and inner[0].text == ":":
                found[key] = {}
            elif len(inner) > 1 and inner[1].text == ":":
                found[key] = {inner[k].text: inner[k + 2].text for k in range(0, len(inner), 4)}
            else:
                found[key] = [t.text for t in inner if t.kind == "string"]
            i = end
        else:
            found[key] = value.text
            i += 3
        if i < len(tokens) and tokens[i].text == ",":
            i += 1
    return found


def _one(statements: list[Statement], name: str) -> Statement:
    found = [s for s in statements if s.name == name]
    if len(found) != 1:
        raise ValueError(f"{len(found)} {name} blocks")
    return found[0]


def _pipelines(statements: list[Statement], text: str) -> tuple[Pipeline, ...]:
    pipeline = _one(statements, "pipeline")
    options = pipeline.child("options")
    abort = options is not None and any(
        s.named().get("abortPrevious") == "env . CHANGE_ID != null" for s in options.children("disableConcurrentBuilds")
    )
    crons: list[str] = []
    triggers = pipeline.child("triggers")
    for cron in triggers.children("cron") if triggers else ():
        schedules = [s for s in cron.strings() if s.startswith("TZ=UTC\n")]
        crons.extend(s.removeprefix("TZ=UTC\n") for s in schedules)
    groups = {m["group"] for m in _GROUP.finditer(text)}
    stages = _one(pipeline.block or [], "stages")
    jobs: list[Job] = []
    admits: dict[str, set[tuple[TriggerKind, str]]] = {}
    previous: tuple[str, ...] = ()
    registry_branch: str | None = None
    for stage in stages.children("stage"):
        parallel = stage.child("parallel")
        members = parallel.children("stage") if parallel else [stage]
        when = stage.child("when")
        ids = []
        for member in members:
            environment = _environment(member)
            registry_branch = registry_branch or _registry_branch(member)
            if JOB_VARIABLE not in environment:
                continue  # the Registry stage: no job of the model
            kinds, only_on = _admission(when)
            job = _job(member, environment, previous, only_on)
            admits[job.id] = kinds
            jobs.append(job)
            ids.append(job.id)
        if ids:
            previous = tuple(ids)
    push = tuple(dict.fromkeys(b for kinds in admits.values() for kind, b in kinds if kind == "push"))
    manual = any(("manual", "") in kinds for kinds in admits.values())

    def admitted(kind: TriggerKind) -> tuple[Job, ...]:
        return tuple(j for j in jobs if any(k == kind for k, _ in admits[j.id]))

    ci = Pipeline(
        id="ci",
        name="ci",
        triggers=(Trigger("pull_request"), Trigger("push", branches=push)),
        jobs=admitted("pull_request"),
        cancel_in_progress=abort,
        every_push=True,  # branch builds are never aborted
    )
    group = next(iter(groups)) if len(groups) == 1 else None

    def delivery(pipeline_id: str, first: Trigger, kind: TriggerKind) -> Pipeline:
        return Pipeline(
            id=pipeline_id,
            name=pipeline_id,
            triggers=(first, Trigger("manual")) if manual else (first,),
            jobs=admitted(kind),
            cancel_in_progress=False,
            concurrency_group=group,
            registry_branch=registry_branch,
        )

    pipelines = [ci, delivery("cd", Trigger("push", branches=push), "push")]
    pipelines += [delivery("retrain", Trigger("schedule", cron=cron), "schedule") for cron in crons]
    return tuple(pipelines)


def _environment(stage: Statement) -> dict[str, str]:
    block = stage.child("environment")
    found: dict[str, str] = {}
    for assignment in block.block or () if block else ():
        tokens = assignment.tokens
        if len(tokens) != 3 or tokens[1].text != "=" or tokens[2].kind != "string":
            raise ValueError(f"line {assignment.line}: environment entry {[t.text for t in tokens]}")
        found[tokens[0].text] = tokens[2].text
    return found


def _registry_branch(stage: Statement) -> str | None:
    for statement in stage.walk():
        texts = [t.text for t in statement.tokens]
        if statement.name == "if" and texts[:6] == ["if", "(", "env", ".", "BRANCH_NAME", "=="]:
            return statement.strings()[0]
    return None


def _condition(statement: Statement) -> set[tuple[TriggerKind, str]]:
    """The builds one condition of a `when` admits, as (trigger kind, branch)."""
    name = statement.name
    if name == "changeRequest":
        return {("pull_request", "")}
    if name == "branch":
        return {("push", statement.strings()[0])}
    if name == "triggeredBy":
        if statement.strings() == ["TimerTrigger"]:
            return {("schedule", "")}
        raise ValueError(f"line {statement.line}: triggeredBy {statement.strings()}")
    inner = statement.block or []
    manual = name == "allOf" and [s.name for s in inner] == ["triggeredBy", "not"]
    by_user = manual and inner[0].named().get("cause") == "UserIdCause"
    if by_user and [s.name for s in inner[1].block or []] == ["changeRequest"]:
        return {("manual", "")}
    if name == "anyOf":
        return {kind for s in inner for kind in _condition(s)}
    raise ValueError(f"line {statement.line}: condition {name}")


def _admission(when: Statement | None) -> tuple[set[tuple[TriggerKind, str]], str | None]:
    if when is None:
        raise ValueError("a stage without when")
    conditions = [s for s in when.block or () if s.name not in {"beforeAgent", "beforeInput"}]
    if len(conditions) != 1:
        raise ValueError(f"line {when.line}: {len(conditions)} conditions")
    top = conditions[0]
    inner = top.block or []
    if top.name == "allOf" and len(inner) == 2 and inner[0].name == "branch":
        return _condition(inner[1]), inner[0].strings()[0]
    return _condition(top), None


def _steps(stage: Statement) -> list[Statement]:
    steps = stage.child("steps")
    return steps.walk()[1:] if steps else []


def _job(stage: Statement, environment: dict[str, str], needs: tuple[str, ...], only_on: str | None) -> Job:
    steps = _steps(stage)
    labels = [s.named().get("label", "") for s in steps if s.name == "sh"]
    commands = [label.removeprefix("mlci ") for label in labels if label.startswith("mlci ")]
    spec = _SPECS[commands[0]] if commands else None
    options: dict[str, str] = {}
    handovers: list[Handover] = []
    for stage_input in spec.inputs if spec else ():
        if input_env(stage_input.name) in environment:
            options[stage_input.name] = environment[input_env(stage_input.name)]
        if from_env(stage_input.name) in environment:
            job, output = environment[from_env(stage_input.name)].split(":")
            handovers.append(Handover(stage_input.name, job, output))
    stashed = [s.named().get("name", "") for s in steps if s.name == "stash"]
    unstashed = [s.strings()[0] for s in steps if s.name == "unstash"]
    capabilities: set[Capability] = set()
    if any(s.name == "checkout" for s in steps):
        capabilities.add(READ_REPOSITORY)
    job_id = environment[JOB_VARIABLE]
    timeout = next(s.named()["time"] for s in (stage.child("options").block or []) if s.name == "timeout")  # type: ignore[union-attr]
    return Job(
        id=job_id,
        name=stage.strings()[0],
        stage=spec,
        options=options,
        needs=needs,
        capabilities=frozenset(capabilities),
        environment=options.get("env") if spec is not None and spec.name == "deploy" else None,
        credentials=_credentials(environment, steps),
        restores_state=any(name.startswith("mlci-state-") for name in unstashed),
        saves_state=f"mlci-state-{job_id}" in stashed,
        inputs_from=tuple(handovers),
        restores_registry=REGISTRY_STASH in unstashed,
        saves_registry="Keep this registry for the next build" in labels,
        timeout_minutes=int(timeout),
        gate=spec is None,
        only_on_branch=only_on,
    )


def _credentials(environment: dict[str, str], steps: list[Statement]) -> tuple[Credential, ...]:
    """The job's variables in the order render.py requires of them: the settings it checks,
    the secrets it binds, then the fixed values of its environment."""
    env: list[EnvVar] = [EnvVar(name, Variable(name)) for name in environment.get(REQUIRED, "").split()]
    for binding in steps:
        if binding.name == "withCredentials":
            text = [t.text for t in binding.tokens]
            for i, token in enumerate(text):
                if token == "variable" and text[i + 1] == ":":
                    name = binding.tokens[i + 2].text
                    env.append(EnvVar(name, Secret(name)))
    own = {JOB_VARIABLE, REQUIRED}
    for name, value in environment.items():
        if name not in own and not name.startswith(("MLCI_IN_", "MLCI_FROM_")):
            literal: EnvValue = Literal(value)
            env.append(EnvVar(name, literal))
    return (Credential("", oidc=False, env=tuple(env)),) if env else ()
