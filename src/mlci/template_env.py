"""The Jinja environment of mlci's templates and the emitters they write values through.

A leaf (it imports nothing of mlci but install_source): templates.py renders trees with it
and each provider's renderer compiles its own templates with it, so neither imports the
other. Importing it loads no Jinja and no YAML; they load on first use.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from mlci.install_source import dev_requirement, unpinned

if TYPE_CHECKING:
    import jinja2


@cache
def environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        block_start_string="<%",
        block_end_string="%>",
        variable_start_string="<%=",
        variable_end_string="%>",
        comment_start_string="<%#",
        comment_end_string="%>",
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["yaml_str"] = yaml_str
    env.filters["yaml_scalar"] = yaml_scalar
    env.filters["toml_str"] = toml_str
    env.filters["version_text"] = version_text
    env.filters["mlci_unpinned"] = unpinned
    env.globals["mlci_dev_requirement"] = dev_requirement
    return env


@lru_cache(maxsize=256)
def compiled(source: str) -> jinja2.Template:
    """A template compiled once per process (a fleet upgrade renders the same sources many times)."""
    return environment().from_string(source)


def yaml_str(value: Any) -> str:
    """A YAML double-quoted scalar for any text, on one line: quotes, newlines and ${{ stay inert.

    PyYAML's own emitter, not JSON: json.dumps leaves DEL, C1 controls, U+2028 and a BOM raw,
    which a YAML reader refuses or folds into another value.
    """
    import yaml

    dumped: str = yaml.dump(str(value), Dumper=yaml.SafeDumper, default_style='"', allow_unicode=True, width=_NO_WRAP)
    return dumped.rstrip("\n")


def yaml_scalar(value: Any) -> str:
    """A YAML scalar that stays plain (`churn-model`) when plain text reads back as exactly that
    string, double-quoted (yaml_str) otherwise: `on`, `null`, `3.11` or `1:20` are never a bool,
    a null or a number, and nothing outside [A-Za-z0-9_.:/-] is ever written unquoted.
    """
    import yaml

    text = str(value)
    if _PLAIN_YAML.fullmatch(text):
        try:
            if yaml.safe_load(f"key: {text}") == {"key": text}:
                return text
        except yaml.YAMLError:  # e.g. 'a:' reads as a mapping key
            pass
    return yaml_str(text)


def toml_str(value: Any) -> str:
    """A TOML basic string ("...") for any text: every character TOML forbids raw is escaped.

    TOML escapes are Unicode scalar values, so an emoji is written as itself, never as the
    JSON surrogate pair `\\ud83d\\ude00` that TOML readers refuse.
    """
    out = ['"']
    for char in str(value):
        code = ord(char)
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:  # a lone surrogate is no character: TOML cannot hold it
            raise ValueError(f"{value!r} holds a lone surrogate U+{code:04X}, which no TOML file can hold")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def version_text(value: Any) -> str:
    """An mlci version, for the places it is spliced outside a quoted scalar (a `# mlci 0.1.0` comment).

    The manifest's reader already refuses anything else (answers.check_mlci_version); this is the
    last line: a newline here would end the comment and start workflow YAML of its own.
    """
    text = str(value)
    if not VERSION_TEXT.fullmatch(text):
        raise ValueError(f"mlci version {text!r} is not a version; refusing to render it")
    return text


# What an mlci version may be written as (PEP 440 characters only): the one pattern, see version_text.
VERSION_TEXT = re.compile(r"[0-9A-Za-z.+!_-]+")
_NO_WRAP = 1 << 30  # PyYAML folds long scalars at `width`; a value stays on its one line
_PLAIN_YAML = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
