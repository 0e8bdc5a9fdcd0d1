"""A loopback Databricks workspace for tests: `start(root)` serves every route module.

    double = start(tmp_path)            # a Double at double.url, routes installed
    env = pat_environment(double)        # what a subprocess `mlci` needs to reach it with a PAT
    double.stop()                        # also kills task processes and the model server

`github_runner_environment(double, client_id)` is the environment of a GitHub Actions job with
`id-token: write` whose service principal `client_id` has a federation policy on the double.
"""

from __future__ import annotations

from pathlib import Path

from . import files_routes, mlflow_routes, monitor_routes, sdk_routes
from .server import PAT, Double, Invalid, NotFound, Request, Response

__all__ = [
    "PAT",
    "Double",
    "Invalid",
    "NotFound",
    "Request",
    "Response",
    "github_runner_environment",
    "pat_environment",
    "start",
]


def start(root: Path) -> Double:
    double = Double(root)
    sdk_routes.install(double)
    files_routes.install(double)
    mlflow_routes.install(double)
    monitor_routes.install(double)
    double.start()
    serve_stop = double.stop

    def stop() -> None:
        double.workspace.stop()  # type: ignore[attr-defined]
        serve_stop()

    double.stop = stop  # type: ignore[method-assign]
    return double


def pat_environment(double: Double) -> dict[str, str]:
    """DATABRICKS_* for a process that signs in to the double with its PAT."""
    return {"DATABRICKS_HOST": double.url, "DATABRICKS_TOKEN": PAT, "DATABRICKS_AUTH_TYPE": "pat"}


def github_runner_environment(double: Double, client_id: str, subject: str | None = None) -> dict[str, str]:
    """A GitHub Actions job's environment (the ID-token request URL and token a runner gives a job
    with `id-token: write`) plus DATABRICKS_* for the SDK's `github-oidc` auth as service principal
    `client_id`; registers the federation policy `client_id` -> `subject` (the double's GitHub
    subject unless given) on the double."""
    double.federation[client_id] = subject or double.github_subject  # type: ignore[attr-defined]
    return {
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": f"{double.url}/github-actions/idtoken?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": double.github_request_token,  # type: ignore[attr-defined]
        "DATABRICKS_HOST": double.url,
        "DATABRICKS_CLIENT_ID": client_id,
        "DATABRICKS_AUTH_TYPE": "github-oidc",
    }
