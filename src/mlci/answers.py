"""Every answer `mlci new` takes, checked in one place by type and allowed values.

Answers come from the command line, --data, prompts and git config, and end up in mlci.yaml,
pyproject.toml, the README and file names. What may pass:
- enumerated answers (provider, target, ci.actions) are one of mlci.yaml's own choices;
- names and versions match ASCII-only patterns (`str.isdigit` and `\\d` also accept fullwidth and
  Arabic-Indic digits);
- free text (description, author) is one line without control characters;
- no name that would break the project elsewhere: a Python standard-library module or a
  module mlci's own pipeline imports (the package would shadow it), or a device name Windows
  reserves (the repository could not be checked out there).
The templates still write every value through an emitter (`templates.yaml_str`, `toml_str`):
these checks say what is allowed, the emitters make sure no value can ever become syntax.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
import sys
import typing
import unicodedata
from collections.abc import Mapping
from functools import cache
from typing import Any

from mlci.config import CISection, Config, is_valid_project_name
from mlci.errors import UsageError

# Import names a project may not take whatever is installed: what its own pipeline imports,
# and directories the scaffold itself uses.
RESERVED_PACKAGES = frozenset({"mlci", "mlflow", "sklearn", "pandas", "numpy", "test", "tests", "src", "data"})
# Device names Windows maps into every directory, whatever the case and extension ('nul.txt').
WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{n}" for n in range(1, 10)), *(f"lpt{n}" for n in range(1, 10))}
)
# Characters with a meaning in YAML or a shell, named in the error so the fix is obvious.
_SPECIAL = set(" \t\n\r:#&*!|>'\"%@`{}[],?$;()<>\\~^=+")
_NAME_FIX = "use lowercase letters, digits, '-' and '_', starting with a letter (e.g. 'churn-model')"
_PACKAGE_RE = re.compile(r"[a-z_][a-z0-9_]*")
_PYTHON_RE = re.compile(r"3\.([1-9][0-9]*)")  # ASCII digits only: fullwidth '3.\uff11\uff11' is no Python
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
    if is_windows_reserved(name):
        raise UsageError(
            f"project name {name!r} is a device name Windows reserves, so the repository could not be checked "
            f"out there; choose another, e.g. '{name.lower()}-model'"
        )
    if name != name.lower() and is_valid_project_name(name.lower()):
        raise UsageError(f"project name {name!r} has uppercase letters; use {name.lower()!r}")
    if not is_valid_project_name(name):
        raise UsageError(f"project name {name!r} is not valid; {_NAME_FIX}")
    if len(name) > 64:
        raise UsageError(f"project name {name!r} is longer than 64 characters; choose a shorter one")


def is_windows_reserved(name: str) -> bool:
    """True for 'con', 'NUL', 'com1.txt', 'aux .md': Windows ignores case, extension and trailing spaces."""
    return name.split(".", 1)[0].rstrip(" ").lower() in WINDOWS_RESERVED


def check_package(package: str, source: str) -> None:
    """The import name: an ASCII lowercase identifier that shadows nothing the project imports."""
    fix = f"choose another name, e.g. --data package={package}_model"
    if not _PACKAGE_RE.fullmatch(package) or keyword.iskeyword(package):
        raise UsageError(f"{source}: package {package!r} is not a lowercase Python identifier; e.g. 'churn_model'")
    if is_windows_reserved(package):
        raise UsageError(
            f"{source}: package {package!r} is a device name Windows reserves, so src/{package}/ could not be "
            f"checked out there; {fix}"
        )
    if package in RESERVED_PACKAGES:
        raise UsageError(
            f"{source}: package {package!r} would shadow the '{package}' module the pipeline imports; {fix}"
        )
    if package in sys.stdlib_module_names:
        raise UsageError(
            f"{source}: package {package!r} would shadow Python's standard-library module '{package}'; {fix}"
        )
    if shadows_dependency(package):
        raise UsageError(
            f"{source}: package {package!r} would shadow the '{package}' module the pipeline imports; {fix}"
        )


@cache
def dependency_modules() -> frozenset[str]:
    """Top-level modules of mlci's installed dependencies (mlflow, yaml, jinja2, sqlalchemy, ...).

    A project package of one of these names would be imported instead of it whenever the
    project's src/ comes first on sys.path, as it does under `mlci train` and pytest.
    """
    from importlib import metadata

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    closure: set[str] = set()
    pending = ["mlci"]
    while pending:
        name = normal(pending.pop())
        if name in closure:
            continue
        closure.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requirements:
            if re.search(r"\bextra\s*==", requirement):  # an optional extra: not installed with mlci
                continue
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
            if match:
                pending.append(match.group(1))
    closure.discard("mlci")  # its own name is in RESERVED_PACKAGES
    modules: set[str] = set()
    for name in closure:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        top_level = distribution.read_text("top_level.txt")
        if top_level is not None:
            modules.update(line.strip() for line in top_level.splitlines())
        else:  # no top_level.txt (hatchling, flit, maturin): the first component of each RECORD path
            for line in (distribution.read_text("RECORD") or "").splitlines():
                first = line.split(",", 1)[0].split("/", 1)[0]
                if not first.endswith((".dist-info", ".data", ".pth")) and first not in ("..", "__pycache__"):
                    modules.add(first.removesuffix(".py"))
    return frozenset(module for module in modules if module.isidentifier())


def shadows_dependency(package: str) -> bool:
    """Whether `package` is a top-level module one of mlci's dependencies installs.

    find_spec first: most names are not installed at all, and then the distributions are not read.
    """
    import importlib.util

    try:
        found = importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        found = True  # something of that name is there but does not import: ask the metadata
    return found and package in dependency_modules()


def check_python_version(version: str, source: str) -> None:
    match = _PYTHON_RE.fullmatch(version)
    if not match or int(match.group(1)) < 10:
        raise UsageError(f"{source} {version!r} is not a supported Python; use 3.10 or newer, e.g. 3.11")


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
    if target == "databricks" and model_name.count(".") != 2:
        raise UsageError(f"{source} {model_name!r}: Databricks needs Unity Catalog's 'catalog.schema.model'")


def check_choice(value: str, choices: tuple[str, ...], source: str) -> None:
    if value not in choices:
        raise UsageError(f"{source} {value!r} is not one of {', '.join(choices)}; choose one of them")


def choices_of(section: type, name: str) -> tuple[str, ...]:
    """The allowed values of an mlci.yaml field typed Literal[...] (the one list of them)."""
    return tuple(typing.get_args(typing.get_type_hints(section)[name]))


def check_ci_answer(key: str, value: str, source: str) -> None:
    """A ci: answer, against the pattern mlci.yaml's schema gives that field."""
    fields = {f.name: f for f in dataclasses.fields(CISection)}
    pattern = fields[key].metadata.get("pattern")
    if pattern and not re.fullmatch(pattern, value):
        raise UsageError(f"{source}: 'ci.{key}' is {value!r}, which does not match {pattern}")


def validate_answers(answers: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> None:
    """Check every answer `mlci new` renders from; `sources` says where each came from (for the message).

    Raises UsageError for the first bad answer: its source, the value and the fix.
    """
    sources = sources or {}

    def source(key: str) -> str:
        return sources.get(key, f"--data {key}")

    for key, value in answers.items():
        expected = bool if key == "mlci_install_detected" else str
        if not isinstance(value, expected):
            raise UsageError(f"{source(key)} must be {expected.__name__}, not {type(value).__name__} {value!r}")
    check_project_name(answers["name"])
    check_package(answers["package"], source("package"))
    check_choice(answers["provider"], choices_of(CISection, "provider"), source("provider"))
    check_choice(answers["target"], choices_of(Config, "target"), source("target"))
    check_python_version(answers["python_version"], source("python_version"))
    check_model_name(answers["model_name"], answers["target"], source("model_name"))
    for key in TEXT_ANSWERS:
        check_text(answers[key], source(key))
    if "actions" in answers:
        check_choice(answers["actions"], choices_of(CISection, "actions"), source("actions"))
    for key in CI_ANSWERS:
        if key in answers:
            check_ci_answer(key, answers[key], source(key))
