"""Jenkins from the pipeline model: one declarative `Jenkinsfile` for the model's ci, cd and
retrain pipelines (a Multibranch Pipeline job runs it for every branch and pull request), the
shared library `mlciStage`/`mlciPipeline` under `.jenkins/vars/`, and `Jenkinsfile.upgrade`.

Jenkins runs one Jenkinsfile per branch, so the model's pipelines become one file, as on Azure:
the checks (the jobs of the pipeline run on pull requests) are one `parallel` stage, their gate
the stage after it, and every other job a stage of its own whose `when` admits exactly the
builds of the model's pipelines that contain it (docs/jenkins.md; parse.py reads it back):

- a pull request build: `changeRequest()`;
- a push to branch B: `branch 'B'` (any build of B that is not a pull request, which is also
  what a manual or timer build of B is: the renderer checks that every job admitting pushes
  admits those too, so the rule is exact);
- a manual build (`Build Now`, a replay) of a branch: `triggeredBy cause: 'UserIdCause'`, never
  of a pull request;
- the retrain schedule: `triggeredBy 'TimerTrigger'` (the cron fires on the default branch only).

A pipeline whose jobs run on another job's decision (`Job.when`: the monitor pipeline) owns the
file's one schedule (a timer build does not say which cron fired: refuse_two_timers) and a
boolean parameter named after it (`MLCI_RUN_MONITOR`) a manual build sets to run it. Its deciding
job is a stage before the checks that runs only in such a build and reads its outputs file into
`MLCI_OUTPUTS` (`readProperties`); every stage holding a decided job also requires
`MLCI_OUTPUTS` to hold no decision (another kind of build: cd as ever) or the value the model
names, and is skipped, never failed, otherwise.

Every `sh` step is a single-quoted Groovy string (`'''...'''`): Groovy interpolates nothing in
it, and every value (settings, credentials, the inputs a stage takes from an earlier one)
reaches the shell as an environment variable, by name.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci import pipeline as pipeline_model
from mlci.config import ENVIRONMENTS, CISection, Config, DataSection, ProjectSection, TrackingSection, TrainSection
from mlci.errors import ConfigError, InfraError
from mlci.pipeline import (
    OIDC_TOKEN,
    READ_REPOSITORY,
    Condition,
    Decided,
    Job,
    Pipeline,
    TriggerKind,
    as_rendered,
    build,
)
from mlci.providers.base import RenderContext
from mlci.providers.jenkins import groovy
from mlci.stage_specs import STAGES, StageSpec
from mlci.targets.base import Literal, Secret, Variable
from mlci.template_env import compiled, version_text

NAME = "jenkins"  # the provider this module renders (its package names it too)

JENKINSFILE = "Jenkinsfile"
UPGRADE_FILE = "Jenkinsfile.upgrade"
LIBRARY = ".jenkins"  # the vendored shared library (libraryPath of the library step)
REMOTE_LIBRARY = "jenkins"  # the same library in the mlci repository (published.py)
CHECKS_STAGE = "Checks"
REGISTRY_STAGE = "Registry"
REGISTRY_DIR = "mlci-registry"  # the kept registry, as archived by a build and copied by the next
OUTPUTS_DIR = ".mlci/out/jenkins"  # where the runtime adapter writes a stage's outputs (<job>.properties)
# The environment variable each stage names its model job by: the runtime adapter names its
# outputs and summary files after it, and parse.py reads the job back from it.
JOB_VARIABLE = "MLCI_JOB"
MLCI = '"${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-venv/bin/mlci"'  # installed by the setup step
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # control characters other than a newline


def groovy_str(text: str) -> str:
    """A single-quoted Groovy string literal: `$` stays inert, `\\` and `'` are escaped, a
    newline is `\\n`. Refuses other control characters (nothing mlci writes holds one)."""
    if _UNSAFE.search(text):
        raise ValueError(f"{text!r} holds a control character; refusing to write it into a Jenkinsfile")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def groovy_script(text: str) -> str:
    """A shell script as a triple-single-quoted Groovy string: no interpolation, and Groovy's
    escapes undone by escaping every backslash (the shell sees exactly `text`)."""
    if _UNSAFE.search(text):
        raise ValueError("a shell script holds a control character; refusing to write it into a Jenkinsfile")
    body = text.replace("\\", "\\\\").replace("'''", "\\'\\'\\'")
    return "'''" + body + "'''"


def input_env(input_name: str) -> str:
    """The variable a stage input reaches mlci's command line through (`MLCI_IN_RUN_ID`)."""
    return "MLCI_IN_" + input_name.upper().replace("-", "_")


