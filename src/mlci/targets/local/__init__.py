"""The embedded default target: MLflow on a local sqlite store, models served on loopback.

tracking.py points MLflow at the store, store.py turns its faults into one line each,
serving.py serves a model with MLflow's scoring server. Every MLflow import happens inside
functions: `mlci --help` never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci.config import Config, Project
from mlci.errors import CheckFailed, MlciError, SmokeTestFailed
from mlci.targets.base import Check, Credential, Deployment, EnvVar, Problem, Secret, Target
from mlci.targets.local import store, tracking

if TYPE_CHECKING:
    from mlci.monitoring.inference_log import InferenceLogger


class LocalTarget:
    name = "local"
    managed: tuple[str, ...] = ()
    scaffold_note: tuple[str, ...] = ()

    def validate(self, config: Config) -> tuple[Problem, ...]:
        return ()

    def model_name_problem(self, model_name: str) -> str | None:
        return None

    def default_model_name(self, package: str) -> str:
        return package

    def require(self, project: Project, stage: str) -> None:
        return None  # every stage runs on the local store

    def credentials(self, config: Config) -> tuple[Credential, ...]:
        if config.tracking.uri is None:
            return ()
        # A shared tracking server (tracking.uri): its token, when it asks for one.
        token = EnvVar("MLFLOW_TRACKING_TOKEN", Secret("MLFLOW_TRACKING_TOKEN"))
        return (Credential("mlflow", oidc=False, env=(token,)),)

    def shipped_templates(self) -> Path:
        return Path(__file__).resolve().parent / "templates"  # none: the local target renders no file

    def render(self, config: Config, mlci_version: str, templates: Path) -> dict[str, bytes]:
        return {}

    def carries_state(self, config: Config) -> bool:
        # Without a shared tracking server the store travels between jobs as state.
        return config.tracking.uri is None

    def monitors_in_workspace(self, config: Config) -> bool:
        return False  # `mlci monitor` computes the tables from the local inference table

    def doctor(self, project: Project, env: str | None, ci: str | None) -> tuple[Check, ...]:
        from mlci.targets.local import doctor

        return doctor.checks(project, env)

    def train_remotely(self, project: Project, tags: dict[str, str]) -> dict[str, Any] | None:
        return None  # training runs in the stage's own process

    def tracking_uri(self, project: Project, override: str | None = None) -> str:
        return tracking.tracking_uri(project, override)

    def registry_label(self, project: Project, override: str | None = None) -> str:
        return tracking.registry_label(project, override)

    def configure_mlflow(
        self, project: Project, override: str | None = None, *, writes: bool = True, verbose: bool
    ) -> Any:
        return tracking.configure_mlflow(project, override, writes=writes, verbose=verbose)

    def ensure_experiment(self, mlflow: Any, project: Project, uri: str) -> str:
        return tracking.ensure_experiment(mlflow, project, uri)

    def store_faults(self, project: Project, override: str | None = None) -> AbstractContextManager[None]:
        return tracking.store_faults(project, override)

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
        from mlci.targets.local import serving

        cfg = project.config.deploy
        serving.serve_until_interrupted(
            model_dir,
            cfg.host,
            port,
            cfg.ready_timeout,
            lambda endpoint: announce(endpoint.url),
            probabilities=probabilities,
            log_level="info" if verbose else "warning",
            inference_log=inference_log,
        )

    def deploy(self, project: Project, model_uri: str, env: str) -> Deployment:
        try:
            facts = smoke_test(project, model_uri)
        except MlciError:
            raise
        except Exception as exc:
            # A store fault (artifacts deleted, a full disk) says which and what to do, exit 3;
            # anything else is a bug in mlci or MLflow and stays one (exit 3, never "check failed").
            fault = store.classify(exc, store.active_stores(), artifacts=store.artifacts_dir(project))
            if fault is None:
                raise
            raise fault from None
        # Nothing stays served after the check: no rollback to do on this target.
        return Deployment(url=str(facts["url"]), facts=facts)


def smoke_test(project: Project, model_uri: str) -> dict[str, Any]:
    """Serve the model on loopback, wait for /health, send its input example, check the answer."""
    import mlflow.models

    from mlci.targets.local import serving

    cfg = project.config
    path = tracking.model_dir(model_uri)
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
        raise SmokeTestFailed(f"{len(predictions)} predictions for {len(example)} input rows")
    if any(isinstance(p, dict | list) and not p for p in predictions):
        raise SmokeTestFailed("empty prediction in the answer")
    return {
        "url": endpoint.url,
        "served": "served on loopback",
        "ready_seconds": round(endpoint.ready_seconds, 3),
        "rows": len(example),
        "latency_ms": round(latency * 1000, 1),
        "predictions": predictions[:10],
    }


TARGET: Target = LocalTarget()
