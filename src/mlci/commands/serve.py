"""`mlci serve`: serve a registered model (the champion by default) in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlci import console, targets
from mlci.config import Project
from mlci.errors import UsageError
from mlci.stages._result import load_project_for
from mlci.targets.base import Target


def main(args: argparse.Namespace) -> int:
    project = load_project_for(args)
    target = targets.get(project.config.target)
    with target.store_faults(project, args.tracking_uri):
        return _serve(project, target, args)


def _serve(project: Project, target: Target, args: argparse.Namespace) -> int:
    target.require(project, "serve")
    name = project.config.model_name
    uri = target.tracking_uri(project, args.tracking_uri)
    store = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if store is not None and not store.is_file():
        # Say so before MLflow would create (and migrate) an empty database just to look.
        raise UsageError(
            f"no model to serve: the MLflow store {store} does not exist yet; "
            "run 'mlci run' (or mlci train, register and deploy) first"
        )
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

    def announce(url: str) -> None:
        # Printed only once /health answers: a curl right after this line works.
        extra = "; answers carry class probabilities" if probabilities else ""
        console.final(
            f"serving {name} v{version} ({chosen}) on {url}{extra}  (POST /invocations, GET /health; Ctrl-C to stop)"
        )

    target.serve(project, path, port, announce, probabilities=probabilities, verbose=console.verbose())
    return 0
