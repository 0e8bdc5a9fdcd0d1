"""Three-way merge of one text file, in-process (merge3, the merge engine of Bazaar/Breezy).

The three sides are normalised before merging (CRLF and CR become LF, a missing final
newline is added) so a change of line endings is never a conflict, and the user's style
(line endings, final newline) is restored on the result. Conflicts are written in diff3
style, showing the base so the reader sees what each side changed:

    <<<<<<< ours (your edit)
    ...
    ||||||| base (mlci 0.1.0)
    ...
    =======
    ...
    >>>>>>> mlci 0.2.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import merge3

_MARKER_RE = re.compile(r"^(<{7} |\|{7} |={7}$|>{7} )", re.MULTILINE)


@dataclass(frozen=True)
class TextStyle:
    """How a file writes its lines: the newline sequence, whether the last line ends with one,
    and whether it starts with a UTF-8 byte order mark (some Windows editors add one)."""

    newline: str = "\n"
    final_newline: bool = True
    bom: bool = False

    @classmethod
    def of(cls, text: str) -> TextStyle:
        crlf = text.count("\r\n")
        lone_lf = text.count("\n") - crlf
        newline = "\r\n" if crlf > lone_lf else ("\r" if "\n" not in text and "\r" in text else "\n")
        bom = text.startswith(BOM)
        return cls(newline=newline, final_newline=(not text) or text.endswith(("\n", "\r")), bom=bom)

    def apply(self, normalised: str) -> str:
        """Restore this style on LF-normalised text."""
        text = normalised
        if not self.final_newline and text.endswith("\n"):
            text = text[:-1]
        text = text.replace("\n", self.newline) if self.newline != "\n" else text
        return BOM + text if self.bom else text


BOM = "\ufeff"


def normalise(text: str) -> str:
    """No byte order mark, LF line endings and exactly one final newline (an empty file stays empty)."""
    text = text.removeprefix(BOM).replace("\r\n", "\n").replace("\r", "\n")
    if text and not text.endswith("\n"):
        text += "\n"
    return text


def conflict_marker(text: str) -> tuple[int, str] | None:
    """The first line (1-based) and text of a diff3 marker line left in `text`, or None.

    Any one marker counts: deleting only the `<<<<<<<` line of a region leaves the rest of it
    in the file, and that is not a resolution.
    """
    normalised = normalise(text)
    found = _MARKER_RE.search(normalised)
    if found is None:
        return None
    line = normalised.count("\n", 0, found.start()) + 1
    return line, normalised[found.start() : normalised.index("\n", found.start())][:40]


def has_conflict_markers(text: str) -> bool:
    """True when text still holds any marker line of an unresolved merge."""
    return conflict_marker(text) is not None


@dataclass(frozen=True)
class MergeResult:
    text: str  # LF-normalised result (with conflict markers when conflicts > 0)
    conflicts: int  # number of conflicting regions


def merge(base: str, ours: str, theirs: str, base_label: str, theirs_label: str) -> MergeResult:
    """Merge LF-normalised texts; identical changes on both sides are not conflicts."""
    if ours in (base, theirs):
        return MergeResult(theirs, 0)
    if theirs == base:
        return MergeResult(ours, 0)
    m3 = merge3.Merge3(base.splitlines(True), ours.splitlines(True), theirs.splitlines(True))
    out: list[str] = []
    conflicts = 0
    for group in m3.merge_groups():
        if group[0] == "conflict":
            _, base_lines, ours_lines, theirs_lines = group
            conflicts += 1
            out.append("<<<<<<< ours (your edit)\n")
            out.extend(ours_lines)
            out.append(f"||||||| base ({base_label})\n")
            out.extend(base_lines)
            out.append("=======\n")
            out.extend(theirs_lines)
            out.append(f">>>>>>> {theirs_label}\n")
        else:
            out.extend(group[1])
    return MergeResult("".join(out), conflicts)
