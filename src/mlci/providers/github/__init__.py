"""GitHub Actions: the workflows and composite actions mlci renders (render.py, actions.py,
templates/ with action-pins.json) and the runtime adapter of a stage running there (runtime.py).

This module stays light (no Jinja): providers.detect() imports the package for its runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from mlci.providers.github.runtime import RUNTIME, GitHubRuntime

if TYPE_CHECKING:
    from mlci.pipeline import Pipeline
    from mlci.providers.base import RenderContext


class GitHub:
    name = "github"
    managed: tuple[str, ...] = (".github/",)
    runtime: GitHubRuntime = RUNTIME

    def shipped_templates(self) -> Path:
        root = resources.files(__name__) / "templates"
        # mlci is installed as files (a wheel or a checkout), never zipped: templates are read by path.
        return Path(str(root))

    def render(self, pipelines: tuple[Pipeline, ...], ctx: RenderContext, templates: Path) -> dict[str, bytes]:
        # Imported here for start-up cost only: Jinja and YAML load when files are rendered, not
        # when providers.detect() imports this package for its runtime. No cycle needs it: the
        # submodules never import this package (tests/test_layering.py).
        from mlci.providers.github import render

        return render.render(pipelines, ctx, templates)

    def parse_back(self, files: Mapping[str, bytes]) -> tuple[Pipeline, ...]:
        from mlci.providers.github import parse  # start-up cost, as in render()

        return parse.parse_back(files)


PROVIDER = GitHub()
