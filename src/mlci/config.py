"""Load and validate mlci.yaml, the project's one source of truth.

The dataclasses below *are* the schema: the loader walks their type hints, the JSON Schema
for editors is generated from them (`mlci schema`), and the rest of mlci reads typed
attributes. Every error names the file, the line and the fix, and exits 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mlci import providers, targets
from mlci.errors import ConfigError
from mlci.names import package_problem, project_name_problem

# The target names come from the registry (mlci.targets.NAMES, names only: it imports no
# target). A Literal's values must be spelled out for mypy, so mypy sees a str; at run time
# the loader, the JSON Schema and `mlci new` read the registry's names from the Literal.
if typing.TYPE_CHECKING:
    TargetName = str
else:
    TargetName = Literal[tuple(targets.NAMES)]

CONFIG_FILE = "mlci.yaml"
SCHEMA_VERSION = 1

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
# Metrics where a smaller value is better; gates and champion comparisons respect this.
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
# The deployment environments, in promotion order: a version reaches one only after the one
# before it verified it. Each has a registry alias of its name; `champion` follows the last.
ENVIRONMENTS: tuple[str, ...] = ("staging", "production")

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
_ENTRYPOINT_RE = re.compile(r"^[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_GATE_RE = re.compile(r"^\s*([A-Za-z_]\w*)\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
# The Pythons a project may name (ci.python, `mlci new`'s python_version): ASCII digits only
# (fullwidth '3.\uff11\uff11' is no Python), no leading zero, 3.10 or newer.
_PYTHON_RE = re.compile(r"3\.([1-9][0-9]*)")
OLDEST_PYTHON_MINOR = 10
# How deep lists and mappings may nest in mlci.yaml and contracts. Neither needs more than a
# handful of levels; the bound keeps loading far from Python's recursion limit (a file nested
# 1000 deep raised RecursionError) whatever the parser.
MAX_DEPTH = 64
NON_FINITE_FIX = "write a finite number (NaN and infinities cannot be checked against; to leave a bound open, omit it)"


def _f(doc: str, default: Any = MISSING, **constraints: Any) -> Any:
    """A schema field: its documentation, default and JSON-Schema style constraints."""
    meta = {"doc": doc, **constraints}
    if default is MISSING:
        return field(metadata=meta)
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ProjectSection:
    name: str = _f("Project and distribution name (lowercase, digits, '-' or '_').", pattern=_NAME_RE.pattern)
    package: str = _f("Python import name of the project's package.", pattern=r"^[a-z_][a-z0-9_]*$")
    description: str = _f("One line describing the project.", "")


@dataclass(frozen=True)
class CISection:
    # The one list of names is providers.NAMES; a CI system mlci knows but does not render yet
    # is refused with when it arrives (providers.later_message). The registry itself, not a
    # copy taken at import: a provider registered later (a test's) is a choice at once.
    provider: str = _f(
        "CI system the pipeline files are rendered for.",
        "github",
        choices=providers.NAMES,
        unavailable={name: providers.later_message(name) for name in providers.RUNTIME_ONLY},
    )
    # [0-9], not \d: Python's \d also takes fullwidth and Arabic-Indic digits (U+FF11, U+0661).
    python: str = _f("Python version the CI jobs use.", "3.11", pattern=r"^3\.[0-9]+$")
    default_branch: str = _f("Branch whose pushes run the cd pipeline.", "main", pattern=r"^[\w./-]+$")
    runs_on: str = _f("Runner label of every job.", "ubuntu-latest", pattern=r"^[\w.-]+$")
    actions: Literal["vendored", "remote"] = _f(
        "Where the workflows take mlci's actions from: copies under .github/actions/ (vendored) or the mlci "
        "repository pinned by commit (remote: needs mlci_repository and mlci_ref).",
        "vendored",
    )
    mlci_repository: str | None = _f(
        "owner/name of the mlci repository the remote actions come from.", None, pattern=r"^[\w.-]+/[\w.-]+$"
    )
    mlci_ref: str | None = _f(
        "Full 40-character commit SHA of mlci_repository the remote actions are pinned to.",
        None,
        pattern=r"^[0-9a-f]{40}$",
    )
    mlci_install: str | None = _f(
        "pip requirement CI (and the project's dev extra) installs mlci from, e.g. mlci==0.1.0 or "
        "'mlci @ git+https://github.com/owner/mlci@<sha>'. mlci new writes one that CI can reach (how the "
        "running mlci was installed); unset: the remote actions' own checkout, or mlci==<version> when vendored.",
        None,
        # A requirement or a path; nothing a shell or a GitHub expression would interpret.
        pattern=r"^[\w.\-\[\],=<>!~@:/+ ]+$",
    )
    retrain_cron: str | None = _f(
        "Cron schedule (UTC) of the retrain pipeline, e.g. '0 3 * * 1'; unset: no retrain pipeline.",
        None,
        pattern=r"^[0-9*/,\-A-Za-z?]+( [0-9*/,\-A-Za-z?]+){4}$",
    )


@dataclass(frozen=True)
class DataSection:
    train: str = _f("Training data file (CSV or Parquet), relative to the project root.")
    holdout: str = _f("Holdout data file used to score and compare models, relative to the project root.")
    target: str = _f("Name of the label column in both files.")


@dataclass(frozen=True)
class TrainSection:
    entrypoint: str = _f(
        "'module:function' called as function(features, target, params) and returning a fitted "
        "estimator with predict().",
        pattern=_ENTRYPOINT_RE.pattern,
    )
    task: Literal["classification", "regression"] = _f("Kind of model; selects the metrics.", "classification")
    params: dict[str, Any] = _f(
        "Hyper-parameters passed to the entrypoint and logged to MLflow: strings, finite numbers, "
        "booleans, and lists and mappings of them (no YAML aliases).",
        {},
    )
    serialization: Literal["cloudpickle", "skops"] = _f(
        "How the model is serialised; cloudpickle matches what Databricks uses.", "cloudpickle"
    )
    experiment: str | None = _f("MLflow experiment name (default: the project name).", None)


@dataclass(frozen=True)
class TrackingSection:
    uri: str | None = _f(
        "MLflow tracking URI. MLFLOW_TRACKING_URI overrides it; default: sqlite:///.mlci/mlflow.db.", None
    )
    registry_uri: str | None = _f("MLflow registry URI (default: the tracking URI).", None)


@dataclass(frozen=True)
class RegisterSection:
    model_name: str | None = _f(
        "Registered model name (default: the package name); 'catalog.schema.model' on Databricks.", None
    )
    primary_metric: str | None = _f(
        "Metric the challenger is compared on against the champion (default: roc_auc or rmse).", None
    )
    gates: list[str] = _f("Conditions the candidate must meet, e.g. 'roc_auc >= 0.95'.", [])
    champion_tolerance: float = _f(
        "How much worse than the champion on the primary metric the challenger may be.", 0.0, minimum=0
    )


@dataclass(frozen=True)
class DeploySection:
    host: str = _f("Address the local server binds to (loopback by default).", "127.0.0.1")
    port: int = _f(
        "Port 'mlci serve' listens on (0: any free port); deploy's smoke test always takes a free port.",
        5055,
        minimum=0,
        maximum=65535,
    )
    ready_timeout: float = _f("Seconds to wait for the served model to answer /health.", 120.0, minimum=1)


@dataclass(frozen=True)
class LintSection:
    pre_commit: bool = _f("Also run 'pre-commit run --all-files'.", False)
    paths: list[str] = _f("Paths ruff checks.", ["."])


@dataclass(frozen=True)
class TestSection:
    __test__ = False  # not a pytest class
    paths: list[str] = _f("Paths pytest collects.", ["tests"])
    coverage_min: float | None = _f(
        "Fail the stage when line coverage (percent) is below this.", None, minimum=0, maximum=100
    )


@dataclass(frozen=True)
class DataTestSection:
    contract: str = _f("Data contract checked by 'mlci data-test', relative to the project root.", "data/contract.yml")
    engine: Literal["duckdb", "spark"] = _f(
        "Engine the contract's SQL runs on: embedded DuckDB, or Spark (local mode or Databricks).", "duckdb"
    )


@dataclass(frozen=True)
class Config:
    schema: int = _f("Version of this file's format; mlci migrates older versions.", minimum=1)
    project: ProjectSection = _f("Names of the project.")
    data: DataSection = _f("Training and holdout data.")
    train: TrainSection = _f("The training entrypoint and its parameters.")
    target: TargetName = _f("Where stages run: the embedded default or Databricks.", "local")
    ci: CISection = _f("The CI system.", CISection())
    tracking: TrackingSection = _f("MLflow tracking.", TrackingSection())
    register: RegisterSection = _f("Registration gates and champion comparison.", RegisterSection())
    deploy: DeploySection = _f("Serving the champion.", DeploySection())
    lint: LintSection = _f("The lint stage.", LintSection())
    test: TestSection = _f("The unit-test stage.", TestSection())
    data_test: DataTestSection = _f("The data-test stage: data contract and drift.", DataTestSection())

    @property
    def model_name(self) -> str:
        return self.register.model_name or self.project.package

    @property
    def primary_metric(self) -> str:
        default = "roc_auc" if self.train.task == "classification" else "rmse"
        return self.register.primary_metric or default

    @property
    def experiment(self) -> str:
        return self.train.experiment or self.project.name


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    threshold: float

    def passes(self, value: float) -> bool:
        return {
            ">=": value >= self.threshold,
            "<=": value <= self.threshold,
            ">": value > self.threshold,
            "<": value < self.threshold,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Project:
    """A loaded project: its root, its validated config and where each key sits in the file."""

    root: Path
    config: Config
    lines: dict[str, int]

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def out_dir(self) -> Path:
        return self.root / ".mlci" / "out"

    def line_of(self, dotted: str) -> int | None:
        return self.lines.get(dotted)

    def error(self, dotted: str, problem: str) -> ConfigError:
        """A ConfigError pointing at the line of `dotted` in mlci.yaml."""
        return ConfigError(str(self.config_path), self.line_of(dotted), problem)

    def gates(self) -> list[Gate]:
        return [parse_gate(text) for text in self.config.register.gates]


def metrics_for(task: str) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def parse_gate(text: str) -> Gate:
    match = _GATE_RE.match(text)
    if not match:
        raise ValueError(f"gate {text!r} is not 'metric OP number' (OP one of >=, <=, >, <), e.g. 'roc_auc >= 0.9'")
    threshold = float(match.group(3))
    if not math.isfinite(threshold):  # 1e999 is inf: a gate no metric can fail (or pass)
        raise ValueError(f"gate {text!r}: the threshold is {threshold}; {NON_FINITE_FIX}")
    return Gate(match.group(1), match.group(2), threshold)


def is_valid_project_name(name: str) -> bool:
    return bool(_NAME_RE.fullmatch(name))


# ---------------------------------------------------------------- loading


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader; the C version when available (mlci.yaml is read by every stage)."""


