"""The throwaway CI system as a running stage sees it: detected by THROWAWAY_CI, no log commands."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


class ThrowawayRuntime:
    name = "throwaway"
    markers: tuple[str, ...] = ()
    line_start_marker = ""
    documented_env: Mapping[str, str] = MappingProxyType({"THROWAWAY_CI": "1"})

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
        return []

    def add_summary(self, markdown: str, env: Mapping[str, str]) -> list[str]:
        return []

    def stop_commands(self, token: str) -> tuple[str, str] | None:
        return None


RUNTIME = ThrowawayRuntime()
