"""A typed YAML loader: frozen dataclasses are the schema, and every error names the file and line.

mlci.yaml (config.py) and data contracts (contracts/format.py) are both read through it. The
loader walks a root dataclass's type hints, recording the line of every key (dotted paths with
list indexes, `columns[3].min`); the JSON Schema for editors is generated from the same
dataclasses (`json_schema_of`). What it refuses, whatever the file: YAML aliases, nesting
deeper than MAX_DEPTH, NaN and infinities, duplicate keys, unknown keys and non-UTF-8 text,
each as one ConfigError naming the file, the line and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Literal

import yaml

from mlci.errors import ConfigError

# How deep lists and mappings may nest in mlci.yaml and contracts. Neither needs more than a
# handful of levels; the bound keeps loading far from Python's recursion limit (a file nested
# 1000 deep raised RecursionError) whatever the parser.
MAX_DEPTH = 64


NON_FINITE_FIX = "write a finite number (NaN and infinities cannot be checked against; to leave a bound open, omit it)"


def field(doc: str, default: Any = MISSING, **constraints: Any) -> Any:
    """A schema field: its documentation, default and JSON-Schema style constraints."""
    meta = {"doc": doc, **constraints}
    if default is MISSING:
        return dataclasses.field(metadata=meta)
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader; the C version when available (mlci.yaml is read by every stage)."""


def read_text_file(path: Path) -> str:
    """A project file's text (mlci.yaml, a contract): a ConfigError naming the file, the line
    and the byte when it is not UTF-8 or cannot be read, never a decoding traceback."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot be read ({exc.strerror or exc}); make it a readable file") from None
    return decode_utf8(data, str(path), "save it as UTF-8")


def decode_utf8(data: bytes, where: str, fix: str) -> str:
    """`data` as UTF-8 text; else a ConfigError naming `where`, the line and the byte, and `fix`
    (the one decoding rule for every file mlci reads as text)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problem = f"is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); {fix}"
        raise ConfigError(where, line, problem) from None


T = typing.TypeVar("T")


def parse_yaml(text: str, filename: str, root: type[T], empty_hint: str = "") -> tuple[T, dict[str, int]]:
    """Validate YAML text against any root dataclass; returns the value and the line of every key.

    Keys are dotted paths with list indexes (`columns[3].min`); errors are ConfigErrors naming
    `filename` and the line.
    """
    _check_structure(text, filename)
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise yaml_error(exc, text, filename) from None
        if node is None:
            raise ConfigError(filename, 1, f"the file is empty; {empty_hint or 'fill it in'}")
        walker = _Walker(loader, filename, Path(filename).name)
        value: T = walker.convert(node, root, "")
    finally:
        loader.dispose()
    return value, walker.lines