def python_problem(version: str) -> str | None:
    """Why `version` is no Python a project may run on (a phrase after the quoted version), or None.

    The one rule: mlci.yaml's loader and `mlci new` (answers.py) both apply it.
    """
    match = _PYTHON_RE.fullmatch(version)
    if not match or int(match.group(1)) < OLDEST_PYTHON_MINOR:
        return f"is not a supported Python; use 3.{OLDEST_PYTHON_MINOR} or newer, e.g. 3.11"
    return None


def find_project(start: Path) -> Path:
    """The nearest directory at or above `start` holding mlci.yaml."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise ConfigError(
        str(start / CONFIG_FILE), None, "no mlci.yaml here or in any parent; run 'mlci new NAME' or cd into a project"
    )


def load_project(root: Path | None = None) -> Project:
    root = find_project(root or Path.cwd())
    return project_from_text(read_text_file(root / CONFIG_FILE), root)


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


def project_from_text(text: str, root: Path) -> Project:
    """Validate mlci.yaml text fully (types and semantics) as if it were `root`/mlci.yaml."""
    config, lines = parse_config(text, str(root / CONFIG_FILE))
    project = Project(root=root, config=config, lines=lines)
    _check_semantics(project)
    return project


def parse_config(text: str, filename: str) -> tuple[Config, dict[str, int]]:
    """Validate YAML text against the Config dataclasses; returns the config and key lines."""
    return parse_yaml(text, filename, Config, empty_hint="start it with 'schema: 1' (see docs/mlci-yaml.md)")


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

    def __init__(self, loader: Any, filename: str, root_label: str = CONFIG_FILE) -> None:
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
                hint = _did_you_mean(str(value), [str(c) for c in choices], cutoff=0.8)
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
            hint = _did_you_mean(str(value), list(meta["choices"]), cutoff=0.8)  # as for Literal choices
            raise self.fail(node, f"{label} is {value!r}; use one of {', '.join(meta['choices'])}{hint}")
        if "minimum" in meta and value < meta["minimum"]:
            raise self.fail(node, f"{label} is {value}; it must be at least {meta['minimum']}")
        if "maximum" in meta and value > meta["maximum"]:
            raise self.fail(node, f"{label} is {value}; it must be at most {meta['maximum']}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):  # fullmatch: no trailing newline
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
                hint = _did_you_mean(key, list(fields))
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


def _did_you_mean(word: str, choices: list[str], cutoff: float = 0.6) -> str:
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


def _check_semantics(project: Project) -> None:
    """Checks that span keys or need more than a type: gates, metrics, names, paths."""
    cfg = project.config
    if cfg.schema > SCHEMA_VERSION:
        raise project.error(
            "schema", f"schema {cfg.schema} is newer than this mlci understands ({SCHEMA_VERSION}); upgrade mlci"
        )
    if cfg.schema < SCHEMA_VERSION:
        raise project.error(
            "schema", f"schema {cfg.schema} is older than {SCHEMA_VERSION}; run 'mlci upgrade' to migrate it"
        )
    # The same rule as `mlci new` (names.py): a name mlci.yaml accepts is one `mlci new` would.
    package = cfg.project.package
    problem = package_problem(package, project.root)
    if problem:
        raise project.error(
            "project.package",
            f"package {package!r} {problem}; choose another name (and rename src/{package}/ to match)",
        )
    problem = python_problem(cfg.ci.python)
    if problem:
        raise project.error("ci.python", f"ci.python {cfg.ci.python!r} {problem}")
    problem = project_name_problem(cfg.project.name)
    if problem:
        raise project.error(
            "project.name",
            f"project name {cfg.project.name!r} {problem}; choose another, e.g. '{cfg.project.name}-model'",
        )
    known = metrics_for(cfg.train.task)
    for index, text in enumerate(cfg.register.gates):
        key = f"register.gates[{index}]"
        try:
            gate = parse_gate(text)
        except ValueError as exc:
            raise project.error(key, f"{key}: {exc}") from None
        if gate.metric not in known:
            hint = _did_you_mean(gate.metric, list(known)) or f"; {cfg.train.task} metrics: {', '.join(known)}"
            raise project.error(key, f"{key}: unknown metric '{gate.metric}'{hint}")
    if cfg.primary_metric not in known:
        hint = _did_you_mean(cfg.primary_metric, list(known)) or f"; {cfg.train.task} metrics: {', '.join(known)}"
        raise project.error("register.primary_metric", f"unknown metric '{cfg.primary_metric}'{hint}")
    for key in ("train", "holdout"):
        rel = getattr(cfg.data, key)
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise project.error(f"data.{key}", f"'{rel}' must be a path inside the project, relative to mlci.yaml")
    if cfg.ci.actions == "remote" and not (cfg.ci.mlci_repository and cfg.ci.mlci_ref):
        missing = "ci.mlci_repository" if not cfg.ci.mlci_repository else "ci.mlci_ref"
        raise project.error(
            "ci.actions",
            f"ci.actions: remote needs {missing} (the repository and the full commit SHA to pin); "
            "set it or use ci.actions: vendored",
        )


# ---------------------------------------------------------------- JSON Schema


def json_schema() -> dict[str, Any]:
    """The JSON Schema of mlci.yaml, generated from the dataclasses above."""
    return json_schema_of(
        Config, "mlci.yaml", "Configuration of an mlci project: the one source of truth for its pipeline."
    )


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


if __name__ == "__main__":  # pragma: no cover - handy when editing the schema
    import json

    json.dump(json_schema(), sys.stdout, indent=2)
