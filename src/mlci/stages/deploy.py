"""deploy (local): smoke-test a version served on loopback, then move the environment's alias.

Environments form a chain (mlci.config.ENVIRONMENTS: staging -> production). `--env staging`
(the default) takes the given version or the `challenger`; every later environment takes
exactly the version the one before it serves and verified. Only the aliases of the target
environment move (`production` also moves `champion`), and only after the served model
answered; on any failure or interruption the aliases are put back.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from typing import Any

from mlci.config import ENVIRONMENTS, Project
from mlci.errors import CheckFailed, InfraError, MlciError, UsageError
from mlci.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    aliases_for,
    check_environment,
    deployed_tag,
    get_version,
    previous_tag,
    require_gated,
    set_aliases,
    verified_tag,
)
from mlci.stages._result import StageOptions, StageResult
from mlci.targets import local, local_store


def smoke_test(project: Project, model_uri: str) -> dict[str, Any]:
    """Serve the model on loopback, wait for /health, send its input example, check the answer."""
    import mlflow.models

    from mlci import serving

    cfg = project.config
    path = local.model_dir(model_uri)
    example = mlflow.models.Model.load(str(path)).load_input_example(str(path))
    if example is None:
        raise CheckFailed(f"{model_uri} has no input example to smoke-test with; retrain with 'mlci train'")
    # Port 0: a free port every time, so two runs (or a running 'mlci serve') never collide.
    with serving.serve_in_thread(path, cfg.deploy.host, 0, cfg.deploy.ready_timeout) as endpoint:
        print(
            f"deploy: serving at {endpoint.url} (ready in {endpoint.ready_seconds:.1f}s); sending the input example",
            flush=True,
        )
        predictions, latency = serving.predict(endpoint.url, example)
    if len(predictions) != len(example):
        raise RuntimeError(f"{len(predictions)} predictions for {len(example)} input rows")
    if any(isinstance(p, dict | list) and not p for p in predictions):
        raise RuntimeError("empty prediction in the answer")
    return {
        "url": endpoint.url,
        "ready_seconds": round(endpoint.ready_seconds, 3),
        "rows": len(example),
        "latency_ms": round(latency * 1000, 1),
        "predictions": predictions[:10],
    }


def release(
    project: Project, client: Any, env: str, version: str, *, consume_challenger: bool, record_previous: bool = True
) -> dict[str, Any]:
    """Smoke-test `version` served, then point `env`'s aliases at it; the facts as a dict.

    Serving and smoke-testing happen by version number before any alias moves, so an alias
    never points at a model that has not answered, even if this process is killed. If moving
    the aliases itself fails (a registry error, Ctrl-C, SIGTERM as CI systems send on cancel
    and timeout), every alias touched is put back.
    """
    name = project.config.model_name
    moved = aliases_for(env)
    before: dict[str, str | None] = {alias: alias_version(client, name, alias) for alias in moved}
    challenger = alias_version(client, name, CHALLENGER)
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
        smoke = smoke_test(project, f"models:/{name}/{version}")
    except Exception as exc:
        if not isinstance(exc, MlciError):
            # A store fault (artifacts deleted, a full disk) says which and what to do, exit 3.
            stores, artifacts = local_store.active_stores(), local_store.artifacts_dir(project)
            exc = local_store.classify(exc, stores, artifacts=artifacts) or exc
        reason = exc.message if isinstance(exc, MlciError) else f"{type(exc).__name__}: {exc}"
        kept = f"{env} stays v{before[env]}" if before[env] else f"no version was in {env}"
        error = InfraError if isinstance(exc, InfraError) else CheckFailed
        raise error(
            f"deploy of {name} v{version} to {env} failed: {reason}; {kept}", {**facts, "promoted": False}
        ) from None
    restore = dict(before)
    if consume_challenger and challenger == version:
        restore[CHALLENGER] = challenger
    was_verified = verified_tag(env) in (get_version(client, name, version).tags or {})
    try:
        set_aliases(client, name, {alias: version for alias in moved})
        if CHALLENGER in restore:
            client.delete_registered_model_alias(name, CHALLENGER)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for key in (verified_tag(env), deployed_tag(env), "mlci.deployed_at"):
            client.set_model_version_tag(name, version, key, now)
        if record_previous and before[env] is not None:
            client.set_model_version_tag(name, version, previous_tag(env), before[env])
    except BaseException:  # half-done: put back every alias this release touched
        set_aliases(client, name, restore)
        if not was_verified:  # and the verification it had not finished recording
            with contextlib.suppress(Exception):
                client.delete_model_version_tag(name, version, verified_tag(env))
        raise
    was = f" (was v{before[env]})" if before[env] and before[env] != version else ""
    print(f"deploy: {name} v{version} is now {' and '.join(moved)}{was}", flush=True)
    return {**facts, "unchanged": False, "promoted": True, "smoke_test": smoke, "deployed_at": now}


def release_summary(facts: dict[str, Any]) -> str:
    name, version, env = facts["model_name"], facts["version"], facts["environment"]
    if facts["unchanged"]:
        return f"{name} v{version} is already in {env}; nothing to do"
    smoke = facts["smoke_test"]
    return (
        f"deployed {name} v{version} to {env} ({', '.join(facts['aliases'])}): served on loopback, "
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
    with local_store.store_faults(project, tracking_override):
        return _deploy(project, target, tracking_override, env, version)


def _deploy(
    project: Project, target: str | None, tracking_override: str | None, env: str | None, version: str | None
) -> StageResult:
    cfg = project.config
    where = target or cfg.target
    if where != "local":
        raise UsageError(
            f"deploy --target {where}: deploying to Databricks is not available in this mlci version; "
            "use --target local"
        )
    env = env or ENVIRONMENTS[0]
    check_environment(env)
    local.configure_mlflow(project, tracking_override)
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    name = cfg.model_name
    chosen = choose_version(client, name, env, version)
    facts = release(project, client, env, chosen, consume_challenger=env == ENVIRONMENTS[0])
    facts["target"] = "local"
    # Every declared output, always: an unchanged release served nothing, so its URL is empty.
    served = facts.get("smoke_test")
    outputs: dict[str, Any] = {"model-version": chosen, "environment": env, "endpoint-url": served and served["url"]}
    return StageResult(release_summary(facts), facts, outputs=outputs)


def run(project: Project, options: StageOptions) -> StageResult:
    """The stage as `mlci deploy` and `mlci run` call it (mlci.stages.STAGES names it)."""
    return run_deploy(project, options["target"], options["tracking_uri"], options["env"], options["model_version"])
