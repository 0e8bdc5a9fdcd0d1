"""The targets, by name: where a stage's work happens (the embedded local store, Databricks).

`NAMES` is the one list of them: mlci.yaml's `target:` choices, its JSON Schema enum and the
CLI's `--target` choices are read from it. Importing this module imports no target (config.py,
the lowest layer, reads `NAMES`); `get()` imports the one asked for. A new target is one
package under targets/ exposing `TARGET`, one line here, and it runs the conformance kit
(tests/test_target_contract.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mlci.errors import UsageError

if TYPE_CHECKING:  # the Protocol's module imports config, which reads NAMES from here
    from mlci.targets.base import Target

# name -> the module whose `TARGET` attribute is that target; the first is the default.
NAMES: dict[str, str] = {
    "local": "mlci.targets.local",
    "databricks": "mlci.targets.databricks",
}
DEFAULT = next(iter(NAMES))


def get(name: str) -> Target:
    """The target called `name`; exit 2 naming the known ones otherwise."""
    if name not in NAMES:
        raise UsageError(f"unknown target '{name}'; targets: {', '.join(NAMES)}")
    target: Target = importlib.import_module(NAMES[name]).TARGET
    return target
