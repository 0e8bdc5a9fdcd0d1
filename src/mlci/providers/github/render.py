"""GitHub Actions workflows from the pipeline model (moved from providers/github.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from mlci.errors import InfraError
from mlci.pipeline import OIDC_TOKEN, READ_REPOSITORY, Capability, Job, Pipeline
from mlci.providers.base import RenderContext
from mlci.providers.github.actions import ACTION_FOR_STAGE, action_pins, render_actions, template
from mlci.targets.base import EnvValue, Literal, Secret, Variable
from mlci.template_env import version_text, yaml_scalar

# GitHub.name: written here, not imported from the package, whose __init__ imports this module.
NAME = "github"
WORKFLOWS = ".github/workflows"
VENDORED = ".github/actions"

# The GitHub permission each capability of the model is granted as, in this order.
SCOPES: dict[Capability, tuple[str, str]] = {
    READ_REPOSITORY: ("contents", "read"),
    OIDC_TOKEN: ("id-token", "write"),
}
# Why a permission is granted, written next to it in the workflow; the OIDC token's reason is
# the reason of the credentials that federate through it (Credential.reason).
READ_REASON = "check out the repository"
OIDC_REASON = "OIDC token: no long-lived secret"  # a federating credential that gives no reason
# Environment values the provider writes as `${{ secrets.X }}` / `${{ vars.X }}`: a name only.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def action_ref(name: str, ctx: RenderContext) -> str:
    """The `uses:` value of an mlci action, with its version comment for remote pins."""
    if ctx.actions == "vendored":
        # `$/` is this repository at the workflow's own commit, independent of what was checked out.
        return f"$/{VENDORED}/mlci-{name}"
    version = version_text(ctx.mlci_version)  # in a YAML comment: must stay on its line
    return f"{ctx.mlci_repository}/actions/{name}@{ctx.mlci_ref} # mlci {version}"


def permissions(job: Job) -> dict[str, str]:
    """The job's `permissions:` block: exactly the GitHub scopes of its capabilities."""
    return dict(scope for capability, scope in SCOPES.items() if capability in job.capabilities)


def grants(job: Job) -> list[tuple[str, str, str]]:
    """The job's permissions as (scope, level, why), in the order they are written."""
    oidc_reasons = [c.reason for c in job.credentials if c.oidc and c.reason]
    reasons = {READ_REPOSITORY: READ_REASON, OIDC_TOKEN: "; ".join(dict.fromkeys(oidc_reasons)) or OIDC_REASON}
    return [(*SCOPES[c], reasons[c]) for c in SCOPES if c in job.capabilities]


def env_value(value: EnvValue) -> str:
    """One credential variable's value as the workflow writes it: a secret or a variable by
    name, a fixed value through the YAML emitter (never raw text)."""
    if isinstance(value, Secret | Variable):
        if not _NAME.fullmatch(value.name):
            raise ValueError(f"{value.name!r} is not a GitHub secret or variable name")
        return f"${{{{ {'secrets' if isinstance(value, Secret) else 'vars'}.{value.name} }}}}"
    return yaml_scalar(value.value if isinstance(value, Literal) else value.value_for(NAME))


def credential_env(job: Job) -> list[tuple[str, str]]:
    """The env: block of the job's stage step, from its credentials' data."""
    return [(var.name, env_value(var.value)) for credential in job.credentials for var in credential.env]


def registry_key(pipeline: Pipeline) -> str:
    """The prefix of the cache keys the kept registry is saved under (see docs/github.md).

    Named after the one branch that saves it; every save adds the run id, attempt and job, so
    keys never collide and a restore by this prefix gets the newest save."""
    if pipeline.registry_branch is None:
        raise ValueError(f"pipeline {pipeline.id} keeps no registry")
    return f"mlci-registry-{pipeline.registry_branch}"


def expression_str(value: str) -> str:
    """A string literal of a GitHub expression: single-quoted, a quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def job_if(job: Job) -> str | None:
    """The job's `if:`: the gate runs whatever its needs did (it fails unless they all passed),
    a deployment only from its branch, a conditioned job only on its producer's output.

    `always()` keeps a gate running when a check failed; with a condition it still does not run
    when the condition's producer decided otherwise (then the checks were skipped, not failed)."""
    parts = []
    if job.gate:
        parts.append("always()")
    if job.only_on_branch:
        parts.append(f"github.ref == 'refs/heads/{job.only_on_branch}'")
    if job.when is not None:
        parts.append(f"needs.{job.when.job}.outputs.{job.when.output} == {expression_str(job.when.value)}")
    return " && ".join(parts) or None


def report_path(path: str) -> str:
    """A report's path as a line of upload-artifact's `path:` block: one line, no pattern."""
    if not path or path != path.strip() or any(c in path for c in "\n\r*?[]!#") or path.startswith("-"):
        raise ValueError(f"{path!r} cannot be listed as a report path of a GitHub workflow")
    return path


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
            action_for=lambda job: ACTION_FOR_STAGE[job.stage.name],
            grants=grants,
            credential_env=credential_env,
            registry_key=registry_key,
            job_if=job_if,
            report_path=report_path,
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
