"""`mlci promote`, `mlci rollback`, `mlci status`: the registry's aliases without the MLflow API.

promote and rollback move an environment's aliases exactly as deploy does (smoke-test
first, put everything back on failure, see mlci.stages.deploy.release) and hold the project
lock; status only reads.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from mlci import console, targets
from mlci.config import ENVIRONMENTS, Project
from mlci.errors import CheckFailed
from mlci.log_guard import json_document
from mlci.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    check_environment,
    deployed_tag,
    normalise_version,
    previous_tag,
    require_gated,
    rollback,
    unverify,
    verified_tag,
)
from mlci.stages._result import StageResult, load_project_for, stage_command
from mlci.targets.base import Target


def _target(project: Project, command: str) -> Target:
    """The project's target, once it said it can run `command`."""
    target = targets.get(project.config.target)
    target.require(project, command)
    return target


def _client(project: Project, target: Target, tracking_override: str | None, *, writes: bool = True) -> Any:
    target.configure_mlflow(project, tracking_override, writes=writes, verbose=console.verbose())
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def run_promote(project: Project, env: str, version: str, tracking_override: str | None = None) -> StageResult:
    """Release `version` to `env`: it must have passed the gates and, past the first
    environment, have been verified in the environment before."""
    with targets.get(project.config.target).store_faults(project, tracking_override):
        return _promote(project, env, version, tracking_override)


def _promote(project: Project, env: str, version: str, tracking_override: str | None) -> StageResult:
    from mlci.stages.deploy import release, release_summary

    index = check_environment(env)
    target = _target(project, "promote")
    client = _client(project, target, tracking_override)
    name = project.config.model_name
    version = normalise_version(version) if version.isdigit() else version
    tags = require_gated(client, name, version)
    if index > 0 and verified_tag(ENVIRONMENTS[index - 1]) not in tags:
        upstream = ENVIRONMENTS[index - 1]
        raise CheckFailed(
            f"{name} v{version} was never verified in {upstream}; "
            f"run 'mlci promote --env {upstream} --version {version}' first"
        )
    facts = release(project, client, env, version, target=target, consume_challenger=index == 0)
    return StageResult(release_summary(facts), facts, outputs={"model-version": version, "environment": env})


def run_rollback(project: Project, env: str, tracking_override: str | None = None) -> StageResult:
    """Put `env` back on the version it served before its current one (tag mlci.previous.<env>)."""
    with targets.get(project.config.target).store_faults(project, tracking_override):
        return _rollback(project, env, tracking_override)


def _rollback(project: Project, env: str, tracking_override: str | None) -> StageResult:
    from mlci.stages.deploy import release

    check_environment(env)
    target = _target(project, "rollback")
    client = _client(project, target, tracking_override)
    name = project.config.model_name
    current, previous = rollback(client, name, env)
    # record_previous=False: the rolled-back-to version keeps its own history, so a second
    # rollback goes further back instead of returning to the version just rolled back from.
    facts = release(project, client, env, previous, target=target, consume_challenger=False, record_previous=False)
    facts["rolled_back_from"] = current
    # Rolled back means not good enough: the version no longer counts as verified in env, so
    # the next environment can never take it (a later deploy to env verifies it afresh).
    if not facts.get("unchanged"):
        unverify(client, name, current, env)
    summary = f"rolled {env} back from {name} v{current} to v{previous}"
    return StageResult(summary, facts, outputs={"model-version": previous, "environment": env})


def _version_facts(client: Any, name: str, version: str) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    model_version = client.get_model_version(name, version)
    tags = dict(model_version.tags or {})
    run_tags: dict[str, str] = {}
    # A deleted run leaves the version's own tags, which still tell most of the story.
    with contextlib.suppress(MlflowException):
        run_tags = dict(client.get_run(model_version.run_id).data.tags) if model_version.run_id else {}
    metrics = {k.removeprefix("mlci.metric."): float(v) for k, v in tags.items() if k.startswith("mlci.metric.")}
    return {
        "version": version,
        "run_id": model_version.run_id,
        "metrics": metrics,
        "gates": tags.get("mlci.gates"),
        "git_commit": run_tags.get("mlci.git.commit"),
        "git_dirty": run_tags.get("mlci.git.dirty"),
        "data_sha256": {
            which: run_tags[f"mlci.data.{which}.sha256"]
            for which in ("train", "holdout")
            if f"mlci.data.{which}.sha256" in run_tags
        },
        "fingerprint": tags.get("mlci.fingerprint"),
        "verified": {env: tags[verified_tag(env)] for env in ENVIRONMENTS if verified_tag(env) in tags},
        "deployed_at": {env: tags[deployed_tag(env)] for env in ENVIRONMENTS if deployed_tag(env) in tags},
        "previous": {env: tags[previous_tag(env)] for env in ENVIRONMENTS if previous_tag(env) in tags},
    }


def collect_status(project: Project, tracking_override: str | None = None) -> dict[str, Any]:
    """Each alias (challenger, every environment, champion) with its version's facts."""
    with targets.get(project.config.target).store_faults(project, tracking_override):
        return _status(project, tracking_override)


def _status(project: Project, tracking_override: str | None) -> dict[str, Any]:
    target = _target(project, "status")  # before MLflow is imported: a refusal is instant
    from mlflow.exceptions import MlflowException

    client = _client(project, target, tracking_override, writes=False)
    name = project.config.model_name
    status: dict[str, Any] = {
        "model_name": name,
        "registry": target.registry_label(project, tracking_override),
        "primary_metric": project.config.primary_metric,
        "environments": list(ENVIRONMENTS),
        "registered": True,
        "aliases": {},
    }
    try:
        client.get_registered_model(name)
    except MlflowException:
        status["registered"] = False
    for alias in (CHALLENGER, *ENVIRONMENTS, CHAMPION):
        version = alias_version(client, name, alias) if status["registered"] else None
        status["aliases"][alias] = _version_facts(client, name, version) if version else None
    return status


def format_status(status: dict[str, Any]) -> str:
    metric = status["primary_metric"]
    lines = [f"model {status['model_name']} in {status['registry']}"]
    if not status["registered"]:
        return lines[0] + ": nothing registered yet; run 'mlci train' and 'mlci register'"
    rows = [("alias", "version", metric, "run", "commit", "deployed_at")]
    for alias, facts in status["aliases"].items():
        if facts is None:
            rows.append((alias, "-", "", "", "", ""))
            continue
        value = facts["metrics"].get(metric)
        deployed = facts["deployed_at"].get(alias if alias in ENVIRONMENTS else ENVIRONMENTS[-1], "")
        rows.append(
            (
                alias,
                f"v{facts['version']}",
                "" if value is None else f"{value:.4f}",
                (facts["run_id"] or "")[:12],
                (facts["git_commit"] or "")[:10],
                deployed if alias != CHALLENGER else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def promote_main(args: argparse.Namespace) -> int:
    return stage_command(
        "promote", args, lambda project: run_promote(project, args.env, args.model_version, args.tracking_uri)
    )


def rollback_main(args: argparse.Namespace) -> int:
    return stage_command("rollback", args, lambda project: run_rollback(project, args.env, args.tracking_uri))


def status_main(args: argparse.Namespace) -> int:
    project = load_project_for(args)
    status = collect_status(project, args.tracking_uri)
    # json_document: values exact, and no line a CI command even under the log guard (log_guard.py).
    print(json_document(status) if getattr(args, "json", False) else format_status(status))
    return 0