def _check_structure(text: str, filename: str) -> None:
    """Refuse, before anything is built, what would make loading cost more than the text's
    size: lists and mappings nested deeper than MAX_DEPTH, and aliases.

    An alias repeats a whole subtree: nine lines of nested aliases (the "billion laughs") are
    10**9 values once expanded, and `mlci train` hung logging them as parameters. mlci.yaml
    and contracts are short files edited by hand and read on CI from pull requests; writing a
    value out is never a hardship, so aliases are refused outright rather than bounded by a
    size budget nobody could predict. The check runs on the parser's event stream, which is
    iterative: no recursion, whatever the nesting.
    """
    too_deep = f"lists and mappings are nested more than {MAX_DEPTH} levels deep here; flatten the structure"
    loader = _Loader(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(
                    filename,
                    line,
                    f"YAML alias '*{event.anchor}' is not allowed (an alias can expand a few lines into "
                    "billions of values); write the value out in full",
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(filename, line, too_deep)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own bound, met first in [[[...
            mark = getattr(exc, "problem_mark", None)
            raise ConfigError(filename, mark.line + 1 if mark else None, too_deep) from None
        raise yaml_error(exc, text, filename) from None
    finally:
        loader.dispose()


def yaml_error(exc: yaml.YAMLError, text: str, filename: str) -> ConfigError:
    """A YAML syntax or reader error as a ConfigError naming the line."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return ConfigError(filename, mark.line + 1, f"invalid YAML: {getattr(exc, 'problem', exc)}; fix the syntax")
    position = getattr(exc, "position", None)  # a ReaderError: a character YAML does not allow
    line = text[:position].count("\n") + 1 if isinstance(position, int) else None
    reason = getattr(exc, "reason", None) or str(exc)
    return ConfigError(filename, line, f"invalid YAML: {reason}; remove the control character")


class _Walker:
    """Converts YAML nodes into the typed dataclasses, recording the line of every key."""

    def __init__(self, loader: Any, filename: str, root_label: str) -> None:
        self.loader = loader
        self.filename = filename
        self.root_label = root_label
        self.lines: dict[str, int] = {}

    def fail(self, node: yaml.Node, problem: str) -> ConfigError:
        return ConfigError(self.filename, node.start_mark.line + 1, problem)

    def convert(self, node: yaml.Node, tp: Any, where: str, meta: dict[str, Any] | None = None) -> Any:
        meta = meta or {}
        origin = typing.get_origin(tp)
        label = f"'{where}'" if where else "the top level"
        if dataclasses.is_dataclass(tp):
            return self._dataclass(node, tp, where)
        if tp is Any:  # any one scalar: a string, number or boolean
            value = self._scalar(node, where)
            if value is None or not isinstance(value, str | int | float | bool):
                raise self.fail(node, f"{label} must be a string, number or true/false, not {value!r}")
            return value
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
                return None
            return self.convert(node, args[0], where, meta)
        if origin is Literal:
            choices = typing.get_args(tp)
            value = self._scalar(node, where)
            if value not in choices:
                # A strict cut-off: 'flaot' suggests 'float', but 'gitlab' must not suggest 'github'.
                hint = did_you_mean(str(value), [str(c) for c in choices], cutoff=0.8)
                raise self.fail(node, f"{label} is {value!r}; use one of {', '.join(map(str, choices))}{hint}")
            return value
        if origin is list:
            if not isinstance(node, yaml.SequenceNode):
                raise self.fail(node, f"{label} must be a list, e.g. [{_example(typing.get_args(tp)[0])}]")
            items = []
            for index, item in enumerate(node.value):
                self.lines[f"{where}[{index}]"] = item.start_mark.line + 1
                items.append(self.convert(item, typing.get_args(tp)[0], f"{where}[{index}]"))
            return items
        if origin is dict:
            if not isinstance(node, yaml.MappingNode):
                raise self.fail(node, f"{label} must be a mapping of names to values")
            return self._plain(node, where)
        value = self._scalar(node, where)
        ok = (
            (tp is bool and isinstance(value, bool))
            or (tp is int and isinstance(value, int) and not isinstance(value, bool))
            or (tp is float and isinstance(value, int | float) and not isinstance(value, bool))
            or (tp is str and isinstance(value, str))
        )
        if not ok:
            raise self.fail(
                node, f"{label} must be {_type_name(tp)}, not {_type_name(type(value))} {value!r}; e.g. {_example(tp)}"
            )
        if tp is float:
            try:
                value = float(value)
            except OverflowError:  # an integer of hundreds of digits
                raise self.fail(node, f"{where} is too large a number; {NON_FINITE_FIX}") from None
        self._constraints(node, value, label, meta)
        return value

    def _constraints(self, node: yaml.Node, value: Any, label: str, meta: dict[str, Any]) -> None:
        if value in meta.get("unavailable", {}):
            raise self.fail(node, f"{label} is {value!r}: {meta['unavailable'][value]}")
        if "choices" in meta and value not in meta["choices"]:
            hint = did_you_mean(str(value), list(meta["choices"]), cutoff=0.8)  # as for Literal choices
            raise self.fail(node, f"{label} is {value!r}; use one of {', '.join(meta['choices'])}{hint}")
        if "minimum" in meta and value < meta["minimum"]:
            raise self.fail(node, f"{label} is {value}; it must be at least {meta['minimum']}")
        if "maximum" in meta and value > meta["maximum"]:
            raise self.fail(node, f"{label} is {value}; it must be at most {meta['maximum']}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):  # fullmatch: no trailing newline
            if "pattern_fix" in meta:  # a pattern too long to read as the fix says it in words
                raise self.fail(node, f"{label} is {value!r}; {meta['pattern_fix']}")
            raise self.fail(node, f"{label} is {value!r}, which does not match {meta['pattern']}")

    def _scalar(self, node: yaml.Node, where: str) -> Any:
        """The one place a YAML scalar becomes a value, so every number in the file is checked
        here: YAML reads .nan, .inf, -.Inf, !!float nan and 1e+999 as floats, and NaN compares
        false with everything, so `coverage_min: .nan` silently turned the coverage gate off."""
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "expected a single value here, not a list or mapping")
        value = self.loader.construct_object(node)
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(node, f"{where or 'the value'} is {value}; {NON_FINITE_FIX}")
        return value

    def _plain(self, node: yaml.Node, where: str) -> Any:
        """A free-form value (train.params) as plain Python, built node by node so its numbers
        pass through _scalar and its keys get lines like the typed ones."""
        if isinstance(node, yaml.MappingNode):
            self._no_duplicates(node, where)
            mapping: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self.fail(key_node, f"'<<' merge keys are not supported in '{where}'; write the keys out")
                key = self._scalar(key_node, where)
                self.lines[_join(where, str(key))] = key_node.start_mark.line + 1
                mapping[key] = self._plain(value_node, _join(where, str(key)))
            return mapping
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[f"{where}[{index}]"] = item.start_mark.line + 1
                items.append(self._plain(item, f"{where}[{index}]"))
            return items
        return self._scalar(node, where)

    def _no_duplicates(self, node: yaml.MappingNode, where: str) -> None:
        seen: set[str] = set()
        for key_node, _ in node.value:
            key = str(key_node.value)
            if key in seen:
                raise self.fail(key_node, f"key '{_join(where, key)}' appears twice; keep one")
            seen.add(key)

    def _dataclass(self, node: yaml.Node, cls: Any, where: str) -> Any:
        label = f"'{where}'" if where else self.root_label
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{label} must be a mapping of keys to values")
        self._no_duplicates(node, where)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        given: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key not in fields:
                hint = did_you_mean(key, list(fields))
                allowed = "" if hint else f"; allowed keys: {', '.join(fields)}"
                raise self.fail(key_node, f"unknown key '{_join(where, key)}'{hint or allowed}")
            given[key] = value_node
            self.lines[_join(where, key)] = key_node.start_mark.line + 1
        values: dict[str, Any] = {}
        for name, fld in fields.items():
            if name in given:
                values[name] = self.convert(given[name], hints[name], _join(where, name), dict(fld.metadata))
            elif fld.default is MISSING and fld.default_factory is MISSING:
                raise self.fail(node, f"missing required key '{_join(where, name)}' ({fld.metadata['doc']})")
        return cls(**values)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def did_you_mean(word: str, choices: list[str], cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=cutoff)
    return f"; did you mean '{close[0]}'?" if close else ""


def _type_name(tp: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a mapping",
        type(None): "empty",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def _example(tp: Any) -> str:
    return {str: '"text"', int: "8080", float: "0.5", bool: "true"}.get(tp, "...")


def json_schema_of(root: Any, title: str, description: str) -> dict[str, Any]:
    """The JSON Schema of any root dataclass read by parse_yaml."""
    schema = _schema_of(root, {})
    schema.update(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": title,
            "description": description,
        }
    )
    return schema


def _schema_of(tp: Any, meta: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    out: dict[str, Any]
    if tp is Any:
        out = {"type": ["string", "number", "boolean"]}
    elif dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        props: dict[str, Any] = {}
        required = []
        for fld in dataclasses.fields(tp):
            props[fld.name] = _schema_of(hints[fld.name], dict(fld.metadata))
            if fld.default is MISSING and fld.default_factory is MISSING:
                required.append(fld.name)
            elif fld.default is not MISSING and not dataclasses.is_dataclass(fld.default):
                props[fld.name]["default"] = fld.default
            elif fld.default_factory is not MISSING:
                props[fld.name]["default"] = fld.default_factory()
        out = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            out["required"] = required
    elif origin in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        out = _schema_of(inner, {})
        out["type"] = [out["type"], "null"] if isinstance(out.get("type"), str) else out.get("type")
    elif origin is Literal:
        out = {"type": "string", "enum": list(typing.get_args(tp))}
    elif origin is list:
        out = {"type": "array", "items": _schema_of(typing.get_args(tp)[0], {})}
    elif origin is dict:
        out = {"type": "object"}
    else:
        out = {"type": {str: "string", int: "integer", float: "number", bool: "boolean"}[tp]}
    if "choices" in meta:  # a str field checked against a registry (providers.NAMES)
        out["enum"] = list(meta["choices"])
    if "doc" in meta:
        out["description"] = meta["doc"]
    for key in ("minimum", "maximum", "pattern", "minItems"):
        if key in meta:
            out[key] = meta[key]
    return out
