"""GitHub Actions workflows from the pipeline model (moved from providers/github.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mlci.errors import InfraError
from mlci.pipeline import Job, Pipeline
from mlci.providers.base import RenderContext
from mlci.providers.github.actions import ACTION_FOR_STAGE, action_pins, render_actions, template
from mlci.template_env import version_text

WORKFLOWS = ".github/workflows"
VENDORED = ".github/actions"

# Why each permission is granted, written next to it in the workflow.
PERMISSION_REASONS = {
    ("contents", "read"): "check out the repository",
    ("id-token", "write"): "OIDC token for Databricks: no long-lived secret",
}


def action_ref(name: str, ctx: RenderContext) -> str:
    """The `uses:` value of an mlci action, with its version comment for remote pins."""
    if ctx.actions == "vendored":
        # `$/` is this repository at the workflow's own commit, independent of what was checked out.
        return f"$/{VENDORED}/mlci-{name}"
    version = version_text(ctx.mlci_version)  # in a YAML comment: must stay on its line
    return f"{ctx.mlci_repository}/actions/{name}@{ctx.mlci_ref} # mlci {version}"


def permissions(job: Job) -> dict[str, str]:
    granted = dict(job.permissions)
    if "databricks" in job.credentials:
        granted["id-token"] = "write"
    return granted


def registry_key(pipeline: Pipeline) -> str:
    """The prefix of the cache keys the kept registry is saved under (see docs/github.md).

    Named after the one branch that saves it; every save adds the run id, attempt and job, so
    keys never collide and a restore by this prefix gets the newest save."""
    if pipeline.registry_branch is None:
        raise ValueError(f"pipeline {pipeline.id} keeps no registry")
    return f"mlci-registry-{pipeline.registry_branch}"


def _check_yaml(text: str, what: str) -> None:
    """Refuse to write a workflow that is not YAML: a template bug must never reach a repository."""
    import yaml

    try:
        yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise InfraError(
            f"mlci rendered an invalid {what} workflow ({exc}); this is a bug in mlci, please report it"
        ) from None


def render(pipelines: tuple[Pipeline, ...], ctx: RenderContext, templates: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    settings = dataclasses.asdict(ctx)  # the only names the templates see besides the helpers below
    pins = action_pins(templates)
    workflow = template(templates, "workflow.yml.j2")
    install = ctx.mlci_install or (f"mlci=={ctx.mlci_version}" if ctx.actions == "vendored" else "")
    for pipeline in pipelines:
        text = workflow.render(
            **settings,
            pipeline=pipeline,
            action_ref=lambda name: action_ref(name, ctx),
            action_for=lambda job: ACTION_FOR_STAGE[job.stage],
            permissions=permissions,
            reasons=PERMISSION_REASONS,
            registry_key=registry_key,
            mlci_install_spec=install,
            pins=pins,
        )
        _check_yaml(text, pipeline.id)
        files[f"{WORKFLOWS}/{pipeline.id}.yml"] = text.encode("utf-8")
    # Not a pipeline of the model: the weekly `mlci upgrade` pull request (docs/upgrades.md).
    upgrade = template(templates, "mlci-upgrade.yml.j2").render(**settings, pins=pins)
    files[f"{WORKFLOWS}/mlci-upgrade.yml"] = upgrade.encode("utf-8")
    if ctx.actions == "vendored":
        for name, text in render_actions(ctx.mlci_version, vendored=True, templates=templates).items():
            files[f"{VENDORED}/mlci-{name}/action.yml"] = text.encode("utf-8")
    return files