def outputs_file(job_id: str) -> str:
    return f"{OUTPUTS_DIR}/{job_id}.properties"


def state_stash(job_id: str) -> str:
    return f"mlci-state-{job_id}"


def outputs_stash(job_id: str) -> str:
    return f"mlci-outputs-{job_id}"


REGISTRY_STASH = "mlci-registry"


# --- when: which builds run a stage -------------------------------------------------------

PULL_REQUEST = "changeRequest()"
TIMER = "triggeredBy 'TimerTrigger'"
MANUAL = ("allOf {", "  triggeredBy cause: 'UserIdCause'", "  not { changeRequest() }", "}")


# The outputs of the stages later ones run on, by job (a top-level Groovy map of the Jenkinsfile):
# filled by the deciding stage once its step succeeded; a job missing did not run in this build.
OUTPUTS_VARIABLE = "MLCI_OUTPUTS"


def parameter_name(pipeline_id: str) -> str:
    """The boolean build parameter a manual build sets to run a decided pipeline (`MLCI_RUN_MONITOR`;
    not `MLCI_MONITOR`, the monitor stage's script variable)."""
    return "MLCI_RUN_" + pipeline_id.upper().replace("-", "_")


def run_of(decided: Decided) -> tuple[str, ...]:
    """The condition (lines) admitting exactly the builds of a decided pipeline: a timer build
    (its schedule is the file's only one), or a manual one that set its parameter."""
    parts: list[tuple[str, ...]] = []
    if decided.schedule is not None:
        parts.append((TIMER,))
    if decided.manual:
        parts.append((*MANUAL[:-1], f"  expression {{ params.{parameter(decided)} }}", "}"))
    return _block("anyOf", parts)


def decision_clause(when: Condition) -> str:
    """Holds when the deciding job did not run in this build, or decided `when.value`."""
    decided = f"{OUTPUTS_VARIABLE}[{groovy_str(when.job)}]"
    return f"expression {{ {decided} == null || {decided}[{groovy_str(when.output)}] == {groovy_str(when.value)} }}"


def with_decision(condition: tuple[str, ...], when: Condition | None) -> tuple[str, ...]:
    """`condition` and, for a decided job, its decision clause: one allOf."""
    if when is None:
        return condition
    clause = decision_clause(when)
    if condition[0] == "allOf {":
        return (*condition[:-1], f"  {clause}", "}")
    return ("allOf {", *(f"  {line}" for line in condition), f"  {clause}", "}")


def parameter(decided: Decided) -> str:
    """The boolean build parameter a manual build of `decided` sets."""
    return parameter_name(decided.pipeline.id)


def parameter_description(decided: Decided) -> str:
    return (
        f"Run the {decided.pipeline.id} pipeline: its {decided.when.job} stage first, and the later stages only "
        f"if its {decided.when.output} is {decided.when.value}, as in a timer build"
    )


def decided_pipelines(pipelines: tuple[Pipeline, ...]) -> tuple[Decided, ...]:
    """The model's decided pipelines; Jenkins puts at most one in its file, decided by its first job."""
    found = pipeline_model.decided_pipelines(pipelines, "Jenkins")
    for decided in found:
        p, when = decided.pipeline, decided.when
        if p.jobs[0].id != when.job or p.jobs[0].needs:
            raise ValueError(f"pipeline {p.id}: its first job decides, needing nothing, and every other runs on it")
    if len(found) > 1:
        raise ValueError("Jenkins renders one pipeline run on a decision")
    return found


def undecided(job: Job) -> Job:
    """A job as the pipelines that do not run it on a decision have it."""
    if job.when is None:
        return job
    return dataclasses.replace(job, needs=tuple(n for n in job.needs if n != job.when.job), when=None)


def branch(name: str) -> str:
    return f"branch {groovy_str(name)}"


def _block(keyword: str, parts: list[tuple[str, ...]]) -> tuple[str, ...]:
    if len(parts) == 1:
        return parts[0]
    return (f"{keyword} {{", *(f"  {line}" for part in parts for line in part), "}")


def admission(kinds: set[TriggerKind], push_branches: tuple[str, ...], only_on: str | None) -> tuple[str, ...]:
    """The `when` condition (lines) admitting the builds of the given trigger kinds."""
    parts: list[tuple[str, ...]] = []
    if "pull_request" in kinds:
        parts.append((PULL_REQUEST,))
    if "push" in kinds:
        parts.extend((branch(b),) for b in push_branches)
    if "manual" in kinds:
        parts.append(MANUAL)
    if "schedule" in kinds:
        parts.append((TIMER,))
    condition = _block("anyOf", parts)
    if only_on is None:
        return condition
    return _block("allOf", [(branch(only_on),), condition])


