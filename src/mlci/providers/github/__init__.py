"""GitHub Actions: the workflows and composite actions mlci renders (render.py, actions.py,
templates/ with action-pins.json) and the runtime adapter of a stage running there (runtime.py).

This module stays light (no Jinja): providers.detect() imports the package for its runtime.
"""

from __future__ import annotations

from mlci.providers.base import PackagedProvider
from mlci.providers.github.runtime import RUNTIME, GitHubRuntime


class GitHub(PackagedProvider):
    name = "github"
    managed: tuple[str, ...] = (".github/",)
    runtime: GitHubRuntime = RUNTIME
    package = __name__


PROVIDER = GitHub()
