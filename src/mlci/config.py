"""Load and validate mlci.yaml, the project's one source of truth.

The dataclasses below *are* the schema: the typed-YAML loader (typed_yaml.py, shared with data
contracts) walks their type hints, the JSON Schema for editors is generated from them (`mlci
schema`), and the rest of mlci reads typed attributes. This module adds what is mlci.yaml's
own: the cross-key rules (gates, metrics, names, paths). Every error names the file, the line
and the fix, and exits 2.
"""

from __future__ import annotations

import math
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlci import providers, targets
from mlci.errors import ConfigError
from mlci.metrics import metrics_for
from mlci.names import package_problem, project_name_problem
from mlci.typed_yaml import NON_FINITE_FIX, did_you_mean, field, json_schema_of, parse_yaml, read_text_file

# The target names come from the registry (mlci.targets.NAMES, names only: it imports no
# target). A Literal's values must be spelled out for mypy, so mypy sees a str; at run time
# the loader, the JSON Schema and `mlci new` read the registry's names from the Literal.
if typing.TYPE_CHECKING:
    TargetName = str
else:
    TargetName = Literal[tuple(targets.NAMES)]

CONFIG_FILE = "mlci.yaml"
SCHEMA_VERSION = 1

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


@dataclass(frozen=True)
class ProjectSection:
    name: str = field("Project and distribution name (lowercase, digits, '-' or '_').", pattern=_NAME_RE.pattern)
    package: str = field("Python import name of the project's package.", pattern=r"^[a-z_][a-z0-9_]*$")
    description: str = field("One line describing the project.", "")


# What a Jenkinsfile holds between single quotes: no quote, backslash or `$` (Groovy and the
# shell would read those), ASCII only (Python's \w also takes other scripts' letters).
# The lookahead wants one label character (not only operators); no nested repeats to backtrack.
_JENKINS_LABEL_RE = r"^(?=.*[A-Za-z0-9_.])(?:[A-Za-z0-9_.() !-]|&&|\|\|)+$"
_JENKINS_NAMES_RE = r"^[A-Za-z0-9_.@/*+ -]+(?:,[A-Za-z0-9_.@/*+ -]+)*$"


@dataclass(frozen=True)
class JenkinsSection:
    agent: str = field(
        "Agent every Jenkins stage runs on: 'any', or a label expression of agents with ci.python as python3.X, "
        "git and bash on PATH, e.g. 'linux && python'.",
        "any",
        pattern=_JENKINS_LABEL_RE,
        pattern_fix="use 'any' or a label expression of letters, digits, '-', '_', '.', spaces, &&, ||, ! and "
        "parentheses (no quotes, backslashes or $)",
    )
    approvers: str = field(
        "Comma-separated Jenkins users or groups who may approve the production deployment (the input step's "
        "submitter).",
        "mlci-approvers",
        pattern=_JENKINS_NAMES_RE,
        pattern_fix="use comma-separated user or group names of letters, digits, '-', '_', '.', '@', '/', '*', '+' "
        "and spaces (no quotes, backslashes or $)",
    )
    library: bool = field(
        "The Jenkinsfile calls the shared library's mlciPipeline (the .jenkins/ folder, loaded as library 'mlci') "
        "instead of holding the stages itself.",
        False,
    )


