"""`mlci render`: re-render every managed file from mlci.yaml after the user edited it.

Only files mlci manages (CI files, hook config, schema) are touched. The planner is
`mlci upgrade`'s (upgrade/engine.py): one rule for "edited by hand", and a file edited by hand
is merged three ways (base: what the manifest recorded, ours: the file on disk, theirs: the
fresh render). Exit 0 when everything merged; exit 1 on a conflict, written with diff3 markers
and recorded in the manifest exactly as `mlci upgrade` does. All changes land together or not
at all (upgrade/transaction.py). mlci.yaml itself is never edited: that is `mlci upgrade`'s job.

A changed `ci.provider` or `target` switches the project: the new one's files are added, the
old one's removed where unedited, and an edited one kept as the team's (docs/upgrades.md).
"""

from __future__ import annotations

import argparse
import sys

from mlci import __version__
from mlci.config import Project
from mlci.errors import CheckFailed
from mlci.lock import root_lock
from mlci.manifest import MANIFEST_PATH, Manifest, load_manifest
from mlci.paths import check_confined
from mlci.project import load_project
from mlci.stages._result import project_root_for
from mlci.upgrade import engine, transaction
from mlci.upgrade.merge import conflict_marker
from mlci.upgrade.pin import is_detected_pin


def _warn_pin_behind(project: Project, manifest: Manifest) -> None:
    """Rendered as mlci.yaml says, but a newer mlci renders newer vendored actions than a detected pin installs."""
    ci = project.config.ci
    rendered_for = str(manifest.answers.get("mlci_version", manifest.mlci_version))
    if (
        ci.actions == "vendored"
        and rendered_for != __version__
        and is_detected_pin(manifest.answers, manifest.mlci_version, ci.mlci_install)
    ):
        # One line whatever the manifest holds: both values are validated (manifest.py, mlci.yaml's
        # schema), and anything that is still not printable text is shown as its repr.
        print(
            f"warning: the vendored actions are mlci {__version__}'s, but ci.mlci_install still installs "
            f"{_one_line(str(ci.mlci_install))} (detected for mlci {_one_line(rendered_for)}); "
            "run 'mlci upgrade' to move the pin with them",
            file=sys.stderr,
        )


def _one_line(text: str) -> str:
    return text if text.isprintable() else repr(text)


def main(args: argparse.Namespace) -> int:
    root = project_root_for(args)
    # Like `mlci upgrade`: two renders (or a render and an upgrade) never interleave their writes.
    with root_lock(root, "render"):
        # A killed render or upgrade: put its files back first, mlci.yaml among them, so the
        # project is read as it was, not half-migrated.
        for note in transaction.recover(root, "render"):
            print(f"restored {note} (left half-written by an interrupted run)")
        return _render(load_project(root))


# What `mlci render` prints for each change of the shared plan (upgrade/engine.py), by its action.
_SAID = {
    engine.UPDATED: "rendered {path}",
    engine.ADDED: "rendered {path}",
    engine.MERGED: "merged   {path} (edited by hand: your edits kept, mlci's changes merged in)",
    engine.REMOVED: "removed  {path} ({detail})",
    engine.OPTED_OUT: "skipped  {path} (deleted by you: stays deleted)",
    engine.RELEASED: "kept     {path} (no longer generated: now yours)",
    engine.CONFLICT: "CONFLICT {path} ({detail})",
}
# A file released by a switch of provider or target (its detail says why): mlci lets go of it.
_RELEASED_BY_SWITCH = "kept     {path} ({detail}: no longer managed by mlci, now yours)"


def _render(project: Project) -> int:
    check_confined(project.root, MANIFEST_PATH)
    manifest = load_manifest(project.root)  # validated whole; refuses a manifest from a newer mlci
    plan = engine.plan_render(project, manifest)
    if plan.needed:
        transaction.apply_plan(plan)  # every file and the manifest land together, or none does
    for change in plan.changes:
        said = _RELEASED_BY_SWITCH if change.action == engine.RELEASED and change.detail else _SAID[change.action]
        print(said.format(path=change.path, detail=change.detail))
    for directory in plan.removed_dirs:
        print(f"removed  {directory}/ (empty)")
    if plan.conflicts:
        files = ", ".join(c.path for c in plan.conflicts)
        # A merged file holds markers to resolve; a kept one holds none (its line above says why).
        marked = [
            c.new is not None and conflict_marker(c.new.decode("utf-8", "replace")) is not None for c in plan.conflicts
        ]
        how = (
            "resolve the markers ('<<<<<<<')"
            if all(marked)
            else "do what the line above each says"
            if not any(marked)
            else "resolve the markers ('<<<<<<<') and do what the line above each kept file says"
        )
        raise CheckFailed(
            f"{len(plan.conflicts)} managed file(s) with conflicts: {files}; {how}, then run 'mlci render' again"
        )
    _warn_pin_behind(project, manifest)
    print(_summary(plan))
    return 0


def _summary(plan: engine.Plan) -> str:
    if plan.switches:
        count = {action: sum(1 for c in plan.changes if c.action == action) for action in _SAID}
        updated = count[engine.UPDATED] + count[engine.MERGED]  # files both render, changed by the switch
        return (
            f"render: switched {' and '.join(plan.switches)}: {count[engine.ADDED]} added, "
            f"{count[engine.REMOVED]} removed, {count[engine.RELEASED]} kept (edited by you)"
            + (f", {updated} updated" if updated else "")
        )
    changed = sum(1 for c in plan.changes if c.writes or c.deletes)
    return f"render: {changed} file(s) changed" if changed else "render: everything is up to date"