# --- the stages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JenkinsStage:
    job: Job
    name: str  # the stage's name in Jenkins (the job's display name)
    when: tuple[str, ...]  # the condition's lines
    approval: bool  # an `input` (the approvers) before the stage takes an agent
    environment: tuple[tuple[str, str], ...]  # (name, Groovy literal): MLCI_JOB, options, fixed values
    literals: dict[str, str]  # the fixed values, by name, as text
    required: tuple[str, ...]  # variables the controller or the agent must define (ci settings)
    secrets: tuple[str, ...]  # credentials bound by withCredentials (credentials id = variable)
    unstash: tuple[str, ...]
    script: str  # the sh script running the stage
    junit: str | None
    registry_branch: str | None  # the branch whose builds keep the registry (restores or saves it)
    # Later stages run on its outputs: it reads them into OUTPUTS_VARIABLE, and its JUnit report's
    # failures are the evidence of its decision, not a broken build (never marked unstable).
    decides: bool = False
    reports: tuple[str, ...] = ()  # files it archives whatever its result (Job.reports)

    def environment_values(self) -> tuple[tuple[str, str], ...]:
        """The fixed values of the stage's environment (its credentials' literals), unquoted."""
        own = (JOB_VARIABLE, REQUIRED, EXTRAS, INSTALL_PROJECT, "MLCI_IN_", "MLCI_FROM_")
        return tuple((name, self.literals[name]) for name, _ in self.environment if not name.startswith(own))


@dataclass(frozen=True)
class Layout:
    registry: JenkinsStage | None  # restores the kept registry first, when a job keeps one
    checks: tuple[JenkinsStage, ...]  # run in parallel
    gate: JenkinsStage
    delivery: tuple[JenkinsStage, ...]  # one after another
    push_branches: tuple[str, ...]
    schedules: tuple[str, ...]
    delivery_group: str | None  # the model's concurrency group of the delivery pipelines
    abort_superseded: bool  # a pull request's newer commit aborts the build it supersedes
    handing_over: frozenset[str]  # jobs whose outputs a later stage takes (their outputs file is stashed)
    deciding: tuple[JenkinsStage, ...] = ()  # before the checks: the jobs later stages run on
    parameters: tuple[tuple[str, str], ...] = ()  # (name, description): a boolean build parameter per decided pipeline
    names: tuple[str, ...] = ()  # the model's pipelines, by id


# The JUnit report each stage writes under .mlci/out/ (stages/_result.py JUNIT_REPORTS).
JUNIT = {"test": ".mlci/out/junit.xml", "data-test": ".mlci/out/data-test.xml", "monitor": ".mlci/out/monitor.xml"}


def _kinds(pipelines: tuple[Pipeline, ...], job_id: str) -> set[TriggerKind]:
    return {t.kind for p in pipelines if any(j.id == job_id for j in p.jobs) for t in p.triggers}


def checks_of(pipelines: tuple[Pipeline, ...]) -> Pipeline:
    found = [p for p in pipelines if any(t.kind == "pull_request" for t in p.triggers)]
    if len(found) != 1:
        raise ValueError(f"Jenkins renders one pipeline run on pull requests, not {len(found)}")
    return found[0]


def from_env(input_name: str) -> str:
    """The variable naming where a stage input comes from (`train:run-id`: that job's output)."""
    return "MLCI_FROM_" + input_name.upper().replace("-", "_")


REQUIRED = "MLCI_REQUIRED"  # the settings (space-separated variable names) a stage checks first
# What a stage's setup step installs (pipeline.Install): mlci's extras, comma-separated, and
# whether the project too ('true' or 'false').
EXTRAS = "MLCI_EXTRAS"
INSTALL_PROJECT = "MLCI_INSTALL_PROJECT"


