"""Azure Pipelines expressions: the `${{ }}` compile-time and `$[ ]` / `condition:` runtime language.

Models: literals ('single-quoted' with '' escapes, numbers, True/False/Null), property and index
access (`parameters.x`, `variables['Build.Reason']`, `dependencies.A.outputs['s.v']`, looked up
case-insensitively as Azure does), and the functions mlci uses: eq ne and or not xor in notIn
contains startsWith endsWith join format coalesce lower upper replace length. Comparisons follow
Azure's type casting: the right operand is converted to the left operand's type (a non-empty
string is True, so `eq(true, 'false')` is True, as in Azure), strings compare ignoring case.
Runtime status functions (succeeded(), failed(), always() ...) are supplied by the runner.

Does not model: version literals, `counter`, `convertToJson`, `split`, `iif`, `containsValue`,
`stageDependencies` validity rules beyond what the runner checks, and dates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

Function = Callable[[list[Any]], Any]


class AzurePipelineError(Exception):
    """The one error of the expander and the runner: one line naming file, chain, problem and fix."""


class ExpressionError(AzurePipelineError):
    """An expression that cannot be parsed or evaluated; the expander adds the file chain."""


class StrictMapping(dict[str, Any]):
    """A mapping whose missing keys are an error, not Null: the declared `parameters` of a template
    (Azure gives an empty value for `parameters.typo`; here a typo must fail)."""

    label = "parameters"


TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?(?:\d+(?:\.\d+)?|\.\d+))"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_\-]*)|(?P<punct>[()\[\],.]))"
)


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"cannot parse expression '{text}' at '{text[pos:].strip()}'")
        kind = cast(str, match.lastgroup)
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


Node = tuple[Any, ...]


class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    def parse(self) -> Node:
        node = self.expression()
        if self.pos != len(self.tokens):
            raise ExpressionError(f"unexpected '{self.tokens[self.pos][1]}' in expression '{self.text}'")
        return node

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens) or (expected is not None and self.tokens[self.pos][1] != expected):
            raise ExpressionError(f"expected '{expected or 'a value'}' in expression '{self.text}'")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def expression(self) -> Node:
        kind, value = self.take()
        node: Node
        if kind == "str":
            node = ("lit", value[1:-1].replace("''", "'"))
        elif kind == "num":
            node = ("lit", float(value) if "." in value else int(value))
        elif kind == "name" and self.peek() == "(":
            self.take("(")
            args: list[Node] = []
            while self.peek() != ")":
                args.append(self.expression())
                if self.peek() == ",":
                    self.take(",")
            self.take(")")
            node = ("call", value, args)
        elif kind == "name" and value.lower() in ("true", "false", "null"):
            node = ("lit", {"true": True, "false": False, "null": None}[value.lower()])
        elif kind == "name":
            node = ("name", value)
        else:
            raise ExpressionError(f"unexpected '{value}' in expression '{self.text}'")
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                node = ("index", node, ("lit", self.take()[1]))
            else:
                node = ("index", node, self.expression())
                self.take("]")
        return node


def to_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value != ""
    if isinstance(value, (int, float)):
        return value != 0
    return value is not None


def to_num(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if value is None or value == "":
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def equal(left: Any, right: Any) -> bool:
    """Azure's eq: the right side is converted to the left side's type; strings ignore case."""
    if isinstance(left, bool):
        return left == to_bool(right)
    if isinstance(left, (int, float)):
        return float(left) == to_num(right)
    if isinstance(left, str):
        return left.casefold() == to_str(right).casefold()
    if left is None:
        return right is None or right == ""
    return left is right


def lookup(container: Any, key: Any) -> Any:
    if isinstance(container, Mapping):
        if key in container:
            return container[key]
        folded = to_str(key).casefold()
        for name, value in container.items():
            if str(name).casefold() == folded:
                return value
        if isinstance(container, StrictMapping):
            declared = ", ".join(sorted(container)) or "none"
            raise ExpressionError(f"{container.label}.{key} is not declared (declared: {declared})")
        return None
    if isinstance(container, Sequence) and not isinstance(container, str) and isinstance(key, (int, float)):
        index = int(key)
        return container[index] if 0 <= index < len(container) else None
    return None


def _format(args: list[Any]) -> str:
    pattern, values = to_str(args[0]), [to_str(v) for v in args[1:]]

    def fill(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        index = int(match.group(1))
        if index >= len(values):
            raise ExpressionError(f"format('{pattern}') names {{{index}}} but has {len(values)} argument(s)")
        return values[index]

    return re.sub(r"\{\{|\}\}|\{(\d+)\}", fill, pattern)


def _join(args: list[Any]) -> str:
    separator, items = to_str(args[0]), args[1]
    if isinstance(items, Mapping):
        items = list(items)
    if isinstance(items, list):
        return separator.join(to_str(item) for item in items)
    return to_str(items)


def _contains(args: list[Any]) -> bool:
    haystack, needle = args
    if isinstance(haystack, list):
        return any(equal(item, needle) for item in haystack)
    return to_str(needle).casefold() in to_str(haystack).casefold()


FUNCTIONS: dict[str, tuple[int, int, Function]] = {
    # name (lower case): (fewest arguments, most arguments, implementation)
    "eq": (2, 2, lambda a: equal(a[0], a[1])),
    "ne": (2, 2, lambda a: not equal(a[0], a[1])),
    "and": (2, 99, lambda a: all(to_bool(v) for v in a)),
    "or": (2, 99, lambda a: any(to_bool(v) for v in a)),
    "xor": (2, 2, lambda a: to_bool(a[0]) != to_bool(a[1])),
    "not": (1, 1, lambda a: not to_bool(a[0])),
    "in": (1, 99, lambda a: any(equal(a[0], v) for v in a[1:])),
    "notin": (1, 99, lambda a: not any(equal(a[0], v) for v in a[1:])),
    "contains": (2, 2, _contains),
    "startswith": (2, 2, lambda a: to_str(a[0]).casefold().startswith(to_str(a[1]).casefold())),
    "endswith": (2, 2, lambda a: to_str(a[0]).casefold().endswith(to_str(a[1]).casefold())),
    "join": (2, 2, _join),
    "format": (1, 99, _format),
    "coalesce": (1, 99, lambda a: next((v for v in a if v is not None and v != ""), None)),
    "lower": (1, 1, lambda a: to_str(a[0]).lower()),
    "upper": (1, 1, lambda a: to_str(a[0]).upper()),
    "replace": (3, 3, lambda a: to_str(a[0]).replace(to_str(a[1]), to_str(a[2]))),
    "length": (1, 1, lambda a: len(a[0]) if isinstance(a[0], (list, dict, str)) else 0),
}


def evaluate(
    text: str, names: Mapping[str, Any], functions: Mapping[str, tuple[int, int, Function]] | None = None
) -> Any:
    """The value of one expression (without its `${{ }}` or `$[ ]`) over the given names."""
    table = {**FUNCTIONS, **(functions or {})}

    def run(node: Node) -> Any:
        if node[0] == "lit":
            return node[1]
        if node[0] == "name":
            if node[1] not in names:
                known = ", ".join(sorted(names))
                raise ExpressionError(f"unknown name '{node[1]}' in expression '{text}' (known: {known})")
            return names[node[1]]
        if node[0] == "index":
            return lookup(run(node[1]), run(node[2]))
        name = node[1].lower()
        if name not in table:
            raise ExpressionError(f"unknown function '{node[1]}' in expression '{text}'")
        fewest, most, implementation = table[name]
        if not fewest <= len(node[2]) <= most:
            raise ExpressionError(f"{node[1]}() takes {fewest}-{most} arguments, got {len(node[2])}, in '{text}'")
        return implementation([run(arg) for arg in node[2]])

    return run(Parser(text).parse())
