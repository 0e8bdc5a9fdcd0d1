"""register: gate the trained model, compare it with the champion, register it as challenger.

The candidate and the current champion are scored on the *current* holdout data, so the
comparison is fair even when the holdout changed since the champion was trained. Only a
candidate that passes is registered: every version in the registry has met the gates.
A rejected candidate leaves the registry and its aliases untouched, and its run is tagged
with the reason.
"""

from __future__ import annotations

import argparse
from typing import Any

from mlci.config import Project
from mlci.errors import CheckFailed, UsageError
from mlci.metrics import better_or_equal, evaluate
from mlci.stages._result import StageResult, execute, load_project_for, read_result
from mlci.stages.train import read_split
from mlci.targets import local

CHAMPION = "champion"
CHALLENGER = "challenger"


def normalise_version(version: Any) -> str:
    """MLflow returns an int on sqlite and a string over HTTP; mlci always says a string."""
    return str(int(version))


def alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version an alias points to, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return normalise_version(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def load_scoring_model(model_uri: str) -> Any:
    """The native sklearn model when there is one (for probabilities), else the pyfunc."""
    import mlflow

    try:
        return mlflow.sklearn.load_model(model_uri)
    except Exception:  # not an sklearn flavour: score through the generic interface
        return mlflow.pyfunc.load_model(model_uri)


def run_register(project: Project, run_id: str | None, tracking_override: str | None = None) -> StageResult:
    cfg = project.config
    local.require_local(project, "register")
    if run_id is None:
        trained = read_result(project, "train")
        if not trained or trained.get("status") != "passed":
            raise UsageError(
                "no successful 'mlci train' result in .mlci/out/train.json; run 'mlci train' or pass --run-id"
            )
        run_id = str(trained["details"]["run_id"])
        logged_uri = trained["details"].get("logged_model_uri")
    else:
        logged_uri = None
    mlflow = local.configure_mlflow(project, tracking_override)
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_run(run_id)
    except MlflowException:
        raise UsageError(
            f"run {run_id} is not in the tracking store {local.tracking_uri(project, tracking_override)}; "
            "run 'mlci train' again"
        ) from None
    name = cfg.model_name
    # MLflow 3 stores models as logged models (models:/m-...); runs:/ still resolves, with a warning.
    model_uri = logged_uri or f"runs:/{run_id}/model"
    holdout_x, holdout_y, _ = read_split(project, "holdout")
    print(f"register: scoring run {run_id} on {cfg.data.holdout} ({len(holdout_x)} rows)", flush=True)
    candidate = evaluate(load_scoring_model(model_uri), holdout_x, holdout_y, cfg.train.task)

    gates: list[dict[str, Any]] = []
    for gate in project.gates():
        value = candidate.get(gate.metric)
        gates.append(
            {
                "gate": str(gate),
                "metric": gate.metric,
                "value": value,
                "threshold": gate.threshold,
                "passed": value is not None and gate.passes(value),
            }
        )
    metric = cfg.primary_metric
    champion_version = alias_version(client, name, CHAMPION)
    comparison: dict[str, Any] | None = None
    if champion_version is not None:
        print(f"register: scoring champion {name} v{champion_version}", flush=True)
        champion = evaluate(load_scoring_model(f"models:/{name}@{CHAMPION}"), holdout_x, holdout_y, cfg.train.task)
        passed = (
            metric in candidate
            and metric in champion
            and better_or_equal(metric, candidate[metric], champion[metric], cfg.register.champion_tolerance)
        )
        comparison = {
            "metric": metric,
            "candidate": candidate.get(metric),
            "champion": champion.get(metric),
            "champion_version": champion_version,
            "tolerance": cfg.register.champion_tolerance,
            "passed": passed,
        }

    failures = [
        f"gate {g['gate']} not met: candidate {g['metric']} = {_fmt(g['value'])}" for g in gates if not g["passed"]
    ]
    if comparison and not comparison["passed"]:
        failures.append(
            f"challenger loses to champion v{comparison['champion_version']} on {metric}: "
            f"{_fmt(comparison['candidate'])} vs {_fmt(comparison['champion'])} (tolerance {comparison['tolerance']:g})"
        )
    details: dict[str, Any] = {
        "run_id": run_id,
        "model_name": name,
        "candidate_metrics": candidate,
        "gates": gates,
        "champion": comparison,
    }
    if failures:
        client.set_tag(run_id, "mlci.register", "rejected")
        client.set_tag(run_id, "mlci.register.reason", "; ".join(failures)[:5000])
        raise CheckFailed("model rejected: " + "; ".join(failures) + "; champion and aliases unchanged", details)

    version = mlflow.register_model(model_uri, name, tags={"mlci.run_id": run_id}, await_registration_for=300)
    number = normalise_version(version.version)
    for key, value in candidate.items():
        client.set_model_version_tag(name, number, f"mlci.metric.{key}", f"{value:.6g}")
    client.set_model_version_tag(name, number, "mlci.gates", "passed")
    client.set_registered_model_alias(name, CHALLENGER, number)
    client.set_tag(run_id, "mlci.register", f"{name}/{number}")
    details.update(version=number, alias=CHALLENGER, model_uri=f"models:/{name}/{number}")
    rows = [f"| {g['gate']} | {_fmt(g['value'])} | pass |" for g in gates]
    if comparison:
        rows.append(
            f"| {metric} vs champion v{comparison['champion_version']} | {_fmt(comparison['candidate'])} "
            f"vs {_fmt(comparison['champion'])} | pass |"
        )
    markdown = "| check | value | result |\n|---|---|---|\n" + "\n".join(rows)
    against = f", beats champion v{champion_version}" if champion_version else ", first champion candidate"
    summary = f"registered {name} v{number} as {CHALLENGER}: {len(gates)} gate(s) met{against}"
    return StageResult(
        "register", summary, details, outputs={"model-name": name, "model-version": number}, markdown=markdown
    )


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4f}"


def main(args: argparse.Namespace) -> int:
    project = load_project_for(args)
    result = execute("register", project, lambda: run_register(project, args.run_id, args.tracking_uri))
    print(result.summary)
    return 0