def stage_script(spec: StageSpec) -> str:
    """The sh script of a stage, the same for every job running it (the Jenkinsfile's and the
    shared library's): the job's own values come from its environment, by name."""
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        f"for name in ${{{REQUIRED}:-}}; do",
        '  if [ -z "${!name:-}" ]; then',
        "    echo \"mlci: $name is not set: define it in the controller's global properties or the agent's "
        'node properties (docs/jenkins.md)" >&2',
        "    exit 2",
        "  fi",
        "done",
    ]
    if spec.inputs:
        lines += [
            "# An input an earlier stage handed over (`job:output`): the value in that job's outputs file.",
            "# Run ids and versions need no escaping there; anything else, or nothing, stops the stage.",
            "handed_over() {",
            f'  local file="{OUTPUTS_DIR}/${{1%%:*}}.properties" key="${{1#*:}}" value',
            '  value="$(sed -n "s/^$key=//p" "$file" 2>/dev/null || true)"',
            '  if [ -z "$value" ] || [[ "$value" == *\\\\* ]]; then',
            '    echo "mlci: $file holds no plain $key: the stage that hands it over did not run or failed" >&2',
            "    exit 2",
            "  fi",
            "  printf '%s' \"$value\"",
            "}",
        ]
    lines.append("args=()")
    for stage_input in spec.inputs:
        value, source = input_env(stage_input.name), from_env(stage_input.name)
        lines.append(f'if [ -n "${{{source}:-}}" ]; then {value}="$(handed_over "${source}")"; fi')
        lines.append(f'if [ -n "${{{value}:-}}" ]; then args+=({stage_input.flag} "${value}"); fi')
    lines.append(f'{MLCI} {spec.name} "${{args[@]}}"')
    return "\n".join(lines) + "\n"


