"""What CI system we run on, and how to hand it outputs, summaries and annotations."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping


def provider() -> str | None:
    """'github', 'azure', 'jenkins' or None on a laptop."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return "github"
    if os.environ.get("TF_BUILD", "").lower() == "true":
        return "azure"
    if os.environ.get("JENKINS_URL"):
        return "jenkins"
    return None


def run_url() -> str | None:
    """A link to the CI run, recorded on MLflow runs for lineage."""
    env = os.environ
    kind = provider()
    if kind == "github" and env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env.get('GITHUB_REPOSITORY', '')}/actions/runs/{env['GITHUB_RUN_ID']}"
    if kind == "azure" and env.get("BUILD_BUILDID"):
        base = env.get("SYSTEM_COLLECTIONURI", "")
        return f"{base}{env.get('SYSTEM_TEAMPROJECT', '')}/_build/results?buildId={env['BUILD_BUILDID']}"
    if kind == "jenkins":
        return env.get("BUILD_URL")
    return None


# ---------------------------------------------------------------- user text in the log
#
# CI runners read commands out of a step's output, line by line (.NET ReadLine: a CR, a LF or
# CRLF ends a line), on stdout and stderr alike:
# - GitHub Actions (actions/runner ActionCommand.cs): a line whose TrimStart() begins with `::`
#   (`::error ...::`, `::add-mask::`, `::stop-commands::`), and the legacy `##[command ...]`
#   anywhere in a line.
# - Azure Pipelines (azure-pipelines-agent Command.cs): `##vso[area.action ...]` anywhere in a
#   line; `##[group]`, `##[error]` ... are formatting commands of the log viewer.
# - Jenkins reads no commands from the log (console notes are signed by the controller), and
#   off CI nothing reads them: text passes unchanged.
# LogGuard breaks each marker by putting one space before the character that would complete
# it (`: :notice`, `## [error]`, `##vso [task...]`), the one change that keeps the text readable.
# It keeps the state of the current line, so a marker split across writes is caught too.

_MARKERS = {"github": ("##[",), "azure": ("##[", "##vso[")}


class LogGuard:
    """Makes text that may hold user-controlled parts unreadable as a command of `kind`'s runner."""

    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        self._markers = _MARKERS.get(kind or "", ())
        self._tail = ""  # the last characters of the current line (as many as a marker needs)
        self._lead = ""  # the current line after leading whitespace, up to 2 characters

    def feed(self, text: str, *, neutralise: bool = True) -> str:
        """`text` made safe (or, with neutralise=False, passed as it is and only followed)."""
        if not self._markers or not text:
            return text
        out: list[str] = []
        for ch in text:
            if ch in "\r\n":
                self._tail, self._lead = "", ""
                out.append(ch)
                continue
            if neutralise and self._completes_marker(ch):
                out.append(" ")
                self._lead = (self._lead + " ")[:2]
                self._tail = (self._tail + " ")[-5:]
            out.append(ch)
            if not (ch.isspace() and not self._lead) and len(self._lead) < 2:
                self._lead += ch
            self._tail = (self._tail + ch)[-5:]
        return "".join(out)

    def _completes_marker(self, ch: str) -> bool:
        if self.kind == "github" and ch == ":" and self._lead == ":":
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


def neutralise(text: str, kind: str | None = None) -> str:
    """`text` (whole lines) made safe for the log of `kind` (default: the CI system we run on)."""
    return LogGuard(kind if kind is not None else provider()).feed(text)


def _escape_github_data(value: str) -> str:
    # GitHub's documented escaping of workflow command data (ActionCommand._escapeDataMappings).
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_github_property(value: str) -> str:
    return _escape_github_data(value).replace(":", "%3A").replace(",", "%2C")


def _escape_azure_data(value: str) -> str:
    # As azure-pipelines-task-lib's escapeData: %AZP25 is the agent's escape for '%' itself.
    return value.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_azure_property(value: str) -> str:
    return _escape_azure_data(value).replace("]", "%5D").replace(";", "%3B")


def annotation(
    level: str,
    message: str,
    file: str | None = None,
    line: int | None = None,
    col: int | None = None,
    title: str | None = None,
) -> str | None:
    """The provider's annotation line for one finding, or None off CI. Every value is escaped,
    so the line is one command whatever the message, file or title hold."""
    kind = provider()
    if kind == "github":
        props = [
            f"{k}={_escape_github_property(str(v))}"
            for k, v in (("file", file), ("line", line), ("col", col), ("title", title))
            if v
        ]
        head = f"::{level} " + ",".join(props)
        return f"{head.rstrip()}::{_escape_github_data(message)}"
    if kind == "azure":
        fields = ";".join(
            f"{k}={_escape_azure_property(str(v))}"
            for k, v in (("type", level), ("sourcepath", file), ("linenumber", line), ("columnnumber", col))
            if v
        )
        return f"##vso[task.logissue {fields}]{_escape_azure_data(message)}"
    return None


def set_outputs(values: Mapping[str, object]) -> None:
    """Expose step outputs: $GITHUB_OUTPUT on GitHub, output variables on Azure DevOps."""
    kind = provider()
    if kind == "github" and os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
            for key, value in values.items():
                text = "" if value is None else str(value)
                if "\n" in text or "\r" in text:
                    # A delimiter nobody can guess, so a value cannot end its block early and
                    # write further outputs (as @actions/core does).
                    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
                    out.write(f"{key}<<{delimiter}\n{text}\n{delimiter}\n")
                else:
                    out.write(f"{key}={text}\n")
    elif kind == "azure":
        from mlci import console

        for key, value in values.items():
            text = "" if value is None else str(value)
            console.ci_command(
                f"##vso[task.setvariable variable={_escape_azure_property(key)};isOutput=true]"
                f"{_escape_azure_data(text)}"
            )


def add_summary(markdown: str) -> None:
    """Append Markdown to the job summary where the CI system has one."""
    path = os.environ.get("GITHUB_STEP_SUMMARY") if provider() == "github" else None
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(markdown.rstrip("\n") + "\n\n")
