"""Azure Pipelines as a running stage sees it: detected by TF_BUILD, it writes the agent's own
annotation (`task.logissue`), output-variable (`task.setvariable`) and summary
(`task.uploadsummary`) commands, every value escaped as azure-pipelines-task-lib does."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
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

    def job_env(self, tmp: Path) -> dict[str, str]:
        # Outputs are log commands; the summary's file goes to the agent's temporary folder.
        return {**self.documented_env, "AGENT_TEMPDIRECTORY": str(tmp)}

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

    def add_summary(self, markdown: str, env: Mapping[str, str]) -> list[str]:
        """The Markdown in a file of its own under the agent's temporary folder (cleaned after
        every job), attached to the run's summary by `task.uploadsummary`: one file per call, so
        each stage of `mlci run` keeps its own section."""
        folder = env.get("AGENT_TEMPDIRECTORY")
        if not folder:
            return []
        index = 1
        while (path := Path(folder) / f"mlci-summary-{index}.md").exists():
            index += 1
        path.write_text(markdown.rstrip("\n") + "\n", encoding="utf-8")
        return [f"##vso[task.uploadsummary]{_escape_data(str(path))}"]

    def stop_commands(self, token: str) -> tuple[str, str] | None:
        return None


RUNTIME = AzureRuntime()
