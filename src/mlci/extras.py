"""Whether the extras of mlci a stage needs are installed, read from mlci's installed metadata.

mlci's core install runs `mlci new`, render, upgrade, doctor, schema and lint; every other stage
needs an extra (pyproject.toml, named by StageSpec.extras). A stage checks its extras before
it starts, from mlci's Requires-Dist (`...; extra == "train"`), so a missing one is one line
naming it rather than an ImportError half-way; `missing_module` is the fallback for an import
that fails anyway (an extra whose metadata says installed, a package removed since).

Imported only when a stage runs: `mlci --help` and `mlci --version` read none of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import metadata

from mlci.errors import NotInstalled

# Modules whose distribution is named otherwise (the rest: the module's name, `_` as `-`).
_DISTRIBUTION_OF_MODULE = {"sklearn": "scikit-learn", "databricks": "databricks-sdk", "yaml": "pyyaml"}


def normal(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_requirements(extra: str, requires: Iterable[str] | None = None) -> tuple[str, ...] | None:
    """The distributions the extra `extra` of mlci installs (its own extras' too, `mlci[train]`),
    as normalised names; None when mlci's metadata is not there (a source tree run as is)."""
    from packaging.requirements import InvalidRequirement, Requirement

    if requires is None:
        try:
            requires = metadata.requires("mlci") or []
        except metadata.PackageNotFoundError:
            return None
    parsed = []
    for line in requires:
        try:
            parsed.append(Requirement(line))
        except InvalidRequirement:
            continue
    names: list[str] = []
    pending, seen = [extra], set()
    while pending:
        wanted = pending.pop()
        if wanted in seen:
            continue
        seen.add(wanted)
        for requirement in parsed:
            marker = requirement.marker
            # Only what this extra adds: the core requirements evaluate true without an extra too.
            if marker is None or not marker.evaluate({"extra": wanted}) or marker.evaluate({"extra": ""}):
                continue
            if normal(requirement.name) == "mlci":
                pending.extend(requirement.extras)
            else:
                names.append(normal(requirement.name))
    return tuple(dict.fromkeys(names))


def installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def not_installed(command: str, extras: tuple[str, ...], missing: Iterable[str]) -> NotInstalled:
    """The one-line error: `mlci train needs mlci[train] (not installed: mlflow, ...): pip install ...`."""
    wanted = f"mlci[{','.join(extras)}]"
    return NotInstalled(
        f"mlci {command} needs {wanted} (not installed: {', '.join(missing)}): pip install '{wanted}'",
        details={"extras": list(extras), "missing": list(missing)},
    )


def require(command: str, extras: tuple[str, ...]) -> None:
    """Raise NotInstalled when a distribution of `extras` is missing; nothing to check (no
    extras, or mlci's metadata is not installed) passes."""
    missing: list[str] = []
    lacking: list[str] = []
    for extra in extras:
        names = extra_requirements(extra)
        if names is None:
            return
        absent = [name for name in names if not installed(name)]
        if absent:
            lacking.append(extra)
            missing += [name for name in absent if name not in missing]
    if missing:
        raise not_installed(command, tuple(lacking), sorted(missing))


def missing_module(command: str, extras: tuple[str, ...], exc: ModuleNotFoundError) -> NotInstalled | None:
    """The one-line error for an import of a stage that failed, when the module is one an extra
    of mlci installs (the stage's own extras first); None for any other module (a bug, or the
    project's own import), which is left to surface as it is."""
    module = (exc.name or "").partition(".")[0]
    if not module:
        return None
    distribution = normal(_DISTRIBUTION_OF_MODULE.get(module, module))
    try:
        requires = metadata.requires("mlci") or []
    except metadata.PackageNotFoundError:
        requires = []
    others = set()
    for line in requires:
        found = re.search(r"""extra\s*==\s*["']([\w.-]+)["']""", line)
        if found and found.group(1) not in (*extras, "test", "bench", "all"):
            others.add(found.group(1))
    # The command's own extras first, then the smallest extra that installs it (train, not serve).
    sizes = {extra: extra_requirements(extra, requires) or () for extra in (*extras, *others)}
    for extra in (*extras, *sorted(others, key=lambda e: (len(sizes[e]), e))):
        if distribution in sizes[extra]:
            return not_installed(command, (extra,), [distribution])
    return None
