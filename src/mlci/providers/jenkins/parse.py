"""The rendered Jenkinsfile read back into the pipeline model (the kit's parse-back).

One Jenkinsfile holds the model's pipelines; they are recovered by the rules render.py writes
them with (its docstring, docs/jenkins.md):
- `ci`: the stages admitting pull request builds (`changeRequest()`: the `Checks` stage's
  parallel stages and the gate), triggered by pull requests and pushes to the branches they
  admit; a newer pull request commit aborts the build it supersedes when
  `disableConcurrentBuilds(abortPrevious: env.CHANGE_ID != null)`, and every push builds.
- `cd`: the stages admitting pushes (`branch 'B'`), and manual builds when they admit them.
- `retrain` (when there is a `cron` trigger and no deciding stage): the stages admitting `TimerTrigger`.
- a decided pipeline (`monitor`): a deciding stage (it reads its outputs file into `MLCI_OUTPUTS`
  with `readProperties`) admitting timer builds when there is a `cron` and manual ones that set
  its boolean parameter (`MLCI_RUN_<ID>`); then every stage whose `when` ends in its decision
  clause, each needing the stage before it and the deciding job, run on that output's value.
Stages run one after another, so each needs the stage before it (all of a parallel stage's).
A stage's job is its `MLCI_JOB`; its stage the `mlci <stage>` sh step; its options `MLCI_IN_*`;
its hand-overs `MLCI_FROM_*` (`job:output`). Credentials come back as one unnamed credential
per job (pipeline.as_rendered): the `MLCI_REQUIRED` variables, the fixed values of its
environment, then the `withCredentials` secrets.

A file that does not hold the model is refused (ValueError, one line naming the stage): the
production deployment without an `input` and its submitter (or another stage with one), a cron
not limited to the push branch, a `disableConcurrentBuilds` other than its two rendered forms,
an sh step whose script is not the one render.py defines for its label (by text: the stage's
stage_script, the shipped setup.sh and registry scripts), and secrets bound other than by
`string(credentialsId: X, variable: X)` around the stage's mlci step alone.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from mlci.config import ENVIRONMENTS
from mlci.pipeline import (
    READ_REPOSITORY,
    Capability,
    Condition,
    Handover,
    Install,
    Job,
    Pipeline,
    Trigger,
    TriggerKind,
)
from mlci.providers.jenkins.groovy import Statement, Token, parse
from mlci.providers.jenkins.render import (
    CANONICAL_BRANCH,
    EXTRAS,
    INSTALL_PROJECT,
    JENKINSFILE,
    JOB_VARIABLE,
    OUTPUTS_VARIABLE,
    REGISTRY_STASH,
    REQUIRED,
    Scripts,
    canonical_pipelines,
    from_env,
    input_env,
    outputs_file,
    parameter_name,
    script_name,
    setup_script,
    stage_script,
)
from mlci.stage_specs import STAGES
from mlci.targets.base import Credential, EnvValue, EnvVar, Literal, Secret, Variable

_SPECS = {spec.name: spec for spec in STAGES}
_GROUP = re.compile(r"^ *// The (?P<group>[\w-]+) group: ", re.MULTILINE)
_SAVE_LABEL = "Keep this registry for the next build"
_INSTALL_LABEL = "Install mlci and the project"
_ABORT_SUPERSEDED = ["disableConcurrentBuilds", "(", "abortPrevious", ":", "env", ".", "CHANGE_ID", "!=", "null", ")"]


def _shipped_templates() -> Path:
    # The package's own templates, as PackagedProvider.shipped_templates() finds them (not
    # through mlci.providers: a provider submodule never imports its package).
    return Path(str(resources.files("mlci.providers.jenkins") / "templates"))


def _expected_scripts(templates: Path) -> dict[str, tuple[str, str]]:
    """{sh label: (script variable, its text)}: the scripts render.jenkinsfile_scripts defines."""
    registry = Scripts.of(templates)
    found = {
        _INSTALL_LABEL: ("MLCI_SETUP", setup_script(templates)),
        "Restore the registry kept by earlier builds": ("MLCI_REGISTRY_RESTORE", registry.restore_registry),
        "Say which registry this build uses": ("MLCI_REGISTRY_FIND", registry.find_registry),
        _SAVE_LABEL: ("MLCI_REGISTRY_SAVE", registry.save_registry),
    }
    found.update({f"mlci {spec.name}": (script_name(spec), stage_script(spec)) for spec in STAGES})
    return found


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

    extras = settings.get("extras", {})
    if not isinstance(extras, dict):
        raise ValueError("mlciPipeline: extras must be a map")

    def installed(j: Job) -> Install:
        if j.stage is None or j.stage.name not in extras:
            return j.install
        return Install(tuple(e for e in str(extras[j.stage.name]).split(",") if e), j.install.project)

    def job(j: Job) -> Job:
        return dataclasses.replace(
            j,
            credentials=credentials if _delivers(j) else (),
            only_on_branch=moved(j.only_on_branch),
            install=installed(j),
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
    abort = _abort_superseded(pipeline)
    groups = {m["group"] for m in _GROUP.finditer(text)}
    stages = _one(pipeline.block or [], "stages")
    jobs: list[Job] = []
    admits: dict[str, set[tuple[TriggerKind, str]]] = {}
    decisions: dict[str, Condition] = {}  # the decided jobs, by id
    deciding: dict[str, tuple[Job, set[tuple[TriggerKind, str]]]] = {}  # parameter -> (job, its builds)
    previous: tuple[str, ...] = ()
    registry_branch: str | None = None
    parameters = _parameters(pipeline)
    for stage in stages.children("stage"):
        parallel = stage.child("parallel")
        members = parallel.children("stage") if parallel else [stage]
        when = stage.child("when")
        ids = []
        for member in members:
            environment = _environment(member)
            registry_branch = registry_branch or _registry_branch(member)
            if JOB_VARIABLE not in environment:
                _check_approval(member, None)
                continue  # the Registry stage: no job of the model
            decides = _decides(member, environment[JOB_VARIABLE])
            if decides:
                if parallel or previous:
                    raise ValueError(f"stage {member.strings()[0]!r} decides for later stages but does not run first")
                parameter, builds = _run_of(when, parameters)
                job = dataclasses.replace(_job(member, environment, (), None), reports=_reports(member))
                _check_approval(member, job)
                deciding[parameter] = (job, builds)
                continue  # not the stage before the next: the next needs it beside its predecessor
            kinds, only_on, decision = _admission(when)
            job = _job(member, environment, previous, only_on)
            _check_approval(member, job)
            if decision is not None:
                decisions[job.id] = decision
            admits[job.id] = kinds
            jobs.append(job)
            ids.append(job.id)
        if parallel:
            _check_approval(stage, None)
        if ids:
            previous = tuple(ids)
    if len(deciding) > 1:
        raise ValueError(f"{len(deciding)} deciding stages: mlci renders one")
    _check_scripts(pipeline, _definitions(statements))
    _check_credentials_placement(pipeline)
    push = tuple(dict.fromkeys(b for kinds in admits.values() for kind, b in kinds if kind == "push"))
    crons = _crons(pipeline, push[0] if push else None)
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
    if not deciding:
        pipelines += [delivery("retrain", Trigger("schedule", cron=cron), "schedule") for cron in crons]
        if decisions:
            raise ValueError(f"stages {sorted(decisions)} run on a decision no stage makes")
        return tuple(pipelines)
    ((parameter, (first, builds)),) = deciding.items()
    if {d.job for d in decisions.values()} != {first.id}:
        raise ValueError(
            f"stage {first.name!r} decides, but the stages run on {sorted({d.job for d in decisions.values()})}"
        )
    if ("schedule", "") in builds and len(crons) != 1:
        raise ValueError(f"stage {first.name!r} runs on timer builds, but there are {len(crons)} cron triggers")
    if ("schedule", "") not in builds and crons:
        raise ValueError(f"stage {first.name!r} does not run on timer builds: the cron would retrain unconditionally")
    triggers = (
        *(Trigger("schedule", cron=c) for c in crons),
        *((Trigger("manual"),) if ("manual", "") in builds else ()),
    )
    decided = tuple(
        dataclasses.replace(j, needs=(*j.needs, first.id), when=decisions[j.id]) for j in jobs if j.id in decisions
    )
    undecided = [j.id for j in jobs if j.id not in decisions and ("schedule", "") in admits[j.id]]
    if undecided:
        raise ValueError(f"stages {undecided} run on timer builds without {first.id}'s decision")
    pipelines.append(
        Pipeline(
            id=parameter.removeprefix("MLCI_RUN_").lower(),
            name=parameter.removeprefix("MLCI_RUN_").lower(),
            triggers=triggers,
            jobs=(first, *decided),
            cancel_in_progress=False,
            concurrency_group=group,
            registry_branch=registry_branch,
        )
    )
    return tuple(pipelines)


def _parameters(pipeline: Statement) -> list[str]:
    """The boolean build parameters, each false by default (a push or timer build takes that)."""
    block = pipeline.child("parameters")
    found = []
    for parameter in block.block or () if block else ():
        named = parameter.named()
        if parameter.name != "booleanParam" or named.get("defaultValue") != "false" or "name" not in named:
            raise ValueError(
                f"line {parameter.line}: a parameter other than booleanParam(name: ..., defaultValue: false)"
            )
        found.append(named["name"])
    return found


def _decides(stage: Statement, job_id: str) -> bool:
    """Whether the stage reads its outputs for later stages to run on, as render.py writes it:
    `MLCI_OUTPUTS['<job>'] = readProperties(file: '<its outputs file>')` in a script block."""
    reads = [s for s in _steps(stage) if s.tokens and s.tokens[0].text == OUTPUTS_VARIABLE]
    if not reads:
        return False
    want = [OUTPUTS_VARIABLE, "[", f"'{job_id}", "]", "=", "readProperties", "(", "file", ":"]
    shape = _shape(reads[0].tokens)
    if len(reads) != 1 or shape[:9] != want or shape[9:] != [f"'{outputs_file(job_id)}", ")"]:
        raise ValueError(f"line {reads[0].line}: the stage's outputs are read other than render.py reads them")
    return True


def _run_of(when: Statement | None, parameters: list[str]) -> tuple[str, set[tuple[TriggerKind, str]]]:
    """(the parameter, the builds) of a deciding stage's `when`: timer builds and/or manual builds
    that set its parameter, nothing else."""
    if when is None:
        raise ValueError("a deciding stage without when")
    conditions = [s for s in when.block or () if s.name not in {"beforeAgent", "beforeInput"}]
    top = conditions[0] if len(conditions) == 1 else None
    parts = (top.block or []) if top is not None and top.name == "anyOf" else [top] if top else []
    builds: set[tuple[TriggerKind, str]] = set()
    named: list[str] = []
    for part in parts:
        inner = part.block or [] if part else []
        if part is not None and part.name == "triggeredBy" and part.strings() == ["TimerTrigger"]:
            builds.add(("schedule", ""))
        elif (
            part is not None
            and part.name == "allOf"
            and [s.name for s in inner] == ["triggeredBy", "not", "expression"]
        ):
            if _condition(dataclasses.replace(part, block=inner[:2])) != {("manual", "")}:
                raise ValueError(f"line {part.line}: a deciding stage's manual builds")
            shape = _shape(inner[2].block[0].tokens) if inner[2].block and len(inner[2].block) == 1 else []
            if len(shape) != 3 or shape[:2] != ["params", "."]:
                raise ValueError(f"line {inner[2].line}: a deciding stage's manual builds set a parameter")
            named.append(shape[2])
            builds.add(("manual", ""))
        else:
            raise ValueError(f"line {when.line}: a deciding stage runs on timer builds or a parameter only")
    if not builds or len(named) > 1:
        raise ValueError(f"line {when.line}: a deciding stage runs on timer builds or a parameter only")
    if named and named[0] not in parameters:
        raise ValueError(f"line {when.line}: params.{named[0]} is not a boolean parameter of the file")
    parameter = named[0] if named else next((p for p in parameters), "")
    if (
        not parameter.startswith("MLCI_RUN_")
        or parameter_name(parameter.removeprefix("MLCI_RUN_").lower()) != parameter
    ):
        raise ValueError(f"line {when.line}: a deciding stage's parameter {parameter!r} names no pipeline")
    return parameter, builds


def _reports(stage: Statement) -> tuple[str, ...]:
    """The files a stage archives beside its outputs folder (Job.reports), in post always."""
    post = stage.child("post")
    always = post.child("always") if post else None
    found: list[str] = []
    for step in always.block or () if always else ():
        if step.name == "archiveArtifacts" and step.named().get("artifacts") != ".mlci/out/**":
            found += step.named()["artifacts"].split(",")
    return tuple(found)


def _shape(tokens: list[Token]) -> list[str]:
    """A statement's token texts, a string literal's marked by a leading quote: compared with the
    one form render.py writes (so `'null'` is not `null`, nor `','` a comma)."""
    return [("'" if t.kind == "string" else '"' if t.kind == "gstring" else "") + t.text for t in tokens]


def _stage_name(statement: Statement) -> str:
    """The name of the innermost stage holding `statement` (`?` outside every stage)."""
    found: Statement | None = statement
    while found is not None:
        if found.name == "stage" and found.strings():
            return found.strings()[0]
        found = found.parent
    return "?"


def _abort_superseded(pipeline: Statement) -> bool:
    """Whether a pull request's newer commit aborts the build it supersedes (the ci pipeline's
    cancel_in_progress). Every other build of a branch queues: the delivery group needs the
    option, and any other argument (`abortPrevious: true`) would abort a deployment half-way."""
    options = pipeline.child("options")
    found = options.children("disableConcurrentBuilds") if options else []
    if len(found) != 1:
        raise ValueError(
            f"{len(found)} disableConcurrentBuilds options, not 1: the delivery group runs one build of a branch "
            "at a time"
        )
    shape = _shape(found[0].tokens)
    if shape == ["disableConcurrentBuilds", "(", ")"]:
        return False
    if shape == _ABORT_SUPERSEDED:
        return True
    raise ValueError(
        f"line {found[0].line}: disableConcurrentBuilds takes no argument or abortPrevious: env.CHANGE_ID != null "
        "(any other would abort deployments)"
    )


def _crons(pipeline: Statement, branch: str | None) -> list[str]:
    """The retrain schedules: each fires on the push branch only (an unconditional cron would
    retrain every branch)."""
    triggers = pipeline.child("triggers")
    found = []
    for trigger in triggers.block or () if triggers else ():
        shape = _shape(trigger.tokens)
        rendered = ["cron", "(", "env", ".", "BRANCH_NAME", "==", f"'{branch}", "?"]
        if shape[:8] != rendered or shape[9:] != [":", "'", ")"] or not shape[8].startswith("'TZ=UTC\n"):
            raise ValueError(
                f"line {trigger.line}: a trigger other than "
                f"cron(env.BRANCH_NAME == {branch!r} ? 'TZ=UTC\\n<cron>' : '')"
            )
        found.append(trigger.tokens[8].text.removeprefix("TZ=UTC\n"))
    return found


def _check_approval(stage: Statement, job: Job | None) -> None:
    """The job deploying to the last environment waits for an `input` with a submitter (the
    approvers); no other stage waits for one."""
    name = stage.strings()[0]
    approval = stage.child("input")
    last = ENVIRONMENTS[-1]
    if job is not None and job.environment == last:
        if approval is None:
            raise ValueError(f"stage {name!r} deploys to {last} without an input approval")
        submitter = approval.child("submitter")
        shape = _shape(submitter.tokens) if submitter else []
        if len(shape) != 2 or not shape[1].startswith("'") or not shape[1][1:].strip():
            raise ValueError(f"stage {name!r}: its input names no submitter: anyone may approve the {last} deployment")
    elif approval is not None:
        raise ValueError(f"stage {name!r} waits for an input: only the {last} deployment does")


def _definitions(statements: list[Statement]) -> dict[str, str]:
    """The scripts the Jenkinsfile defines at its top (`def MLCI_TRAIN = '''...'''`), by name."""
    found: dict[str, str] = {}
    for statement in statements:
        if statement.name != "def":
            continue
        tokens = statement.tokens
        if _shape(tokens) == ["def", OUTPUTS_VARIABLE, "=", "[", ":", "]"]:
            continue  # the outputs deciding stages read (render.OUTPUTS_VARIABLE), no script
        if len(tokens) != 4 or tokens[1].kind != "ident" or tokens[2].text != "=" or tokens[3].kind != "string":
            raise ValueError(f"line {statement.line}: a definition other than def NAME = '''script'''")
        if tokens[1].text in found:
            raise ValueError(f"line {statement.line}: {tokens[1].text} is defined twice")
        found[tokens[1].text] = tokens[3].text
    return found


def _check_scripts(pipeline: Statement, definitions: dict[str, str]) -> None:
    """Every sh step runs, by its label, the script render.py defines for it, with that text:
    a stage its stage_script, the install step the shipped setup.sh, the registry steps theirs."""
    expected = _expected_scripts(_shipped_templates())
    for step in (s for s in pipeline.walk() if s.name == "sh"):
        shape = _shape(step.tokens)
        where = f"line {step.line}, stage {_stage_name(step)!r}"
        rendered = shape[:4] == ["sh", "(", "label", ":"] and shape[5:8] == [",", "script", ":"] and shape[9:] == [")"]
        if not rendered or not shape[4].startswith("'") or step.tokens[8].kind != "ident":
            raise ValueError(f"{where}: an sh step other than sh(label: '...', script: NAME)")
        label, name = step.tokens[4].text, step.tokens[8].text
        if label not in expected:
            raise ValueError(f"{where}: an sh step mlci does not render ({label!r})")
        want, text = expected[label]
        if name != want:
            raise ValueError(f"{where}: {label!r} runs {name}, not {want}")
        if name not in definitions:
            raise ValueError(f"{where}: {name} is not defined")
        if definitions[name] != text:
            raise ValueError(f"{where}: {name} is not the script mlci renders for {label!r}")


def _check_credentials_placement(pipeline: Statement) -> None:
    """A withCredentials wraps exactly a stage's `mlci <stage>` sh step, directly in its steps:
    its secrets reach that step alone."""
    for binding in (s for s in pipeline.walk() if s.name == "withCredentials"):
        inner = binding.block or []
        wraps_run = len(inner) == 1 and inner[0].name == "sh" and inner[0].named().get("label", "").startswith("mlci ")
        in_steps = binding.parent is not None and binding.parent.name == "steps"
        if not (wraps_run and in_steps):
            raise ValueError(
                f"line {binding.line}, stage {_stage_name(binding)!r}: a withCredentials that does not wrap "
                "the stage's mlci step alone"
            )


def _bindings(binding: Statement) -> list[str]:
    """The secrets of `withCredentials([string(credentialsId: 'X', variable: 'X'), ...])`."""
    where = f"line {binding.line}, stage {_stage_name(binding)!r}"
    shape = _shape(binding.tokens)
    if shape[:3] != ["withCredentials", "(", "["] or shape[-2:] != ["]", ")"]:
        raise ValueError(f"{where}: withCredentials takes one list of bindings")
    inner = shape[3:-2]
    names = []
    i = 0
    while i < len(inner):
        part = inner[i : i + 10]
        fixed = part[:4] == ["string", "(", "credentialsId", ":"] and part[5:8] == [",", "variable", ":"]
        if not fixed or part[9:] != [")"] or not (part[4].startswith("'") and part[8].startswith("'")):
            raise ValueError(f"{where}: a credentials binding other than string(credentialsId: 'X', variable: 'X')")
        if part[4] != part[8]:
            raise ValueError(
                f"{where}: credentials id {part[4][1:]!r} is bound to variable {part[8][1:]!r}, not its own name"
            )
        names.append(part[8][1:])
        i += 10
        if i < len(inner) and inner[i] == ",":
            i += 1
    return names


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


def _decision(statement: Statement) -> Condition:
    """The condition of `expression { MLCI_OUTPUTS['J'] == null || MLCI_OUTPUTS['J']['O'] == 'V' }`."""
    inner = statement.block or []
    shape = _shape(inner[0].tokens) if len(inner) == 1 else []
    if len(shape) == 16 and all(shape[i].startswith("'") for i in (2, 12, 15)):
        job, output, value = shape[2][1:], shape[12][1:], shape[15][1:]
        rendered = [OUTPUTS_VARIABLE, "[", f"'{job}", "]", "==", "null", "||", OUTPUTS_VARIABLE, "[", f"'{job}", "]"]
        if shape[:11] == rendered and shape[11:15] == ["[", f"'{output}", "]", "=="] and value:
            return Condition(job, output, value)
    raise ValueError(f"line {statement.line}: an expression other than a decision clause")


def _admission(when: Statement | None) -> tuple[set[tuple[TriggerKind, str]], str | None, Condition | None]:
    if when is None:
        raise ValueError("a stage without when")
    conditions = [s for s in when.block or () if s.name not in {"beforeAgent", "beforeInput"}]
    if len(conditions) != 1:
        raise ValueError(f"line {when.line}: {len(conditions)} conditions")
    top = conditions[0]
    inner = top.block or []
    decision = None
    if top.name == "allOf" and inner and inner[-1].name == "expression":
        decision = _decision(inner[-1])
        inner = inner[:-1]
        if len(inner) == 1:
            return _condition(inner[0]), None, decision
    if top.name == "allOf" and len(inner) == 2 and inner[0].name == "branch":
        return _condition(inner[1]), inner[0].strings()[0], decision
    if decision is not None:
        raise ValueError(f"line {when.line}: a decision clause after conditions render.py does not write")
    return _condition(top), None, None


def _steps(stage: Statement) -> list[Statement]:
    steps = stage.child("steps")
    return steps.walk()[1:] if steps else []


def _job(stage: Statement, environment: dict[str, str], needs: tuple[str, ...], only_on: str | None) -> Job:
    steps = _steps(stage)
    labels = [s.named().get("label", "") for s in steps if s.name == "sh"]
    runs = [s for s in steps if s.name == "sh" and s.named().get("label", "").startswith("mlci ")]
    if len(runs) > 1:
        raise ValueError(f"stage {stage.strings()[0]!r} runs {len(runs)} mlci steps")
    run = runs[0] if runs else None
    spec = _SPECS[run.named()["label"].removeprefix("mlci ")] if run else None
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
        credentials=_credentials(environment, run),
        restores_state=any(name.startswith("mlci-state-") for name in unstashed),
        saves_state=f"mlci-state-{job_id}" in stashed,
        inputs_from=tuple(handovers),
        restores_registry=REGISTRY_STASH in unstashed,
        saves_registry="Keep this registry for the next build" in labels,
        timeout_minutes=int(timeout),
        gate=spec is None,
        only_on_branch=only_on,
        install=_install(environment) if spec is not None else Install(),
    )


def _install(environment: dict[str, str]) -> Install:
    """What a stage's setup step installs, from its MLCI_EXTRAS and MLCI_INSTALL_PROJECT."""
    project = environment[INSTALL_PROJECT]
    if project not in ("true", "false"):
        raise ValueError(f"{INSTALL_PROJECT} {project!r}")
    return Install(tuple(e for e in environment[EXTRAS].split(",") if e), project == "true")


def _credentials(environment: dict[str, str], run: Statement | None) -> tuple[Credential, ...]:
    """The job's variables in the order render.py requires of them: the settings it checks,
    the secrets bound for its mlci step (`run`), then the fixed values of its environment."""
    env: list[EnvVar] = [EnvVar(name, Variable(name)) for name in environment.get(REQUIRED, "").split()]
    binding = run.parent if run is not None else None
    if binding is not None and binding.name == "withCredentials":
        env += [EnvVar(name, Secret(name)) for name in _bindings(binding)]
    own = {JOB_VARIABLE, REQUIRED, EXTRAS, INSTALL_PROJECT}
    for name, value in environment.items():
        if name not in own and not name.startswith(("MLCI_IN_", "MLCI_FROM_")):
            literal: EnvValue = Literal(value)
            env.append(EnvVar(name, literal))
    return (Credential("", oidc=False, env=tuple(env)),) if env else ()
