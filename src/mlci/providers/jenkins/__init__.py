"""Jenkins: the declarative Jenkinsfile, the shared library and the upgrade job mlci renders
(render.py, templates/ with pins.json), their parse-back (parse.py) and the runtime adapter of
a stage running there (runtime.py).

This module stays light (no Jinja): providers.detect() imports the package for its runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.providers.jenkins.runtime import RUNTIME, JenkinsRuntime

if TYPE_CHECKING:
    from mlci.pipeline import Pipeline
    from mlci.providers.base import RenderContext


class Jenkins:
    name = "jenkins"
    managed: tuple[str, ...] = ("Jenkinsfile", "Jenkinsfile.upgrade", ".jenkins/")
    runtime: JenkinsRuntime = RUNTIME

    def shipped_templates(self) -> Path:
        # mlci is installed as files (a wheel or a checkout), never zipped: templates are read by path.
        return Path(str(resources.files(__name__) / "templates"))

    def render(self, pipelines: tuple[Pipeline, ...], ctx: RenderContext, templates: Path) -> dict[str, bytes]:
        # Imported here only for start-up cost (Jinja loads when files are rendered); render.py
        # does not import this package: no cycle.
        from mlci.providers.jenkins import render

        return render.render(pipelines, ctx, templates)

    def parse_back(self, files: Mapping[str, bytes]) -> tuple[Pipeline, ...]:
        from mlci.providers.jenkins import parse

        return parse.parse_back(files)


PROVIDER = Jenkins()
