"""The command line: start-up cost, help, version, usage errors."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest
from conftest import run_cli

from mlci import __version__
from mlci.cli import build_parser

HEAVY = ("mlflow", "pandas", "sklearn", "numpy", "databricks", "pyspark", "duckdb", "jinja2", "yaml")


def imported_modules(*argv: str) -> set[str]:
    code = (
        "import sys\nfrom mlci.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    return set(done.stdout.strip().splitlines()[-1].split())


@pytest.mark.parametrize(
    "argv", [("--help",), ("--version",), ("new", "--help"), ("run", "--help"), ("doctor", "--help")]
)
def test_help_and_version_import_nothing_heavy(argv: tuple[str, ...]) -> None:
    assert not imported_modules(*argv) & set(HEAVY)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run_cli("--version")
    assert done.value.code == 0
    assert capsys.readouterr().out == f"mlci {__version__}\n"


COMMANDS = {
    "new",
    "render",
    "upgrade",
    "schema",
    "doctor",
    "lint",
    "test",
    "data-test",
    "data",
    "train",
    "register",
    "deploy",
    "promote",
    "rollback",
    "status",
    "serve",
    "monitor",
    "run",
}


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    """The names a parser dispatches on, from its one subparsers action (not from help text)."""
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(action.choices)


# What Databricks job runs execute: dispatched, never listed in --help (no user runs it).
HIDDEN = {"databricks-task"}


def test_console_script_lists_every_subcommand() -> None:
    assert subcommands(build_parser()) == COMMANDS | HIDDEN
    done = subprocess.run([sys.executable, "-m", "mlci", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    # Each command's own line in the COMMAND list ("    name   help"), not a word somewhere in the help.
    listed = {m.group(1) for m in re.finditer(r"^ {4}([a-z][a-z-]*)(?: {2,}|$)", done.stdout, re.MULTILINE)}
    assert listed == COMMANDS, done.stdout


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run_cli("trian")
    assert done.value.code == 2
    assert "invalid choice: 'trian'" in capsys.readouterr().err


def test_unknown_stage_in_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("run", "lnt") == 2
    assert capsys.readouterr().err == "mlci: error: unknown stage 'lnt'; did you mean 'lint'?\n"


@pytest.mark.parametrize(
    ("command", "phrase"),
    [
        ("promote", "it must have passed the gates and, for production, been verified in staging"),
        ("rollback", "repeated rollbacks walk further back"),
        ("status", "Show challenger, each environment's alias and champion"),
        ("deploy", "a later environment takes exactly the version the one before it verified"),
    ],
)
def test_loop_commands_describe_themselves(command: str, phrase: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; from mlci.cli import main; main(['{command}', '--help'])"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert phrase in " ".join(done.stdout.split())
    assert "mlflow" not in done.stderr


def test_help_never_imports_mlflow_for_the_loop_commands() -> None:
    code = (
        "import sys\nfrom mlci.cli import main\n"
        "for c in ('promote', 'rollback', 'status', 'deploy'):\n"
        "    try:\n        main([c, '--help'])\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('mlflow', 'pandas', 'sklearn') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(("argv", "code"), [(("schema",), 0), (("status", "-C", "/nonexistent-mlci-project"), 2)])
def test_the_command_exits_with_its_code_and_the_heap_frozen(argv: tuple[str, ...], code: int) -> None:
    # No teardown collection over every object the command imported (mlci.cli.exit_without_collecting):
    # an atexit hook registered first runs last and sees the heap frozen; the exit code is the command's.
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: sys.stderr.write(f'frozen={gc.get_freeze_count() > 0}'))\n"
        "from mlci.cli import run\n"
        "sys.argv = ['mlci', *sys.argv[1:]]\n"
        "run()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=False)
    assert done.returncode == code, done.stderr
    assert done.stderr.endswith("frozen=True"), done.stderr
