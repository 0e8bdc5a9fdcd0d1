"""`mlci serve`: serve a registered model (the champion by default) in the foreground."""

from __future__ import annotations

import argparse

from mlci.errors import UsageError
from mlci.stages._result import load_project_for
from mlci.targets import local


def main(args: argparse.Namespace) -> int:
    project = load_project_for(args)
    local.configure_mlflow(project, args.tracking_uri)
    from mlflow.exceptions import MlflowException

    from mlci import serving

    name = project.config.model_name
    uri = f"models:/{name}/{args.model_version}" if args.model_version else f"models:/{name}@{args.alias}"
    try:
        path = local.model_dir(uri)
    except MlflowException as exc:
        raise UsageError(
            f"cannot load {uri}: {exc.message}; run 'mlci register' and 'mlci deploy', or pick --version"
        ) from None
    port = project.config.deploy.port if args.port is None else args.port
    print(f"mlci serve: {uri}", flush=True)
    serving.serve_forever(path, project.config.deploy.host, port)
    return 0
