"""The import layering of mlci, enforced: `lint-imports` runs the contracts in pyproject.toml
([tool.importlinter]: the layers, no cycles), and the registries config.py reads stay leaves."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from conftest import REPO

from mlci import providers


def test_lint_imports_keeps_every_contract() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^Contracts: [1-9][0-9]* kept, 0 broken\.$", done.stdout, re.M), done.stdout


def test_the_registries_stay_leaves() -> None:
    """config.py and stage_specs.py (below providers and targets) import the two registries
    (NAMES): the contracts exempt exactly those imports, which holds only while the registries
    import nothing of mlci at run time but errors (a provider or a target is imported by get(),
    when asked for)."""
    # cache_dir=None: grimp's default cache is .grimp_cache/ in the working directory (the checkout).
    graph = grimp.build_graph("mlci", exclude_type_checking_imports=True, cache_dir=None)
    for registry in ("mlci.providers", "mlci.targets"):
        imported = graph.find_modules_directly_imported_by(registry)
        assert imported <= {"mlci.errors"}, (registry, sorted(imported))


PROVIDER_PACKAGES = sorted({*providers.NAMES.values(), *providers.RUNTIME_ONLY.values()})


def submodules(package: str) -> list[str]:
    return sorted(f"{package}.{m.name}" for m in pkgutil.iter_modules(importlib.import_module(package).__path__))


@pytest.mark.parametrize("package", PROVIDER_PACKAGES)
def test_no_provider_submodule_imports_its_package(package: str) -> None:
    """A provider's __init__ imports its renderer and parser inside methods for start-up cost
    only (no Jinja or YAML for providers.detect()): no submodule may import the package back,
    or hoisting that import would be a circular ImportError."""
    graph = grimp.build_graph("mlci", exclude_type_checking_imports=True, cache_dir=None)
    chains = {module: graph.find_shortest_chain(importer=module, imported=package) for module in submodules(package)}
    assert {module: chain for module, chain in chains.items() if chain} == {}


# Every order of importing a package's submodules in a fresh interpreter, each order starting
# with none of the package's modules loaded (dropped from sys.modules in between; the core
# modules below stay loaded: a cycle through them is lint-imports' to find, and re-running
# them for each of 24 orders would cost seconds).
EVERY_ORDER = """
import itertools, sys, importlib
package, modules = sys.argv[1], sys.argv[2:]
for order in itertools.permutations(modules):
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]
    for module in order:
        importlib.import_module(module)
print(len(modules))
"""


@pytest.mark.parametrize("package", PROVIDER_PACKAGES)
def test_provider_submodules_import_in_every_order(package: str) -> None:
    modules = submodules(package)
    done = subprocess.run(
        [sys.executable, "-c", EVERY_ORDER, package, *modules], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(len(modules))


def test_github_names_what_its_package_names() -> None:
    """render.py and actions.py write GitHub's name and template folder themselves (they may
    not import the package): the same values as its PROVIDER."""
    from mlci.providers.github import PROVIDER, actions, render

    assert (PROVIDER.name, PROVIDER.shipped_templates()) == (render.NAME, actions.SHIPPED_TEMPLATES)