def layout(pipelines: tuple[Pipeline, ...]) -> Layout:
    checks_pipeline = checks_of(pipelines)
    decided = decided_pipelines(pipelines)
    deciding = {d.when.job: d for d in decided}
    jobs: dict[str, Job] = {}
    decided_by: dict[str, Condition] = {}
    for p in pipelines:
        for job in p.jobs:
            if job.id in deciding and deciding[job.id].pipeline is not p:
                raise ValueError(
                    f"job {job.id} decides for pipeline {deciding[job.id].pipeline.id} and runs in {p.id} too"
                )
            # A decided job is another pipeline's job, run on the decision too.
            base = undecided(job)
            if jobs.setdefault(job.id, base) != base:
                raise ValueError(f"job {job.id} differs between pipelines")
            if job.when is not None and decided_by.setdefault(job.id, job.when) != job.when:
                raise ValueError(f"job {job.id} runs on two decisions")
    pushes = (b for p in pipelines for t in p.triggers if t.kind == "push" for b in t.branches)
    push_branches = tuple(dict.fromkeys(pushes))
    schedules = tuple(t.cron for p in pipelines for t in p.triggers if t.kind == "schedule" and t.cron)
    registry_branches = {p.registry_branch for p in pipelines if p.registry_branch}
    if len(registry_branches) > 1:
        raise ValueError(f"the pipelines keep registries of several branches: {sorted(registry_branches)}")
    registry_branch = next(iter(registry_branches), None)
    gates = [j for j in checks_pipeline.jobs if j.gate]
    if len(gates) != 1 or checks_pipeline.jobs[-1] is not gates[0]:
        raise ValueError("Jenkins renders the checks as a parallel stage closed by one gate")
    gate_job = jobs[gates[0].id]
    check_jobs = tuple(jobs[j.id] for j in checks_pipeline.jobs[:-1])
    if len({decided_by.get(j.id) for j in (*check_jobs, gate_job)}) != 1:
        raise ValueError("the checks and their gate run on one decision or none: Jenkins runs them as one stage")
    if any(j.needs for j in check_jobs) or set(gate_job.needs) != {j.id for j in check_jobs}:
        raise ValueError("the checks must need nothing and the gate exactly the checks")

    def stage(job: Job) -> JenkinsStage:
        kinds = _kinds(pipelines, job.id)
        if "push" in kinds and not ({"manual"} <= kinds and (not schedules or "schedule" in kinds)):
            # `branch 'B'` also admits a manual and a timer build of B: exact only then.
            raise ValueError(f"job {job.id} runs for pushes but not for manual or scheduled builds")
        if OIDC_TOKEN in job.capabilities:
            raise ValueError(f"job {job.id} needs an OIDC token, which Jenkins does not issue")
        environment: list[tuple[str, str]] = [(JOB_VARIABLE, groovy_str(job.id))]
        required: list[str] = []
        secrets: list[str] = []
        literals: dict[str, str] = {}
        order = [type(var.value) for credential in job.credentials for var in credential.env]
        if order != sorted(order, key=[Variable, Secret, Literal].index):
            # parse.py reads them back in this order (a stage shows them in three places)
            raise ValueError(f"job {job.id}: Jenkins lists a job's variables, then its secrets, then its fixed values")
        for credential in job.credentials:
            for var in credential.env:
                value = var.value
                if isinstance(value, Secret | Variable) and not _NAME.fullmatch(value.name):
                    raise ValueError(f"{value.name!r} is not a Jenkins credentials id or variable name")
                if isinstance(value, Secret):
                    if value.name != var.name:
                        raise ValueError(f"{var.name} is bound from credentials id {value.name}: Jenkins binds by name")
                    secrets.append(value.name)
                elif isinstance(value, Variable):
                    if value.name != var.name:
                        raise ValueError(f"{var.name} is read from variable {value.name}: Jenkins passes it by name")
                    required.append(value.name)
                elif isinstance(value, Literal):
                    environment.append((var.name, groovy_str(value.value)))
                    literals[var.name] = value.value
                else:  # as_rendered resolved every ByProvider value
                    raise ValueError(f"{var.name}: unresolved value {value!r}")
        for name, option in job.options.items():
            environment.append((input_env(name), groovy_str(option)))
        for handover in job.inputs_from:
            environment.append((from_env(handover.input), groovy_str(f"{handover.job}:{handover.output}")))
        if required:
            environment.append((REQUIRED, groovy_str(" ".join(required))))
        if job.stage is not None:  # what its setup step installs (setup.sh)
            environment.append((EXTRAS, groovy_str(",".join(job.install.extras))))
            environment.append((INSTALL_PROJECT, groovy_str("true" if job.install.project else "false")))
        unstash: list[str] = []
        if job.restores_state:
            unstash.append(state_stash(job.needs[0]))
        unstash.extend(outputs_stash(h.job) for h in job.inputs_from if outputs_stash(h.job) not in unstash)
        if job.restores_registry:
            unstash.append(REGISTRY_STASH)
        spec = job.stage
        keeps = job.restores_registry or job.saves_registry
        if job.id in deciding:
            when = run_of(deciding[job.id])
        else:
            when = with_decision(admission(kinds, push_branches, job.only_on_branch), decided_by.get(job.id))
        for path in job.reports:
            if not path or "," in path or any(c in path for c in "*?[]") or path != path.strip():
                raise ValueError(f"{path!r} cannot be archived by name (archiveArtifacts takes comma-separated globs)")
        return JenkinsStage(
            job=job,
            name=job.name,
            when=when,
            approval=job.environment is not None and job.environment == ENVIRONMENTS[-1],
            environment=tuple(environment),
            literals=literals,
            required=tuple(required),
            secrets=tuple(secrets),
            unstash=tuple(unstash),
            script=stage_script(spec) if spec else "",
            junit=JUNIT.get(spec.name) if spec else None,
            registry_branch=registry_branch if keeps else None,
            decides=job.id in deciding,
            reports=job.reports,
        )

    first = [j for j in jobs.values() if j.id in deciding]
    for job in first:  # before the checks; the decided stages (every later one) need it too
        if job.needs or job.restores_state or job.saves_state or job.inputs_from:
            raise ValueError(f"job {job.id} decides for later stages, so it runs first: it needs and carries nothing")
    ordered = [j for j in jobs.values() if j.id not in {c.id for c in checks_pipeline.jobs} and j.id not in deciding]
    previous = gate_job.id
    for job in ordered:  # one after another: each needs exactly the stage before it (and its decider)
        if job.needs != (previous,):
            raise ValueError(f"job {job.id} needs {list(job.needs)}, not the stage before it ({previous})")
        if job.saves_state and not any(j.restores_state and j.needs == (job.id,) for j in ordered):
            raise ValueError(f"job {job.id} saves state no job restores")
        previous = job.id
    restorers = [j for j in (*first, *ordered) if j.restores_registry]
    registry = None
    if restorers:
        # It runs in every build one of them runs in.
        kinds = set().union(*(_kinds(pipelines, j.id) for j in restorers))
        registry = dataclasses.replace(
            stage(restorers[0]),
            name=REGISTRY_STAGE,
            when=admission(kinds, push_branches, None),
            approval=False,
            environment=(),
            required=(),
            secrets=(),
            unstash=(),
            script="",
            decides=False,
            reports=(),
        )
    groups = {p.concurrency_group for p in pipelines if p is not checks_pipeline}
    if len(groups) > 1:
        raise ValueError(f"the delivery pipelines disagree on their concurrency group: {sorted(map(str, groups))}")
    for p in pipelines:
        if p is not checks_pipeline and p.cancel_in_progress:
            raise ValueError(f"pipeline {p.id} cancels runs: Jenkins aborts only superseded pull request builds")
    return Layout(
        registry=registry,
        checks=tuple(stage(j) for j in check_jobs),
        gate=stage(gate_job),
        delivery=tuple(stage(j) for j in ordered),
        push_branches=push_branches,
        schedules=schedules,
        delivery_group=next(iter(groups), None),
        abort_superseded=checks_pipeline.cancel_in_progress,
        handing_over=frozenset(h.job for j in jobs.values() for h in j.inputs_from),
        deciding=tuple(stage(j) for j in first),
        parameters=tuple((parameter(d), parameter_description(d)) for d in decided if d.manual),
        names=tuple(p.id for p in pipelines),
    )


