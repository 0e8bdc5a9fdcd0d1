"""Rendered workflows read back into the pipeline model (the conformance kit's parse-back).

Everything `render` writes from the model is read back from the workflows alone: triggers with
their branches and cron, jobs, needs, gates and branch guards, environments, timeouts,
capabilities (from `permissions:`), the stage and its options (from the action used and its
`with:`), the install (the setup action's `extras` and `install-project`), hand-overs, state
and registry steps, concurrency, and credentials (from `env:`).

A workflow does not hold a credential's name or how its variables were grouped: credentials
come back as one unnamed `Credential` per job, its reason read from the comment next to
`id-token: write` (see `pipeline.as_rendered`, the model as a CI file can show it). A value
the target gave per CI system (`ByProvider`) comes back as the literal GitHub's entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlci.pipeline import OIDC_TOKEN, Capability, Condition, Handover, Install, Job, Pipeline, Trigger, TriggerKind
from mlci.providers.github.actions import ACTIONS
from mlci.providers.github.render import OIDC_REASON, SCOPES, WORKFLOWS
from mlci.targets.base import Credential, EnvValue, EnvVar, Literal, Secret, Variable

_KINDS: dict[str, TriggerKind] = {
    "pull_request": "pull_request",
    "push": "push",
    "workflow_dispatch": "manual",
    "schedule": "schedule",
}
_CAPABILITY = {scope: capability for capability, scope in SCOPES.items()}
_STAGE_OF_ACTION = {action.name: action.stage for action in ACTIONS}
_EVERY_PUSH = "${{ github.workflow }}-${{ github.event_name == 'push' && github.sha || github.ref }}"
_OWN_GROUP = "${{ github.workflow }}-${{ github.ref }}"
_BRANCH_GUARD = re.compile(r"github\.ref == 'refs/heads/(?P<branch>[^']+)'")
_WHEN = re.compile(r"needs\.(?P<job>[\w-]+)\.outputs\.(?P<output>[\w-]+) == '(?P<value>(?:[^']|'')*)'")
_NEEDS_OUTPUT = re.compile(r"\$\{\{ needs\.(?P<job>[\w-]+)\.outputs\.(?P<output>[\w-]+) \}\}")
_REFERENCE = re.compile(r"\$\{\{ (?P<kind>secrets|vars)\.(?P<name>\w+) \}\}")
_REGISTRY = re.compile(r"mlci-registry-(?P<branch>.+)-")
_JOB_HEADER = re.compile(r"  (?P<job>[\w-]+):")
_OIDC_GRANT = re.compile(r"      id-token: write  # (?P<reason>.*)")
NOT_A_PIPELINE = frozenset({"mlci-upgrade"})  # the weekly upgrade pull request


def parse_back(files: Mapping[str, bytes]) -> tuple[Pipeline, ...]:
    """The pipelines of the rendered files `files` ({relative path: content}), in path order.

    A ValueError names the file and what it holds that the model has no word for."""
    import yaml

    pipelines = []
    for path in sorted(files):
        folder, _, name = path.rpartition("/")
        pipeline_id = name.removesuffix(".yml")
        if folder != WORKFLOWS or not name.endswith(".yml") or pipeline_id in NOT_A_PIPELINE:
            continue
        text = files[path].decode("utf-8")
        workflow = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        try:
            pipelines.append(_pipeline(pipeline_id, workflow, _oidc_reasons(text)))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a workflow mlci renders ({exc!r})") from None
    return tuple(pipelines)


def _oidc_reasons(text: str) -> dict[str, str]:
    """{job id: the comment next to its `id-token: write`}: a YAML comment, so read as text."""
    reasons: dict[str, str] = {}
    job = None
    for line in text.splitlines():
        if (header := _JOB_HEADER.fullmatch(line)) is not None:
            job = header["job"]
        elif job is not None and (grant := _OIDC_GRANT.fullmatch(line)) is not None:
            reasons[job] = grant["reason"]
    return reasons


def _pipeline(pipeline_id: str, workflow: dict[Any, Any], oidc_reasons: Mapping[str, str]) -> Pipeline:
    group = workflow["concurrency"]["group"]
    every_push = group == _EVERY_PUSH
    shared = None if every_push or group == _OWN_GROUP else group.removesuffix("-${{ github.ref }}")
    if shared is not None and shared == group:
        raise ValueError(f"concurrency group {group!r}")
    jobs = tuple(_job(job_id, job, oidc_reasons.get(job_id, "")) for job_id, job in workflow["jobs"].items())
    return Pipeline(
        id=pipeline_id,
        name=workflow["name"],
        triggers=_triggers(workflow[True]),  # YAML 1.1 reads the key `on` as True
        jobs=jobs,
        cancel_in_progress=workflow["concurrency"]["cancel-in-progress"],
        concurrency_group=shared,
        registry_branch=_registry_branch(workflow["jobs"].values()),
        every_push=every_push,
    )


def _triggers(on: Mapping[str, Any]) -> tuple[Trigger, ...]:
    found: list[Trigger] = []
    for event, spec in on.items():
        kind = _KINDS[event]
        if kind == "schedule":
            found += [Trigger("schedule", cron=_only(entry, "cron")) for entry in spec]
        elif spec is None:
            found.append(Trigger(kind))
        else:
            found.append(Trigger(kind, branches=tuple(_only(spec, "branches"))))
    return tuple(found)


def _only(mapping: Mapping[str, Any], key: str) -> Any:
    """`mapping[key]`, refusing any other key: a filter the model has no word for."""
    if set(mapping) != {key}:
        raise ValueError(f"keys {sorted(mapping)}, the model knows only {key}")
    return mapping[key]


def _registry_branch(jobs: Any) -> str | None:
    for job in jobs:
        for step in job["steps"]:
            if step.get("id") in ("registry", "newest-registry"):
                match = _REGISTRY.fullmatch(step["with"]["restore-keys"])
                if match is None:
                    raise ValueError(f"registry cache {step['with']['restore-keys']!r}")
                return match["branch"]
    return None


def _job(job_id: str, job: Mapping[str, Any], oidc_reason: str) -> Job:
    steps = job["steps"]
    ids = {step.get("id") for step in steps}
    uses = [step.get("uses", "").split("@")[0] for step in steps]
    gate, guard, when = _condition(job_id, job.get("if"))
    stage_step = next((s for s in steps if _action_of(s) not in (None, "setup")), None)
    action = _action_of(stage_step)
    stage = _STAGE_OF_ACTION[action] if action else None
    with_ = dict(stage_step.get("with", {})) if stage_step else {}
    handovers = tuple(
        Handover(name, found["job"], found["output"])
        for name, value in with_.items()
        if (found := _NEEDS_OUTPUT.fullmatch(str(value)))
    )
    options = {name: str(value) for name, value in with_.items() if not _NEEDS_OUTPUT.fullmatch(str(value))}
    capabilities = frozenset(_capability(scope, level) for scope, level in (job["permissions"] or {}).items())
    return Job(
        id=job_id,
        name=job["name"],
        stage=stage,
        options=options,
        needs=tuple(job.get("needs", ())),
        capabilities=capabilities,
        environment=job.get("environment"),
        credentials=_credentials(stage_step, OIDC_TOKEN in capabilities, oidc_reason),
        restores_state=any(ref == "actions/download-artifact" for ref in uses),
        saves_state=any(_artifact(step).startswith("mlci-state-") for step in steps),
        inputs_from=handovers,
        restores_registry="registry" in ids,
        saves_registry="newest-registry" in ids,
        timeout_minutes=job["timeout-minutes"],
        gate=gate,
        only_on_branch=guard,
        when=when,
        reports=next((_reports(step) for step in steps if _artifact(step).startswith("mlci-reports-")), ()),
        install=_install(next((s for s in steps if _action_of(s) == "setup"), None)),
    )


def _install(step: Mapping[str, Any] | None) -> Install:
    """What the setup step installs; a job without one (a gate) installs nothing."""
    if step is None:
        return Install()
    with_ = step.get("with", {})
    extras = str(with_.get("extras", ""))
    project = str(with_.get("install-project", "true"))
    if project not in ("true", "false"):
        raise ValueError(f"install-project {project!r}")
    return Install(tuple(e for e in extras.split(",") if e), project == "true")


def _condition(job_id: str, condition: str | None) -> tuple[bool, str | None, Condition | None]:
    """(gate, branch guard, condition on an output) of a job's `if:`, its parts joined by `&&`."""
    gate, guard, when = False, None, None
    for part in condition.split(" && ") if condition else ():
        if part == "always()" and not gate:
            gate = True
        elif (branch := _BRANCH_GUARD.fullmatch(part)) is not None and guard is None:
            guard = branch["branch"]
        elif (output := _WHEN.fullmatch(part)) is not None and when is None:
            when = Condition(output["job"], output["output"], output["value"].replace("''", "'"))
        else:
            raise ValueError(f"job {job_id}: condition {condition!r}")
    return gate, guard, when


