"""register: gate the trained model, compare it with the champion, register it as challenger.

The candidate and the reference (the `champion`, or while there is none the version in the
first environment, `staging`) are scored on the *current* holdout data, so the comparison is
fair even when the holdout changed since the reference was trained. The candidate is scored
in this process (it was trained from the working tree); the reference is scored in a child
process with only its own logged code (mlci.scoring), exactly as it is served. Only a
candidate that passes is registered: every version in the registry has met the gates. A
rejected candidate leaves the registry and its aliases untouched, and its run is tagged with
the reason. A candidate with the same fingerprint (code, data, params) as a registered
version registers nothing new.
"""

from __future__ import annotations

import tempfile
from typing import Any

from mlci import console, targets
from mlci.config import ENVIRONMENTS, Project
from mlci.errors import CheckFailed, UsageError
from mlci.metrics import LOWER_IS_BETTER, better_or_equal, evaluate
from mlci.monitoring.baseline import BASELINE_ARTIFACT, BASELINE_TAG, build_baseline, log_baseline
from mlci.registry import CHALLENGER, CHAMPION, alias_version, normalise_version
from mlci.splits import read_split
from mlci.stages._result import StageOptions, StageResult, read_result

__all__ = ["CHALLENGER", "CHAMPION", "alias_version", "normalise_version", "run_register"]

FINGERPRINT_TAG = "mlci.fingerprint"


def load_scoring_model(model_uri: str) -> Any:
    """The native sklearn model when there is one (for probabilities), else the pyfunc."""
    import mlflow

    try:
        return mlflow.sklearn.load_model(model_uri)
    except Exception:  # not an sklearn flavour: score through the generic interface
        return mlflow.pyfunc.load_model(model_uri)


def reference_version(client: Any, name: str) -> tuple[str, str] | None:
    """What the candidate must not lose to: the champion, else the furthest environment that
    serves a version (the local loop deploys to staging only), as (alias, version)."""
    for alias in (CHAMPION, *reversed(ENVIRONMENTS[:-1])):
        version = alias_version(client, name, alias)
        if version is not None:
            return alias, version
    return None


def same_fingerprint(client: Any, name: str, fingerprint: str | None) -> str | None:
    """A version trained from the same code, data and params that is still in play (the
    challenger, or what an environment serves), if any. An older identical version that is no
    longer live does not count: going back to it (a revert) is a change from what is served,
    so the candidate is compared and registered like any other.

    Each live version is read by number: Unity Catalog's version search answers without tags."""
    from mlflow.exceptions import MlflowException

    if not fingerprint:
        return None
    live = {alias_version(client, name, alias) for alias in (CHALLENGER, *ENVIRONMENTS, CHAMPION)} - {None}
    matches = []
    for number in live:
        try:
            tags = client.get_model_version(name, number).tags or {}
        except MlflowException:
            continue
        if tags.get(FINGERPRINT_TAG) == fingerprint:
            matches.append(str(number))
    return max(matches, key=int) if matches else None


def score_reference(
    project: Project, name: str, alias: str, version: str, holdout_x: Any, holdout_y: Any
) -> tuple[dict[str, float], list[str]]:
    from mlci import scoring

    with tempfile.TemporaryDirectory(prefix="mlci-reference-") as scratch:
        path = targets.get(project.config.target).model_dir(f"models:/{name}/{version}", dst_path=scratch)
        return scoring.score_isolated(
            project.root,
            project.config.project.package,
            path,
            holdout_x,
            holdout_y,
            project.config.train.task,
            f"{alias} {name} v{version}",
        )


def run_register(project: Project, run_id: str | None, tracking_override: str | None = None) -> StageResult:
    with targets.get(project.config.target).store_faults(project, tracking_override):
        return _register(project, run_id, tracking_override)


