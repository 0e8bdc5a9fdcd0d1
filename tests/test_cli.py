"""The command line: start-up cost, help, version, usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import run_cli

from mlci import __version__

HEAVY = ("mlflow", "pandas", "sklearn", "numpy", "databricks", "pyspark", "duckdb", "jinja2", "yaml")


def imported_modules(*argv: str) -> set[str]:
    code = (
        "import sys\nfrom mlci.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    return set(done.stdout.strip().splitlines()[-1].split())


@pytest.mark.parametrize("argv", [("--help",), ("--version",), ("new", "--help"), ("run", "--help")])
def test_help_and_version_import_nothing_heavy(argv: tuple[str, ...]) -> None:
    assert not imported_modules(*argv) & set(HEAVY)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run_cli("--version")
    assert done.value.code == 0
    assert capsys.readouterr().out == f"mlci {__version__}\n"


def test_console_script_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "mlci", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    for command in ("new", "render", "lint", "test", "train", "register", "deploy", "serve", "run", "schema"):
        assert command in done.stdout


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
