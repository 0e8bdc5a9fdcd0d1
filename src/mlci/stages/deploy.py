"""deploy: the target makes a version live and smoke-tests it, then the environment's alias moves.

Environments form a chain (mlci.config.ENVIRONMENTS: staging -> production). `--env staging`
(the default) takes the given version or the `challenger`; every later environment takes
exactly the version the one before it serves and verified. Only the aliases of the target
environment move (`production` also moves `champion`), and only after the served model
answered; on any failure or interruption the aliases are put back.
"""

from __future__ import annotations

from typing import Any

from mlci import console, targets
from mlci.config import ENVIRONMENTS, Project
from mlci.errors import CheckFailed, InfraError, MlciError, UsageError
from mlci.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    aliases_for,
    check_environment,
    get_version,
    promote,
    require_gated,
    verified_tag,
)
from mlci.stages._result import StageOptions, StageResult
from mlci.targets.base import Target


def release(
    project: Project,
    client: Any,
    env: str,
    version: str,
    *,
    target: Target,
    consume_challenger: bool,
    record_previous: bool = True,
) -> dict[str, Any]:
    """Make `version` live on `target` and smoke-test it, then point `env`'s aliases at it;
    the facts as a dict.

    The target deploys and checks by version number before any alias moves, so an alias never
    points at a model that has not answered, even if this process is killed. If moving the
    aliases fails, registry.promote puts them back and the target's rollback hook runs.
    """
    name = project.config.model_name
    moved = aliases_for(env)
    before: dict[str, str | None] = {alias: alias_version(client, name, alias) for alias in moved}
    facts: dict[str, Any] = {
        "model_name": name,
        "version": version,
        "environment": env,
        "aliases": moved,
        "previous_version": before[env],
        "previous_champion": alias_version(client, name, CHAMPION),
    }
    if all(before[alias] == version for alias in moved):
        print(f"deploy: {name} v{version} is already in {env}; nothing to do", flush=True)
        return {**facts, "unchanged": True, "promoted": False}
    print(f"deploy: smoke-testing {name} v{version} before it moves {', '.join(moved)}", flush=True)
    try:
        deployment = target.deploy(project, f"models:/{name}/{version}", env)
    except MlciError as exc:  # a failed check or a store fault; a bug in mlci is no MlciError and goes on
        kept = f"{env} stays v{before[env]}" if before[env] else f"no version was in {env}"
        error = InfraError if isinstance(exc, InfraError) else CheckFailed
        raise error(
            f"deploy of {name} v{version} to {env} failed: {exc.message}; {kept}", {**facts, "promoted": False}
        ) from None
    try:
        now = promote(
            client, name, env, version, consume_challenger=consume_challenger, record_previous=record_previous
        )
    except BaseException:
        deployment.rollback()
        raise
    was = f" (was v{before[env]})" if before[env] and before[env] != version else ""
    print(f"deploy: {name} v{version} is now {' and '.join(moved)}{was}", flush=True)
    return {**facts, "unchanged": False, "promoted": True, "smoke_test": deployment.facts, "deployed_at": now}


def release_summary(facts: dict[str, Any]) -> str:
    name, version, env = facts["model_name"], facts["version"], facts["environment"]
    if facts["unchanged"]:
        return f"{name} v{version} is already in {env}; nothing to do"
    smoke = facts["smoke_test"]
    return (
        f"deployed {name} v{version} to {env} ({', '.join(facts['aliases'])}): {smoke['served']}, "
        f"ready in {smoke['ready_seconds']:.1f}s, {smoke['rows']} predictions in {smoke['latency_ms']:.0f} ms"
    )


def choose_version(client: Any, name: str, env: str, version: str | None) -> str:
    """The version a deploy to `env` releases: for the first environment the given one, else
    the challenger, else what it serves already; for a later one exactly what the environment
    before it serves, and only if that one verified it."""
    index = check_environment(env)
    if index == 0:
        if version is not None:
            require_gated(client, name, version)
            return version
        chosen = alias_version(client, name, CHALLENGER) or alias_version(client, name, env)
        if chosen is None:
            raise UsageError(
                f"nothing to deploy: model '{name}' has no '{CHALLENGER}' and nothing is in {env}; "
                "run 'mlci register' first"
            )
        return chosen
    upstream = ENVIRONMENTS[index - 1]
    chosen = alias_version(client, name, upstream)
    if chosen is None:
        raise UsageError(
            f"nothing to deploy to {env}: no version of '{name}' is in {upstream}; run 'mlci deploy --env {upstream}'"
        )
    if version is not None and version != chosen:
        raise UsageError(
            f"deploy --env {env} releases exactly the version {upstream} serves (v{chosen}), not v{version}; "
            f"use 'mlci promote --env {env} --version {version}' for another version {upstream} verified"
        )
    tags = get_version(client, name, chosen).tags or {}
    if verified_tag(upstream) not in tags:
        raise CheckFailed(
            f"{name} v{chosen} is in {upstream} but was never verified there; run 'mlci deploy --env {upstream}'"
        )
    return chosen


def run_deploy(
    project: Project,
    target: str | None,
    tracking_override: str | None = None,
    env: str | None = None,
    version: str | None = None,
) -> StageResult:
    chosen_target = targets.get(target or project.config.target)
    with chosen_target.store_faults(project, tracking_override):
        return _deploy(project, chosen_target, tracking_override, env, version)


def _deploy(
    project: Project, target: Target, tracking_override: str | None, env: str | None, version: str | None
) -> StageResult:
    cfg = project.config
    target.require(project, "deploy")
    env = env or ENVIRONMENTS[0]
    check_environment(env)
    target.configure_mlflow(project, tracking_override, verbose=console.verbose())
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    name = cfg.model_name
    chosen = choose_version(client, name, env, version)
    facts = release(project, client, env, chosen, target=target, consume_challenger=env == ENVIRONMENTS[0])
    facts["target"] = target.name
    # Every declared output, always: an unchanged release served nothing, so its URL is empty.
    served = facts.get("smoke_test")
    outputs: dict[str, Any] = {"model-version": chosen, "environment": env, "endpoint-url": served and served["url"]}
    return StageResult(release_summary(facts), facts, outputs=outputs)


def run(project: Project, options: StageOptions) -> StageResult:
    """The stage as `mlci deploy` and `mlci run` call it (mlci.stage_specs.STAGES names it)."""
    return run_deploy(project, options["target"], options["tracking_uri"], options["env"], options["model_version"])
