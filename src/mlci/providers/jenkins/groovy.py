"""A reader for the declarative subset of Groovy mlci's Jenkinsfiles are written in: blocks of
statements (`name args { ... }`), string literals and named arguments. Enough to read a rendered
Jenkinsfile back into the pipeline model (parse.py); the Groovy stub of the tests checks the
same files with Groovy itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "$": "$", "b": "\b", "f": "\f"}
_TOKEN = re.compile(
    r"""(?P<space>[ \t\r]+)
    |(?P<newline>\n)
    |(?P<comment>//[^\n]*|/\*.*?\*/)
    |(?P<triple>'''(?:\\.|[^\\])*?''')
    |(?P<single>'(?:\\.|[^'\\\n])*')
    |(?P<double>"(?:\\.|[^"\\\n])*")
    |(?P<ident>[A-Za-z_$][A-Za-z0-9_$]*)
    |(?P<number>\d+)
    |(?P<punct>==~|=~|==|!=|&&|\|\||>=|<=|--|\+\+|[{}()\[\],:;=.?!<>+\-*/@])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str  # ident, number, string, gstring, punct, newline
    text: str  # the source text (the value, for strings)
    line: int


@dataclass
class Statement:
    """One statement: its tokens (a call, an assignment, a condition) and its block, if any."""

    tokens: list[Token]
    line: int
    block: list[Statement] | None = None
    parent: Statement | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.tokens[0].text if self.tokens and self.tokens[0].kind == "ident" else ""

    def strings(self) -> list[str]:
        """The string literals among the statement's own tokens (not its block's)."""
        return [t.text for t in self.tokens if t.kind == "string"]

    def named(self) -> dict[str, str]:
        """Named arguments `key: value` at any depth of the argument list: the value is the
        string literal's text, or the source text up to the next comma or bracket."""
        found: dict[str, str] = {}
        tokens = self.tokens
        for i in range(1, len(tokens) - 1):
            after = i == 1 or tokens[i - 1].text in {"(", ",", "["}  # `name key: v` or `name(key: v, ...)`
            if tokens[i].kind == "ident" and tokens[i + 1].text == ":" and after and i + 2 < len(tokens):
                value = tokens[i + 2]
                if value.kind == "string":
                    found.setdefault(tokens[i].text, value.text)
                else:
                    parts = []
                    depth = 0
                    for t in tokens[i + 2 :]:
                        if t.text in {"(", "["}:
                            depth += 1
                        elif t.text in {")", "]"}:
                            if depth == 0:
                                break
                            depth -= 1
                        elif t.text == "," and depth == 0:
                            break
                        parts.append(t.text)
                    found.setdefault(tokens[i].text, " ".join(parts))
        return found

    def children(self, name: str) -> list[Statement]:
        return [s for s in self.block or () if s.name == name]

    def child(self, name: str) -> Statement | None:
        found = self.children(name)
        if len(found) > 1:
            raise ValueError(f"line {self.line}: {self.name} holds {name} {len(found)} times")
        return found[0] if found else None

    def walk(self) -> list[Statement]:
        """This statement and every statement nested in its block, in source order."""
        found = [self]
        for s in self.block or ():
            found.extend(s.walk())
        return found


def _unquote(text: str, quote: str) -> str:
    body = text[len(quote) : -len(quote)]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], "\\" + m[1]), body, flags=re.DOTALL)


def tokens(source: str) -> list[Token]:
    found: list[Token] = []
    line = 1
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise ValueError(f"line {line}: unexpected {source[pos]!r}")
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "newline":
            found.append(Token("newline", "\n", line))
        elif kind in {"triple", "single"}:
            found.append(Token("string", _unquote(text, "'''" if kind == "triple" else "'"), line))
        elif kind == "double":
            found.append(Token("gstring", text[1:-1], line))
        elif kind in {"ident", "number", "punct"}:
            found.append(Token(kind, text, line))
        line += text.count("\n")
        pos = match.end()
    return found


def parse(source: str) -> list[Statement]:
    """The statements of a Groovy file in mlci's declarative subset."""
    stream = tokens(source)
    pos = 0

    def block(parent: Statement | None) -> list[Statement]:
        nonlocal pos
        statements: list[Statement] = []
        current: list[Token] = []
        depth = 0  # parentheses and brackets
        while pos < len(stream):
            token = stream[pos]
            pos += 1
            if token.text == "}" and token.kind == "punct" and depth == 0:
                if current:
                    statements.append(Statement(current, current[0].line, parent=parent))
                return statements
            if token.kind == "punct" and token.text in {"(", "["}:
                depth += 1
            elif token.kind == "punct" and token.text in {")", "]"}:
                depth -= 1
            if depth == 0 and (token.kind == "newline" or (token.kind == "punct" and token.text == ";")):
                if current:
                    statements.append(Statement(current, current[0].line, parent=parent))
                    current = []
                continue
            if token.kind == "newline":
                continue
            if token.kind == "punct" and token.text == "{" and depth == 0:
                statement = Statement(current, current[0].line if current else token.line, parent=parent)
                statement.block = block(statement)
                statements.append(statement)
                current = []
                continue
            current.append(token)
        if parent is not None:
            raise ValueError(f"line {parent.line}: {parent.name} is not closed")
        if current:
            statements.append(Statement(current, current[0].line, parent=parent))
        return statements

    statements = block(None)
    if pos < len(stream):  # block(None) stopped at a `}` no block opened
        raise ValueError(f"line {stream[pos - 1].line}: unmatched '}}'")
    return statements