def _artifact(step: Mapping[str, Any]) -> str:
    """The name of the artifact an upload-artifact step keeps, or ""."""
    if step.get("uses", "").split("@")[0] != "actions/upload-artifact":
        return ""
    return str(step["with"]["name"])


def _reports(step: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(line.strip() for line in str(step["with"]["path"]).splitlines() if line.strip())


def _action_of(step: Mapping[str, Any] | None) -> str | None:
    """The mlci action a step uses (vendored `mlci-<name>` or remote `actions/<name>`), or None."""
    ref = (step or {}).get("uses", "").split("@")[0]
    if ref.startswith("$/.github/actions/mlci-"):
        return str(ref.removeprefix("$/.github/actions/mlci-"))
    if "/actions/" in ref and not ref.startswith("actions/"):
        return str(ref.rsplit("/", 1)[-1])
    return None


def _capability(scope: str, level: str) -> Capability:
    if (scope, level) not in _CAPABILITY:
        raise ValueError(f"permission {scope}: {level}")
    return _CAPABILITY[(scope, level)]


def _credentials(step: Mapping[str, Any] | None, oidc: bool, oidc_reason: str) -> tuple[Credential, ...]:
    env = (step or {}).get("env")
    if not env:
        return ()
    reason = "" if oidc_reason == OIDC_REASON else oidc_reason  # the provider's default: none given
    return (Credential("", oidc=oidc, env=tuple(EnvVar(k, _value(str(v))) for k, v in env.items()), reason=reason),)


def _value(text: str) -> EnvValue:
    found = _REFERENCE.fullmatch(text)
    if found is None:
        return Literal(text)
    return Secret(found["name"]) if found["kind"] == "secrets" else Variable(found["name"])
