"""Migrations of mlci.yaml's schema, declared as data and applied in order to the file's text.

mlci.yaml belongs to the team: comments, blank lines, key order and quoting must survive a
migration. So a migration never dumps and reloads YAML: it composes the file with PyYAML to
find where each key sits (line and column), edits exactly those characters, and re-composes
before the next edit. A rename keeps the key in its mapping (only the last segment of the
dotted path changes), so indentation and the value below it are untouched.

To change the schema: bump `config.SCHEMA_VERSION`, append a `Migration` to `MIGRATIONS`, add
a CHANGELOG line. Today the schema is 1 and no migration exists yet.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml

from mlci.errors import ConfigError
from mlci.typed_yaml import yaml_error


@dataclass(frozen=True)
class Migration:
    from_schema: int
    to_schema: int
    # (old dotted key, new dotted key); both in the same mapping, e.g. ("ci.python_version", "ci.python").
    renames: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    note: str = ""

    def __post_init__(self) -> None:
        if self.to_schema != self.from_schema + 1:
            raise ValueError(f"migration {self.from_schema} -> {self.to_schema} must go up by exactly one")
        for old, new in self.renames:
            if old.rpartition(".")[0] != new.rpartition(".")[0]:
                raise ValueError(f"rename {old} -> {new} must stay in the same mapping (only the last part changes)")


# The registry, in order. Empty while the schema is 1.
MIGRATIONS: list[Migration] = []


def _compose(text: str, filename: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, text, filename) from None


def _find(node: yaml.Node | None, dotted: str) -> tuple[yaml.MappingNode, yaml.ScalarNode, yaml.Node] | None:
    """(mapping, key node, value node) of a dotted key, or None when the key is absent."""
    parts = dotted.split(".")
    current = node
    for index, part in enumerate(parts):
        if not isinstance(current, yaml.MappingNode):
            return None
        for key, value in current.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                if index == len(parts) - 1:
                    return current, key, value
                current = value
                break
        else:
            return None
    return None


def _replace_span(text: str, node: yaml.Node, replacement: str) -> str:
    start, end = node.start_mark, node.end_mark
    if start.line != end.line:
        raise ValueError("a multi-line key cannot be renamed in place")
    lines = text.splitlines(keepends=True)
    line = lines[start.line]
    lines[start.line] = line[: start.column] + replacement + line[end.column :]
    return "".join(lines)


def _scalar_text(node: yaml.ScalarNode, value: str) -> str:
    if node.style == '"':
        return json.dumps(value)
    if node.style == "'":
        return "'" + value.replace("'", "''") + "'"
    return value


def schema_of(text: str, filename: str) -> int | None:
    found = _find(_compose(text, filename), "schema")
    if found is None or not isinstance(found[2], yaml.ScalarNode):
        return None
    try:
        return int(found[2].value)
    except ValueError:
        return None


def rename_key(text: str, old: str, new: str, filename: str) -> tuple[str, bool]:
    """Rename one key in place; (new text, whether the key was there)."""
    root = _compose(text, filename)
    found = _find(root, old)
    if found is None:
        return text, False
    _, key, _ = found
    clash = _find(root, new)
    if clash is not None:
        raise ConfigError(
            filename,
            clash[1].start_mark.line + 1,
            f"both '{old}' (line {key.start_mark.line + 1}) and '{new}' are set; keep only '{new}'",
        )
    return _replace_span(text, key, _scalar_text(key, new.rpartition(".")[2])), True


def migrate(
    text: str, filename: str, target: int, registry: Sequence[Migration] | None = None
) -> tuple[str, list[str]]:
    """Run every migration from the file's schema up to `target`; (new text, what was done)."""
    registry = MIGRATIONS if registry is None else registry
    schema = schema_of(text, filename)
    done: list[str] = []
    if schema is None or schema >= target:
        return text, done
    while schema < target:
        step = next((m for m in registry if m.from_schema == schema), None)
        if step is None:
            raise ConfigError(
                filename, None, f"schema {schema} has no migration to {schema + 1} in this mlci; upgrade mlci"
            )
        for old, new in step.renames:
            text, present = rename_key(text, old, new, filename)
            if present:
                done.append(f"renamed {old} -> {new}")
        found = _find(_compose(text, filename), "schema")
        assert found is not None
        text = _replace_span(text, found[2], str(step.to_schema))
        done.append(f"schema {step.from_schema} -> {step.to_schema}" + (f" ({step.note})" if step.note else ""))
        schema = step.to_schema
    return text, done


def set_scalar(text: str, dotted: str, value: str, filename: str) -> str | None:
    """`text` with the one-line scalar at `dotted` replaced by `value`; None when it cannot be done in place.

    Only that scalar's characters change (comments, quoting of every other key, blank lines stay);
    the value is written double-quoted through `yaml_str`, the escaping the scaffold uses, so it
    is never spliced raw. A block scalar, an anchor or a tag on the value is not edited (None).
    """
    from mlci.templates import yaml_str

    found = _find(_compose(text, filename), dotted)
    if found is None or not isinstance(found[2], yaml.ScalarNode):
        return None
    node = found[2]
    start, end = node.start_mark, node.end_mark
    span = text[start.index : end.index]
    if node.style not in (None, '"', "'") or start.line != end.line or span.startswith(("&", "!", "*")):
        return None
    edited = text[: start.index] + yaml_str(value) + text[end.index :]
    # Proof that exactly that value changed: the rest of the document loads as before.
    before, after = yaml.safe_load(text), yaml.safe_load(edited)
    node_path = dotted.split(".")
    target = before
    for part in node_path[:-1]:
        target = target[part]
    target[node_path[-1]] = value
    return edited if before == after else None
