"""The Databricks target: Unity Catalog's model registry, reached from CI through OIDC (OAuth
M2M with a service principal's secret where the CI system issues no OIDC token: Jenkins).

This version knows what a Databricks project must look like (its model name, the
credentials a CI job needs, the bundle files it will own) and refuses, with the line to fix,
every stage that would have to run there (issue 13 brings them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, NoReturn

from mlci.config import Config, Project
from mlci.errors import ConfigError, UsageError
from mlci.targets import base
from mlci.targets.base import ByProvider, Credential, Deployment, EnvVar, Literal, Problem, Secret, Target, Variable

# Unity Catalog's three-level name: catalog.schema.model, each part an ASCII identifier
# (hyphens allowed, as Unity Catalog allows them in back-quoted names).
_UC_PART = r"[A-Za-z_][A-Za-z0-9_-]*"
UC_NAME = re.compile(rf"{_UC_PART}\.{_UC_PART}\.{_UC_PART}")
DEFAULT_CATALOG_SCHEMA = "main.default"

# Which workspace and service principal, and where MLflow logs and registers: every CI system's.
_WORKSPACE = (
    EnvVar("DATABRICKS_HOST", Variable("DATABRICKS_HOST")),
    EnvVar("DATABRICKS_CLIENT_ID", Variable("DATABRICKS_CLIENT_ID")),
)
_MLFLOW = (
    EnvVar("MLFLOW_TRACKING_URI", Literal("databricks")),
    EnvVar("MLFLOW_REGISTRY_URI", Literal("databricks-uc")),
)
_CREDENTIAL = Credential(
    "databricks",
    oidc=True,
    env=(
        *_WORKSPACE,
        # The Databricks SDK's auth for each CI system: GitHub's OIDC tokens; on Azure the CLI login of
        # AzureCLI@2 through a workload-identity service connection.
        EnvVar(
            "DATABRICKS_AUTH_TYPE", ByProvider((("github", "github-oidc"), ("azure", "azure-cli")), target="databricks")
        ),
        *_MLFLOW,
    ),
    reason="OIDC token for Databricks: no long-lived secret",
)
# Jenkins core issues no OIDC tokens, so its jobs sign in as a Databricks service principal
# with an OAuth secret (machine-to-machine): the client id and host are plain settings (the
# controller's global properties or the agent's node properties), the secret a Secret text
# credential the Jenkinsfile binds with withCredentials for the steps that reach the workspace only.
_M2M_CREDENTIAL = Credential(
    "databricks",
    oidc=False,
    env=(
        *_WORKSPACE,
        EnvVar("DATABRICKS_CLIENT_SECRET", Secret("DATABRICKS_CLIENT_SECRET")),
        EnvVar("DATABRICKS_AUTH_TYPE", Literal("oauth-m2m")),
        *_MLFLOW,
    ),
    reason="OAuth M2M secret of a Databricks service principal: Jenkins issues no OIDC token",
)
# The CI systems without an OIDC issuer the SDK can federate from.
_M2M_PROVIDERS = frozenset({"jenkins"})


class DatabricksTarget:
    name = "databricks"
    managed: tuple[str, ...] = ("databricks.yml", "resources/")
    scaffold_note: tuple[str, ...] = (
        "Databricks target: mlci.yaml and CI files are ready for it, but this mlci version runs",
        "      train, register and deploy only on the embedded default (target: local)",
    )

    def validate(self, config: Config) -> tuple[Problem, ...]:
        problem = self.model_name_problem(config.model_name)
        return (Problem("register.model_name", f"{problem}, not '{config.model_name}'"),) if problem else ()

    def model_name_problem(self, model_name: str) -> str | None:
        if UC_NAME.fullmatch(model_name):
            return None
        return "on Databricks the model name must be Unity Catalog's 'catalog.schema.model'"

    def default_model_name(self, package: str) -> str:
        """What `mlci new` offers: the workspace's default catalog and schema."""
        return f"{DEFAULT_CATALOG_SCHEMA}.{package}"

    def require(self, project: Project, stage: str) -> None:
        self._refuse(project, f"mlci {stage}", deploy=stage == "deploy")

    def _refuse(self, project: Project, what: str = "this mlci command", *, deploy: bool = False) -> NoReturn:
        if deploy:  # deploy names the target it was given (--target or mlci.yaml)
            raise UsageError(
                f"deploy --target {self.name}: deploying to Databricks is not available in this mlci version; "
                "run 'mlci deploy --target local', or set target: local in mlci.yaml (what 'mlci run' deploys to)"
            )
        raise ConfigError(
            str(project.config_path),
            project.line_of("target"),
            f"target: {self.name}: {what} cannot run on Databricks in this version; "
            "set target: local to run it on the embedded default",
        )

    def credentials(self, config: Config) -> tuple[Credential, ...]:
        return (_M2M_CREDENTIAL,) if config.ci.provider in _M2M_PROVIDERS else (_CREDENTIAL,)

    def carries_state(self, config: Config) -> bool:
        return False  # the workspace's registry is shared: nothing travels between jobs

    def doctor(self, project: Project, env: str | None) -> tuple[base.Check, ...]:
        from mlci.targets.databricks import doctor

        return doctor.checks(project, env)

    # Every operation below is reached only after require(); each refuses as require does.

    def tracking_uri(self, project: Project, override: str | None = None) -> str:
        return "databricks"

    def registry_label(self, project: Project, override: str | None = None) -> str:
        return "Databricks Unity Catalog"

    def configure_mlflow(
        self, project: Project, override: str | None = None, *, writes: bool = True, verbose: bool
    ) -> Any:
        self._refuse(project)

    def ensure_experiment(self, mlflow: Any, project: Project, uri: str) -> str:
        self._refuse(project)

    def store_faults(self, project: Project, override: str | None = None) -> AbstractContextManager[None]:
        return nullcontext()  # no local store whose faults need translating

    def model_dir(self, model_uri: str, dst_path: str | None = None) -> Path:
        raise UsageError(f"cannot download {model_uri} from Databricks in this mlci version; use target: local")

    def serve(
        self,
        project: Project,
        model_dir: Path,
        port: int,
        announce: Callable[[str], None],
        *,
        probabilities: bool,
        verbose: bool,
    ) -> None:
        self._refuse(project, "mlci serve")

    def deploy(self, project: Project, model_uri: str) -> Deployment:
        self._refuse(project, deploy=True)


TARGET: Target = DatabricksTarget()
