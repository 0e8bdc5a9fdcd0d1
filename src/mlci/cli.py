"""mlci's command line: parse arguments, dispatch, and the one error boundary.

Only argparse is imported at start-up; each command's module (and with it MLflow, pandas or
scikit-learn) is imported when that command runs, so `mlci --help` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mlci import __version__, console, providers, targets
from mlci.errors import EXIT_INFRA, EXIT_INTERRUPTED, MlciError
from mlci.log_guard import json_document
from mlci.stage_specs import (
    CHECKS,
    CONTRACT,
    ENGINE,
    NAMES,
    PROJECT_DIR,
    RUN_NAMES,
    STAGES,
    TRACKING_URI,
    Option,
    StageSpec,
)

# Commands besides the stages that record a result (.mlci/out/<command>.json, run.json):
# --json prints it, --quiet keeps only its final line.
RECORDED_COMMANDS = ("run", "promote", "rollback")
RECORDED = (*NAMES, *RECORDED_COMMANDS)
# A reader closed the pipe (`mlci data schema | head`): exit as a killed-by-SIGPIPE tool does.
EXIT_BROKEN_PIPE = 141


def _output_flags() -> argparse.ArgumentParser:
    """--quiet, --verbose, --json: accepted before the command and after it alike."""
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_mutually_exclusive_group()
    group.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print only errors and the final line"
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also list every passing check and the tools' full output",
    )
    flags.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the result (stage record or run summary) as JSON on stdout; everything else on stderr",
    )
    return flags


def _add_options(parser: argparse.ArgumentParser, *options: Option) -> None:
    """Add options written as data (mlci.stages.Option), so a shared one is written once."""
    for option in options:
        if option.positional:
            parser.add_argument(
                option.flags[0], nargs="?", default=option.default, choices=option.choices, help=option.help
            )
            continue
        settings: dict[str, Any] = {"dest": option.dest, "default": option.default, "help": option.help}
        if option.flag_only:
            settings["action"] = "store_true"
        else:
            settings.update(metavar=option.metavar, choices=option.choices)
        parser.add_argument(*option.flags, **settings)


def build_parser(stages: Sequence[StageSpec] = STAGES) -> argparse.ArgumentParser:
    """The whole command line; one subcommand per stage of `stages` (the registry's, but a test's own too)."""
    flags = _output_flags()
    parser = argparse.ArgumentParser(
        prog="mlci",
        description="Production-grade CI/CD for machine-learning repositories.",
        epilog=(
            "Exit codes: 0 ok, 1 a check failed, 2 bad usage or config, 3 infrastructure, "
            "4 an extra of mlci not installed, 130 interrupted."
        ),
        parents=[flags],
    )
    parser.add_argument("--version", action="version", version=f"mlci {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        parent: argparse._SubParsersAction,  # type: ignore[type-arg]
        name: str,
        help: str,
        description: str | None = None,
        epilog: str | None = None,
    ) -> argparse.ArgumentParser:
        # Every subcommand takes the output flags too, and --help always describes it.
        described = description or help[0].upper() + help[1:] + "."
        made: argparse.ArgumentParser = parent.add_parser(
            name, help=help, description=described, epilog=epilog, parents=[flags]
        )
        return made

    new = command(
        sub,
        "new",
        "scaffold a new ML project",
        "Scaffold a new ML project: code, data contract, tests, mlci.yaml and the CI files of --provider.",
    )
    new.add_argument("name", help="project name: lowercase letters, digits, '-' or '_'")
    new.add_argument(
        "--provider", choices=tuple(providers.NAMES), default=None, help=f"CI system (default: {providers.DEFAULT})"
    )
    new.add_argument("--target", choices=tuple(targets.NAMES), default=None, help="where stages run (default: local)")
    new.add_argument(
        "--data", action="append", default=[], metavar="KEY=VALUE", help="answer a template question; repeatable"
    )
    new.add_argument("--defaults", action="store_true", help="take every default; never prompt")
    new.add_argument("--output-dir", default=".", metavar="DIR", help="directory to create the project in (default: .)")
    new.add_argument(
        "--force",
        action="store_true",
        help="write into an existing non-empty directory: adds missing files, refuses any that differ",
    )
    new.add_argument(
        "--overwrite",
        action="append",
        default=[],
        metavar="PATH",
        help="with --force: replace this existing file (relative to the project); repeatable",
    )
    new.add_argument("--no-git", action="store_true", help="do not run git init")
    new.set_defaults(handler="mlci.commands.new:main")

    render = command(
        sub,
        "render",
        "re-render every managed file from mlci.yaml",
        "Re-render the CI files and every other file mlci manages from mlci.yaml (after you edit it, "
        "e.g. to switch ci.provider); files edited by hand are merged three ways, as 'mlci upgrade' does.",
    )
    _add_options(render, PROJECT_DIR)
    render.set_defaults(handler="mlci.commands.render:main")

    upgrade = command(
        sub,
        "upgrade",
        "three-way merge the installed mlci's templates into one or many projects",
        "Upgrade managed files: a three-way merge of the manifest's base, your file and the new render.",
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

    doctor = command(
        sub,
        "doctor",
        "check mlci.yaml, the tools, the generated files and the target",
        "Check that mlci.yaml is valid, the tools the stages need are installed, the generated files are "
        "current with mlci.yaml and the target's store or workspaces are usable: one line per check "
        "(ok, warn or fail, with the fix). Writes nothing and prints no secret.",
        epilog="Exit codes: 0 every check ok or warn, 1 a check failed, 2 mlci.yaml is invalid, "
        "3 the store or workspace does not answer.",
    )
    _add_options(doctor, PROJECT_DIR)
    doctor.add_argument(
        "--env",
        default=None,
        metavar="NAME",
        help="also sign in to this environment (staging or production) and check that it answers, and as whom",
    )
    doctor.set_defaults(handler="mlci.commands.doctor:main")

    schema = command(sub, "schema", "print the JSON Schema of mlci.yaml")
    schema.add_argument("--markdown", action="store_true", help="print the table of keys for docs instead")
    schema.set_defaults(handler="mlci.commands.schema:main")

    # Every stage: its options as data, run by the one stage entry (stages/_result.py).
    for spec in stages:
        stage = command(sub, spec.name, spec.help, spec.description)
        _add_options(stage, PROJECT_DIR, *spec.options)
        stage.set_defaults(handler="mlci.stages._result:stage_main", spec=spec)

    data = command(sub, "data", "data contract tools: profile, schema")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    profile = command(data_sub, "profile", "write the reference profile drift is measured against")
    _add_options(profile, PROJECT_DIR, ENGINE, CONTRACT)
    profile.add_argument(
        "--source", default=None, metavar="PATH", help="profile this file instead of the contract's dataset"
    )
    profile.add_argument(
        "--output", default=None, metavar="PATH", help="where to write it (default: the contract's drift.reference)"
    )
    profile.set_defaults(handler="mlci.commands.data:profile_main", extras=("data",))
    contract_schema = command(data_sub, "schema", "print the JSON Schema of the data contract")
    contract_schema.set_defaults(handler="mlci.commands.data:schema_main")

    promote = command(
        sub,
        "promote",
        "release a given version to an environment",
        "Release version N to an environment: it must have passed the gates and, for production, "
        "been verified in staging. It is smoke-tested served before the alias moves, as deploy does.",
    )
    _add_options(promote, PROJECT_DIR, TRACKING_URI)
    promote.add_argument("--env", required=True, metavar="NAME", help="environment: staging or production")
    promote.add_argument("--version", dest="model_version", required=True, metavar="N", help="registered version")
    promote.set_defaults(handler="mlci.commands.models:promote_main", extras=("serve",))  # smoke-tests it served

    rollback = command(
        sub,
        "rollback",
        "put an environment back on the version it served before",
        "Move an environment's alias back to the version it served before its current one "
        "(recorded as the version tag mlci.previous.<env>); repeated rollbacks walk further back.",
    )
    _add_options(rollback, PROJECT_DIR, TRACKING_URI)
    rollback.add_argument("--env", required=True, metavar="NAME", help="environment: staging or production")
    rollback.set_defaults(handler="mlci.commands.models:rollback_main", extras=("train",))

    status = command(
        sub,
        "status",
        "which version each alias points to, with metrics and lineage",
        "Show challenger, each environment's alias and champion: version, metrics, run id, git "
        "commit, data digests and when it was deployed (--json: as JSON).",
    )
    _add_options(status, PROJECT_DIR, TRACKING_URI)
    status.set_defaults(handler="mlci.commands.models:status_main", extras=("train",))

    serve = command(
        sub,
        "serve",
        "serve a registered model in the foreground",
        "Serve a registered model (the champion by default) over HTTP until Ctrl-C: POST /invocations, GET /health.",
    )
    _add_options(serve, PROJECT_DIR, TRACKING_URI)
    serve.add_argument(
        "--alias",
        default=None,
        help="alias to serve (default: champion; before the first production deploy, staging)",
    )
    serve.add_argument("--version", dest="model_version", default=None, help="serve this version instead of an alias")
    serve.add_argument(
        "--port", type=int, default=None, help="port (default: mlci.yaml deploy.port, 5055; 0 = a free port)"
    )
    serve.add_argument(
        "--probabilities",
        action="store_true",
        help="answer each row with its label and class probabilities (models with predict_proba)",
    )
    serve.set_defaults(handler="mlci.commands.serve:main", extras=("serve",))

    run = command(
        sub,
        "run",
        "run the stages in order on the embedded default",
        f"Run the stages in order ({', '.join(RUN_NAMES)}), the checks ({', '.join(CHECKS)}) side by side, "
        "stop at the first failure, print a summary table and write .mlci/out/run.json.",
    )
    _add_options(run, PROJECT_DIR, TRACKING_URI)
    run.add_argument(
        "--target",
        choices=tuple(targets.NAMES),
        default=None,
        help="where train, register and deploy run (default: mlci.yaml's target)",
    )
    run.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        metavar="N",
        help=f"run up to N of the checks ({', '.join(CHECKS)}) at once (default: one per core, at most "
        f"{len(CHECKS)}; 1: one stage after another)",
    )
    run.add_argument("stages", nargs="*", metavar="STAGE", help=f"stages to run (default: {', '.join(RUN_NAMES)})")
    run.set_defaults(handler="mlci.commands.run:main")

    # What a Databricks job run executes (mlci's own task; no help: it is not a user's command).
    task = sub.add_parser("databricks-task", parents=[flags], description="Run mlci's part of a Databricks job.")
    task_kinds = task.add_subparsers(dest="task", metavar="TASK", required=True)
    train_task = task_kinds.add_parser("train", description="Train from what 'mlci train' uploaded to --source.")
    train_task.add_argument("--source", required=True, metavar="VOLUME_PATH")
    batch_task = task_kinds.add_parser("batch", description="Score --input with --model into --output.")
    batch_task.add_argument("--model", required=True, metavar="URI")
    batch_task.add_argument("--input", required=True, metavar="TABLE")
    batch_task.add_argument("--output", required=True, metavar="TABLE")
    unpack_task = task_kinds.add_parser(
        "monitor-unpack", description="Unpack the endpoint's --payload table into the inference table --output."
    )
    unpack_task.add_argument("--payload", required=True, metavar="TABLE")
    unpack_task.add_argument("--output", required=True, metavar="TABLE")
    unpack_task.add_argument(
        "--model", required=True, metavar="URI", help="the model whose signature names the features"
    )
    unpack_task.add_argument("--labels", metavar="TABLE", help="labels (request_id, label, label_timestamp) to join")
    check_task = task_kinds.add_parser(
        "monitor-check", description="Refresh the monitor of --table, read its metric tables, decide on a retrain."
    )
    check_task.add_argument("--config", required=True, metavar="VOLUME_PATH", help="the mlci.yaml deploy uploaded")
    check_task.add_argument("--table", required=True, metavar="TABLE", help="the monitored inference table")
    task.set_defaults(handler="mlci.commands.databricks_task:main")
    return parser


def main(argv: Sequence[str] | None = None, stages: Sequence[StageSpec] = STAGES) -> int:
    parser = build_parser(stages)
    args = parser.parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    recorded = args.command in RECORDED_COMMANDS or any(args.command == spec.name for spec in stages)
    console.configure(
        quiet=bool(getattr(args, "quiet", False)), verbose=bool(getattr(args, "verbose", False)), json=as_json
    )
    module_name, _, function_name = args.handler.partition(":")
    # CI systems cancel and time out jobs with SIGTERM: unwind like Ctrl-C, so stages restore
    # what they changed (e.g. deploy's aliases) and record the interruption.
    previous = (
        signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    )
    code = EXIT_INFRA
    failure = ""  # the one line an error printed, for --json when no stage record was made
    try:
        with console.guarded_streams(), _stdout_for(recorded, as_json):
            if getattr(args, "extras", ()):  # a command beside the stages: its extras, all named at once
                from mlci import extras

                extras.require(args.command, args.extras)
            handler = getattr(importlib.import_module(module_name), function_name)
            code = int(handler(args))
        if recorded and console.quiet() and not as_json and console.result():
            console.final(str(console.result().get("summary", "")))  # type: ignore[union-attr]
    except MlciError as exc:
        failure = exc.message
        console.error(f"mlci: error: {exc.message}")
        code = exc.exit_code
    except KeyboardInterrupt:
        failure = "interrupted"
        console.error("mlci: interrupted")
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_went_away()
    except ModuleNotFoundError as exc:  # a command beside the stages (serve, promote, profile ...)
        from mlci import extras

        missing = extras.missing_module(args.command, tuple(getattr(args, "extras", ())), exc)
        line = f"mlci: error: {missing.message}" if missing else unexpected(exc)
        failure = line.removeprefix("mlci: error: ")
        console.error(line)
        code = missing.exit_code if missing else EXIT_INFRA
    except Exception as exc:  # a bug or an unexpected failure below us: one line, exit 3
        line = unexpected(exc)
        failure = line.removeprefix("mlci: error: ")
        console.error(line)
        code = EXIT_INFRA
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    try:
        if as_json and recorded:
            # Failing before any stage record (bad mlci.yaml, the project lock taken) still
            # answers in JSON, so a script reading stdout never gets nothing.
            payload = console.result()
            if payload is None and code != 0:
                payload = {
                    "stage": args.command,
                    "status": "interrupted" if code == EXIT_INTERRUPTED else "failed" if code == 1 else "error",
                    "exit_code": code,
                    "summary": failure,
                }
            if payload is not None:
                # Data, not log text: unguarded, so every value comes back exact; json_document
                # makes sure no line of it is a CI command (see there).
                print(json_document(payload))
        sys.stdout.flush()
    except BrokenPipeError:
        return _reader_went_away()
    return code


def unexpected(exc: BaseException) -> str:
    """The one line for an exception mlci did not expect (a bug, or user code failing)."""
    if os.environ.get("MLCI_DEBUG"):
        traceback.print_exception(exc)
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return f"mlci: error: unexpected {type(exc).__name__}: {exc}{at} (MLCI_DEBUG=1 shows the traceback)"


@contextlib.contextmanager
def _stdout_for(recorded: bool, as_json: bool) -> Iterator[None]:
    """--json: stdout carries only the JSON, so whatever a stage prints goes to stderr.
    --quiet: a stage's own lines are dropped; the boundary prints the final line."""
    if recorded and as_json:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    elif recorded and console.quiet():
        with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
            yield
    else:
        yield


def _reader_went_away() -> int:
    """The reader of our stdout closed it (`| head`): stop quietly, as `cat` does. Point
    stdout at /dev/null so the interpreter's last flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (a test's capture)
        pass
    return EXIT_BROKEN_PIPE


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
    exit_without_collecting(code)


def exit_without_collecting(code: int) -> None:
    """sys.exit(code), without the cycle collector's passes over every object at teardown.

    Clearing the modules of MLflow, SQLAlchemy, pandas and scikit-learn at interpreter exit
    runs the collector over the whole heap again and again: 0.6 s after `import mlflow` alone,
    1.3 s at the end of `mlci run`, each mlci process of a CI job paying it. Frozen objects are
    skipped by it; atexit handlers, flushes and every object freed by reference count still run
    (only cyclic garbage is left, which CPython never promises to finalise at exit)."""
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