@dataclass(frozen=True)
class CISection:
    # The one list of names is providers.NAMES; a CI system mlci knows but does not render yet
    # is refused with when it arrives (providers.later_message). The registry itself, not a
    # copy taken at import: a provider registered later (a test's) is a choice at once.
    provider: str = field(
        "CI system the pipeline files are rendered for.",
        providers.DEFAULT,
        choices=providers.NAMES,
        unavailable={name: providers.later_message(name) for name in providers.RUNTIME_ONLY},
    )
    # [0-9], not \d: Python's \d also takes fullwidth and Arabic-Indic digits (U+FF11, U+0661).
    python: str = field("Python version the CI jobs use.", "3.11", pattern=r"^3\.[0-9]+$")
    default_branch: str = field("Branch whose pushes run the cd pipeline.", "main", pattern=r"^[\w./-]+$")
    runs_on: str = field("Runner label of every job.", "ubuntu-latest", pattern=r"^[\w.-]+$")
    actions: Literal["vendored", "remote"] = field(
        "Where the workflows take mlci's actions from: copies under .github/actions/ (vendored) or the mlci "
        "repository pinned by commit (remote: needs mlci_repository and mlci_ref).",
        "vendored",
    )
    mlci_repository: str | None = field(
        "owner/name of the mlci repository the remote actions come from.", None, pattern=r"^[\w.-]+/[\w.-]+$"
    )
    mlci_ref: str | None = field(
        "Full 40-character commit SHA of mlci_repository the remote actions are pinned to.",
        None,
        pattern=r"^[0-9a-f]{40}$",
    )
    mlci_install: str | None = field(
        "pip requirement CI (and the project's dev extra) installs mlci from, e.g. mlci==0.1.0 or "
        "'mlci @ git+https://github.com/owner/mlci@<sha>'. mlci new writes one that CI can reach (how the "
        "running mlci was installed); unset: the remote actions' own checkout, or mlci==<version> when vendored.",
        None,
        # A requirement or a path; nothing a shell or a GitHub expression would interpret.
        pattern=r"^[\w.\-\[\],=<>!~@:/+ ]+$",
    )
    retrain_cron: str | None = field(
        "Cron schedule (UTC) of the retrain pipeline, e.g. '0 3 * * 1'; unset: no retrain pipeline.",
        None,
        pattern=r"^[0-9*/,\-A-Za-z?]+( [0-9*/,\-A-Za-z?]+){4}$",
    )
    jenkins: JenkinsSection = field(
        "Jenkins only: the agent, the production approvers and the shared library.", JenkinsSection()
    )


@dataclass(frozen=True)
class DataSection:
    train: str = field("Training data file (CSV or Parquet), relative to the project root.")
    holdout: str = field("Holdout data file used to score and compare models, relative to the project root.")
    target: str = field("Name of the label column in both files.")


@dataclass(frozen=True)
class TrainSection:
    entrypoint: str = field(
        "'module:function' called as function(features, target, params) and returning a fitted "
        "estimator with predict().",
        pattern=_ENTRYPOINT_RE.pattern,
    )
    task: Literal["classification", "regression"] = field("Kind of model; selects the metrics.", "classification")
    params: dict[str, Any] = field(
        "Hyper-parameters passed to the entrypoint and logged to MLflow: strings, finite numbers, "
        "booleans, and lists and mappings of them (no YAML aliases).",
        {},
    )
    serialization: Literal["cloudpickle", "skops"] = field(
        "How the model is serialised; cloudpickle matches what Databricks uses.", "cloudpickle"
    )
    experiment: str | None = field("MLflow experiment name (default: the project name).", None)


@dataclass(frozen=True)
class TrackingSection:
    uri: str | None = field(
        "MLflow tracking URI. MLFLOW_TRACKING_URI overrides it; default: sqlite:///.mlci/mlflow.db.", None
    )
    registry_uri: str | None = field("MLflow registry URI (default: the tracking URI).", None)


@dataclass(frozen=True)
class RegisterSection:
    model_name: str | None = field(
        "Registered model name (default: the package name); 'catalog.schema.model' on Databricks.", None
    )
    primary_metric: str | None = field(
        "Metric the challenger is compared on against the champion (default: roc_auc or rmse).", None
    )
    gates: list[str] = field("Conditions the candidate must meet, e.g. 'roc_auc >= 0.95'.", [])
    champion_tolerance: float = field(
        "How much worse than the champion on the primary metric the challenger may be.", 0.0, minimum=0
    )


# Unity Catalog names: each part an identifier (hyphens allowed, as back-quoted names allow them).
_UC_PART_RE = r"[A-Za-z_][A-Za-z0-9_-]*"
_UC_TABLE_RE = rf"^{_UC_PART_RE}\.{_UC_PART_RE}\.{_UC_PART_RE}$"
_WORKSPACE_URL_RE = r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?/?$"


@dataclass(frozen=True)
class BatchSection:
    input_table: str | None = field(
        "Databricks only: Unity Catalog table (catalog.schema.table) a scheduled job scores with the champion; "
        "unset: no batch job.",
        None,
        pattern=_UC_TABLE_RE,
    )
    output_table: str | None = field(
        "Table the batch job writes its predictions to (default: the input table's name + '_predictions').",
        None,
        pattern=_UC_TABLE_RE,
    )
    schedule: str = field(
        "Quartz cron schedule of the batch job (seconds first), in UTC.",
        "0 0 4 * * ?",
        pattern=r"^[0-9*/,\-A-Za-z?#L]+( [0-9*/,\-A-Za-z?#L]+){5,6}$",
    )


