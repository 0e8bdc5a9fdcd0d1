"""Lakehouse Monitoring's quality-monitor routes (`w.quality_monitors`, databricks-sdk 0.162:
/api/2.1/unity-catalog/tables/<table>/monitor and its refreshes), bodies checked by strict.py
against the SDK methods that send them, plus what a workspace checks beyond the types
(granularities Lakehouse Monitoring knows, a Quartz schedule, a catalog.schema output schema).

No metric is ever computed: a refresh goes PENDING, RUNNING, SUCCESS on successive polls and
writes no table. Knobs (set by `install`): `monitors` {table: MonitorInfo JSON};
`missing_tables` {table}: creating a monitor on one answers 404 TABLE_DOES_NOT_EXIST, as a
workspace does before the table exists.
"""

from __future__ import annotations

import re
from typing import Any

from databricks.sdk.service import catalog

from . import executor
from .server import Double, Invalid, NotFound, Request, Response
from .strict import require_valid

# What Lakehouse Monitoring accepts as a granularity (its docs' list).
GRANULARITIES = frozenset(
    {"5 minutes", "30 minutes", "1 hour", "1 day", "1 week", "2 weeks", "3 weeks", "4 weeks", "1 month", "1 year"}
)
_TABLE = r"(?P<table>[A-Za-z_][\w-]*\.[A-Za-z_][\w-]*\.[A-Za-z_][\w-]*)"
_MONITOR = rf"/api/2\.1/unity-catalog/tables/{_TABLE}/monitor"
_QUARTZ = re.compile(r"\S+( \S+){5,6}")


def path(request: Request, name: str) -> str:
    assert request.match is not None
    return str(request.match[name])


def install(double: Double) -> None:
    knob: Any = double
    knob.monitors = {}
    knob.missing_tables = set()
    refreshes: dict[str, list[dict[str, Any]]] = {}

    def check(body: dict[str, Any], table: str) -> None:
        bad = []
        log = body.get("inference_log")
        if log is not None:
            bad += [
                f"granularity {g!r} is not one of {sorted(GRANULARITIES)}"
                for g in log["granularities"]
                if g not in GRANULARITIES
            ]
            if not log["granularities"]:
                bad.append("inference_log.granularities: at least one is required")
        if body.get("output_schema_name", "").count(".") != 1:
            bad.append(f"output_schema_name {body.get('output_schema_name')!r} is not catalog.schema")
        schedule = body.get("schedule")
        if schedule is not None:
            cron = schedule["quartz_cron_expression"]
            fields = cron.split()
            if not _QUARTZ.fullmatch(cron) or "?" not in (fields[3], fields[5]):
                bad.append(f"schedule: {cron!r} is not a Quartz expression with '?' as day of month or of week")
        if table in knob.missing_tables:
            raise NotFound(f"Table '{table}' does not exist.", "TABLE_DOES_NOT_EXIST")
        if bad:
            raise Invalid("; ".join(bad))

    def view(table: str, body: dict[str, Any], version: int, assets_dir: str) -> dict[str, Any]:
        info = {k: v for k, v in body.items() if v not in (None, [])}
        if "schedule" in info:
            info["schedule"] = {"pause_status": "UNPAUSED", **info["schedule"]}
        name = table.split(".")[-1]
        schema = body["output_schema_name"]
        info.update(
            table_name=table,
            status="MONITOR_STATUS_ACTIVE",
            monitor_version=version,
            assets_dir=assets_dir,
            profile_metrics_table_name=f"{schema}.{name}_profile_metrics",
            drift_metrics_table_name=f"{schema}.{name}_drift_metrics",
            dashboard_id=f"dashboard-{name}",
        )
        return info

    def monitor_or_404(table: str) -> dict[str, Any]:
        if table not in knob.monitors:
            raise NotFound(f"Monitor for table '{table}' does not exist.")
        info: dict[str, Any] = knob.monitors[table]
        return info

    @double.route("POST", _MONITOR)
    def create(request: Request) -> Response:
        table = path(request, "table")
        body = require_valid(catalog.QualityMonitorsAPI.create, request.json(), path_params=("table_name",))
        check(body, table)
        with double.lock:
            if table in knob.monitors:
                return Response(409, {"error_code": "RESOURCE_ALREADY_EXISTS", "message": f"{table} has a monitor"})
            knob.monitors[table] = view(table, body, 1, body["assets_dir"])
            return Response(200, knob.monitors[table])

    @double.route("GET", _MONITOR)
    def get(request: Request) -> Response:
        return Response(200, monitor_or_404(path(request, "table")))

    @double.route("PUT", _MONITOR)
    def update(request: Request) -> Response:
        table = path(request, "table")
        body = require_valid(catalog.QualityMonitorsAPI.update, request.json(), path_params=("table_name",))
        with double.lock:
            current = monitor_or_404(table)
            check(body, table)
            # An update replaces the monitor's settings: what the body leaves out is unset.
            knob.monitors[table] = view(table, body, current["monitor_version"] + 1, current["assets_dir"])
            return Response(200, knob.monitors[table])

    @double.route("DELETE", _MONITOR)
    def delete(request: Request) -> Response:
        table = path(request, "table")
        with double.lock:
            monitor_or_404(table)
            del knob.monitors[table]
        return Response(200, {})

    @double.route("POST", _MONITOR + r"/refreshes")
    def run_refresh(request: Request) -> Response:
        table = path(request, "table")
        require_valid(catalog.QualityMonitorsAPI.run_refresh, request.json() or {}, path_params=("table_name",))
        with double.lock:
            monitor_or_404(table)
            runs = refreshes.setdefault(table, [])
            refresh = {
                "refresh_id": len(runs) + 1,
                "state": "PENDING",
                "start_time_ms": executor.now_ms(),
                "trigger": "MANUAL",
            }
            runs.append(refresh)
            return Response(200, dict(refresh))

    @double.route("GET", _MONITOR + r"/refreshes/(?P<refresh_id>\d+)")
    def get_refresh(request: Request) -> Response:
        table, number = path(request, "table"), int(path(request, "refresh_id"))
        with double.lock:
            runs = refreshes.get(table, [])
            if not 0 < number <= len(runs):
                raise NotFound(f"Refresh {number} of the monitor of {table} does not exist.")
            refresh = runs[number - 1]
            following = {"PENDING": "RUNNING", "RUNNING": "SUCCESS"}
            if refresh["state"] in following:  # one step per poll: the caller must wait
                refresh["state"] = following[refresh["state"]]
                if refresh["state"] == "SUCCESS":
                    refresh["end_time_ms"] = executor.now_ms()
            return Response(200, dict(refresh))
