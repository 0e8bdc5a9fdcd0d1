"""The throwaway CI system as a running stage sees it: detected by THROWAWAY_CI, no log
commands; outputs and the summary go to the files THROWAWAY_OUTPUT and THROWAWAY_SUMMARY."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType


class ThrowawayRuntime:
    name = "throwaway"
    markers: tuple[str, ...] = ()
    line_start_marker = ""
    documented_env: Mapping[str, str] = MappingProxyType({"THROWAWAY_CI": "1"})

    def job_env(self, tmp: Path) -> dict[str, str]:
        return {
            **self.documented_env,
            "THROWAWAY_OUTPUT": str(tmp / "outputs.jsonl"),
            "THROWAWAY_SUMMARY": str(tmp / "summary.md"),
        }

    def detected(self, env: Mapping[str, str]) -> bool:
        return env.get("THROWAWAY_CI") == "1"

    def run_url(self, env: Mapping[str, str]) -> str | None:
        run = env.get("THROWAWAY_RUN")
        return f"https://ci.example/runs/{run}" if run else None

    def annotation(
        self,
        level: str,
        message: str,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        title: str | None = None,
    ) -> str | None:
        return None

    def set_outputs(self, values: Mapping[str, object], env: Mapping[str, str]) -> list[str]:
        if env.get("THROWAWAY_OUTPUT"):
            with open(env["THROWAWAY_OUTPUT"], "a", encoding="utf-8") as out:
                out.write(json.dumps({k: "" if v is None else str(v) for k, v in values.items()}) + "\n")
        return []

    def add_summary(self, markdown: str, env: Mapping[str, str]) -> list[str]:
        if env.get("THROWAWAY_SUMMARY"):
            with open(env["THROWAWAY_SUMMARY"], "a", encoding="utf-8") as out:
                out.write(markdown.rstrip("\n") + "\n")
        return []

    def stop_commands(self, token: str) -> tuple[str, str] | None:
        return None


RUNTIME = ThrowawayRuntime()