@dataclass(frozen=True)
class DeploySection:
    host: str = field("Address the local server binds to (loopback by default).", "127.0.0.1")
    port: int = field(
        "Port 'mlci serve' listens on (0: any free port); deploy's smoke test always takes a free port.",
        5055,
        minimum=0,
        maximum=65535,
    )
    ready_timeout: float = field("Seconds to wait for the served model to answer /health.", 120.0, minimum=1)
    batch: BatchSection = field("Databricks only: the scheduled batch-scoring job of the champion.", BatchSection())


@dataclass(frozen=True)
class DatabricksEnvironment:
    host: str | None = field(
        "Workspace URL of this environment (default: databricks.host, else the DATABRICKS_HOST variable).",
        None,
        pattern=_WORKSPACE_URL_RE,
    )
    catalog: str = field(
        "Unity Catalog catalog of this environment's tables (inference tables).", "main", pattern=rf"^{_UC_PART_RE}$"
    )
    schema: str = field("Schema of this environment's tables, in catalog.", "default", pattern=rf"^{_UC_PART_RE}$")
    endpoint: str | None = field(
        "Model Serving endpoint name (default: <project name>-<environment>).",
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$",
    )
    workload_size: Literal["Small", "Medium", "Large"] = field("Served entity's workload size.", "Small")
    scale_to_zero: bool = field("Scale the served entity to zero when idle.", True)
    canary_percent: int = field(
        "Traffic the new version takes first while the previous keeps the rest, before it takes all (0: at once).",
        0,
        minimum=0,
        maximum=99,
    )


@dataclass(frozen=True)
class DatabricksEnvironments:
    staging: DatabricksEnvironment = field("The staging workspace and endpoint.", DatabricksEnvironment())
    production: DatabricksEnvironment = field("The production workspace and endpoint.", DatabricksEnvironment())


@dataclass(frozen=True)
class DatabricksTrainSection:
    compute: Literal["serverless", "cluster"] = field(
        "Where the training run executes: serverless jobs compute, or a new job cluster (spark_version, "
        "node_type_id, num_workers).",
        "serverless",
    )
    environment_version: str = field("Serverless environment version of the run.", "3", pattern=r"^[0-9]+$")
    spark_version: str = field(
        "Databricks Runtime of the job cluster (compute: cluster).", "16.4.x-cpu-ml-scala2.12", pattern=r"^[\w.-]+$"
    )
    node_type_id: str | None = field(
        "Node type of the job cluster (compute: cluster), e.g. i3.xlarge.", None, pattern=r"^[\w.-]+$"
    )
    num_workers: int = field("Workers of the job cluster (0: single node).", 0, minimum=0)
    timeout: int = field("Seconds the training run may take before it is cancelled (exit 3).", 3600, minimum=1)


@dataclass(frozen=True)
class DatabricksSection:
    host: str | None = field(
        "Workspace URL every environment uses unless it names its own (default: the DATABRICKS_HOST variable).",
        None,
        pattern=_WORKSPACE_URL_RE,
    )
    profile: str | None = field(
        "~/.databrickscfg profile used on a developer's machine only (CI signs in by federation).",
        None,
        pattern=r"^[\w.-]+$",
    )
    volume: str = field(
        "Unity Catalog volume (catalog.schema.volume) training runs' wheels and data are uploaded to.",
        "main.default.mlci",
        pattern=_UC_TABLE_RE,
    )
    http_timeout: int = field("Seconds one HTTP request to the workspace may take.", 60, minimum=1)
    retry_timeout: int = field(
        "Seconds the SDK keeps retrying a throttled (429) or unavailable (503) call.", 300, minimum=1
    )
    poll_interval: float = field("Seconds between status polls of runs and endpoints.", 10.0, minimum=0.01)
    serving_timeout: int = field("Seconds a serving endpoint may take to become ready.", 1800, minimum=1)
    train: DatabricksTrainSection = field("The training run.", DatabricksTrainSection())
    environments: DatabricksEnvironments = field(
        "Per environment: workspace, tables and serving endpoint.", DatabricksEnvironments()
    )


@dataclass(frozen=True)
class LintSection:
    pre_commit: bool = field("Also run 'pre-commit run --all-files'.", False)
    paths: list[str] = field("Paths ruff checks.", ["."])


@dataclass(frozen=True)
class TestSection:
    __test__ = False  # not a pytest class
    paths: list[str] = field("Paths pytest collects.", ["tests"])
    coverage_min: float | None = field(
        "Fail the stage when line coverage (percent) is below this.", None, minimum=0, maximum=100
    )


