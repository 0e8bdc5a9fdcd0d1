"""Azure Pipelines: the one pipeline file and stage templates mlci renders (render.py,
templates/ with task-pins.json), their parse-back (parse.py) and the runtime adapter of a stage
running there (runtime.py).

This module stays light (no Jinja): providers.detect() imports the package for its runtime.
"""

from __future__ import annotations

from mlci.providers.azure.runtime import RUNTIME, AzureRuntime
from mlci.providers.base import PackagedProvider


class Azure(PackagedProvider):
    name = "azure"
    managed: tuple[str, ...] = ("azure-pipelines.yml", ".azure/")
    runtime: AzureRuntime = RUNTIME
    package = __name__


PROVIDER = Azure()
