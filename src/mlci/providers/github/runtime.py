"""GitHub Actions as a running stage sees it (moved from ci_env.py)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType


def _escape_data(value: str) -> str:
    # GitHub's documented escaping of workflow command data (ActionCommand._escapeDataMappings).
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


class GitHubRuntime:
    name = "github"
    # actions/runner ActionCommand.cs: a line whose TrimStart() begins with `::` (`::error ...::`,
    # `::add-mask::`, `::stop-commands::`), and the legacy `##[command ...]` anywhere in a line.
    markers: tuple[str, ...] = ("##[",)
    line_start_marker = "::"
    # What GitHub sets in every job (its "default environment variables"): what `detected` reads.
    documented_env: Mapping[str, str] = MappingProxyType({"GITHUB_ACTIONS": "true"})

    def job_env(self, tmp: Path) -> dict[str, str]:
        # The runner creates both files empty before each step and reads them after it.
        files = {"GITHUB_OUTPUT": tmp / "github_output", "GITHUB_STEP_SUMMARY": tmp / "step_summary.md"}
        for path in files.values():
            path.touch()
        return {**self.documented_env, **{name: str(path) for name, path in files.items()}}

    def detected(self, env: Mapping[str, str]) -> bool:
        return env.get("GITHUB_ACTIONS") == "true"

    def run_url(self, env: Mapping[str, str]) -> str | None:
        if not env.get("GITHUB_RUN_ID"):
            return None
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env.get('GITHUB_REPOSITORY', '')}/actions/runs/{env['GITHUB_RUN_ID']}"

    def annotation(
        self,
        level: str,
        message: str,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        title: str | None = None,
    ) -> str | None:
        props = [
            f"{k}={_escape_property(str(v))}"
            for k, v in (("file", file), ("line", line), ("col", col), ("title", title))
            if v
        ]
        head = f"::{level} " + ",".join(props)
        return f"{head.rstrip()}::{_escape_data(message)}"

    def set_outputs(self, values: Mapping[str, object], env: Mapping[str, str]) -> list[str]:
        if not env.get("GITHUB_OUTPUT"):
            return []
        with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
            for key, value in values.items():
                text = "" if value is None else str(value)
                if "\n" in text or "\r" in text:
                    # A delimiter nobody can guess, so a value cannot end its block early and
                    # write further outputs (as @actions/core does).
                    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
                    out.write(f"{key}<<{delimiter}\n{text}\n{delimiter}\n")
                else:
                    out.write(f"{key}={text}\n")
        return []

    def add_summary(self, markdown: str, env: Mapping[str, str]) -> list[str]:
        path = env.get("GITHUB_STEP_SUMMARY")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(markdown.rstrip("\n") + "\n\n")
        return []

    def stop_commands(self, token: str) -> tuple[str, str] | None:
        return f"::stop-commands::{token}", f"::{token}::"


RUNTIME = GitHubRuntime()