def _register(project: Project, run_id: str | None, tracking_override: str | None) -> StageResult:
    cfg = project.config
    target = targets.get(cfg.target)
    target.require(project, "register")
    if run_id is None:
        trained = read_result(project, "train")
        if not trained or trained.get("status") != "passed":
            raise UsageError(
                "no successful 'mlci train' result in .mlci/out/train.json; run 'mlci train' or pass --run-id"
            )
        run_id = str(trained["details"]["run_id"])
    mlflow = target.configure_mlflow(project, tracking_override, verbose=console.verbose())
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UsageError(
            f"run {run_id} is not in the tracking store {target.tracking_uri(project, tracking_override)}; "
            "run 'mlci train' again"
        ) from None
    name = cfg.model_name
    registry = target.registry_label(project, tracking_override)
    # The run's own logged model (MLflow 3: models:/m-...); runs:/ still resolves, with a warning.
    outputs = getattr(run, "outputs", None)
    logged = next(iter(outputs.model_outputs if outputs else []), None)
    model_uri = f"models:/{logged.model_id}" if logged is not None else f"runs:/{run_id}/model"
    holdout_x, holdout_y, _ = read_split(project, "holdout")
    print(f"register: scoring run {run_id} on {cfg.data.holdout} ({len(holdout_x)} rows); {registry}", flush=True)
    notes: list[str] = []
    scoring_model = load_scoring_model(model_uri)
    candidate = evaluate(scoring_model, holdout_x, holdout_y, cfg.train.task, notes)

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
    failures = [
        f"gate {g['gate']} not met: candidate {g['metric']} = {_fmt(g['value'])}" for g in gates if not g["passed"]
    ]
    if any(g["value"] is None for g in gates) and notes:
        failures.append("; ".join(notes))
    metric = cfg.primary_metric
    reference = reference_version(client, name)
    details: dict[str, Any] = {
        "run_id": run_id,
        "model_name": name,
        "registry": registry,
        "champion_existed": alias_version(client, name, CHAMPION) is not None,
        "candidate_metrics": candidate,
        "metric_notes": notes,
        "gates": gates,
        "champion": None,
    }
    fingerprint = run.data.tags.get(FINGERPRINT_TAG)
    unchanged = None if failures else same_fingerprint(client, name, fingerprint)
    if unchanged is not None:
        client.set_tag(run_id, "mlci.register", f"unchanged:{name}/{unchanged}")
        details.update(version=unchanged, unchanged=True, model_uri=f"models:/{name}/{unchanged}")
        summary = f"unchanged: same code, data and params as v{unchanged}; nothing registered ({registry})"
        markdown = f"{summary}\n\nRegistry: {registry}; " + _reference_line(reference)
        return StageResult(
            summary, details, outputs={"model-name": name, "model-version": unchanged}, markdown=markdown
        )

    comparison: dict[str, Any] | None = None
    if reference is not None:
        against, reference_number = reference
        print(f"register: scoring {against} {name} v{reference_number} in isolation, with its own code", flush=True)
        scored, reference_notes = score_reference(project, name, against, reference_number, holdout_x, holdout_y)
        passed = (
            metric in candidate
            and metric in scored
            and better_or_equal(metric, candidate[metric], scored[metric], cfg.register.champion_tolerance)
        )
        comparison = {
            "metric": metric,
            "against": against,
            "candidate": candidate.get(metric),
            "champion": scored.get(metric),
            "champion_version": reference_number,
            "champion_metrics": scored,
            "champion_notes": reference_notes,
            "tolerance": cfg.register.champion_tolerance,
            "passed": passed,
            "verdict": _verdict(metric, candidate.get(metric), scored.get(metric)),
        }
        details["champion"] = comparison
        if not passed:
            failures.append(
                f"challenger loses to {against} v{reference_number} on {metric}: "
                f"{_fmt(comparison['candidate'])} vs {_fmt(comparison['champion'])} "
                f"(tolerance {comparison['tolerance']:g})"
            )
    if failures:
        client.set_tag(run_id, "mlci.register", "rejected")
        client.set_tag(run_id, "mlci.register.reason", "; ".join(failures)[:5000])
        error = CheckFailed("model rejected: " + "; ".join(failures) + f"; aliases unchanged ({registry})", details)
        error.markdown = f"Registry: {registry}; " + _reference_line(reference)
        raise error

    # The monitor's reference (monitoring/baseline.py), logged on the run before the version
    # exists, so a registered version always has one; a rejected or unchanged candidate
    # returned above and logs nothing.
    train_x, _, _ = read_split(project, "train")
    log_baseline(client, run_id, build_baseline(project, scoring_model, train_x, holdout_x, holdout_y, run_id))
    version = mlflow.register_model(model_uri, name, tags={"mlci.run_id": run_id}, await_registration_for=300)
    number = normalise_version(version.version)
    client.set_model_version_tag(name, number, BASELINE_TAG, BASELINE_ARTIFACT)
    for key, value in candidate.items():
        client.set_model_version_tag(name, number, f"mlci.metric.{key}", f"{value:.6g}")
    client.set_model_version_tag(name, number, "mlci.gates", "passed")
    if fingerprint:
        client.set_model_version_tag(name, number, FINGERPRINT_TAG, fingerprint)
    client.set_registered_model_alias(name, CHALLENGER, number)
    client.set_tag(run_id, "mlci.register", f"{name}/{number}")
    details.update(version=number, alias=CHALLENGER, model_uri=f"models:/{name}/{number}", unchanged=False)
    rows = [f"| {g['gate']} | {_fmt(g['value'])} | pass |" for g in gates]
    if comparison:
        rows.append(
            f"| {metric} vs {comparison['against']} v{comparison['champion_version']} | "
            f"{_fmt(comparison['candidate'])} vs {_fmt(comparison['champion'])} | pass |"
        )
    markdown = (
        "| check | value | result |\n|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nRegistry: {registry}; "
        + _reference_line(reference)
    )
    if comparison:
        against = (
            f", {comparison['verdict']} {comparison['against']} v{comparison['champion_version']}"
            f" ({_fmt(comparison['candidate'])} vs {_fmt(comparison['champion'])})"
        )
    else:
        against = ", no champion yet: first champion candidate"
    summary = f"registered {name} v{number} as {CHALLENGER}: {len(gates)} gate(s) met{against}; {registry}"
    return StageResult(summary, details, outputs={"model-name": name, "model-version": number}, markdown=markdown)


def _verdict(metric: str, candidate: float | None, reference: float | None) -> str:
    """'beats' only when strictly better; a pass within the tolerance says so."""
    if candidate is None or reference is None:
        return "compared with"
    if candidate == reference:
        return "ties"
    better = candidate < reference if metric in LOWER_IS_BETTER else candidate > reference
    return "beats" if better else "within tolerance of"


def _reference_line(reference: tuple[str, str] | None) -> str:
    if reference is None:
        return "no champion yet (nothing deployed to compare with)."
    alias, version = reference
    if alias == CHAMPION:
        return f"champion v{version} existed and was compared."
    return f"no champion yet; compared with {alias} v{version}."


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4f}"


def run(project: Project, options: StageOptions) -> StageResult:
    """The stage as `mlci register` and `mlci run` call it (mlci.stage_specs.STAGES names it)."""
    return run_register(project, options["run_id"], options["tracking_uri"])
