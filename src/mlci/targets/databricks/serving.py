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
from mlci.errors import CheckFailed, InfraError, SmokeTestFailed, first_line
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
    tables = serving.AiGatewayInferenceTableConfig(
        catalog_name=settings.catalog,
        schema_name=settings.schema,
        table_name_prefix=endpoint.replace("-", "_"),
        enabled=True,
    )
    wait = _waiter(w, endpoint, cfg.serving_timeout, cfg.poll_interval, progress)
    captured = _capture(current)
    # Whether the endpoint may no longer serve what it did: set before each change is sent (a
    # timeout or an interruption leaves it in flight), cleared when the workspace refused it.
    changed = False

    def undo() -> None:
        if current is None:
            _delete_quietly(w, endpoint, progress)
        elif changed and captured is not None:
            _restore(w, endpoint, captured, wait, progress)

    applied = time.monotonic()
    try:
        if current is None:
            progress(f"deploy: creating serving endpoint {endpoint} with {name} v{version}")
            w.serving_endpoints.create(
                endpoint,
                config=serving.EndpointCoreConfigInput(name=endpoint, served_entities=[entity], traffic_config=full),
                ai_gateway=serving.AiGatewayConfig(inference_table_config=tables),
                tags=[serving.EndpointTag(key="mlci-project", value=project.config.project.name)],
            )
            failed = wait()
            if failed:
                raise CheckFailed(f"serving endpoint {endpoint} did not become ready with v{version}: {failed}")
        else:
            if not _inference_tables_on(current):
                _put_gateway(w, endpoint, current.ai_gateway, tables)
            for index, (entities, traffic) in enumerate(_steps(entity, full, captured, settings.canary_percent)):
                share = traffic.routes[0].traffic_percentage if traffic.routes else 100
                progress(f"deploy: updating endpoint {endpoint}: {name} v{version} takes {share}% of the traffic")
                changed = True
                w.serving_endpoints.update_config(endpoint, served_entities=entities, traffic_config=traffic)
                failed = wait()
                if failed:
                    changed = index > 0  # a refused first update left the old configuration serving
                    raise CheckFailed(f"serving endpoint {endpoint} update to v{version} failed: {failed}")
                if share < 100:  # the canary: the new version itself must answer before it takes all
                    smoke_query(w, project, model_uri, endpoint, served=entity.name)
        ready_seconds = time.monotonic() - applied
        facts = smoke_query(w, project, model_uri, endpoint)
    except BaseException:
        undo()
        raise
    facts.update(
        url=f"{where.host}/serving-endpoints/{endpoint}/invocations",
        served=f"served by Databricks endpoint {endpoint}",
        endpoint=endpoint,
        workspace=where.host,
        inference_table_prefix=f"{settings.catalog}.{settings.schema}.{tables.table_name_prefix}",
        ready_seconds=round(ready_seconds, 3),
    )
    changed = True  # from here on the endpoint serves the new version: a rollback restores
    return Deployment(url=str(facts["url"]), facts=facts, rollback=undo)


def _capture(current: Any) -> Captured | None:
    if current is None or current.config is None:
        return None
    config = current.config
    return Captured(
        [_as_input(e) for e in (config.served_entities or [])],
        _as_traffic_input(config.traffic_config) if config.traffic_config else None,
    )


def _steps(entity: Any, full: Any, captured: Captured | None, canary: int) -> list[tuple[list[Any], Any]]:
    """The configurations a deploy applies in order: the new version alone, or first beside the
    version served now with `canary` percent of the traffic."""
    from databricks.sdk.service import serving

    previous = [e for e in (captured.served_entities or []) if e.name != entity.name] if captured else []
    if not canary or not previous:
        return [([entity], full)]
    split = serving.TrafficConfig(
        routes=[
            serving.Route(served_entity_name=entity.name, traffic_percentage=canary),
            serving.Route(served_entity_name=previous[0].name, traffic_percentage=100 - canary),
        ]
    )
    return [([entity, previous[0]], split), ([entity], full)]


def _put_gateway(w: Any, endpoint: str, gateway: Any, tables: Any) -> None:
    """Turn inference tables on, keeping the endpoint's other AI Gateway settings (the call
    replaces the whole gateway configuration)."""
    w.serving_endpoints.put_ai_gateway(
        endpoint,
        inference_table_config=tables,
        fallback_config=gateway.fallback_config if gateway else None,
        guardrails=gateway.guardrails if gateway else None,
        rate_limits=gateway.rate_limits if gateway else None,
        usage_tracking_config=gateway.usage_tracking_config if gateway else None,
    )


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
        wait()  # an update still in flight (a timeout, an interruption) must settle before another
    except Exception as exc:
        progress(f"deploy: ROLLBACK of endpoint {endpoint} FAILED ({first_line(exc)}); restore it in the workspace")
        return
    try:
        w.serving_endpoints.update_config(
            endpoint, served_entities=captured.served_entities, traffic_config=captured.traffic_config
        )
        failed = wait()
    except Exception as exc:
        failed = first_line(exc)
    if failed:
        progress(f"deploy: ROLLBACK of endpoint {endpoint} FAILED ({failed}); restore it in the workspace")


def _delete_quietly(w: Any, endpoint: str, progress: Callable[[str], None]) -> None:
    progress(f"deploy: deleting serving endpoint {endpoint}, which this deploy created")
    try:
        w.serving_endpoints.delete(endpoint)
    except Exception as exc:
        progress(f"deploy: could not delete endpoint {endpoint} ({exc}); delete it in the workspace")


def _as_input(entity: Any) -> Any:
    """A served entity as the workspace reports it, as the input that re-creates it: every
    field the input has (size, provisioned concurrency, IAM, environment variables)."""
    import dataclasses

    from databricks.sdk.service import serving

    fields = {f.name for f in dataclasses.fields(serving.ServedEntityInput)}
    reported = entity.as_dict()
    return serving.ServedEntityInput.from_dict({k: v for k, v in reported.items() if k in fields})


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


def smoke_query(w: Any, project: Project, model_uri: str, endpoint: str, served: str | None = None) -> dict[str, Any]:
    """Send the model's logged input example to the endpoint (to its served entity `served`
    alone, when given: a canary must answer itself, not through the traffic split); SmokeTestFailed
    unless one prediction comes back per row."""
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
        if served is None:
            answer = w.serving_endpoints.query(
                endpoint, dataframe_split=serving.DataframeSplitInput(columns=split["columns"], data=split["data"])
            )
            predictions = list(answer.predictions or [])
        else:  # the SDK has no call for one served entity; the REST API does
            reply = w.api_client.do(
                "POST",
                f"/serving-endpoints/{endpoint}/served-models/{served}/invocations",
                body={"dataframe_split": {"columns": split["columns"], "data": split["data"]}},
            )
            predictions = list(reply.get("predictions") or []) if isinstance(reply, dict) else []
    except DatabricksError as exc:
        who = f"{endpoint} ({served})" if served else endpoint
        raise SmokeTestFailed(f"endpoint {who} refused the input example: {first_line(exc)}") from None
    latency = time.monotonic() - started
    if len(predictions) != len(example):
        raise SmokeTestFailed(f"endpoint {endpoint} answered {len(predictions)} predictions for {len(example)} rows")
    return {
        "rows": len(example),
        "latency_ms": round(latency * 1000, 1),
        "predictions": predictions[:10],
    }
