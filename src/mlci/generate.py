"""Generating a project: every file mlci writes, rendered in memory, and the writer that lands them.

The core of `mlci new`, `mlci render` and `mlci upgrade` (which renders the managed files to
merge against): commands call it, it never imports a command. Rendering returns bytes keyed by
relative POSIX path; nothing touches the disk until `write_tree`, which lands a whole tree or
nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlci import fs
from mlci.config import Project, json_schema
from mlci.contracts.format import json_schema as contract_json_schema
from mlci.errors import UsageError
from mlci.manifest import MANIFEST_PATH, Manifest, build_manifest
from mlci.paths import check_no_symlink
from mlci.templates import is_managed, render_project

# The second fix mlci new offers when a path it writes is refused (paths.check_no_symlink).
OTHER_DIR = " or choose another --output-dir"


def answers_from(project: Project, manifest: Manifest) -> dict[str, Any]:
    """The manifest's answers, overridden by what mlci.yaml now says."""
    cfg = project.config
    return {
        **manifest.answers,
        "name": cfg.project.name,
        "package": cfg.project.package,
        "description": cfg.project.description,
        "provider": cfg.ci.provider,
        "target": cfg.target,
        "python_version": cfg.ci.python,
        "model_name": cfg.model_name,
    }


def render_generated(
    answers: Mapping[str, Any],
    config_text: str | None = None,
    root: Path | None = None,
    keep: Callable[[str], bool] | None = None,
) -> dict[str, bytes]:
    """Every file mlci generates for a project but the manifest (or those whose path `keep` accepts).

    CI files come from `config_text` (mlci.yaml as the user now has it) when given.
    """
    files = render_project(answers, config_text, root, keep=keep)
    schemas: dict[str, Callable[[], dict[str, Any]]] = {
        ".mlci/mlci.schema.json": json_schema,
        ".mlci/contract.schema.json": contract_json_schema,
    }
    for path, schema in schemas.items():
        if keep is None or keep(path):
            files[path] = (json.dumps(schema(), indent=2) + "\n").encode("utf-8")
    return files


def render_files(
    answers: Mapping[str, Any], config_text: str | None = None, root: Path | None = None
) -> dict[str, bytes]:
    """Every file of a project, the manifest included, keyed by relative path.

    CI files come from `config_text` (mlci.yaml as the user now has it) when given.
    """
    files = render_generated(answers, config_text, root)
    managed = {path for path in files if is_managed(path, str(answers["provider"]), str(answers["target"]))}
    manifest = build_manifest(answers, files, managed)
    files[MANIFEST_PATH] = manifest.to_json().encode("utf-8")
    return files


def plan_existing(target: Path, files: Mapping[str, bytes], overwrite: frozenset[str]) -> dict[str, bytes]:
    """Of `files`, those to write into the existing directory `target`: missing ones, and the
    differing ones named in `overwrite`. Identical files are left alone.

    Everything is checked before anything is written: a symlink (or a file where a directory
    belongs) on the way to any path mlci would write, and every existing file whose content
    differs (unless named in `overwrite`), refuse the whole scaffold (exit 2).
    """
    unknown = sorted(overwrite - set(files))
    if unknown:
        raise UsageError(f"--overwrite {unknown[0]}: mlci new does not write that file; name a file of the project")
    to_write: dict[str, bytes] = {}
    differing: list[str] = []
    for relative, data in files.items():
        check_no_symlink(target, relative, OTHER_DIR)
        destination = target / relative
        if not destination.exists():
            to_write[relative] = data
        elif destination.is_file() and destination.read_bytes() == data:
            continue
        elif relative in overwrite and not destination.is_dir():
            to_write[relative] = data
        else:
            differing.append(relative)
    if differing:
        listed = ", ".join(differing[:10]) + (f" and {len(differing) - 10} more" if len(differing) > 10 else "")
        raise UsageError(
            f"{target}: {len(differing)} existing file(s) differ from what mlci new would write: {listed}; "
            "nothing was written. Keep them (choose another --output-dir), or replace each with --overwrite PATH"
        )
    return to_write


def write_tree(target: Path, files: Mapping[str, bytes], force: bool) -> None:
    """Write into a sibling temp dir, then move into place: all files or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.mlci-", dir=target.parent))
    # mkdtemp makes the directory 0700; give the project the permissions of a plain mkdir.
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    try:
        for relative, data in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if not target.exists():
            os.replace(staging, target)
            return
        if any(target.iterdir()) and not force:  # re-checked: it may have appeared meanwhile
            raise UsageError(f"{target} is not empty; choose another name or --output-dir, or pass --force")
        for relative in files:
            check_no_symlink(target, relative, OTHER_DIR)  # re-checked: nothing written before all passed
        for relative in files:
            fs.replace_no_follow(staging / relative, target, relative)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
