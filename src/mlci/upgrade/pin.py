"""`ci.mlci_install` when `mlci new` detected it: the pin moves with the vendored actions.

`mlci new` writes into mlci.yaml where CI installs mlci from, detected from how the running
mlci was installed, and records in the manifest's answers whether that value was the detected
default (`mlci_install_detected: true`) or the user's own answer. Vendored actions are
rendered by whichever mlci upgrades the project, so a detected pin must follow them, or CI
would run new actions on an old mlci; a pin the user chose (or edited by hand) is theirs and
is never touched.

Manifests written before the key existed: the value counts as detected only when it is
`mlci==<the mlci_version recorded in the manifest>`, which is exactly the default an older
mlci wrote; anything else is treated as the user's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlci.install_source import InstallSource

DETECTED_KEY = "mlci_install_detected"
_INDEX_PIN = re.compile(r"mlci\s*==\s*[\w.+!-]+")


def was_detected(answers: Mapping[str, Any], manifest_version: str) -> bool:
    """Is the manifest's recorded `mlci_install` the default `mlci new` detected (not an answer)?"""
    value = answers.get("mlci_install")
    if not isinstance(value, str):
        return False
    flag = answers.get(DETECTED_KEY)
    if flag is None:  # a manifest from before the key: what an older mlci wrote by default
        versions = {manifest_version, str(answers.get("mlci_version", manifest_version))}
        return value in {f"mlci=={version}" for version in versions}
    return flag is True


def is_detected_pin(answers: Mapping[str, Any], manifest_version: str, current: str | None) -> bool:
    """Does mlci.yaml (`current`) still hold the detected default the manifest recorded?"""
    return current is not None and was_detected(answers, manifest_version) and current == answers.get("mlci_install")


@dataclass
class PinPlan:
    new: str | None = None  # the value ci.mlci_install moves to (None: it stays)
    notes: list[str] = field(default_factory=list)  # what the user reads about it


def plan_pin(
    answers: Mapping[str, Any],
    manifest_version: str,
    current: str | None,
    actions: str,
    running_version: str,
    detect: Callable[[], InstallSource],
    installed_from_index: Callable[[], bool] = lambda: True,
) -> PinPlan:
    """Where ci.mlci_install (`current`) goes when mlci `running_version` upgrades the project.

    An index pin (`mlci==X`) follows the running version without looking at how mlci was
    installed (no process is spawned); another detected source (a git commit, an archive) is
    detected again, and kept when the running mlci's own source is not one CI can reach.
    """
    plan = PinPlan()
    if actions != "vendored" or current is None:
        return plan  # remote actions install from their pinned checkout; nothing to follow
    if not is_detected_pin(answers, manifest_version, current):
        rendered_for = str(answers.get("mlci_version", manifest_version))
        if current != f"mlci=={running_version}" and rendered_for != running_version:
            plan.notes.append(
                f"ci.mlci_install pinned by you: left as is ({current}); vendored actions now at mlci {running_version}"
            )
        return plan
    if _INDEX_PIN.fullmatch(current):
        new = f"mlci=={running_version}"
        if new != current and not installed_from_index():
            # Reading direct_url.json spawns nothing; say what CI will need instead of guessing.
            plan.notes.append(
                f"ci.mlci_install moves to {new}, but the mlci running this upgrade was not installed from a "
                f"package index: make sure {new} is on yours, or set ci.mlci_install to a source CI can reach"
            )
    else:
        source = detect()
        if source.warning:
            plan.notes.append(f"ci.mlci_install left as is ({current}): {source.warning}")
            return plan
        new = source.requirement
    if new != current:
        plan.new = new
    return plan
