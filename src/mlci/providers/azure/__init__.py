"""Azure Pipelines: the one pipeline file and stage templates mlci renders (render.py,
templates/ with task-pins.json), their parse-back (parse.py) and the runtime adapter of a stage
running there (runtime.py).

This module stays light (no Jinja): providers.detect() imports the package for its runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.providers.azure.runtime import RUNTIME, AzureRuntime

if TYPE_CHECKING:
    from mlci.pipeline import Pipeline
    from mlci.providers.base import RenderContext


class Azure:
    name = "azure"
    managed: tuple[str, ...] = ("azure-pipelines.yml", ".azure/")
    runtime: AzureRuntime = RUNTIME

    def shipped_templates(self) -> Path:
        # mlci is installed as files (a wheel or a checkout), never zipped: templates are read by path.
        return Path(str(resources.files(__name__) / "templates"))

    def render(self, pipelines: tuple[Pipeline, ...], ctx: RenderContext, templates: Path) -> dict[str, bytes]:
        # Imported here only for start-up cost: Jinja and YAML load when files are rendered, not
        # when a stage detects its CI system (render.py does not import this package: no cycle).
        from mlci.providers.azure import render

        return render.render(pipelines, ctx, templates)

    def parse_back(self, files: Mapping[str, bytes]) -> tuple[Pipeline, ...]:
        from mlci.providers.azure import parse

        return parse.parse_back(files)


PROVIDER = Azure()
