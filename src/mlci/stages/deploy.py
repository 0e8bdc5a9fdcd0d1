"""deploy (local): promote the challenger to champion, serve it, smoke-test it, roll back on failure."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from mlci.config import Project
from mlci.errors import CheckFailed, InfraError, MlciError, UsageError
from mlci.stages._result import StageResult, execute, load_project_for
from mlci.stages.register import CHALLENGER, CHAMPION, alias_version
from mlci.targets import local


def smoke_test(project: Project, model_uri: str) -> dict[str, Any]:
    """Serve the model on loopback, wait for /health, send its input example, check the answer."""
    import mlflow.models

    from mlci import serving

    cfg = project.config
    path = local.model_dir(model_uri)
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
        raise RuntimeError(f"{len(predictions)} predictions for {len(example)} input rows")
    if any(isinstance(p, dict | list) and not p for p in predictions):
        raise RuntimeError("empty prediction in the answer")
    return {
        "url": endpoint.url,
        "ready_seconds": round(endpoint.ready_seconds, 3),
        "rows": len(example),
        "latency_ms": round(latency * 1000, 1),
        "predictions": predictions[:10],
    }


def run_deploy(
    project: Project, target: str | None, tracking_override: str | None = None, env: str | None = None
) -> StageResult:
    cfg = project.config
    where = target or cfg.target
    if where != "local":
        raise UsageError(
            f"deploy --target {where}: deploying to Databricks is not available in this mlci version; "
            "use --target local"
        )
    local.configure_mlflow(project, tracking_override)
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    name = cfg.model_name
    challenger = alias_version(client, name, CHALLENGER)
    previous = alias_version(client, name, CHAMPION)
    if challenger is None and previous is None:
        raise UsageError(
            f"nothing to deploy: model '{name}' has no '{CHALLENGER}' or '{CHAMPION}' alias; run 'mlci register' first"
        )
    version = challenger or previous
    assert version is not None
    # Verify before promoting: the version is served and smoke-tested by number, so `champion`
    # never points at a model that has not answered, even if this process is killed.
    print(f"deploy: smoke-testing {name} v{version} before it becomes {CHAMPION}", flush=True)
    try:
        smoke = smoke_test(project, f"models:/{name}/{version}")
    except Exception as exc:
        reason = exc.message if isinstance(exc, MlciError) else f"{type(exc).__name__}: {exc}"
        kept = f"{CHAMPION} stays v{previous}" if previous else f"no {CHAMPION} was set"
        failure = {"model_name": name, "version": version, "previous_champion": previous, "promoted": False}
        error = InfraError if isinstance(exc, InfraError) else CheckFailed
        raise error(f"deploy of {name} v{version} failed: {reason}; {kept}", failure) from None
    try:
        if version != previous:
            client.set_registered_model_alias(name, CHAMPION, version)
        if challenger is not None:
            client.delete_registered_model_alias(name, CHALLENGER)
        client.set_model_version_tag(
            name, version, "mlci.deployed_at", datetime.now(timezone.utc).isoformat(timespec="seconds")
        )
    except BaseException:  # promotion half-done (registry error, Ctrl-C, SIGTERM): put the champion back
        if version != previous:
            if previous is None:
                client.delete_registered_model_alias(name, CHAMPION)
            else:
                client.set_registered_model_alias(name, CHAMPION, previous)
        raise
    print(
        f"deploy: {name} v{version} is now {CHAMPION}"
        + (f" (was v{previous})" if previous and previous != version else ""),
        flush=True,
    )
    details: dict[str, Any] = {
        "model_name": name,
        "version": version,
        "previous_champion": previous,
        "target": "local",
        "environment": env,
        "smoke_test": smoke,
    }
    summary = (
        f"deployed {name} v{version} as {CHAMPION}: served on loopback, ready in {smoke['ready_seconds']:.1f}s, "
        f"{smoke['rows']} predictions in {smoke['latency_ms']:.0f} ms"
    )
    return StageResult("deploy", summary, details, outputs={"model-version": version, "endpoint-url": smoke["url"]})


def main(args: argparse.Namespace) -> int:
    project = load_project_for(args)
    result = execute("deploy", project, lambda: run_deploy(project, args.target, args.tracking_uri, args.env))
    print(result.summary)
    return 0
