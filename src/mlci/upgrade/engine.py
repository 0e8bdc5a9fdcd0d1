"""Upgrade one project: plan a three-way merge of every managed file, then apply it atomically.

For each file in the manifest: base = the text mlci rendered last time (recorded in the
manifest), theirs = what this mlci renders now from mlci.yaml, ours = the file on disk.
No git, no network, no old template and no old mlci are needed: the manifest holds the base.

Rules (docs/upgrades.md):
- ours == base: replaced by theirs; theirs == base: left alone; ours == theirs: nothing to do;
- otherwise merged in-process (merge3); conflicts are written with diff3 markers;
- a file the user deleted stays deleted (recorded as opted out);
- a file no longer rendered is removed if unedited, else kept and reported as a conflict;
  after a switch of ci.provider or target (a file the project's provider and target do not
  manage at all) an edited one is released at once: kept, no longer managed, reported;
- a directory a removal leaves empty is removed with it (never one holding any other file);
- a new template file is added, unless a file the team made sits at that path (conflict);
- files mlci never managed are never touched; mlci.yaml is only edited by schema migrations
  and to move a detected ci.mlci_install with the vendored actions (upgrade/pin.py);
- the manifest records the new base only for files that merged cleanly.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlci import __version__, git, install_source
from mlci.config import CONFIG_FILE, SCHEMA_VERSION, CISection, Project
from mlci.errors import ConfigError, UsageError
from mlci.generate import answers_from, render_generated
from mlci.install_source import installed_from_index, installed_source
from mlci.manifest import MANIFEST_PATH, Manifest, load_manifest, sha256
from mlci.paths import check_confined
from mlci.project import project_from_text
from mlci.templates import is_managed
from mlci.typed_yaml import decode_utf8
from mlci.upgrade import migrations, pin
from mlci.upgrade.merge import TextStyle, conflict_marker, merge, normalise

# What happened to a file; the words are what the user reads.
UPDATED = "updated"
MERGED = "merged"
ADDED = "added"
REMOVED = "removed"
OPTED_OUT = "kept (deleted by you)"
RELEASED = "kept (no longer generated: now yours)"
MIGRATED = "migrated"
CONFLICT = "CONFLICT"


@dataclass
class FileChange:
    path: str
    action: str
    old: bytes | None  # on disk before (None: absent)
    new: bytes | None  # to write (None: delete, or leave as is when old is None too)
    detail: str = ""

    @property
    def writes(self) -> bool:
        return self.new is not None and self.new != self.old

    @property
    def deletes(self) -> bool:
        return self.new is None and self.old is not None and self.action == REMOVED


@dataclass
class Plan:
    root: Path
    from_version: str
    to_version: str
    changes: list[FileChange] = field(default_factory=list)
    manifest_text: str = ""
    old_manifest_text: str = ""
    notes: list[str] = field(default_factory=list)  # lines for the user that are no file change
    # The mlci command that plans and applies it: the transaction's messages name it.
    command: Literal["render", "upgrade"] = "upgrade"
    # Directories the plan's removals leave empty, deepest first: removed with them.
    removed_dirs: list[str] = field(default_factory=list)
    # What the project moved between since the manifest was written ("CI from github to x").
    switches: list[str] = field(default_factory=list)

    @property
    def conflicts(self) -> list[FileChange]:
        return [c for c in self.changes if c.action == CONFLICT]

    @property
    def needed(self) -> bool:
        """Would an upgrade write anything (a file or the manifest)?"""
        return bool(self.changes) or self.manifest_text != self.old_manifest_text


def _decode(data: bytes, path: str) -> str:
    return decode_utf8(data, path, "restore it from git or delete it to opt out")


def _kept(path: str, ours: bytes, why: str) -> FileChange:
    """A conflict where the file on disk is left exactly as it is."""
    return FileChange(path, CONFLICT, ours, None, why)


def _follow_pin(
    plan: Plan, manifest: Manifest, ci: CISection, text: str, filename: str, answers: dict[str, Any]
) -> tuple[str, str]:
    """Move a detected ci.mlci_install with the vendored actions (docs/upgrades.md).

    Returns mlci.yaml's text and what was done ("" when the pin stays); records the decision
    in `answers` (the new manifest's) and adds what the user should read to `plan.notes`.
    """
    recorded = manifest.answers
    if pin.DETECTED_KEY not in recorded and manifest.mlci_version != __version__:
        # A manifest from before the key: record what the old rule decided while its version still says it.
        answers[pin.DETECTED_KEY] = pin.was_detected(recorded, manifest.mlci_version)
    decided = pin.plan_pin(
        recorded,
        manifest.mlci_version,
        ci.mlci_install,
        ci.actions,
        __version__,
        installed_source,
        installed_from_index,
    )
    plan.notes.extend(decided.notes)
    if decided.new is None:
        return text, ""
    edited = migrations.set_scalar(text, "ci.mlci_install", decided.new, filename)
    if edited is None:
        plan.notes.append(
            f"ci.mlci_install left as is ({ci.mlci_install}): not a one-line plain or quoted value mlci can edit "
            f"in place; set it to {decided.new!r} yourself"
        )
        return text, ""
    answers["mlci_install"] = decided.new
    answers[pin.DETECTED_KEY] = True
    pyproject = plan.root / "pyproject.toml"  # seeded (the team's): never edited, but it should follow too
    seeded = pyproject.read_text(encoding="utf-8", errors="replace") if pyproject.is_file() else ""
    # The dev extra names mlci with its `all` extra (since the core install runs no ML stage);
    # a project generated before that names it bare, and now needs the extra too.
    found = next(
        (
            old
            for old in (install_source.with_extras(ci.mlci_install or "", ("all",)), ci.mlci_install)
            if old and json.dumps(old) in seeded
        ),
        None,
    )
    if found is not None:
        plan.notes.append(
            f"pyproject.toml's dev extra still installs {found} (your file: left as is); change it to "
            f"{install_source.with_extras(decided.new, ('all',))} to develop against the mlci CI installs"
        )
    return edited, f"ci.mlci_install {ci.mlci_install} -> {decided.new}, with the vendored actions"


def plan_upgrade(root: Path) -> Plan:
    """Everything an upgrade would do, computed in memory; nothing is written."""
    for fixed in (MANIFEST_PATH, CONFIG_FILE):
        check_confined(root, fixed)
    manifest = load_manifest(root)  # validated whole; refuses a manifest from a newer mlci
    old_version = manifest.mlci_version
    plan = Plan(root=root, from_version=old_version, to_version=__version__, old_manifest_text=manifest.to_json())

    config_path = root / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(str(config_path), None, "is missing; restore it from git (the upgrade renders from it)")
    config_bytes = config_path.read_bytes()
    config_text = _decode(config_bytes, str(config_path))
    migrated, steps = migrations.migrate(config_text, str(config_path), SCHEMA_VERSION)
    project = project_from_text(migrated, root)
    answers = {**answers_from(project, manifest), "mlci_version": __version__}
    # After the migration (it may move keys), so both edits land in the one mlci.yaml change.
    migrated, pin_step = _follow_pin(plan, manifest, project.config.ci, migrated, str(config_path), answers)
    if pin_step:
        project = project_from_text(migrated, root)
    if steps or pin_step:
        action = MIGRATED if steps else UPDATED
        detail = "; ".join([*steps, *([pin_step] if pin_step else [])])
        plan.changes.append(FileChange(CONFIG_FILE, action, config_bytes, migrated.encode("utf-8"), detail=detail))

    managed_now = render_generated(answers, migrated, root, keep=is_managed)
    new = plan_managed(plan, manifest, managed_now, answers)
    if plan.conflicts:
        new.mlci_version = old_version  # the upgrade is not complete until the conflicts are resolved
    plan.manifest_text = new.to_json()
    return plan


def plan_render(project: Project, manifest: Manifest) -> Plan:
    """What `mlci render` does: re-render the managed files from mlci.yaml as it is now.

    The same planner as `plan_upgrade`, so the same rule for "edited by hand" (normalised
    text: CRLF and a missing final newline are no edit) and the same three-way merge; only
    mlci.yaml itself is never touched (no schema migration, no pin moved: `mlci upgrade` does
    those). Rendering records the installed mlci in the manifest, as it always did.
    `manifest` is the project's, loaded (load_manifest) under the project lock.
    """
    root = project.root
    plan = Plan(root=root, from_version=manifest.mlci_version, to_version=__version__, command="render")
    plan.old_manifest_text = manifest.to_json()
    answers = answers_from(project, manifest)
    config_text = _decode(project.config_path.read_bytes(), str(project.config_path))
    managed_now = render_generated(answers, config_text, root, keep=is_managed)
    plan.manifest_text = plan_managed(plan, manifest, managed_now, answers).to_json()
    return plan


def _switches(recorded: dict[str, Any], answers: dict[str, Any]) -> list[str]:
    """What changed between the answers the manifest's files were rendered for and mlci.yaml's."""
    moves = [("CI", "provider"), ("target", "target")]
    return [
        f"{label} from {recorded[key]} to {answers[key]}"
        for label, key in moves
        if key in recorded and recorded[key] != answers[key]
    ]


def _left_behind(path: str, answers: dict[str, Any]) -> str | None:
    """Why `path` is outside everything the project's provider and target manage (a switch left
    it behind), or None when they still manage it."""
    provider, target = str(answers["provider"]), str(answers["target"])
    if is_managed(path, provider, target):
        return None
    if is_managed(path, None, target):  # another provider's file
        return f"ci.provider is {provider} now, which does not use it"
    return f"target is {target} now, which does not use it"


def _emptied_dirs(root: Path, changes: list[FileChange]) -> list[str]:
    """The directories holding nothing once the plan's deletions are done, deepest first.

    A directory is emptied only when every entry in it is a file the plan deletes or a
    directory emptied too: one holding any other file (a team's `.github/CODEOWNERS`), a
    symlink, or a file the plan writes stays. The project root is never one.
    """
    deleted = {c.path for c in changes if c.deletes}
    written = {c.path for c in changes if c.writes}
    keep = {parent.as_posix() for path in written for parent in Path(path).parents[:-1]}
    candidates = {parent.as_posix() for path in deleted for parent in Path(path).parents[:-1]}
    emptied: set[str] = set()
    for directory in sorted(candidates - keep, key=lambda d: (-d.count("/"), d)):
        entries = [entry.relative_to(root).as_posix() for entry in (root / directory).iterdir()]
        if all(entry in deleted or entry in emptied for entry in entries):
            emptied.add(directory)
    return sorted(emptied, key=lambda d: (-d.count("/"), d))


def plan_managed(plan: Plan, manifest: Manifest, managed_now: dict[str, bytes], answers: dict[str, Any]) -> Manifest:
    """The one planner of managed files (`mlci upgrade` and `mlci render`): three-way, per file.

    base = what the manifest recorded, ours = the file on disk, theirs = `managed_now` (the
    fresh render). Adds a FileChange to `plan` for every file that changes or conflicts and
    returns the new manifest (new bases only for files that merged cleanly).
    """
    root = plan.root
    new = Manifest(
        mlci_version=__version__,
        answers=answers,
        seeded=dict(manifest.seeded),
        opted_out=list(manifest.opted_out),
    )
    base_label = f"mlci {manifest.mlci_version}"
    theirs_label = f"mlci {__version__}"
    plan.switches = _switches(manifest.answers, answers)

    def record(path: str, text: str) -> None:
        new.managed[path] = {"sha256": sha256(text.encode("utf-8")), "base": text}

    for path in sorted(set(manifest.managed) | set(managed_now)):
        recorded = manifest.managed.get(path)
        theirs_bytes = managed_now.get(path)
        theirs = theirs_bytes.decode("utf-8") if theirs_bytes is not None else None
        check_confined(root, path)
        disk = root / path
        ours_bytes = disk.read_bytes() if disk.is_file() else None
        pending = manifest.pending.get(path, {})

        if recorded is None:
            if theirs is None or path in manifest.opted_out:
                continue  # the user opted out earlier: never re-added
            if ours_bytes is None:
                plan.changes.append(FileChange(path, ADDED, None, theirs_bytes))
                record(path, theirs)
            elif normalise(_decode(ours_bytes, path)) == normalise(theirs):
                record(path, theirs)  # already there, as mlci would write it: adopt it
            else:
                plan.changes.append(
                    _kept(
                        path,
                        ours_bytes,
                        "new in this mlci, but a file mlci did not write is there: left untouched; "
                        "move it away to receive mlci's version",
                    )
                )
            continue

        if ours_bytes is None:  # deleted by the user: stays deleted
            if theirs is not None:
                plan.changes.append(FileChange(path, OPTED_OUT, None, None))
                new.opted_out.append(path)
            continue

        ours = _decode(ours_bytes, path)
        base = recorded["base"]
        if theirs is None:  # the template no longer renders it
            left_behind = _left_behind(path, answers)
            if normalise(ours) == normalise(base):
                plan.changes.append(FileChange(path, REMOVED, ours_bytes, None, left_behind or "no longer generated"))
            elif pending.get("removed") or left_behind:
                # Reported as a conflict last time and still kept, or left behind by a switch of
                # provider or target (no mlci renders it here again): the team keeps it.
                why = f"edited by you; {left_behind}" if left_behind else ""
                plan.changes.append(FileChange(path, RELEASED, ours_bytes, None, why))
                new.seeded[path] = sha256(ours_bytes)
            else:
                plan.changes.append(
                    _kept(
                        path,
                        ours_bytes,
                        "no longer generated, but edited by you: kept; delete it, or keep it and "
                        f"run 'mlci {plan.command}' again to make it yours",
                    )
                )
                new.managed[path] = recorded
                new.pending[path] = {"removed": True}
            continue

        if pending.get("theirs") is not None:
            marker = conflict_marker(ours)
            if marker is not None:
                line, text = marker
                plan.changes.append(
                    FileChange(
                        path,
                        CONFLICT,
                        ours_bytes,
                        None,
                        f"conflict marker {text!r} from an earlier merge left at line {line}; "
                        f"finish resolving it and run 'mlci {plan.command}' again",
                    )
                )
                new.managed[path] = recorded
                new.pending[path] = pending
                continue
            base = str(pending["theirs"])  # resolved by the user against that render

        style = TextStyle.of(ours)
        n_base, n_ours, n_theirs = normalise(base), normalise(ours), normalise(theirs)
        if n_ours == n_theirs or n_theirs == n_base:
            record(path, theirs if n_ours == n_theirs else base)
            continue
        if n_ours == n_base:
            plan.changes.append(FileChange(path, UPDATED, ours_bytes, style.apply(n_theirs).encode("utf-8")))
            record(path, theirs)
            continue
        result = merge(n_base, n_ours, n_theirs, base_label, theirs_label)
        merged_bytes = style.apply(result.text).encode("utf-8")
        if result.conflicts:
            plural = "s" if result.conflicts > 1 else ""
            plan.changes.append(
                FileChange(path, CONFLICT, ours_bytes, merged_bytes, f"{result.conflicts} conflict{plural}")
            )
            new.managed[path] = {"sha256": sha256(base.encode("utf-8")), "base": base}
            new.pending[path] = {"theirs": theirs}
        else:
            plan.changes.append(FileChange(path, MERGED, ours_bytes, merged_bytes))
            record(path, theirs)
    plan.removed_dirs = _emptied_dirs(root, plan.changes)
    return new


def check_clean(plan: Plan) -> None:
    touched = [c.path for c in plan.changes if c.writes or c.deletes]
    dirty = git.dirty_files(plan.root, touched)
    if dirty:
        raise UsageError(
            f"{plan.root}: uncommitted changes in {', '.join(dirty)}; commit or stash them first (--require-clean)"
        )


def unified_diff(change: FileChange) -> str:
    old = change.old.decode("utf-8", "replace") if change.old is not None else ""
    new_bytes = change.new if change.new is not None else (change.old if change.action != REMOVED else None)
    new = new_bytes.decode("utf-8", "replace") if new_bytes is not None else ""
    lines = difflib.unified_diff(
        old.splitlines(True),
        new.splitlines(True),
        fromfile=f"a/{change.path}" if change.old is not None else "/dev/null",
        tofile=f"b/{change.path}" if new_bytes is not None else "/dev/null",
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
