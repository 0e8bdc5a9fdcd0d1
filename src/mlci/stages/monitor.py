"""monitor: the metric tables per window, the retrain decision and the HTML report.

`mlci monitor run` computes the tables from the inference table and the labels
(mlci.monitoring.engine), `check` applies the retrain rule to them for the version that is
served (the `champion`, else `staging`) with that version's own baseline, `report` draws them;
without an action all three, in that order. Exit 0 for hold and retrain alike (the `retrain`
output says which; a CI `if:` on it starts the retrain pipeline), 1 only when the monitor
cannot decide (insufficient_data: decision.json, the JUnit file and the outputs are written
all the same), 2 for bad input, 3 when the store or a workspace fails.

A target that monitors in its own workspace (Databricks: Lakehouse Monitoring and a scheduled
check job, `Target.monitors_in_workspace`) refuses the stage through `Target.require`: the
tables here are the local engine's, read from monitor.output.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlci import console, targets
from mlci.config import ENVIRONMENTS, Project
from mlci.errors import CheckFailed, UsageError
from mlci.monitoring import check, policy
from mlci.registry import CHAMPION, alias_version, require_store
from mlci.stages._result import StageOptions, StageResult
from mlci.targets.base import Target

# The aliases whose version is monitored, in order: what production serves, else staging
# (the local loop deploys to staging only).
SERVED_ALIASES = (CHAMPION, *reversed(ENVIRONMENTS[:-1]))


def parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    try:
        return check.parse_time(text)
    except ValueError as exc:
        raise UsageError(f"--now: {exc}") from None


def parse_since(text: str | None) -> timedelta | None:
    if text is None:
        return None
    try:
        return check.parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None


class Registry:
    """The registry, reached only when an action needs it (report alone never does)."""

    def __init__(self, project: Project, target: Target, override: str | None) -> None:
        self.project, self.target, self.override = project, target, override
        self._client: Any = None
        self._baselines: dict[str, Any] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            require_store(self.target.tracking_uri(self.project, self.override), "monitor")
            self.target.configure_mlflow(self.project, self.override, writes=False, verbose=console.verbose())
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient()
        return self._client

    def served_model_id(self) -> str:
        name = self.project.config.model_name
        for alias in SERVED_ALIASES:
            version = alias_version(self.client, name, alias)
            if version is not None:
                return f"{name}@{version}"
        raise UsageError(
            f"no version of model '{name}' is served (no {' or '.join(SERVED_ALIASES)} alias); "
            "deploy one with 'mlci deploy' before monitoring it"
        )

    def baseline(self, model_id: str) -> Any:
        """The baseline of `name@version`, or None (a version registered before mlci monitored)."""
        if model_id not in self._baselines:
            name, _, version = model_id.rpartition("@")
            from mlci.monitoring import baseline

            loaded = baseline.load_for_version(self.client, name, version) if name else None
            self._baselines[model_id] = loaded
        return self._baselines[model_id]

    def last_retrain(self) -> datetime | None:
        """When the newest registered version of the model was created: the last retrain."""
        name = self.project.config.model_name
        versions = self.client.search_model_versions(f"name='{name}'")
        newest = max(versions, key=lambda v: int(v.version), default=None)
        if newest is None or newest.creation_timestamp is None:
            return None
        return datetime.fromtimestamp(int(newest.creation_timestamp) / 1000, tz=timezone.utc)


def metric_rows(project: Project) -> check.MetricRows:
    return check.read_tables(check.output_dir(project))


def _since(rows: check.MetricRows, cutoff: datetime | None) -> check.MetricRows:
    if cutoff is None:
        return rows
    return check.MetricRows(
        check.since(rows.profile, cutoff), check.since(rows.drift, cutoff), check.since(rows.performance, cutoff)
    )


def compute(
    project: Project, registry: Registry, *, engine: str, since: timedelta | None, now: datetime
) -> tuple[str, dict[str, Any]]:
    """`mlci monitor run`: the engine computes the tables from the inference table and labels."""
    from mlci.monitoring import engine as monitor_engine

    summary = monitor_engine.compute(project, registry.baseline, engine=engine, since=since, now=now)
    facts = {
        "engine": engine,
        "windows_computed": summary.windows_computed,
        "windows_skipped": summary.windows_skipped,
        "rows": summary.rows,
        "model_ids": list(summary.model_ids),
        "output": str(summary.output),
    }
    line = (
        f"{summary.windows_computed} window(s) computed, {summary.windows_skipped} unchanged, "
        f"{summary.rows} rows ({engine})"
    )
    return line, facts


def run(project: Project, options: StageOptions) -> StageResult:
    """The stage as `mlci monitor` calls it (mlci.stage_specs.STAGES names it)."""
    now = parse_now(options.get("now"))  # bad options fail before anything is read or written
    since = parse_since(options.get("since"))
    check.retrain_rule(project)  # the rule's own settings, checked once up front
    target = targets.get(project.config.target)
    target.require(project, "monitor")
    override = options.get("tracking_uri")
    with target.store_faults(project, override):
        return _monitor(project, target, options, now=now, since=since)


def _monitor(
    project: Project, target: Target, options: StageOptions, *, now: datetime, since: timedelta | None
) -> StageResult:
    from mlci.monitoring import report

    action: str | None = options.get("action")
    registry = Registry(project, target, options.get("tracking_uri"))
    cutoff = now - since if since is not None else None
    details: dict[str, Any] = {"action": action or "all", "now": now.isoformat()}
    lines: list[str] = []
    if action in (None, "run"):
        engine = options.get("engine") or project.config.data_test.engine
        line, details["run"] = compute(project, registry, engine=engine, since=since, now=now)
        console.say(f"monitor run: {line}")
        lines.append(line)
    decided: policy.Decision | None = None
    record: dict[str, Any] | None = None
    rows: check.MetricRows | None = None
    if action in (None, "check"):
        rows = _since(metric_rows(project), cutoff)  # no tables: exit 2 before MLflow
        model_id = registry.served_model_id()
        baseline = registry.baseline(model_id)
        last_retrain = registry.last_retrain()
        decided = check.decide_from_rows(
            rows.profile,
            rows.drift,
            rows.performance,
            project=project,
            baseline=baseline,
            model_id=model_id,
            now=now,
            last_retrain=last_retrain,
        )
        run_id = baseline.run_id if baseline is not None else None
        record = check.decision_record(
            project, decided, model_id=model_id, baseline_run_id=run_id, now=now, last_retrain=last_retrain
        )
        path = check.write_record(project, record, decided)  # the record built once, for the file and the report
        for verdict in decided.signals:
            console.say(
                f"monitor check: {verdict.name} {verdict.threshold}: {verdict.violating} violating, "
                f"{verdict.evidence} counted of {len(verdict.windows)} window(s){' (fires)' if verdict.fires else ''}"
            )
        details.update(
            decision=decided.decision,
            reason=decided.reason,
            model_id=model_id,
            decision_json=_relative(project, path),
            junit_xml=_relative(project, project.out_dir / check.JUNIT_FILE),
        )
        lines.append(f"{decided.decision}: {decided.reason} ({model_id})")
    if action in (None, "report"):
        if rows is None:
            rows = _since(metric_rows(project), cutoff)
        if record is None:
            record = _read_decision(project)
        path = report.write_report(project, rows, record, now=now)
        details["report"] = _relative(project, path)
        console.say(f"monitor report: {_relative(project, path)}")
        lines.append(f"report {_relative(project, path)}")
    markdown = check.decision_markdown(decided) if decided is not None else ""
    outputs = {
        "retrain": "true" if decided is not None and decided.decision == "retrain" else "false",
        "decision": decided.decision if decided is not None else "",
    }
    summary = "; ".join(lines)
    if decided is not None and decided.decision == "insufficient_data":
        error = CheckFailed(f"monitor cannot decide: {summary}", details, outputs)
        error.markdown = markdown
        raise error
    return StageResult(summary, details, outputs, markdown)


def _read_decision(project: Project) -> dict[str, Any] | None:
    """The last decision.json, for a report drawn without a check; None when there is none."""
    path = check.output_dir(project) / check.DECISION_FILE
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a decision mlci wrote ({exc}); run 'mlci monitor check'") from None
    return data


def _relative(project: Project, path: Path) -> str:
    try:
        return path.relative_to(project.root).as_posix()
    except ValueError:
        return str(path)
