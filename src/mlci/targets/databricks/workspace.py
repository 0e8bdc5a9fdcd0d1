"""The connection to a Databricks workspace: which host, which sign-in, which timeouts.

The Databricks SDK's own auth chain signs in (environment variables first): `github-oidc` on
GitHub Actions, `azure-cli` after AzureCLI@2's workload-identity login on Azure DevOps,
`oauth-m2m` on Jenkins, and a ~/.databrickscfg profile only on a developer's machine (a CI job
never reads one: a profile on a shared agent would be someone's personal token; every job
mlci renders sets DATABRICKS_AUTH_TYPE, which is how a profile is told apart). Every
client mlci builds has the project's short HTTP and retry timeouts, so a dead or throttling
workspace ends a stage as one line (exit 3) instead of the SDK's default 20 minutes of retries.

databricks-sdk is imported inside functions only: `mlci --help` never pays for it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from mlci.config import ENVIRONMENTS, DatabricksEnvironment, Project
from mlci.errors import UsageError, first_line

# The workspace settings of the environment as the process was started with them. mlci exports
# the first environment's host for MLflow (which reads no mlci.yaml), so what it wrote must
# never be read back as the user's: a production client would sign in to staging.
_GIVEN = {name: os.environ.get(name) for name in ("DATABRICKS_HOST", "DATABRICKS_DISCOVERY_URL")}

SIGN_IN_HINT = "; see docs/databricks.md for what each CI system sets"

# The SDK's environment variables that hold a secret: never printed, never copied to a child.
SECRET_VARIABLES = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_PASSWORD", "ARM_CLIENT_SECRET")


@dataclass(frozen=True)
class Workspace:
    """Where one environment lives: the resolved host and that environment's settings."""

    env: str
    host: str
    settings: DatabricksEnvironment

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint or f"{self._project_name}-{self.env}"

    _project_name: str = ""


def environment(project: Project, env: str | None) -> str:
    """The environment a command acts on: the given one or the first (staging)."""
    chosen = env or ENVIRONMENTS[0]
    if chosen not in ENVIRONMENTS:
        raise UsageError(f"unknown environment '{chosen}'; environments: {', '.join(ENVIRONMENTS)}")
    return chosen


def workspace(project: Project, env: str | None = None) -> Workspace:
    """The environment's workspace: its own host, else databricks.host, else DATABRICKS_HOST."""
    name = environment(project, env)
    cfg = project.config.databricks
    settings: DatabricksEnvironment = getattr(cfg.environments, name)
    host = settings.host or cfg.host or _GIVEN["DATABRICKS_HOST"]
    if not host:
        raise project.error(
            "databricks",
            f"no workspace for environment {name}: set databricks.environments.{name}.host or databricks.host "
            "in mlci.yaml, or the DATABRICKS_HOST variable",
        )
    return Workspace(name, host.rstrip("/"), settings, _project_name=project.config.project.name)


class _NoHostMetadataNote(logging.Filter):
    """databricks-sdk logs, at every sign-in (MLflow's too), that the workspace serves no host
    metadata and it falls back to the configuration it was given: that fallback is what mlci
    configures (discovery_url), so the line says nothing to an mlci user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to automatically resolve config from host metadata")


def _quiet_sdk() -> None:
    logger = logging.getLogger("databricks.sdk")
    if not any(isinstance(f, _NoHostMetadataNote) for f in logger.filters):
        logger.addFilter(_NoHostMetadataNote())


def sdk_config(project: Project, env: str | None = None) -> Any:
    """The SDK's Config for the environment's workspace, with the project's timeouts; the
    sign-in itself is the SDK's chain (see the module's docstring)."""
    from databricks.sdk.core import Config

    _quiet_sdk()
    where = workspace(project, env)
    cfg = project.config.databricks
    kwargs: dict[str, Any] = {
        "host": where.host,
        "http_timeout_seconds": cfg.http_timeout,
        "retry_timeout_seconds": cfg.retry_timeout,
        "discovery_url": discovery_url(where.host),
    }
    if use_profile(project):
        kwargs["profile"] = cfg.profile
    try:
        return Config(**kwargs)
    except ValueError as exc:  # the SDK found no way to sign in, or a malformed setting: the set-up's fault
        raise UsageError(
            f"cannot sign in to Databricks workspace {where.host}: {first_line(exc)}{SIGN_IN_HINT}"
        ) from None


def discovery_url(host: str) -> str:
    """Where the workspace's OAuth endpoints are described. databricks-sdk 0.162 learns it
    only from the host-metadata document (/.well-known/databricks-config) that not every
    workspace serves; without it OAuth M2M and github-oidc fail with "Invalid URL 'None'".
    DATABRICKS_DISCOVERY_URL, when set, is the team's own answer and wins."""
    return _GIVEN["DATABRICKS_DISCOVERY_URL"] or f"{host}/oidc/.well-known/oauth-authorization-server"


def use_profile(project: Project) -> bool:
    """Whether to sign in with mlci.yaml's databricks.profile: only where no CI job chose an
    auth type (every job mlci renders sets DATABRICKS_AUTH_TYPE) and not inside a job run."""
    return bool(
        project.config.databricks.profile
        and not os.environ.get("DATABRICKS_AUTH_TYPE")
        and not os.environ.get("DATABRICKS_RUNTIME_VERSION")
    )


def client(project: Project, env: str | None = None) -> Any:
    """A WorkspaceClient for the environment."""
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(config=sdk_config(project, env))


def job_client(http_timeout: int, retry_timeout: int) -> Any:
    """Inside a job run: the run's own sign-in (the SDK's runtime auth) with short timeouts."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    _quiet_sdk()
    return WorkspaceClient(config=Config(http_timeout_seconds=http_timeout, retry_timeout_seconds=retry_timeout))


def mlflow_environment(project: Project, env: str | None = None) -> dict[str, str]:
    """What MLflow needs in the environment to reach the same workspace: MLflow builds its own
    SDK config from these (it reads no mlci.yaml), and stores UC model artifacts through the
    Files API instead of cloud storage credentials."""
    where = workspace(project, env)
    cfg = project.config.databricks
    _quiet_sdk()
    return {
        "DATABRICKS_HOST": where.host,
        "DATABRICKS_DISCOVERY_URL": discovery_url(where.host),
        "MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC": "true",
        # MLflow's own retries wrap the SDK's: both bounded by the project's timeouts.
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(cfg.http_timeout),
        "MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT": str(cfg.retry_timeout),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