@dataclass(frozen=True)
class DataTestSection:
    contract: str = field(
        "Data contract checked by 'mlci data-test', relative to the project root.", "data/contract.yml"
    )
    engine: Literal["duckdb", "spark"] = field(
        "Engine the contract's SQL runs on: embedded DuckDB, or Spark (local mode or Databricks).", "duckdb"
    )


# The signals a retrain rule may name, per task (mlci.monitoring reads each per window from
# the metric tables; the quality metrics carry Databricks Lakehouse Monitoring's names).
# Realised model quality, read from the profile table's `:table` rows.
CLASSIFICATION_QUALITY = ("accuracy_score", "precision", "recall", "f1_score", "roc_auc", "log_loss")
REGRESSION_QUALITY = (
    "mean_squared_error",
    "root_mean_squared_error",
    "mean_average_error",  # sic: Databricks' name
    "mean_absolute_percentage_error",
    "r2_score",
)
# Figures of mlci's performance table, whatever the task.
WINDOW_SIGNALS = ("label_coverage", "drifted_columns_share", "prediction_drift", "contract_failures")
CLASSIFICATION_SIGNALS = (
    *CLASSIFICATION_QUALITY,
    "estimated_accuracy_score",
    "estimated_precision",
    "estimated_recall",
    "estimated_f1_score",
    "estimation_gap",
    *WINDOW_SIGNALS,
)
REGRESSION_SIGNALS = (*REGRESSION_QUALITY, *WINDOW_SIGNALS)
DEFAULT_CLASSIFICATION_RULES = (
    "accuracy_score >= baseline - 0.05",
    "estimated_accuracy_score >= baseline - 0.05",
    "estimation_gap <= 0.05",
    "drifted_columns_share <= 0.5",
)
DEFAULT_REGRESSION_RULES = ("root_mean_squared_error <= baseline * 1.2", "drifted_columns_share <= 0.5")
# `signal >= 0.7`, `signal <= baseline + 0.1`, `signal >= baseline * 0.95`: the bound a signal
# must keep, absolute or relative to the model version's own baseline figure.
_SIGNAL_RULE_RE = re.compile(
    r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=)\s*(?:(baseline)\s*(?:([-+*])\s*([0-9]+\.?[0-9]*|\.[0-9]+))?|"
    r"([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?))\s*$"
)
_DURATION_RE = r"^[0-9]+[hdw]$"


@dataclass(frozen=True)
class SignalRule:
    """One parsed `monitor.retrain.signals` entry: the bound `signal` must keep."""

    signal: str
    direction: Literal["min", "max"]  # >= is a lower bound (min), <= an upper bound (max)
    value: float  # the absolute bound, or the operand applied to the baseline figure
    relative: Literal["", "+", "-", "*"] = ""  # "": absolute; else baseline <op> value

    def bound(self, baseline: float | None) -> float | None:
        """The absolute bound; None when it is relative and the baseline has no figure."""
        if not self.relative:
            return self.value
        if baseline is None:
            return None
        if self.relative == "+":
            return baseline + self.value
        if self.relative == "-":
            return baseline - self.value
        return baseline * self.value

    def __str__(self) -> str:
        op = ">=" if self.direction == "min" else "<="
        rhs = f"baseline {self.relative} {self.value:g}" if self.relative else f"{self.value:g}"
        return f"{self.signal} {op} {rhs}"


def parse_signal_rule(text: str) -> SignalRule:
    match = _SIGNAL_RULE_RE.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not 'signal >= bound' or 'signal <= bound' with a number or 'baseline [+-*] number' as "
            "the bound, e.g. 'accuracy_score >= baseline - 0.05'"
        )
    signal, op, baseline, rel, operand, absolute = match.groups()
    direction: Literal["min", "max"] = "min" if op == ">=" else "max"
    if baseline:
        value = float(operand) if operand else 0.0
        relative: Literal["", "+", "-", "*"] = rel or "+"  # type: ignore[assignment]
        return SignalRule(signal, direction, value, relative)
    number = float(absolute)
    if not math.isfinite(number):
        raise ValueError(f"{text!r}: the bound is {number}; {NON_FINITE_FIX}")
    return SignalRule(signal, direction, number)


@dataclass(frozen=True)
class MonitorLogSection:
    enabled: bool = field(
        "mlci serve logs every request to monitor.inference (the deploy smoke test is not traffic: never logged).", True
    )
    queue_rows: int = field(
        "Rows the logging queue holds before it drops new ones (counted, never blocking a prediction).",
        100000,
        minimum=1,
    )
    batch_rows: int = field("Rows written per Parquet file at most.", 5000, minimum=1)
    flush_seconds: float = field("Seconds a logged row waits at most before it is written.", 1.0, minimum=0.01)


