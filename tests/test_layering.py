"""The import layering of mlci, enforced: `lint-imports` runs the contracts in pyproject.toml
([tool.importlinter]: the layers, no cycles), and the registries config.py reads stay leaves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grimp
from conftest import REPO


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
    """config.py, stage_specs.py and console.py (below providers and targets) import the two
    registries (NAMES, providers.detect): the contracts exempt exactly those imports, which
    holds only while the registries import nothing of mlci at run time but errors (a provider
    or a target is imported by get(), when asked for)."""
    # cache_dir=None: grimp's default cache is .grimp_cache/ in the working directory (the checkout).
    graph = grimp.build_graph("mlci", exclude_type_checking_imports=True, cache_dir=None)
    for registry in ("mlci.providers", "mlci.targets"):
        imported = graph.find_modules_directly_imported_by(registry)
        assert imported <= {"mlci.errors"}, (registry, sorted(imported))
