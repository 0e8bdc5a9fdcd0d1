"""The embedded default: MLflow on a local sqlite store, models served on loopback.

Every MLflow import happens inside these functions: `mlci --help` never pays for it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlci.config import Project
from mlci.errors import MlciError
from mlci.targets.local import store


def tracking_uri(project: Project, override: str | None = None) -> str:
    """--tracking-uri, then MLFLOW_TRACKING_URI, then mlci.yaml, then .mlci/mlflow.db."""
    return (
        override
        or os.environ.get("MLFLOW_TRACKING_URI")
        or project.config.tracking.uri
        or f"sqlite:///{(project.root / '.mlci' / 'mlflow.db').as_posix()}"
    )


def registry_uri(project: Project, override: str | None = None) -> str:
    return project.config.tracking.registry_uri or tracking_uri(project, override)


def registry_label(project: Project, override: str | None = None) -> str:
    """Which registry a stage used, safe to print: credentials and query strings removed."""
    from urllib.parse import urlsplit, urlunsplit

    uri = registry_uri(project, override)
    default = f"sqlite:///{(project.root / '.mlci' / 'mlflow.db').as_posix()}"
    if uri == default:
        return "local sqlite store .mlci/mlflow.db"
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        return f"local store {uri}" if not uri.startswith("sqlite:") else f"local sqlite store {uri}"
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]  # drop user:password@
    return f"registry {urlunsplit((parts.scheme, host, parts.path, '', ''))}"


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def store_paths(project: Project, override: str | None = None) -> list[Path]:
    """The sqlite files the project's tracking and registry URIs use (one when they agree)."""
    paths: list[Path] = []
    for uri in (tracking_uri(project, override), registry_uri(project, override)):
        path = store.sqlite_path(uri)
        if path is not None and path not in paths:
            paths.append(path)
    return paths


@contextmanager
def store_faults(project: Project, override: str | None = None) -> Iterator[None]:
    """Run a command's work on the local store: a store fault ends it as one line, exit 3.
    MlciErrors (a gate not met, a bad version number) and anything unrelated to the store pass
    unchanged."""
    try:
        yield
    except MlciError:
        raise
    except Exception as exc:
        fault = store.classify(exc, store_paths(project, override), artifacts=store.artifacts_dir(project))
        if fault is None:
            raise
        raise fault from None


def no_telemetry() -> None:
    """Nothing phones home from a CI runner. MLflow decides at import: call this before any
    import of mlflow (configure_mlflow, `mlci run`'s warm-up of train's imports)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


def configure_mlflow(project: Project, override: str | None = None, *, writes: bool = True, verbose: bool) -> Any:
    """Check the local store (see store.check_store), import MLflow, point it at the
    project's tracking and registry URIs, and return it. `writes=False` for commands that only
    read (status, serve): a read-only store is fine for them."""
    no_telemetry()
    uri = tracking_uri(project, override)
    if uri.startswith("sqlite:"):
        (project.root / ".mlci").mkdir(parents=True, exist_ok=True)
    for path in store_paths(project, override):
        store.check_store(path, writes=writes)
    if uri.startswith(("http://", "https://")):
        check_reachable(uri)
    if not verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is first imported
    import mlflow

    if not verbose:
        hush_mlflow()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry_uri(project, override))
    return mlflow


# MLflow's own progress lines that say nothing to an mlci user: mlci reports the outcome itself.
_CHATTER = (
    "Saving scikit-learn models in the pickle or cloudpickle format",  # mlci chose the format on purpose
    "Creating initial MLflow database tables",
    # Logged with a traceback before MLflow re-raises it; mlci reports the fault as one line.
    "SQLAlchemy database error",
)


class _ToStderr:
    """A stream that writes to whatever sys.stderr is at the time (pytest swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _NoChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_CHATTER)


def hush_mlflow() -> None:
    """Keep MLflow's chatter out of mlci's output: its INFO lines (database creation, alembic's
    migrations), eprint() notes ("Successfully registered model", "Registered model ... already
    exists"), the pickle warning and the integer-column hint. Warnings and errors still show;
    `--verbose` leaves MLflow as it is."""
    from mlflow.utils import logging_utils

    handler = logging.StreamHandler(_ToStderr())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_NoChatter())
    mlflow_logger = logging.getLogger("mlflow")
    mlflow_logger.handlers = [handler]
    mlflow_logger.setLevel(logging.WARNING)
    mlflow_logger.propagate = False
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # eprint() writes through this stream only; the loggers above no longer use it.
    logging_utils.MLFLOW_LOGGING_STREAM.enabled = False
    warnings.filterwarnings("ignore", message=r"Hint: Inferred schema contains integer column", category=UserWarning)


def check_reachable(uri: str, timeout: float = 10.0) -> None:
    """Fail fast with exit 3 instead of MLflow's minutes of retries against a dead server."""
    import urllib.error
    import urllib.request

    from mlci.errors import InfraError

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered: a proxy or an auth layer in front of the server; let MLflow talk to it
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InfraError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, or fix --tracking-uri, "
            "MLFLOW_TRACKING_URI or tracking.uri in mlci.yaml"
        ) from None


def ensure_experiment(mlflow: Any, project: Project, uri: str) -> str:
    """The experiment's id, creating it with artifacts under .mlci/artifacts on a local store."""
    name = project.config.experiment
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = None
    if is_local_store(uri):
        # Without this MLflow writes ./mlruns relative to wherever the command was started.
        location = (project.root / ".mlci" / "artifacts").resolve().as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location))


def model_dir(model_uri: str, dst_path: str | None = None) -> Path:
    """Download (or locate) a model's artifacts locally; exit 3 naming the folder when the
    store's artifacts of that model are gone (deleted, or a store copied without them)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        path = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst_path))
    except MlflowException as exc:
        if "No such artifact" not in exc.message and "No such file or directory" not in exc.message:
            raise
        raise store.missing_artifacts(model_uri) from None
    # Downloading a folder that no longer exists into dst_path gives an empty folder, no error.
    if not (path / "MLmodel").is_file():
        raise store.missing_artifacts(model_uri)
    return path
