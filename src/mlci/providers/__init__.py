"""Providers render the pipeline model into one CI system's files.

Each provider is a module with a `NAME` and a `render(model, context)` function, which is all
the `Provider` Protocol asks; the registry maps a provider name to its module, imported only
when that provider renders. Adding a provider means adding one module and one template folder.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, cast

from mlci.pipeline import Pipeline


class Provider(Protocol):
    NAME: str

    def render(self, pipelines: tuple[Pipeline, ...], context: Mapping[str, Any]) -> dict[str, bytes]:
        """Every CI file of the project for this provider: {relative path: content}."""
        ...


REGISTRY: dict[str, str] = {
    "github": "mlci.providers.github",
}


def get(name: str) -> Provider | None:
    """The provider called `name`, or None when this mlci version renders nothing for it."""
    module = REGISTRY.get(name)
    return cast(Provider, importlib.import_module(module)) if module else None
