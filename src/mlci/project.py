"""A project as every command loads it: mlci.yaml validated by config.py, then by its target.

config.py is the lowest layer: it checks mlci.yaml's types and target-neutral rules and knows
no target's code (it reads only the registry's names). A target's own rules (Databricks: Unity
Catalog's three-level model name) are checked here, one step above, at the line of the key
they are about, so every command that loads mlci.yaml (the stages, `mlci render`, `mlci
upgrade`, `mlci new` rendering its CI files) refuses the same file with the same line.
"""

from __future__ import annotations

from pathlib import Path

from mlci import config, targets
from mlci.config import Project


def check_target(project: Project) -> Project:
    """The project, once its target found nothing to refuse; else a ConfigError at the key."""
    for problem in targets.get(project.config.target).validate(project.config):
        raise project.error(problem.key, problem.message)
    return project


def load_project(root: Path | None = None) -> Project:
    """The nearest project at or above `root` (default: the working directory), fully checked."""
    return check_target(config.load_project(root))


def project_from_text(text: str, root: Path) -> Project:
    """mlci.yaml text validated as if it were `root`/mlci.yaml, by config.py and by its target."""
    return check_target(config.project_from_text(text, root))
