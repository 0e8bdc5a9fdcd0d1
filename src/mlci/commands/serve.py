"""`mlci serve`: serve a registered model (the champion by default) in the foreground."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mlci import console, targets
from mlci.config import Project
from mlci.errors import UsageError
from mlci.registry import require_store
from mlci.stages._result import load_project_for
from mlci.targets.base import Target

if TYPE_CHECKING:
    from mlci.monitoring.inference_log import InferenceLogger


def main(args: argparse.Namespace) -> int:
    project = load_project_for(args)
    target = targets.get(project.config.target)
    with target.store_faults(project, args.tracking_uri):
        return _serve(project, target, args)


def _serve(project: Project, target: Target, args: argparse.Namespace) -> int:
    target.require(project, "serve")
    name = project.config.model_name
    uri = target.tracking_uri(project, args.tracking_uri)
    require_store(uri, "serve")
    target.configure_mlflow(project, args.tracking_uri, writes=False, verbose=console.verbose())
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    if args.model_version:
        version, chosen = str(args.model_version), f"version {args.model_version}"
    else:
        # What production serves; before the first production deploy (the local loop deploys
        # to staging only) what staging serves, so `mlci run` then `mlci serve` just works.
        candidates = [args.alias] if args.alias else ["champion", "staging"]
        version = ""
        for alias in candidates:
            try:
                version = str(int(client.get_model_version_by_alias(name, alias).version))
            except MlflowException:
                continue
            chosen = f"alias {alias}"
            break
        if not version:
            raise UsageError(
                f"no model to serve: '{name}' has no {' or '.join(repr(a) for a in candidates)} alias in {uri}; "
                "run 'mlci register' and 'mlci deploy', or pick --version"
            )
    model_uri = f"models:/{name}/{version}"
    try:
        path = target.model_dir(model_uri)
    except MlflowException as exc:
        raise UsageError(
            f"cannot load {model_uri}: {exc.message}; run 'mlci register' and 'mlci deploy', or pick --version"
        ) from None
    port = project.config.deploy.port if args.port is None else args.port
    probabilities = bool(getattr(args, "probabilities", False))
    console.say(f"mlci serve: loading {name} v{version} ({chosen}) ...")

    inference_log = inference_logger(project, f"{name}@{version}")

    def announce(url: str) -> None:
        # Printed only once /health answers: a curl right after this line works.
        if inference_log is not None:
            console.say(
                f"mlci serve: logging every request to {inference_log.folder} (monitor.inference; "
                "monitor.log.enabled: false turns it off)"
            )
        extra = "; answers carry class probabilities" if probabilities else ""
        console.final(
            f"serving {name} v{version} ({chosen}) on {url}{extra}  (POST /invocations, GET /health; Ctrl-C to stop)"
        )

    try:
        target.serve(
            project,
            path,
            port,
            announce,
            probabilities=probabilities,
            verbose=console.verbose(),
            inference_log=inference_log,
        )
    finally:
        # After the server stopped taking requests: what is still queued is written now.
        if inference_log is not None:
            counts = inference_log.close()
            console.final(
                f"mlci serve: inference log: {counts.written} row(s) written to {inference_log.folder} "
                f"in {counts.files} file(s), {counts.dropped} dropped"
            )
    return 0


def inference_logger(project: Project, model_id: str) -> InferenceLogger | None:
    """The log of `mlci serve`'s requests (monitor.log), or None when it is off."""
    settings = project.config.monitor.log
    where = project.config.monitor.inference
    if not settings.enabled:
        console.say("mlci serve: not logging requests (monitor.log.enabled: false)")
        return None
    if "://" in where:
        console.say(f"mlci serve: not logging requests: monitor.inference ({where}) is not a local folder")
        return None
    from mlci.monitoring.inference_log import InferenceLogger

    return InferenceLogger(
        project.root / where,
        model_id,
        queue_rows=settings.queue_rows,
        batch_rows=settings.batch_rows,
        flush_seconds=settings.flush_seconds,
        classifier=project.config.train.task == "classification",
        warn=console.error,
    )
