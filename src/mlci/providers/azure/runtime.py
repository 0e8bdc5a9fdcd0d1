"""Azure Pipelines as a running stage sees it (moved from ci_env.py). mlci renders no Azure
pipelines yet (the provider is not in providers.NAMES), but a stage run there is detected and
writes the agent's own annotation and output-variable commands."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


def _escape_data(value: str) -> str:
    # As azure-pipelines-task-lib's escapeData: %AZP25 is the agent's escape for '%' itself.
    return value.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace("]", "%5D").replace(";", "%3B")


class AzureRuntime:
    name = "azure"
    # azure-pipelines-agent Command.cs: `##vso[area.action ...]` anywhere in a line; `##[group]`,
    # `##[error]` ... are formatting commands of the log viewer.
    markers: tuple[str, ...] = ("##[", "##vso[")
    line_start_marker = ""
    # What Azure Pipelines sets in every job (its predefined variables): what `detected` reads.
    documented_env: Mapping[str, str] = MappingProxyType({"TF_BUILD": "True"})

    def detected(self, env: Mapping[str, str]) -> bool:
        return env.get("TF_BUILD", "").lower() == "true"

    def run_url(self, env: Mapping[str, str]) -> str | None:
        if not env.get("BUILD_BUILDID"):
            return None
        base = env.get("SYSTEM_COLLECTIONURI", "")
        return f"{base}{env.get('SYSTEM_TEAMPROJECT', '')}/_build/results?buildId={env['BUILD_BUILDID']}"

    def annotation(
        self,
        level: str,
        message: str,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        title: str | None = None,  # logissue has no title; its type is the level
    ) -> str | None:
        fields = ";".join(
            f"{k}={_escape_property(str(v))}"
            for k, v in (("type", level), ("sourcepath", file), ("linenumber", line), ("columnnumber", col))
            if v
        )
        return f"##vso[task.logissue {fields}]{_escape_data(message)}"

    def set_outputs(self, values: Mapping[str, object], env: Mapping[str, str]) -> list[str]:
        return [
            f"##vso[task.setvariable variable={_escape_property(key)};isOutput=true]"
            f"{_escape_data('' if value is None else str(value))}"
            for key, value in values.items()
        ]

    def add_summary(self, markdown: str, env: Mapping[str, str]) -> None:
        return None  # a summary needs an uploaded file (task.uploadsummary); not written yet

    def stop_commands(self, token: str) -> tuple[str, str] | None:
        return None


RUNTIME = AzureRuntime()
