"""Every answer `mlci new` takes, checked in one place by type and allowed values.

Answers come from the command line, --data, prompts and git config, and end up in mlci.yaml,
pyproject.toml, the README and file names. What may pass:
- enumerated answers (provider, target, ci.actions) are one of mlci.yaml's own choices;
- names and versions match ASCII-only patterns (`str.isdigit` and `\\d` also accept fullwidth and
  Arabic-Indic digits);
- free text (description, author) is one line without control characters;
- no name that would break the project elsewhere: a Python standard-library module or a
  module mlci's own pipeline imports (the package would shadow it), or a device name Windows
  reserves (the repository could not be checked out there): the rule is names.py, which
  mlci.yaml's loader applies too.
The manifest's reader runs the same checks on the recorded answers (validate_recorded_answers):
`mlci render` and `mlci upgrade` render them, and a pull request can edit the manifest.
The templates still write every value through an emitter (`templates.yaml_str`, `toml_str`):
these checks say what is allowed, the emitters make sure no value can ever become syntax.
"""

from __future__ import annotations

import dataclasses
import re
import typing
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from mlci import targets
from mlci.config import CISection, Config, is_valid_project_name, python_problem
from mlci.errors import UsageError
from mlci.names import is_windows_reserved as is_windows_reserved  # re-exported: the rule lives in names.py
from mlci.names import package_problem, project_name_problem
from mlci.template_env import VERSION_TEXT

# Characters with a meaning in YAML or a shell, named in the error so the fix is obvious.
_SPECIAL = set(" \t\n\r:#&*!|>'\"%@`{}[],?$;()<>\\~^=+")
_PACKAGE_EXAMPLE = "e.g. 'churn_model'"
_NAME_FIX = "use lowercase letters, digits, '-' and '_', starting with a letter (e.g. 'churn-model')"
_MODEL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*){0,2}")
# Everything str.splitlines() breaks on: YAML and TOML readers treat several of them as line ends.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Bidirectional embeddings, overrides and isolates: they make text read differently than it is.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
TEXT_ANSWERS = ("description", "author")
# The ci: answers, written into mlci.yaml's ci: section; checked against that section's schema.
CI_ANSWERS = ("actions", "mlci_repository", "mlci_ref", "mlci_install", "retrain_cron")


def check_project_name(name: str) -> None:
    """Raise UsageError naming exactly what is wrong with a project name and how to fix it."""
    if not name.strip():
        raise UsageError(f"project name is empty; {_NAME_FIX}")
    if "/" in name or "\\" in name:
        raise UsageError(
            f"project name {name!r} contains a path separator; give a bare name and put the location in --output-dir"
        )
    if name in (".", "..") or ".." in name:
        raise UsageError(f"project name {name!r} contains '..'; {_NAME_FIX}")
    if name.startswith("."):
        raise UsageError(f"project name {name!r} starts with a dot, which would hide the project; {_NAME_FIX}")
    special = sorted({c for c in name if c in _SPECIAL or not c.isprintable()})
    if special:
        shown = " ".join(repr(c) for c in special)
        raise UsageError(f"project name {name!r} contains {shown}, special in YAML or a shell; {_NAME_FIX}")
    problem = project_name_problem(name)
    if problem:
        raise UsageError(f"project name {name!r} {problem}; choose another, e.g. '{name.lower()}-model'")
    if name != name.lower() and is_valid_project_name(name.lower()):
        raise UsageError(f"project name {name!r} has uppercase letters; use {name.lower()!r}")
    if not is_valid_project_name(name):
        raise UsageError(f"project name {name!r} is not valid; {_NAME_FIX}")
    if len(name) > 64:
        raise UsageError(f"project name {name!r} is longer than 64 characters; choose a shorter one")


def check_package(package: str, source: str, fix: str | None = None) -> None:
    """The import name: an ASCII lowercase identifier that shadows nothing the project imports."""
    problem = package_problem(package)
    if problem == "is not a lowercase Python identifier":
        raise UsageError(f"{source}: package {package!r} {problem}; {fix or _PACKAGE_EXAMPLE}")
    if problem:
        fix = fix or f"choose another name, e.g. --data package={package}_model"
        raise UsageError(f"{source}: package {package!r} {problem}; {fix}")


def check_python_version(version: str, source: str) -> None:
    problem = python_problem(version)  # the rule mlci.yaml's loader applies too
    if problem:
        raise UsageError(f"{source} {version!r} {problem}")


def check_text(value: str, source: str) -> None:
    """Free text: one line, and no character that is not text (controls, lone surrogates, bidi overrides)."""
    for char in value:
        if char in _LINE_BREAKS:
            raise UsageError(f"{source} {value!r} spans more than one line; give it as one line")
        if unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS:
            raise UsageError(f"{source} {value!r} contains the control character U+{ord(char):04X}; remove it")


def check_model_name(model_name: str, target: str, source: str) -> None:
    if not _MODEL_NAME_RE.fullmatch(model_name):
        raise UsageError(f"{source} {model_name!r} is not a model name; use 'name' or 'catalog.schema.name'")
    # The target's own rule (Databricks: Unity Catalog's three levels), the one mlci.yaml gets.
    problem = targets.get(target).model_name_problem(model_name) if target in targets.NAMES else None
    if problem:
        raise UsageError(f"{source} {model_name!r}: {problem}")


