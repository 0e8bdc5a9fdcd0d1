"""The one rule for the names a project takes: its import package and its project name.

Called from both doors a name comes in by: `mlci new` (answers.py, the answer's source in the
message) and mlci.yaml (config.py, file:line in the message). Each function returns what is
wrong, or None; the caller adds where the name came from and the fix.

The dependency-module scan reads installed distributions' metadata: it runs only when a name
is checked (never at import), and find_spec comes first so most names never trigger it.
"""

from __future__ import annotations

import keyword
import re
import sys
from functools import cache
from pathlib import Path

# Import names a project may not take whatever is installed: what its own pipeline imports,
# and directories the scaffold itself uses.
RESERVED_PACKAGES = frozenset({"mlci", "mlflow", "sklearn", "pandas", "numpy", "test", "tests", "src", "data"})
# Device names Windows maps into every directory, whatever the case and extension ('nul.txt').
WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{n}" for n in range(1, 10)), *(f"lpt{n}" for n in range(1, 10))}
)
_PACKAGE_RE = re.compile(r"[a-z_][a-z0-9_]*")


def is_windows_reserved(name: str) -> bool:
    """True for 'con', 'NUL', 'com1.txt', 'aux .md': Windows ignores case, extension and trailing spaces."""
    return name.split(".", 1)[0].rstrip(" ").lower() in WINDOWS_RESERVED


def package_problem(package: str, project_root: Path | None = None) -> str | None:
    """Why `package` cannot be the project's import name (a phrase after "package 'x'"), or None.

    `project_root`: the project the name belongs to, when it exists; its own package found under
    it (src/ on the path, an editable install) is no dependency, and is not looked up further.
    """
    if not _PACKAGE_RE.fullmatch(package) or keyword.iskeyword(package):
        return "is not a lowercase Python identifier"
    if is_windows_reserved(package):
        return f"is a device name Windows reserves, so src/{package}/ could not be checked out there"
    if package in RESERVED_PACKAGES:
        return f"would shadow the '{package}' module the pipeline imports"
    if package in sys.stdlib_module_names:
        return f"would shadow Python's standard-library module '{package}'"
    if shadows_dependency(package, project_root):
        return f"would shadow the '{package}' module the pipeline imports"
    return None


def project_name_problem(name: str) -> str | None:
    """Why a name that matches the project-name pattern still cannot be one, or None."""
    if is_windows_reserved(name):
        return "is a device name Windows reserves, so the repository could not be checked out there"
    return None


# The extras of mlci a stage may install (pyproject.toml): a project's package must not shadow
# a module of any of them.
STAGE_EXTRAS = ("all", "spark", "delta", "databricks")


@cache
def dependency_modules() -> frozenset[str]:
    """Top-level modules of mlci's installed dependencies and stage extras (mlflow, yaml, jinja2, ...).

    A project package of one of these names would be imported instead of it whenever the
    project's src/ comes first on sys.path, as it does under `mlci train` and pytest.
    """
    from importlib import metadata

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    closure: set[str] = set()
    # mlci's own extras count (what the stages install: mlci[train] brings mlflow, ...), not
    # those of its dependencies, which are not installed with mlci.
    from mlci.extras import extra_requirements

    pending = ["mlci", *(name for extra in STAGE_EXTRAS for name in extra_requirements(extra) or ())]
    while pending:
        name = normal(pending.pop())
        if name in closure:
            continue
        closure.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requirements:
            if re.search(r"\bextra\s*==", requirement):  # an optional extra: not installed with mlci
                continue
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
            if match:
                pending.append(match.group(1))
    closure.discard("mlci")  # its own name is in RESERVED_PACKAGES
    modules: set[str] = set()
    for name in closure:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        top_level = distribution.read_text("top_level.txt")
        if top_level is not None:
            modules.update(line.strip() for line in top_level.splitlines())
        else:  # no top_level.txt (hatchling, flit, maturin): the first component of each RECORD path
            for line in (distribution.read_text("RECORD") or "").splitlines():
                first = line.split(",", 1)[0].split("/", 1)[0]
                if not first.endswith((".dist-info", ".data", ".pth")) and first not in ("..", "__pycache__"):
                    modules.add(first.removesuffix(".py"))
    return frozenset(module for module in modules if module.isidentifier())


def shadows_dependency(package: str, project_root: Path | None = None) -> bool:
    """Whether `package` is a top-level module one of mlci's dependencies installs.

    find_spec first: most names are not installed at all, and the project's own package found
    inside the project is not a dependency; only then are the distributions read (~0.2 s),
    which every stage of a project would otherwise pay on a runner where it is installed.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return package in dependency_modules()  # something of that name is there but does not import
    if spec is None:
        return False
    if project_root is not None and spec.origin and Path(spec.origin).resolve().is_relative_to(project_root.resolve()):
        return False
    return package in dependency_modules()