@dataclass(frozen=True)
class DriftMethod:
    method: Literal[
        "population_stability_index", "js_distance", "ks_test", "tv_distance", "l_infinity_distance", "chi_squared_test"
    ] = field(
        "Statistic a column is judged drifted by (Databricks drift metric names; ks_test uses its statistic, "
        "chi_squared_test its p-value: drifted when below the threshold).",
        "population_stability_index",
    )
    threshold: float = field("A column drifts when its statistic exceeds this (p-value: falls below).", 0.2, minimum=0)


@dataclass(frozen=True)
class MonitorDriftSection:
    numeric: DriftMethod = field("Drift of numeric columns against the baseline's quantile bins.", DriftMethod())
    categorical: DriftMethod = field(
        "Drift of categorical columns against the baseline's vocabulary.", DriftMethod("js_distance", 0.1)
    )
    bins: int = field("Quantile bins of each numeric column in the baseline.", 10, minimum=2, maximum=100)
    columns: list[str] | None = field("Feature columns monitored (default: every feature the model takes).", None)


@dataclass(frozen=True)
class MonitorRetrainSection:
    signals: list[str] | None = field(
        "Bounds the signals must keep, e.g. 'accuracy_score >= baseline - 0.05' or 'drifted_columns_share <= 0.5' "
        "(default: the task's, see docs/monitoring.md).",
        None,
    )
    evaluate_last_windows: int = field("Closed windows the rule looks at (newest last).", 5, minimum=1)
    min_violating_windows: int = field("Violating windows among them that ask for a retrain.", 2, minimum=1)
    require_latest_window: bool = field("Retrain only when the newest window violates too.", True)
    min_rows_per_window: int = field("Rows a window needs to count as evidence.", 500, minimum=0)
    cooldown: str = field(
        "No retrain within this long of the last registered version, e.g. 3d, 12h, 1w.", "3d", pattern=_DURATION_RE
    )


@dataclass(frozen=True)
class MonitorSection:
    inference: str = field(
        "Inference table: the folder mlci serve logs requests to (Parquet, one folder per day), relative to the "
        "project root, or an absolute path (a volume a scheduled CI job mounts).",
        ".mlci/inference",
    )
    labels: str = field(
        "Folder of label files (CSV or Parquet with request_id, label, label_timestamp) that arrive later.",
        "data/labels",
    )
    output: str = field("Folder of the metric tables, the decision and the report.", ".mlci/monitor")
    granularity: Literal["1 hour", "1 day", "1 week", "1 month"] = field(
        "Length of a window (Databricks granularity names).", "1 day"
    )
    slices: list[str] = field("Columns whose values slice every metric (Databricks slicing_exprs).", [])
    min_label_coverage: float = field(
        "Share of a window's rows that must be labelled before its realised metrics count.", 0.3, minimum=0, maximum=1
    )
    schedule: str | None = field(
        "Cron schedule (UTC) of the monitor pipeline, which triggers a retrain when the rule fires; "
        "unset: no monitor pipeline.",
        None,
        pattern=r"^[0-9*/,\-A-Za-z?]+( [0-9*/,\-A-Za-z?]+){4}$",
    )
    log: MonitorLogSection = field("Inference logging of the local model server.", MonitorLogSection())
    drift: MonitorDriftSection = field("How drift is measured and judged.", MonitorDriftSection())
    retrain: MonitorRetrainSection = field("The retrain rule.", MonitorRetrainSection())

    def rules(self, task: str) -> tuple[SignalRule, ...]:
        texts = self.retrain.signals
        if texts is None:
            texts = list(DEFAULT_CLASSIFICATION_RULES if task == "classification" else DEFAULT_REGRESSION_RULES)
        return tuple(parse_signal_rule(text) for text in texts)