# --- files --------------------------------------------------------------------------------


def pins(templates: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((templates / "pins.json").read_text(encoding="utf-8"))
    return found


def install_spec(ctx: RenderContext) -> str:
    """What the setup step installs mlci from: the project's pin, else this mlci (vendored) or
    the pinned mlci repository's commit (remote)."""
    if ctx.mlci_install:
        return ctx.mlci_install
    if ctx.actions == "vendored":
        return f"mlci=={ctx.mlci_version}"
    return f"mlci @ git+https://github.com/{ctx.mlci_repository}@{ctx.mlci_ref}"


def _python(ctx: RenderContext) -> str:
    return f"python{ctx.python}"


def setup_script(templates: Path) -> str:
    return (templates / "setup.sh").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Scripts:
    """The shell scripts of the kept registry (templates/registry-*.sh)."""

    find_registry: str
    restore_registry: str
    save_registry: str

    @classmethod
    def of(cls, templates: Path) -> Scripts:
        def read(name: str) -> str:
            return (templates / f"registry-{name}.sh").read_text(encoding="utf-8")

        return cls(read("find"), read("restore"), read("save"))


def _check_groovy(text: str, what: str) -> None:
    """Refuse to write a file the Groovy-subset reader cannot read (unbalanced braces, an
    unclosed string): a template bug must never reach a repository (the Groovy stub in the
    tests parses it for real)."""
    try:
        groovy.parse(text)
    except ValueError as exc:
        raise InfraError(f"mlci rendered an invalid {what} ({exc}); this is a bug in mlci, please report it") from None


def copy_newest(filter_expression: str, lookback: int) -> str:
    """Groovy lines copying the newest registry one of the last `lookback` builds of this
    branch kept (a failed or aborted build may have kept none) to mlci-newest/, through the
    Copy Artifact plugin; builds older than the artifact limit have none left anyway."""
    return (
        "// The newest registry the last builds kept (a failed or aborted build may have kept none).\n"
        "int build = Integer.parseInt(env.BUILD_NUMBER)\n"
        f"for (int n = build - 1; n >= 1 && n >= build - {lookback} "
        f"&& !fileExists('mlci-newest/{REGISTRY_DIR}/key'); n--) {{\n"
        "  copyArtifacts(projectName: env.JOB_NAME, selector: specific(String.valueOf(n)), "
        f"filter: {filter_expression}, target: 'mlci-newest', optional: true, fingerprintArtifacts: false)\n"
        "}\n"
    )


def groovy_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(groovy_str(v) for v in values) + "]"


def groovy_map(values: Mapping[str, str]) -> str:
    if not values:
        return "[:]"
    return "[" + ", ".join(f"{groovy_str(k)}: {groovy_str(v)}" for k, v in values.items()) + "]"


def handovers(job: Job) -> dict[str, str]:
    return {h.input: f"{h.job}:{h.output}" for h in job.inputs_from}


@dataclass(frozen=True)
class LibrarySettings:
    """What a project's Jenkinsfile hands mlciPipeline beside the ci settings: the delivery
    stages' credentials, which the library passes to every one of them."""

    settings: dict[str, str]
    required: tuple[str, ...]
    secrets: tuple[str, ...]
    # The extras of the stages whose job installs other extras than the stage's own (what
    # mlci.yaml implies: lint.pre_commit, a Spark engine, the Databricks target), by stage.
    extras: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, found: Layout) -> LibrarySettings:
        stages = [s for s in found.delivery if s.job.stage is not None]
        kinds = {(s.environment_values(), s.required, s.secrets) for s in stages}
        if len(kinds) > 1:
            raise ValueError("the shared library gives every delivery stage the same credentials; the model does not")
        settings, required, secrets = next(iter(kinds), ((), (), ()))
        extras: dict[str, str] = {}
        for stage in (*found.deciding, *found.checks, *found.delivery):
            spec = stage.job.stage
            if spec is None:
                continue
            if stage.job.install.project != spec.needs_project:
                raise ValueError(f"job {stage.job.id}: the shared library installs the project as its stage says")
            if stage.job.install.extras != spec.extras:
                wanted = ",".join(stage.job.install.extras)
                if extras.setdefault(spec.name, wanted) != wanted:
                    raise ValueError(f"the shared library installs one set of extras per stage; {spec.name} has two")
        return cls(dict(settings), required, secrets, extras)


