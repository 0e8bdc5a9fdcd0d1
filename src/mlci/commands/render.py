"""`mlci render`: re-render every managed file from mlci.yaml after the user edited it.

Only files mlci manages (CI files, hook config, schema) are touched, and only when the copy on
disk is still what mlci last wrote; a file edited by hand is reported and left alone (the
three-way merge of `mlci upgrade` reconciles those). All changes land together or not at all.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mlci import __version__, fs
from mlci.config import Project
from mlci.errors import CheckFailed
from mlci.generate import answers_from, render_files
from mlci.lock import root_lock
from mlci.stages._result import load_project_for
from mlci.templates import is_managed
from mlci.upgrade.manifest import MANIFEST_PATH, Manifest, build_manifest, load_manifest, sha256
from mlci.upgrade.paths import check_confined
from mlci.upgrade.pin import is_detected_pin


def plan(
    project: Project, manifest: Manifest, rendered: dict[str, bytes]
) -> tuple[dict[str, bytes], list[str], list[str], list[str]]:
    """(files to write, files to delete, files edited by hand and skipped, files the user deleted)."""
    writes: dict[str, bytes] = {}
    deletes: list[str] = []
    edited: list[str] = []
    opted_out: list[str] = []
    managed_now = {p: data for p, data in rendered.items() if is_managed(p)}
    for path in sorted(set(managed_now) | set(manifest.managed)):
        check_confined(project.root, path)
    for path, data in managed_now.items():
        on_disk = project.root / path
        recorded = manifest.managed.get(path)
        if not on_disk.exists():
            if recorded is not None or path in manifest.opted_out:
                opted_out.append(path)  # deleted by the user: stays deleted
            else:
                writes[path] = data  # a file the template gained
            continue
        current = on_disk.read_bytes()
        if current == data:
            continue
        if recorded is not None and sha256(current) == recorded["sha256"]:
            writes[path] = data
        else:
            edited.append(path)
    for path, recorded in manifest.managed.items():
        if path in managed_now:
            continue
        on_disk = project.root / path
        if on_disk.exists() and sha256(on_disk.read_bytes()) == recorded["sha256"]:
            deletes.append(path)
        elif on_disk.exists():
            edited.append(path)
    return writes, deletes, edited, opted_out


def apply(root: Path, writes: dict[str, bytes], deletes: list[str]) -> None:
    """Stage every new file beside its target, then swap them in: no half-rendered project.

    Each staged file has a random name, created with O_EXCL|O_NOFOLLOW (fs.create_temp): a
    fixed name such as `.ci.yml.mlci-tmp` committed as a symlink made the write land in the
    file it pointed to. Every path was checked for symlinks (paths.check_confined) under the
    project lock; a destination that is one is refused before anything is staged.
    """
    for path in [*writes, *deletes]:
        check_confined(root, path)
        fs.refuse_symlink(root / path)
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in writes.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.append((fs.create_temp(target, data), target))
    except BaseException:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
        raise
    for temp, target in staged:
        os.replace(temp, target)
    for path in deletes:
        (root / path).unlink(missing_ok=True)


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
    project = load_project_for(args)
    # Like `mlci upgrade`: two renders (or a render and an upgrade) never interleave their writes.
    with root_lock(project.root, "render"):
        return _render(project)


def _render(project: Project) -> int:
    check_confined(project.root, MANIFEST_PATH)
    manifest = load_manifest(project.root)  # validated whole; refuses a manifest from a newer mlci
    answers = answers_from(project, manifest)
    rendered = render_files(answers, project.config_path.read_text(encoding="utf-8"), project.root)
    rendered.pop(MANIFEST_PATH, None)
    writes, deletes, edited, opted_out = plan(project, manifest, rendered)
    # The new manifest: fresh bases for what is now on disk as rendered, old bases for the rest.
    skipped = set(edited) | set(opted_out)
    new_manifest = build_manifest(
        answers, {p: d for p, d in rendered.items() if p not in skipped}, {p for p in rendered if is_managed(p)}
    )
    for path in edited:
        if path in manifest.managed:
            new_manifest.managed[path] = manifest.managed[path]
    new_manifest.seeded = manifest.seeded
    # A file the user deleted stays deleted: recorded, so `mlci upgrade` does not bring it back either.
    new_manifest.opted_out = sorted(set(manifest.opted_out) | set(opted_out))
    new_manifest.pending = {p: v for p, v in manifest.pending.items() if p in edited}
    writes[MANIFEST_PATH] = new_manifest.to_json().encode("utf-8")
    apply(project.root, writes, deletes)
    for path in sorted(writes):
        if path != MANIFEST_PATH:
            print(f"rendered {path}")
    for path in deletes:
        print(f"removed  {path} (no longer generated)")
    for path in opted_out:
        print(f"skipped  {path} (deleted by you: stays deleted)")
    if edited:
        for path in edited:
            print(f"kept     {path} (edited by hand; 'mlci upgrade' will merge it)")
        raise CheckFailed(f"{len(edited)} managed file(s) edited by hand were not re-rendered: {', '.join(edited)}")
    _warn_pin_behind(project, manifest)
    changed = len(writes) - 1 + len(deletes)
    print(f"render: {changed} file(s) changed" if changed else "render: everything is up to date")
    return 0
