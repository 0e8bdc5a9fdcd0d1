"""The Databricks target: training as a job run, Unity Catalog's model registry through
MLflow, Model Serving with rollback and a batch-scoring job, reached from CI through OIDC
(OAuth M2M with a service principal's secret where the CI system issues no OIDC token: Jenkins).

workspace.py signs in, jobs.py trains, tracking.py points MLflow at the workspace, serving.py
deploys, batch.py keeps the batch job. databricks-sdk and MLflow are imported inside
functions only: `mlci --help` never pays for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci.config import Config, Project
from mlci.targets import base
from mlci.targets.base import ByProvider, Credential, Deployment, EnvVar, Literal, Problem, Secret, Target, Variable
from mlci.targets.databricks import jobs, tracking

if TYPE_CHECKING:
    from mlci.monitoring.inference_log import InferenceLogger

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
        "Databricks target: train runs as a job, register uses Unity Catalog and deploy Model Serving;",
        "      set databricks.host (or DATABRICKS_HOST) and check the sign-in with 'mlci doctor --env staging'",
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
        # Every other stage runs: train as a job, the registry in UC, serving on Model Serving.
        if stage == "monitor":
            raise project.error(
                "target",
                "target: databricks monitors in the workspace: the production deploy creates the Lakehouse monitor "
                "and the scheduled check job that starts a retrain (docs/databricks.md); 'mlci monitor' computes "
                "tables from a local inference table only",
            )

    def monitors_in_workspace(self, config: Config) -> bool:
        return True

    def credentials(self, config: Config) -> tuple[Credential, ...]:
        return (_M2M_CREDENTIAL,) if config.ci.provider in _M2M_PROVIDERS else (_CREDENTIAL,)

    def shipped_templates(self) -> Path:
        return Path(__file__).resolve().parent / "templates"

    def render(self, config: Config, mlci_version: str, templates: Path) -> dict[str, bytes]:
        """The bundle: databricks.yml and resources/ (bundle.py)."""
        from mlci.targets.databricks import bundle

        return bundle.render(config, mlci_version, templates)

    def carries_state(self, config: Config) -> bool:
        return False  # the workspace's registry is shared: nothing travels between jobs

    def doctor(self, project: Project, env: str | None, ci: str | None) -> tuple[base.Check, ...]:
        from mlci.targets.databricks import doctor

        return doctor.checks(project, env, ci)

    def train_remotely(self, project: Project, tags: dict[str, str]) -> dict[str, Any] | None:
        if tracking.in_databricks_runtime():
            return None  # this is the job run: train on its compute
        return jobs.submit_training(project, tags, progress=_progress)

    def tracking_uri(self, project: Project, override: str | None = None) -> str:
        return tracking.tracking_uri(project)

    def registry_label(self, project: Project, override: str | None = None) -> str:
        return f"Databricks Unity Catalog ({project.config.model_name})"

    def configure_mlflow(
        self, project: Project, override: str | None = None, *, writes: bool = True, verbose: bool
    ) -> Any:
        return tracking.configure_mlflow(project, verbose=verbose)

    def ensure_experiment(self, mlflow: Any, project: Project, uri: str) -> str:
        return tracking.ensure_experiment(mlflow, project)

    def store_faults(self, project: Project, override: str | None = None) -> AbstractContextManager[None]:
        return tracking.workspace_faults(project)

    def model_dir(self, model_uri: str, dst_path: str | None = None) -> Path:
        return tracking.model_dir(model_uri, dst_path)

    def serve(
        self,
        project: Project,
        model_dir: Path,
        port: int,
        announce: Callable[[str], None],
        *,
        probabilities: bool,
        verbose: bool,
        inference_log: InferenceLogger | None = None,
    ) -> None:
        # A Unity Catalog version served on this machine, as the local target serves its own.
        from mlci.targets.local import TARGET as LOCAL

        LOCAL.serve(
            project,
            model_dir,
            port,
            announce,
            probabilities=probabilities,
            verbose=verbose,
            inference_log=inference_log,
        )

    def deploy(self, project: Project, model_uri: str, env: str) -> Deployment:
        from mlci.config import ENVIRONMENTS
        from mlci.targets.databricks import batch, monitoring, serving

        deployment = serving.deploy(project, model_uri, env, progress=_progress)
        if env == ENVIRONMENTS[-1]:  # production: the batch job scores with the champion, the monitor watches it
            try:
                job = batch.ensure_job(project, env, _progress)
                monitor, undo_monitor = monitoring.ensure(project, env, _progress)
            except BaseException:
                deployment.rollback()
                raise
            if job is not None:
                deployment.facts["batch_job"] = job
            if monitor is not None:
                deployment.facts["monitor"] = monitor
                endpoint_rollback = deployment.rollback

                def rollback() -> None:  # the aliases did not move: the monitor and its job go back too
                    undo_monitor()
                    endpoint_rollback()

                deployment.rollback = rollback
        return deployment


def _progress(line: str) -> None:
    print(line, flush=True)


TARGET: Target = DatabricksTarget()
