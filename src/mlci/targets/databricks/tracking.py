"""MLflow on Databricks: tracking in the workspace, the registry in Unity Catalog, and the
workspace's faults as one line each.

On a CI runner or a laptop MLflow reaches the first environment's workspace (Unity Catalog
is one metastore for every workspace attached to it, so the registry is the same from any of
them); inside a Databricks job run it uses the run's own sign-in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlci.config import Project
from mlci.errors import InfraError, MlciError, first_line
from mlci.targets.databricks import workspace


def in_databricks_runtime() -> bool:
    """Whether this process runs on Databricks compute (a job run): the runtime sets this."""
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def tracking_uri(project: Project) -> str:
    profile = _profile(project)
    return f"databricks://{profile}" if profile else "databricks"


def registry_uri(project: Project) -> str:
    profile = _profile(project)
    return f"databricks-uc://{profile}" if profile else "databricks-uc"


def _profile(project: Project) -> str | None:
    return project.config.databricks.profile if workspace.use_profile(project) else None


def configure_mlflow(project: Project, *, verbose: bool) -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    if not in_databricks_runtime():
        os.environ.update(workspace.mlflow_environment(project))
    if not verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import mlflow

    from mlci.targets.local.tracking import hush_mlflow

    if not verbose:
        hush_mlflow()
    mlflow.set_tracking_uri(tracking_uri(project))
    mlflow.set_registry_uri(registry_uri(project))
    return mlflow


def experiment_name(project: Project) -> str:
    """A workspace path: as given when absolute, else under /Shared (which always exists)."""
    name = project.config.experiment
    return name if name.startswith("/") else f"/Shared/{name}"


def ensure_experiment(mlflow: Any, project: Project) -> str:
    name = experiment_name(project)
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    return str(mlflow.create_experiment(name))


def model_dir(model_uri: str, dst_path: str | None = None) -> Path:
    """A Unity Catalog model version's artifacts, downloaded (through the Files API)."""
    import mlflow

    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst_path))
    if not (path / "MLmodel").is_file():
        raise InfraError(f"{model_uri} has no MLmodel in Unity Catalog; register the version again")
    return path


@contextmanager
def workspace_faults(project: Project) -> Iterator[None]:
    """A workspace that cannot be reached, refuses the sign-in or a permission, or throttles
    past the retry timeout ends the command as one line, exit 3. MlciErrors pass unchanged."""
    try:
        yield
    except MlciError:
        raise
    except Exception as exc:
        fault = classify(exc)
        if fault is None:
            raise
        raise fault from None


_MLFLOW_INFRA_CODES = frozenset(
    {
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "TEMPORARILY_UNAVAILABLE",
        "REQUEST_LIMIT_EXCEEDED",
        "INTERNAL_ERROR",
        "DEADLINE_EXCEEDED",
    }
)


def classify(exc: BaseException) -> InfraError | None:
    from databricks.sdk.errors import PermissionDenied, Unauthenticated
    from databricks.sdk.errors.base import DatabricksError

    text = first_line(exc)
    if isinstance(exc, Unauthenticated):
        return InfraError(f"Databricks refused the sign-in: {text}; check it with 'mlci doctor --env staging'")
    if isinstance(exc, PermissionDenied):
        return InfraError(f"Databricks refused a permission: {text}; see docs/databricks.md for the grants")
    if isinstance(exc, DatabricksError):
        return InfraError(f"Databricks: {text}")
    if isinstance(exc, TimeoutError):
        return InfraError(
            f"Databricks did not answer in time ({text}); check the workspace, or raise databricks.http_timeout "
            "and databricks.retry_timeout in mlci.yaml"
        )
    try:
        import requests
    except ImportError:  # pragma: no cover - the SDK depends on requests
        requests = None  # type: ignore[assignment]
    if requests is not None and isinstance(exc, requests.exceptions.RequestException):
        return InfraError(f"Databricks workspace unreachable: {text}")
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        code = str(getattr(exc, "error_code", ""))
        if code in _MLFLOW_INFRA_CODES or "API request to" in text or "Max retries exceeded" in text:
            return InfraError(f"Databricks (MLflow): {text}")
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            # A catalog or schema that is not there, a model Unity Catalog will not take.
            return InfraError(
                f"Databricks refused it: {text}; check register.model_name's catalog and schema exist and "
                "the service principal's grants (docs/databricks.md)"
            )
    return None