def check_choice(value: str, choices: tuple[str, ...], source: str) -> None:
    if value not in choices:
        raise UsageError(f"{source} {value!r} is not one of {', '.join(choices)}; choose one of them")


def choices_of(section: type, name: str) -> tuple[str, ...]:
    """The allowed values of an mlci.yaml field: its `choices` (e.g. providers.NAMES), or the
    Literal[...] it is typed (the one list of them)."""
    choices = {f.name: f for f in dataclasses.fields(section)}[name].metadata.get("choices")
    return tuple(choices) if choices else tuple(typing.get_args(typing.get_type_hints(section)[name]))


def check_ci_answer(key: str, value: str, source: str) -> None:
    """A ci: answer, against the pattern mlci.yaml's schema gives that field."""
    fields = {f.name: f for f in dataclasses.fields(CISection)}
    pattern = fields[key].metadata.get("pattern")
    if pattern and not re.fullmatch(pattern, value):
        raise UsageError(f"{source}: 'ci.{key}' is {value!r}, which does not match {pattern}")


def check_mlci_version(version: str, source: str) -> None:
    """The mlci version a project was rendered by: a PEP 440 version written as nothing else.

    packaging's Version() strips surrounding whitespace ('0.1.0\\n' parses), so the text must also be
    ASCII letters, digits and . + ! - _ only: it is spliced into workflow comments and pins.
    """
    from packaging.version import InvalidVersion, Version

    try:
        ok = VERSION_TEXT.fullmatch(version) is not None and bool(Version(version))
    except InvalidVersion:
        ok = False
    if not ok:
        raise UsageError(f"{source} {version!r} is not an mlci version such as '0.1.0'")


DETECTED_KEY = "mlci_install_detected"  # a bool: upgrade/pin.py; the one answer that is not text
# Every answer `mlci new` records in the manifest (older mlci versions recorded a subset).
RECORDED_ANSWERS = frozenset(
    {"name", "package", "provider", "target", "python_version", "model_name", "mlci_version", DETECTED_KEY}
    | set(TEXT_ANSWERS)
    | set(CI_ANSWERS)
)


def check_answer(key: str, value: str, answers: Mapping[str, Any], source: str, fix: str | None = None) -> None:
    """One text answer, by its key: the one check both `mlci new` and the manifest's reader run.

    `fix` replaces the '--data ...' fix where the answer did not come from the command line.
    """
    checks: dict[str, Callable[[], None]] = {
        "name": lambda: check_project_name(value),
        "package": lambda: check_package(value, source, fix),
        "provider": lambda: check_choice(value, choices_of(CISection, "provider"), source),
        "target": lambda: check_choice(value, choices_of(Config, "target"), source),
        "python_version": lambda: check_python_version(value, source),
        "model_name": lambda: check_model_name(value, str(answers.get("target", "local")), source),
        "mlci_version": lambda: check_mlci_version(value, source),
        "actions": lambda: check_choice(value, choices_of(CISection, "actions"), source),
        **{text: (lambda: check_text(value, source)) for text in TEXT_ANSWERS},
    }
    if key in checks:
        checks[key]()
    if key in CI_ANSWERS:
        check_ci_answer(key, value, source)


def check_types(answers: Mapping[str, Any], source: Callable[[str], str]) -> None:
    for key, value in answers.items():
        expected = bool if key == DETECTED_KEY else str
        if not isinstance(value, expected):
            raise UsageError(f"{source(key)} must be {expected.__name__}, not {type(value).__name__} {value!r}")


def validate_answers(answers: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> None:
    """Check every answer `mlci new` renders from; `sources` says where each came from (for the message).

    Raises UsageError for the first bad answer: its source, the value and the fix.
    """
    sources = sources or {}

    def source(key: str) -> str:
        return sources.get(key, f"--data {key}")

    check_types(answers, source)
    check_project_name(answers["name"])  # first, and without a source: the name is the command's argument
    required = ("package", "provider", "target", "python_version", "model_name", *TEXT_ANSWERS)
    for key in required:
        check_answer(key, answers[key], answers, source(key))
    for key, value in answers.items():
        if key not in (*required, "name", DETECTED_KEY):
            check_answer(key, value, answers, source(key))


def validate_recorded_answers(answers: Mapping[str, Any], where: Callable[[str], str], fix: str) -> None:
    """The manifest's answers: only keys mlci records, each checked exactly as `mlci new` checks it.

    They are rendered into workflows by `mlci render` and `mlci upgrade`, so a pull request that
    edits the manifest must not get past what a `mlci new` answer could not. `where(key)` names
    the answer in the message (e.g. 'answers.mlci_version'), `fix` is the fix a package name gets.
    """
    for key in answers:
        if key not in RECORDED_ANSWERS:
            raise UsageError(f"{where(key)} is not an answer mlci records")
    check_types(answers, where)
    for key, value in answers.items():
        if key == "name":  # its own message names no source: add it
            try:
                check_project_name(value)
            except UsageError as exc:
                raise UsageError(f"{where(key)}: {exc.message}") from None
        elif key != DETECTED_KEY:
            check_answer(key, value, answers, where(key), fix)