@dataclass(frozen=True)
class Config:
    schema: int = field("Version of this file's format; mlci migrates older versions.", minimum=1)
    project: ProjectSection = field("Names of the project.")
    data: DataSection = field("Training and holdout data.")
    train: TrainSection = field("The training entrypoint and its parameters.")
    target: TargetName = field("Where stages run: the embedded default or Databricks.", "local")
    ci: CISection = field("The CI system.", CISection())
    tracking: TrackingSection = field("MLflow tracking.", TrackingSection())
    register: RegisterSection = field("Registration gates and champion comparison.", RegisterSection())
    deploy: DeploySection = field("Serving the champion.", DeploySection())
    lint: LintSection = field("The lint stage.", LintSection())
    test: TestSection = field("The unit-test stage.", TestSection())
    data_test: DataTestSection = field("The data-test stage: data contract and drift.", DataTestSection())
    databricks: DatabricksSection = field(
        "target: databricks only: workspaces, training compute, serving.", DatabricksSection()
    )
    monitor: MonitorSection = field(
        "Monitoring of the served model: inference logging, metric tables and the retrain rule.", MonitorSection()
    )

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


def project_from_text(text: str, root: Path) -> Project:
    """Validate mlci.yaml text fully (types and semantics) as if it were `root`/mlci.yaml."""
    config, lines = parse_config(text, str(root / CONFIG_FILE))
    project = Project(root=root, config=config, lines=lines)
    _check_semantics(project)
    return project


def parse_config(text: str, filename: str) -> tuple[Config, dict[str, int]]:
    """Validate YAML text against the Config dataclasses; returns the config and key lines."""
    return parse_yaml(text, filename, Config, empty_hint="start it with 'schema: 1' (see docs/mlci-yaml.md)")


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
            hint = did_you_mean(gate.metric, list(known)) or f"; {cfg.train.task} metrics: {', '.join(known)}"
            raise project.error(key, f"{key}: unknown metric '{gate.metric}'{hint}")
    if cfg.primary_metric not in known:
        hint = did_you_mean(cfg.primary_metric, list(known)) or f"; {cfg.train.task} metrics: {', '.join(known)}"
        raise project.error("register.primary_metric", f"unknown metric '{cfg.primary_metric}'{hint}")
    for key in ("train", "holdout"):
        rel = getattr(cfg.data, key)
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise project.error(f"data.{key}", f"'{rel}' must be a path inside the project, relative to mlci.yaml")
    _check_monitor(project)
    if cfg.ci.actions == "remote" and not (cfg.ci.mlci_repository and cfg.ci.mlci_ref):
        missing = "ci.mlci_repository" if not cfg.ci.mlci_repository else "ci.mlci_ref"
        raise project.error(
            "ci.actions",
            f"ci.actions: remote needs {missing} (the repository and the full commit SHA to pin); "
            "set it or use ci.actions: vendored",
        )


def _check_monitor(project: Project) -> None:
    cfg = project.config
    monitor = cfg.monitor
    known = CLASSIFICATION_SIGNALS if cfg.train.task == "classification" else REGRESSION_SIGNALS
    for index, text in enumerate(monitor.retrain.signals or []):
        key = f"monitor.retrain.signals[{index}]"
        try:
            rule = parse_signal_rule(text)
        except ValueError as exc:
            raise project.error(key, f"{key}: {exc}") from None
        if rule.signal not in known:
            hint = did_you_mean(rule.signal, list(known)) or f"; {cfg.train.task} signals: {', '.join(known)}"
            raise project.error(key, f"{key}: unknown signal '{rule.signal}'{hint}")
    retrain = monitor.retrain
    if retrain.min_violating_windows > retrain.evaluate_last_windows:
        raise project.error(
            "monitor.retrain.min_violating_windows",
            f"monitor.retrain.min_violating_windows ({retrain.min_violating_windows}) is more than "
            f"evaluate_last_windows ({retrain.evaluate_last_windows}); lower it or look at more windows",
        )
    for key in ("inference", "labels", "output"):
        given = getattr(monitor, key)
        if "://" in given:
            raise project.error(
                f"monitor.{key}",
                f"monitor.{key}: '{given}' is a URL; mlci reads folders only: sync it to the machine first "
                "(a CI step) and give that folder",
            )
        # Absolute: a volume the CI runner mounts; relative: inside the project, never above it.
        if not Path(given).is_absolute() and ".." in Path(given).parts:
            raise project.error(
                f"monitor.{key}",
                f"monitor.{key}: '{given}' leaves the project; give a folder inside it or an absolute path",
            )


# ---------------------------------------------------------------- JSON Schema


def json_schema() -> dict[str, Any]:
    """The JSON Schema of mlci.yaml, generated from the dataclasses above."""
    return json_schema_of(
        Config, "mlci.yaml", "Configuration of an mlci project: the one source of truth for its pipeline."
    )


if __name__ == "__main__":  # pragma: no cover - handy when editing the schema
    import json

    json.dump(json_schema(), sys.stdout, indent=2)
