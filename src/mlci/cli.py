"""mlci's command line: parse arguments, dispatch, and the one error boundary.

Only argparse is imported at start-up; each command's module (and with it MLflow, pandas or
scikit-learn) is imported when that command runs, so `mlci --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path

from mlci import __version__
from mlci.errors import EXIT_INFRA, EXIT_INTERRUPTED, MlciError

STAGES = ("lint", "test", "data-test", "train", "register", "deploy")


def _add_project_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-C",
        "--project-dir",
        metavar="DIR",
        default=None,
        help="project directory (default: the nearest directory with mlci.yaml)",
    )


def _add_tracking(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        default=None,
        help="MLflow tracking URI (overrides MLFLOW_TRACKING_URI and mlci.yaml)",
    )


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default=None,
        help="where the contract's SQL runs (default: mlci.yaml data_test.engine, else duckdb)",
    )
    parser.add_argument(
        "--contract",
        default=None,
        metavar="PATH",
        help="the data contract (default: mlci.yaml data_test.contract, else data/contract.yml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlci",
        description="Production-grade CI/CD for machine-learning repositories.",
        epilog="Exit codes: 0 ok, 1 a check failed, 2 bad usage or config, 3 infrastructure, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"mlci {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    new = sub.add_parser("new", help="scaffold a new ML project", description="Scaffold a new ML project.")
    new.add_argument("name", help="project name: lowercase letters, digits, '-' or '_'")
    new.add_argument(
        "--provider", choices=("github", "azure", "jenkins"), default=None, help="CI system (default: github)"
    )
    new.add_argument(
        "--target", choices=("local", "databricks"), default=None, help="where stages run (default: local)"
    )
    new.add_argument(
        "--data", action="append", default=[], metavar="KEY=VALUE", help="answer a template question; repeatable"
    )
    new.add_argument("--defaults", action="store_true", help="take every default; never prompt")
    new.add_argument("--output-dir", default=".", metavar="DIR", help="directory to create the project in (default: .)")
    new.add_argument("--force", action="store_true", help="write into an existing non-empty directory")
    new.add_argument("--no-git", action="store_true", help="do not run git init")
    new.set_defaults(handler="mlci.commands.new:main")

    render = sub.add_parser("render", help="re-render every managed file from mlci.yaml")
    _add_project_dir(render)
    render.set_defaults(handler="mlci.commands.render:main")

    upgrade = sub.add_parser(
        "upgrade",
        help="three-way merge the installed mlci's templates into one or many projects",
        description="Upgrade managed files: a three-way merge of the manifest's base, your file and the new render.",
        epilog="Exit codes: 0 merged or current, 1 conflicts remain (--check: behind), 2 bad input, 3 write error.",
    )
    upgrade.add_argument("paths", nargs="*", metavar="PATH", help="project directories (default: the current one)")
    upgrade.add_argument("--repos-file", metavar="FILE", help="more project directories, one per line (# comments)")
    mode = upgrade.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a project is behind or drifted; change nothing")
    mode.add_argument("--dry-run", action="store_true", help="print unified diffs; change nothing")
    upgrade.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="projects upgraded in parallel")
    upgrade.add_argument("--report", metavar="FILE", help="write a JSON report of every project")
    upgrade.add_argument(
        "--require-clean", action="store_true", help="refuse (exit 2) if a file to change has uncommitted edits"
    )
    upgrade.add_argument("--branch", metavar="NAME", help="create this git branch in each cleanly upgraded project")
    upgrade.add_argument("--commit", action="store_true", help="commit the upgrade in each cleanly upgraded project")
    upgrade.set_defaults(handler="mlci.commands.upgrade:main")

    schema = sub.add_parser("schema", help="print the JSON Schema of mlci.yaml")
    schema.add_argument("--markdown", action="store_true", help="print the table of keys for docs instead")
    schema.set_defaults(handler="mlci.commands.schema:main")

    lint = sub.add_parser("lint", help="ruff check + ruff format --check (+ pre-commit)")
    _add_project_dir(lint)
    lint.set_defaults(handler="mlci.stages.lint:main")

    test = sub.add_parser("test", help="pytest with JUnit XML and coverage")
    _add_project_dir(test)
    test.set_defaults(handler="mlci.stages.unit_test:main")

    data_test = sub.add_parser(
        "data-test",
        help="check the data contract and drift (DuckDB, or Spark at scale)",
        description="Check data/contract.yml: schema, nulls, ranges, allowed values, uniqueness, row counts, "
        "freshness, SQL expectations and drift against the reference profile.",
    )
    _add_project_dir(data_test)
    _add_data_options(data_test)
    data_test.add_argument(
        "--source",
        default=None,
        metavar="PATH",
        help="check this file instead of the contract's dataset (e.g. the holdout split)",
    )
    data_test.set_defaults(handler="mlci.stages.data_test:main")

    data = sub.add_parser("data", help="data contract tools: profile, schema")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    profile = data_sub.add_parser("profile", help="write the reference profile drift is measured against")
    _add_project_dir(profile)
    _add_data_options(profile)
    profile.add_argument(
        "--source", default=None, metavar="PATH", help="profile this file instead of the contract's dataset"
    )
    profile.add_argument(
        "--output", default=None, metavar="PATH", help="where to write it (default: the contract's drift.reference)"
    )
    profile.set_defaults(handler="mlci.commands.data:profile_main")
    contract_schema = data_sub.add_parser("schema", help="print the JSON Schema of the data contract")
    contract_schema.set_defaults(handler="mlci.commands.data:schema_main")

    train = sub.add_parser("train", help="train the entrypoint under an MLflow run")
    _add_project_dir(train)
    _add_tracking(train)
    train.set_defaults(handler="mlci.stages.train:main")

    register = sub.add_parser("register", help="register the trained model if it passes the gates")
    _add_project_dir(register)
    _add_tracking(register)
    register.add_argument("--run-id", default=None, help="MLflow run to register (default: the last 'mlci train')")
    register.set_defaults(handler="mlci.stages.register:main")

    deploy = sub.add_parser(
        "deploy",
        help="smoke-test a version served, then move the environment's alias",
        description="Serve a version on loopback, smoke-test it with its input example, and only then move the "
        "environment's alias (production also moves champion); aliases are put back on any failure. "
        "Environments, in order: staging, production. --env staging (the default) deploys --version or the "
        "challenger; a later environment takes exactly the version the one before it verified.",
    )
    _add_project_dir(deploy)
    _add_tracking(deploy)
    deploy.add_argument("--target", choices=("local", "databricks"), default=None, help="default: mlci.yaml's target")
    deploy.add_argument("--env", default=None, metavar="NAME", help="environment: staging (default) or production")
    deploy.add_argument(
        "--version", dest="model_version", default=None, metavar="N", help="version to deploy (default: challenger)"
    )
    deploy.set_defaults(handler="mlci.stages.deploy:main")

    promote = sub.add_parser(
        "promote",
        help="release a given version to an environment",
        description="Release version N to an environment: it must have passed the gates and, for production, "
        "been verified in staging. It is smoke-tested served before the alias moves, as deploy does.",
    )
    _add_project_dir(promote)
    _add_tracking(promote)
    promote.add_argument("--env", required=True, metavar="NAME", help="environment: staging or production")
    promote.add_argument("--version", dest="model_version", required=True, metavar="N", help="registered version")
    promote.set_defaults(handler="mlci.commands.models:promote_main")

    rollback = sub.add_parser(
        "rollback",
        help="put an environment back on the version it served before",
        description="Move an environment's alias back to the version it served before its current one "
        "(recorded as the version tag mlci.previous.<env>); repeated rollbacks walk further back.",
    )
    _add_project_dir(rollback)
    _add_tracking(rollback)
    rollback.add_argument("--env", required=True, metavar="NAME", help="environment: staging or production")
    rollback.set_defaults(handler="mlci.commands.models:rollback_main")

    status = sub.add_parser(
        "status",
        help="which version each alias points to, with metrics and lineage",
        description="Show challenger, each environment's alias and champion: version, metrics, run id, git "
        "commit, data digests and when it was deployed.",
    )
    _add_project_dir(status)
    _add_tracking(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler="mlci.commands.models:status_main")

    serve = sub.add_parser("serve", help="serve a registered model in the foreground")
    _add_project_dir(serve)
    _add_tracking(serve)
    serve.add_argument("--alias", default="champion", help="alias to serve (default: champion)")
    serve.add_argument("--version", dest="model_version", default=None, help="serve this version instead of an alias")
    serve.add_argument("--port", type=int, default=None, help="port (default: mlci.yaml deploy.port, 0 = free port)")
    serve.set_defaults(handler="mlci.commands.serve:main")

    run = sub.add_parser("run", help="run the stages in order on the embedded default")
    _add_project_dir(run)
    _add_tracking(run)
    run.add_argument("stages", nargs="*", metavar="STAGE", help=f"stages to run (default: all of {', '.join(STAGES)})")
    run.set_defaults(handler="mlci.commands.run:main")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module_name, _, function_name = args.handler.partition(":")
    # CI systems cancel and time out jobs with SIGTERM: unwind like Ctrl-C, so stages restore
    # what they changed (e.g. deploy's aliases) and record the interruption.
    previous = (
        signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
        return int(handler(args))
    except MlciError as exc:
        print(f"mlci: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mlci: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or an unexpected failure below us: one line, exit 3
        if os.environ.get("MLCI_DEBUG"):
            traceback.print_exc()
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
        print(
            f"mlci: error: unexpected {type(exc).__name__}: {exc}{at} (MLCI_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INFRA
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run() -> None:
    """The `mlci` command: main(), then exit. After an interruption exit at once, without
    waiting for worker threads (e.g. a model server stuck in predict) that cannot be stopped."""
    code = main()
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
