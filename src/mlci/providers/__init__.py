"""The CI providers, one package per CI system: `mlci/providers/<name>/`.

NAMES is the one list of the providers `ci.provider` accepts: config validation, the JSON
Schema, `mlci new --provider` and its prompt all read it. A provider is listed once it
renders. Adding one is its package (`PROVIDER` in `__init__.py`, `RUNTIME` in `runtime.py`,
templates under `templates/`) plus one line here.

Importing this module stays cheap (no Jinja, no YAML): `mlci --help` and every log line's
guard go through it. A provider package is imported when it is asked for.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from mlci.providers.base import CIRuntime, Provider

# name -> the package whose `PROVIDER` renders it; the first is the default.
NAMES: dict[str, str] = {
    "github": "mlci.providers.github",
    "azure": "mlci.providers.azure",
    "jenkins": "mlci.providers.jenkins",
}
DEFAULT = next(iter(NAMES))
# CI systems whose runtime adapter ships before their renderer: stages detect them and use
# their annotations and outputs, but ci.provider refuses them until they render (their line
# then moves to NAMES).
RUNTIME_ONLY: dict[str, str] = {}


def get(name: str) -> Provider:
    """The provider called `name` (one of NAMES: mlci.yaml's validation guarantees it)."""
    if name not in NAMES:
        raise KeyError(f"no CI provider {name!r}; this mlci renders {', '.join(NAMES)}")
    return cast("Provider", importlib.import_module(NAMES[name]).PROVIDER)


def runtime(name: str) -> CIRuntime:
    """The runtime adapter of the CI system `name` (a provider, or a runtime-only one)."""
    package = NAMES.get(name) or RUNTIME_ONLY[name]
    return cast("CIRuntime", importlib.import_module(f"{package}.runtime").RUNTIME)


def detect(env: Mapping[str, str] = os.environ) -> CIRuntime | None:
    """The CI system this process runs on, or None (a laptop)."""
    for name in (*NAMES, *RUNTIME_ONLY):
        adapter = runtime(name)
        if adapter.detected(env):
            return adapter
    return None


def later_message(name: str) -> str | None:
    """Why `name` is refused as ci.provider when mlci knows the CI system but renders nothing for it."""
    if name not in RUNTIME_ONLY:
        return None
    return f"{name} arrives in a later mlci version; use {' or '.join(NAMES)}"


def managed() -> tuple[str, ...]:
    """Every provider's managed paths (what a manifest may list as managed, whichever provider)."""
    return tuple(entry for name in NAMES for entry in get(name).managed)
