"""Deploy to Model Serving: point an environment's endpoint at a Unity Catalog model version,
wait until it serves it, smoke-query it with the model's input example, and put the previous
configuration back on any failure.

The order is what makes a failed deploy harmless: the endpoint's current configuration is
captured first; the new version is applied (optionally as a canary that takes
`canary_percent` of the traffic first, then all of it); only a ready endpoint that answered
the input example right is handed back to the deploy stage, which then moves the aliases. If
the update fails, the workspace keeps serving the old configuration; if the endpoint became
ready but answers wrong, or the aliases cannot move afterwards, the captured configuration is
re-applied (an endpoint this deploy created is deleted instead). Inference tables (AI
Gateway) are always on, so monitoring has the served requests.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlci.config import Project
from mlci.errors import CheckFailed, InfraError, SmokeTestFailed
from mlci.targets.base import Deployment
from mlci.targets.databricks import workspace


@dataclass
class Captured:
    """An endpoint's configuration before this deploy touched it (None: there was no endpoint)."""

    served_entities: list[Any] | None
    traffic_config: Any | None


def parse_model_uri(model_uri: str) -> tuple[str, str]:
    """('catalog.schema.model', 'version') of models:/catalog.schema.model/version."""
    body = model_uri.removeprefix("models:/")
    name, _, version = body.rpartition("/")
    return name, version


def served_name(model_name: str, version: str) -> str:
    """The served entity's name: the model's own name and version (dots are not allowed)."""
    return f"{model_name.split('.')[-1]}-{version}".replace("_", "-")


def deploy(project: Project, model_uri: str, env: str, *, progress: Callable[[str], None]) -> Deployment:
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service import serving

    name, version = parse_model_uri(model_uri)
    where = workspace.workspace(project, env)
    w = workspace.client(project, env)
    endpoint = where.endpoint
    settings = where.settings
    cfg = project.config.databricks
    try:
        current = w.serving_endpoints.get(endpoint)
    except NotFound:
        current = None
    entity = serving.ServedEntityInput(
        name=served_name(name, version),
        entity_name=name,
        entity_version=version,
        workload_size=settings.workload_size,
        scale_to_zero_enabled=settings.scale_to_zero,
    )
    full = serving.TrafficConfig(routes=[serving.Route(served_entity_name=entity.name, traffic_percentage=100)])
    gateway = serving.AiGatewayInferenceTableConfig(
        catalog_name=settings.catalog,
        schema_name=settings.schema,
        table_name_prefix=endpoint.replace("-", "_"),
        enabled=True,
    )
    wait = _waiter(w, endpoint, cfg.serving_timeout, cfg.poll_interval, progress)
    applied = time.monotonic()
    if current is None:
        captured = None
        progress(f"deploy: creating serving endpoint {endpoint} with {name} v{version}")
        w.serving_endpoints.create(
            endpoint,
            config=serving.EndpointCoreConfigInput(name=endpoint, served_entities=[entity], traffic_config=full),
            ai_gateway=serving.AiGatewayConfig(inference_table_config=gateway),
            tags=[serving.EndpointTag(key="mlci-project", value=project.config.project.name)],
        )
        failed = wait()
        if failed:
            _delete_quietly(w, endpoint, progress)
            raise CheckFailed(f"serving endpoint {endpoint} did not become ready with v{version}: {failed}")
    else:
        config = current.config
        captured = Captured(
            [_as_input(e) for e in (config.served_entities or [])] if config else None,
            _as_traffic_input(config.traffic_config) if config and config.traffic_config else None,
        )
        if not _inference_tables_on(current):
            w.serving_endpoints.put_ai_gateway(endpoint, inference_table_config=gateway)
        steps = [([entity], full)]
        if settings.canary_percent and captured.served_entities:
            previous = [e for e in captured.served_entities if e.name != entity.name]
            if previous:
                split = serving.TrafficConfig(
                    routes=[
                        serving.Route(served_entity_name=entity.name, traffic_percentage=settings.canary_percent),
                        serving.Route(
                            served_entity_name=previous[0].name, traffic_percentage=100 - settings.canary_percent
                        ),
                    ]
                )
                steps = [([entity, previous[0]], split), ([entity], full)]
        for index, (entities, traffic) in enumerate(steps):
            share = traffic.routes[0].traffic_percentage if traffic.routes else 100
            progress(f"deploy: updating serving endpoint {endpoint}: {name} v{version} takes {share}% of the traffic")
            w.serving_endpoints.update_config(endpoint, served_entities=entities, traffic_config=traffic)
            failed = wait()
            if failed:  # the workspace still serves the previous configuration
                if index:  # the canary step changed it: put it back
                    _restore(w, endpoint, captured, wait, progress)
                raise CheckFailed(f"serving endpoint {endpoint} update to v{version} failed: {failed}")
            if len(steps) > 1 and index == 0:
                try:
                    smoke_query(w, project, model_uri, endpoint)
                except BaseException:
                    _restore(w, endpoint, captured, wait, progress)
                    raise
    url = f"{where.host}/serving-endpoints/{endpoint}/invocations"
    ready_seconds = time.monotonic() - applied
    try:
        facts = smoke_query(w, project, model_uri, endpoint)
    except BaseException:
        if captured is None:
            _delete_quietly(w, endpoint, progress)
        else:
            _restore(w, endpoint, captured, wait, progress)
        raise
    facts.update(
        url=url,
        served=f"served by Databricks endpoint {endpoint}",
        endpoint=endpoint,
        workspace=where.host,
        inference_table_prefix=f"{settings.catalog}.{settings.schema}.{gateway.table_name_prefix}",
        ready_seconds=round(ready_seconds, 3),
    )

    def rollback() -> None:
        if captured is None:
            _delete_quietly(w, endpoint, progress)
        else:
            _restore(w, endpoint, captured, wait, progress)

    return Deployment(url=url, facts=facts, rollback=rollback)