# A representative model the shared library's pipeline is rendered from: its shape (stages,
# conditions, hand-overs) is every project's; what varies (the registry, the schedule, the
# credentials) is a setting of mlciPipeline.
CANONICAL_BRANCH = "main"


def canonical_pipelines(keep_registry: bool) -> tuple[Pipeline, ...]:
    config = Config(
        schema=1,
        project=ProjectSection(name="model", package="model"),
        data=DataSection(train="train.csv", holdout="holdout.csv", target="y"),
        train=TrainSection(entrypoint="model.train:train"),
        ci=CISection(provider=NAME, default_branch=CANONICAL_BRANCH, retrain_cron="0 3 * * 1"),
        tracking=TrackingSection(uri=None if keep_registry else "https://mlflow.invalid"),
    )
    return tuple(as_rendered(p, NAME) for p in build(config))


def _canonical_layout(keep_registry: bool) -> Layout:
    return layout(canonical_pipelines(keep_registry))


def library_when(lines: tuple[str, ...]) -> tuple[str, ...]:
    """A canonical `when` with the default branch a setting: `expression` compares it."""
    canonical = branch(CANONICAL_BRANCH)
    replaced = []
    for line in lines:
        head = line[: len(line) - len(line.lstrip())]
        if line.strip() == canonical:
            replaced.append(head + "expression { env.BRANCH_NAME == c.defaultBranch }")
        elif line.strip().startswith("branch "):
            raise ValueError(f"the shared library's conditions name no branch but the default one: {line.strip()}")
        else:
            replaced.append(line)
    return tuple(replaced)


def render_library(mlci_version: str, templates: Path) -> dict[str, str]:
    """The shared library's files, {path under the library root: text}: the same for every
    project of one mlci version (it is vendored, or loaded from the mlci repository)."""
    version = version_text(mlci_version)
    found = pins(templates)
    stages = [
        {
            "spec": spec,
            "junit": JUNIT.get(spec.name),
            "inputs": "[" + ", ".join(groovy_str(i.name) for i in spec.inputs) + "]",
            "extras": groovy_str(",".join(spec.extras)),
            "project": "true" if spec.needs_project else "false",
            "script": stage_script(spec),
        }
        for spec in STAGES
    ]
    lookback = int(found["artifact_builds_to_keep"])
    kept, shared = _canonical_layout(True), _canonical_layout(False)
    files = {}
    for name in ("mlciStage", "mlciPipeline"):
        for suffix in (".groovy", ".txt"):
            source = (templates / "vars" / f"{name}{suffix}.j2").read_text(encoding="utf-8")
            files[f"vars/{name}{suffix}"] = compiled(source).render(
                mlci_version=version,
                pins=found,
                stages=stages,
                setup=setup_script(templates),
                groovy_str=groovy_str,
                groovy_script=groovy_script,
                environments=ENVIRONMENTS,
                outputs_dir=OUTPUTS_DIR,
                registry_dir=REGISTRY_DIR,
                job_variable=JOB_VARIABLE,
                scripts=Scripts.of(templates),
                copy_newest=lambda expression: copy_newest(expression, lookback),
                checks=kept.checks,
                gate=kept.gate,
                registry=kept.registry,
                delivery=list(zip(kept.delivery, shared.delivery, strict=True)),
                handing_over=kept.handing_over,
                library_when=library_when,
                groovy_map=groovy_map,
                groovy_list=groovy_list,
                handovers=handovers,
                checks_stage=CHECKS_STAGE,
            )
    return files


def script_name(spec: StageSpec) -> str:
    return "MLCI_" + spec.ci_id.upper().replace("-", "_")


