"""`mlci doctor` on the embedded default: can this machine's commands use the project's store?

A sqlite store is opened and its write lock taken and released with sqlite itself
(store.check_store: nothing is written), or, before the first `mlci train` creates it, the
folder it will be created in must be writable. A tracking server (tracking.uri) is contacted
only with --env: its /health must answer.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlci.config import Project
from mlci.errors import MlciError
from mlci.targets.base import FAIL, OK, Check
from mlci.targets.local import store, tracking


def checks(project: Project, env: str | None) -> tuple[Check, ...]:
    uri = tracking.tracking_uri(project)
    found = [_sqlite_check(project, path) for path in tracking.store_paths(project)]
    if not tracking.is_local_store(uri):
        label = tracking.registry_label(project)
        if env is None:
            found.append(Check(OK, "tracking", f"{label} (mlci doctor --env {_first_env()} checks that it answers)"))
        else:
            found.append(_server_check(uri, label))
    return tuple(found)


def _first_env() -> str:
    from mlci.config import ENVIRONMENTS

    return ENVIRONMENTS[0]


def _shown(project: Project, path: Path) -> str:
    try:
        return path.resolve().relative_to(project.root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _sqlite_check(project: Project, path: Path) -> Check:
    shown = _shown(project, path)
    if not path.exists():
        folder = next(parent for parent in (path.parent, *path.parent.parents) if parent.exists())
        if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
            return Check(OK, "store", f"{shown} does not exist yet: the first 'mlci train' creates it")
        return Check(
            FAIL,
            "store",
            f"{shown} cannot be created: {_shown(project, folder)} is not a writable folder; "
            "make it writable, or set tracking.uri in mlci.yaml",
            infra=True,
        )
    try:
        store.check_store(path, writes=True)
    except MlciError as exc:
        return Check(FAIL, "store", exc.message, infra=True)
    return Check(OK, "store", f"{shown} opens and takes writes")


def _server_check(uri: str, label: str) -> Check:
    try:
        tracking.check_reachable(uri)
    except MlciError as exc:
        return Check(FAIL, "tracking", exc.message, infra=True)
    return Check(OK, "tracking", f"{label} answers")