def _waiter(
    w: Any, endpoint: str, timeout: float, poll: float, progress: Callable[[str], None]
) -> Callable[[], str | None]:
    """A function that waits until the endpoint is ready with no update in flight: None when it
    is, the reason when the update failed or was cancelled; exit 3 past `timeout`."""

    def wait() -> str | None:
        started = time.monotonic()
        said = ""
        while True:
            detail = w.serving_endpoints.get(endpoint)
            state = detail.state
            update = state.config_update.value if state and state.config_update else "NOT_UPDATING"
            ready = state.ready.value if state and state.ready else "NOT_READY"
            line = f"{update}/{ready}"
            if line != said:
                progress(f"deploy: endpoint {endpoint} {line} ({int(time.monotonic() - started)}s)")
                said = line
            if update in ("UPDATE_FAILED", "UPDATE_CANCELED"):
                return f"{update}: {_served_states(detail)}"
            if update == "NOT_UPDATING" and ready == "READY":
                return None
            if time.monotonic() - started >= timeout:
                raise InfraError(
                    f"serving endpoint {endpoint} was not ready within {int(timeout)}s ({line}); raise "
                    "databricks.serving_timeout in mlci.yaml, or check the endpoint's build logs in the workspace"
                )
            time.sleep(poll)

    return wait


def _served_states(detail: Any) -> str:
    config = detail.pending_config or detail.config
    entities = (config.served_entities or []) if config else []
    states = [
        f"{e.name}: {e.state.deployment.value if e.state and e.state.deployment else 'unknown'}"
        + (f" ({e.state.deployment_state_message})" if e.state and e.state.deployment_state_message else "")
        for e in entities
    ]
    return "; ".join(states) or "no served entity state"


def _restore(
    w: Any, endpoint: str, captured: Captured, wait: Callable[[], str | None], progress: Callable[[str], None]
) -> None:
    """Re-apply the configuration captured before the deploy; report (not raise) a failure of
    it, so the error that caused the rollback stays the one the user reads."""
    if not captured.served_entities:
        return
    progress(f"deploy: rolling serving endpoint {endpoint} back to its previous configuration")
    try:
        w.serving_endpoints.update_config(
            endpoint, served_entities=captured.served_entities, traffic_config=captured.traffic_config
        )
        failed = wait()
    except Exception as exc:
        failed = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if failed:
        progress(f"deploy: ROLLBACK of endpoint {endpoint} FAILED ({failed}); restore it in the workspace")


def _delete_quietly(w: Any, endpoint: str, progress: Callable[[str], None]) -> None:
    progress(f"deploy: deleting serving endpoint {endpoint}, which this deploy created")
    try:
        w.serving_endpoints.delete(endpoint)
    except Exception as exc:
        progress(f"deploy: could not delete endpoint {endpoint} ({exc}); delete it in the workspace")


def _as_input(entity: Any) -> Any:
    """A served entity as the workspace reports it, as the input that re-creates it."""
    from databricks.sdk.service import serving

    return serving.ServedEntityInput(
        name=entity.name,
        entity_name=entity.entity_name,
        entity_version=entity.entity_version,
        workload_size=entity.workload_size,
        workload_type=entity.workload_type,
        scale_to_zero_enabled=entity.scale_to_zero_enabled,
        environment_vars=entity.environment_vars,
    )


def _as_traffic_input(traffic: Any) -> Any:
    from databricks.sdk.service import serving

    return serving.TrafficConfig(
        routes=[
            serving.Route(
                served_entity_name=r.served_entity_name or r.served_model_name, traffic_percentage=r.traffic_percentage
            )
            for r in traffic.routes or []
        ]
    )


def _inference_tables_on(detail: Any) -> bool:
    table = detail.ai_gateway.inference_table_config if detail.ai_gateway else None
    return bool(table and table.enabled)


def smoke_query(w: Any, project: Project, model_uri: str, endpoint: str) -> dict[str, Any]:
    """Send the model's logged input example to the endpoint; SmokeTestFailed unless one
    prediction comes back per row."""
    import mlflow.models
    from databricks.sdk.errors.base import DatabricksError
    from databricks.sdk.service import serving

    with tempfile.TemporaryDirectory(prefix="mlci-example-") as scratch:
        import mlflow

        path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch)
        example: Any = mlflow.models.Model.load(path).load_input_example(path)
    if example is None:
        raise CheckFailed(f"{model_uri} has no input example to smoke-test with; retrain with 'mlci train'")
    split = json.loads(example.to_json(orient="split", index=False))
    started = time.monotonic()
    try:
        answer = w.serving_endpoints.query(
            endpoint, dataframe_split=serving.DataframeSplitInput(columns=split["columns"], data=split["data"])
        )
    except DatabricksError as exc:
        raise SmokeTestFailed(f"endpoint {endpoint} refused the input example: {str(exc).splitlines()[0]}") from None
    latency = time.monotonic() - started
    predictions = list(answer.predictions or [])
    if len(predictions) != len(example):
        raise SmokeTestFailed(f"endpoint {endpoint} answered {len(predictions)} predictions for {len(example)} rows")
    return {
        "rows": len(example),
        "latency_ms": round(latency * 1000, 1),
        "predictions": predictions[:10],
    }
