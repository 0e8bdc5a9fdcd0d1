"""The one family of errors mlci raises; the CLI turns each into a line and an exit code.

Exit codes (README.md, docs/stages.md): 0 success; 1 a check failed; 2 bad usage or configuration;
3 infrastructure (server unreachable, timeout); 4 a part of mlci the command needs is not
installed (an extra, e.g. mlci[train]); 130 interrupted.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRA = 3
EXIT_NOT_INSTALLED = 4
EXIT_INTERRUPTED = 130


class MlciError(Exception):
    """Base of every error mlci reports to the user as one line."""

    exit_code = EXIT_USAGE
    # Extra Markdown for the CI job summary (e.g. a table of the failed checks).
    markdown = ""

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        # Structured facts for .mlci/out/<stage>.json (e.g. each failed gate's numbers).
        self.details: dict[str, Any] = details or {}
        # CI step outputs the stage knows although it failed (e.g. tests run, coverage).
        self.outputs: dict[str, Any] = outputs or {}


class UsageError(MlciError):
    """Bad command-line usage or bad input (a project name, a --data answer)."""

    exit_code = EXIT_USAGE


class ConfigError(MlciError):
    """mlci.yaml (or another project file) is invalid; the message names file and line."""

    exit_code = EXIT_USAGE

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class CheckFailed(MlciError):
    """A check ran and did not pass (lint errors, failing tests, a gate not met)."""

    exit_code = EXIT_CHECK_FAILED


class InfraError(MlciError):
    """Something outside the project failed: a server is unreachable, a wait timed out."""

    exit_code = EXIT_INFRA


class NotInstalled(MlciError):
    """The command needs an extra of mlci that is not installed (mlci/extras.py): the fix is
    one pip install, not a change to the project, so it has its own exit code."""

    exit_code = EXIT_NOT_INSTALLED


class SmokeTestFailed(CheckFailed):
    """A served model did not answer its smoke test as it should (an HTTP error, a wrong
    number of predictions). Raised by a target's deploy; a bug in mlci stays a bug (exit 3)."""


class ModelLoadFailed(CheckFailed):
    """A registered model's artifacts are there but the model does not load (its code or
    dependencies fail): the model's failure, exit 1, not mlci's."""


def first_line(exc: BaseException) -> str:
    """An exception's first line of text, or its type's name when it has none: what a one-line
    error quotes of a library's (often multi-line) message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
