"""User text in a CI log, made unreadable as a runner command; the provider-neutral part of
what ci_env.py was (each CI system's own lines live in its runtime adapter,
mlci/providers/<name>/runtime.py; providers.detect() finds the one we run on).

CI runners read commands out of a step's output, line by line (.NET ReadLine: a CR, a LF or
CRLF ends a line), on stdout and stderr alike: some anywhere in a line (GitHub's legacy `##[`,
Azure's `##vso[`), some at the start of a line after spaces (GitHub's `::`). Each runtime
declares its markers; off CI, and on runners that read none (Jenkins), text passes unchanged.
LogGuard breaks each marker by putting one space before the character that would complete it
(`: :notice`, `## [error]`, `##vso [task...]`), the one change that keeps the text readable.
It keeps the state of the current line, so a marker split across writes is caught too.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a Protocol: only its attributes are read
    from mlci.providers.base import CIRuntime

_LEAD = 2  # how much of a line's start (after its spaces) is followed: a line-start marker's length


class LogGuard:
    """Makes text that may hold user-controlled parts unreadable as a command of `runtime`'s runner."""

    def __init__(self, runtime: CIRuntime | None) -> None:
        self.runtime = runtime
        self._markers = runtime.markers if runtime else ()
        self._line_start = runtime.line_start_marker if runtime else ""
        # The last characters of the current line: as many as the longest marker needs.
        self._keep = max((len(marker) for marker in self._markers), default=1) - 1
        self._tail = ""
        self._lead = ""  # the current line after leading whitespace, up to _LEAD characters

    def feed(self, text: str, *, neutralise: bool = True) -> str:
        """`text` made safe (or, with neutralise=False, passed as it is and only followed)."""
        if not (self._markers or self._line_start) or not text:
            return text
        out: list[str] = []
        for ch in text:
            if ch in "\r\n":
                self._tail, self._lead = "", ""
                out.append(ch)
                continue
            if neutralise and self._completes_marker(ch):
                out.append(" ")
                self._lead = (self._lead + " ")[:_LEAD]
                self._tail = (self._tail + " ")[-self._keep :] if self._keep else ""
            out.append(ch)
            if not (ch.isspace() and not self._lead) and len(self._lead) < _LEAD:
                self._lead += ch
            self._tail = (self._tail + ch)[-self._keep :] if self._keep else ""
        return "".join(out)

    def _completes_marker(self, ch: str) -> bool:
        if self._line_start and self._lead + ch == self._line_start:
            return True
        if ch != "[":
            return False
        line_end = (self._tail + ch).lower()
        return any(line_end.endswith(marker) for marker in self._markers)


# A `#` that starts `##[` or `##vso[` (any case), for json_document.
_JSON_MARKER = re.compile(r"#(?=#(?:vso)?\[)", re.IGNORECASE)


def json_document(payload: object) -> str:
    """`payload` as the JSON document --json prints: no runner can read a command in it, and
    json.loads gives back every value exactly (LogGuard's inserted space would alter them).

    Why this holds without LogGuard: json.dumps escapes CR and LF inside strings, so a line break
    is only ever JSON's own indentation, and every line starts (after its spaces) with a JSON token
    (`{ } [ ] "`, a digit, `-`, true/false/null), never with GitHub's `::`. The markers read
    anywhere in a line (GitHub's legacy `##[`, Azure's `##vso[`) can only sit inside a string,
    where the first `#` is written as the JSON escape \\u0023: still that value, no longer a marker.
    """
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    return _JSON_MARKER.sub(r"\\u0023", text)


def neutralise(text: str, runtime: CIRuntime | None) -> str:
    """`text` (whole lines) made safe for the log of `runtime` (None: off CI, unchanged)."""
    return LogGuard(runtime).feed(text)