def jenkinsfile_scripts(found: Layout, templates: Path) -> list[tuple[str, str]]:
    """The shell scripts a Jenkinsfile's stages run, each once: (Groovy variable, text)."""
    scripts = Scripts.of(templates)
    stages = [s for s in (*found.deciding, *found.checks, found.gate, *found.delivery) if s.job.stage is not None]
    named = [("MLCI_SETUP", setup_script(templates))]
    if found.registry is not None:
        named += [("MLCI_REGISTRY_FIND", scripts.find_registry), ("MLCI_REGISTRY_RESTORE", scripts.restore_registry)]
    if any(s.job.saves_registry for s in stages):
        named.append(("MLCI_REGISTRY_SAVE", scripts.save_registry))
    for stage in stages:
        assert stage.job.stage is not None
        named.append((script_name(stage.job.stage), stage.script))
    return list(dict(named).items())


def refuse_two_timers(pipelines: tuple[Pipeline, ...]) -> None:
    """A Jenkins timer build does not say which of the `cron` lines started it (TimerTrigger's
    cause has no spec), so the retrain schedule and the monitor's cannot share one Jenkinsfile:
    a one-line ConfigError naming both keys, never a build that guesses."""
    timed = [p.id for p in pipelines if any(t.kind == "schedule" for t in p.triggers)]
    if len(timed) > 1:
        raise ConfigError(
            "mlci.yaml",
            None,
            "ci.retrain_cron and monitor.schedule are both set, and a Jenkins timer build cannot tell which "
            "cron started it; unset one of them (ci.retrain_cron: the monitor decides when to retrain)",
        )


def refuse_library_decisions(pipelines: tuple[Pipeline, ...], ctx: RenderContext) -> None:
    """mlciPipeline renders no stage run on another's decision yet: a one-line ConfigError,
    never a library Jenkinsfile that would leave the monitor out."""
    if ctx.jenkins_library and any(job.when is not None for p in pipelines for job in p.jobs):
        raise ConfigError(
            "mlci.yaml",
            None,
            "monitor.schedule is set with ci.jenkins.library: true, and the shared library's mlciPipeline does not "
            "run the monitor pipeline yet; set ci.jenkins.library: false (the Jenkinsfile then holds its stages)",
        )


def render(pipelines: tuple[Pipeline, ...], ctx: RenderContext, templates: Path) -> dict[str, bytes]:
    refuse_two_timers(pipelines)
    refuse_library_decisions(pipelines, ctx)
    rendered = tuple(as_rendered(p, NAME) for p in pipelines)
    found = layout(rendered)
    settings = dataclasses.asdict(ctx)
    found_pins = pins(templates)
    values = {
        **settings,
        "layout": found,
        "pins": found_pins,
        "scripts": Scripts.of(templates),
        "checks_stage": CHECKS_STAGE,
        "install": install_spec(ctx),
        "python_command": _python(ctx),
        "setup": setup_script(templates),
        "groovy_str": groovy_str,
        "groovy_script": groovy_script,
        "MLCI": MLCI,
        "READ_REPOSITORY": READ_REPOSITORY,
        "state_stash": state_stash,
        "outputs_stash": outputs_stash,
        "outputs_file": outputs_file,
        "registry_dir": REGISTRY_DIR,
        "registry_stash": REGISTRY_STASH,
        "library_path": LIBRARY,
        "upgrade_script": (templates / "upgrade.sh").read_text(encoding="utf-8"),
        "groovy_map": groovy_map,
        "groovy_list": groovy_list,
        "library_settings": LibrarySettings.of(found),
        "jenkinsfile_scripts": jenkinsfile_scripts(found, templates),
        "script_name": script_name,
        "copy_newest": lambda expression: copy_newest(expression, int(found_pins["artifact_builds_to_keep"])),
        "push_script": (templates / "push.sh").read_text(encoding="utf-8"),
        "outputs_variable": OUTPUTS_VARIABLE,
    }
    files: dict[str, bytes] = {}
    main = "Jenkinsfile-library.j2" if ctx.jenkins_library else "Jenkinsfile.j2"
    text = compiled((templates / main).read_text(encoding="utf-8")).render(**values)
    _check_groovy(text, JENKINSFILE)
    files[JENKINSFILE] = text.encode("utf-8")
    upgrade = compiled((templates / "Jenkinsfile.upgrade.j2").read_text(encoding="utf-8")).render(**values)
    _check_groovy(upgrade, UPGRADE_FILE)
    files[UPGRADE_FILE] = upgrade.encode("utf-8")
    if ctx.actions == "vendored":
        for path, body in render_library(ctx.mlci_version, templates).items():
            if path.endswith(".groovy"):
                _check_groovy(body, path)
            files[f"{LIBRARY}/{path}"] = body.encode("utf-8")
    return dict(sorted(files.items()))
