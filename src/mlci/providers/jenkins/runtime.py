"""Jenkins as a running stage sees it (moved from ci_env.py). mlci renders no Jenkinsfile yet
(the provider is not in providers.NAMES), but a stage run there records the build's URL."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType


class JenkinsRuntime:
    name = "jenkins"
    # Jenkins reads no commands from the log (console notes are signed by the controller).
    markers: tuple[str, ...] = ()
    line_start_marker = ""
    # What Jenkins sets in every build (JENKINS_URL, the controller): what `detected` reads.
    documented_env: Mapping[str, str] = MappingProxyType({"JENKINS_URL": "https://ci.example/"})

    def job_env(self, tmp: Path) -> dict[str, str]:
        # A build's workspace; mlci hands nothing over there yet (no Jenkinsfile renders).
        return {**self.documented_env, "WORKSPACE": str(tmp)}

    def detected(self, env: Mapping[str, str]) -> bool:
        return bool(env.get("JENKINS_URL"))

    def run_url(self, env: Mapping[str, str]) -> str | None:
        return env.get("BUILD_URL")

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


RUNTIME = JenkinsRuntime()
