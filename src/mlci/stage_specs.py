"""The stage registry: what each stage is, apart from its code (that is in mlci/stages/).

This module is the one list of the stages (`STAGES`, in the order `mlci run` runs them) and the one
place each stage's facts are written: its names, command-line options, CI inputs and outputs,
job name, timeout and what it needs installed (mlci's extras, the project). The command line,
`mlci run`, the output check of every stage run and each CI job's install are built from it.
It holds strings only and imports no stage module, so reading it (`mlci --help`) stays cheap;
a stage's code is imported from `StageSpec.entry` when the stage runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlci import targets

if TYPE_CHECKING:
    from mlci.config import Config


@dataclass(frozen=True)
class Option:
    """One command-line option, as argparse takes it (`flags`, `dest`, ...).

    `handover`: under `mlci run`, the option takes the value an earlier stage of the same run
    output under this name (register's --run-id is this run's train's `run-id`)."""

    flags: tuple[str, ...]
    dest: str
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    default: Any = None
    flag_only: bool = False  # a switch (`store_true`): takes no value
    handover: str | None = None
    positional: bool = False  # an optional positional argument (`flags` holds its one name)


@dataclass(frozen=True)
class Input:
    """An input of the stage's CI step: when it is not empty, it is passed as `flag VALUE`."""

    name: str
    description: str
    flag: str  # one of the stage's Option flags


@dataclass(frozen=True)
class Output:
    """An output of the stage's CI step, written by every run of the stage (empty when unknown)."""

    name: str
    description: str


@dataclass(frozen=True)
class StageSpec:
    """Everything about one stage that is not its code."""

    name: str  # the command (`mlci test`), its record .mlci/out/<name>.json and its name in `mlci run`
    ci_id: str  # the id of its CI job and of its GitHub action (`unit-test`)
    entry: str  # "module:function": run(project, options) -> StageResult
    help: str  # its line in `mlci --help`
    description: str  # the text of `mlci <name> --help`
    ci_description: str  # what its CI step (the GitHub action) says it does
    job_name: str  # its CI job's display name
    timeout_minutes: int  # its CI job's timeout
    options: tuple[Option, ...] = ()  # besides --project-dir, which every stage takes
    inputs: tuple[Input, ...] = ()
    outputs: tuple[Output, ...] = ()  # `result` first; the rest exactly what a passing run returns
    # Whether `mlci run` (without stage names) runs it: monitor runs on a schedule, on what a
    # served model logged, not on every commit.
    in_run: bool = True
    # The extras of mlci its code needs beyond the core install (pyproject.toml), whatever the
    # configuration; `stage_extras` adds what mlci.yaml implies. Its CI job installs exactly these.
    extras: tuple[str, ...] = ()
    # Whether its CI job installs the project itself (pip install -e): the stages that import
    # or run the project's code. lint and data-test read files only.
    needs_project: bool = True

    @property
    def module(self) -> str:
        return self.entry.partition(":")[0]

    @property
    def uses_tracking(self) -> bool:
        """Whether the stage talks to MLflow (and so needs its tracking and registry URIs)."""
        return TRACKING_URI in self.options

    @property
    def produced(self) -> frozenset[str]:
        """The outputs the stage's own result carries: all but `result`, which mlci writes."""
        return frozenset(output.name for output in self.outputs) - {RESULT.name}


# Options more than one command takes, written once.
PROJECT_DIR = Option(
    ("-C", "--project-dir"),
    "project_dir",
    "project directory (default: the nearest directory with mlci.yaml)",
    metavar="DIR",
)
TRACKING_URI = Option(
    ("--tracking-uri",),
    "tracking_uri",
    "MLflow tracking URI (overrides MLFLOW_TRACKING_URI and mlci.yaml)",
    metavar="URI",
)
ENGINE = Option(
    ("--engine",),
    "engine",
    "where the contract's SQL runs (default: mlci.yaml data_test.engine, else duckdb)",
    choices=("duckdb", "spark"),
)
CONTRACT = Option(
    ("--contract",),
    "contract",
    "the data contract (default: mlci.yaml data_test.contract, else data/contract.yml)",
    metavar="PATH",
)

RESULT = Output("result", "passed, failed or error, as in .mlci/out/<stage>.json.")
_TRACKING_INPUT = Input(
    "tracking-uri", "MLflow tracking URI (default: MLFLOW_TRACKING_URI, then mlci.yaml).", "--tracking-uri"
)

STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        name="lint",
        ci_id="lint",
        entry="mlci.stages.lint:run",
        help="ruff check + ruff format --check (+ pre-commit)",
        description=(
            "Check the code: ruff check, ruff format --check and, with lint.pre_commit, the pre-commit hooks. "
            "A check never edits files; --fix applies the fixes."
        ),
        ci_description=(
            "ruff check and ruff format --check (and pre-commit when enabled), with "
            "annotations; results in .mlci/out/lint.json."
        ),
        job_name="Lint",
        timeout_minutes=15,
        options=(
            Option(
                ("--fix",),
                "fix",
                "apply the fixes: ruff check --fix, ruff format (and the pre-commit hooks), then check",
                default=False,
                flag_only=True,
            ),
        ),
        outputs=(RESULT, Output("findings", "Number of ruff findings.")),
        extras=(),
        needs_project=False,
    ),
    StageSpec(
        name="test",
        ci_id="unit-test",
        entry="mlci.stages.unit_test:run",
        help="pytest with JUnit XML and coverage",
        description="Run pytest on test.paths with JUnit XML (.mlci/out/junit.xml) and line coverage of the package.",
        ci_description="pytest with JUnit XML and coverage; failing tests become annotations.",
        job_name="Unit tests",
        timeout_minutes=30,
        outputs=(RESULT, Output("tests", "Number of tests run."), Output("coverage", "Line coverage in percent.")),
        extras=("unit-test",),
        needs_project=True,
    ),
    StageSpec(
        name="data-test",
        ci_id="data-test",
        entry="mlci.stages.data_test:run",
        help="check the data contract and drift (DuckDB, or Spark at scale)",
        description=(
            "Check data/contract.yml: schema, nulls, ranges, allowed values, uniqueness, row counts, "
            "freshness, SQL expectations and drift against the reference profile."
        ),
        ci_description="The data contract and drift checks; each check is a JUnit test case.",
        job_name="Data tests",
        timeout_minutes=30,
        options=(
            ENGINE,
            CONTRACT,
            Option(
                ("--source",),
                "source",
                "check this file instead of the contract's dataset (e.g. the holdout split)",
                metavar="PATH",
            ),
        ),
        inputs=(Input("engine", "duckdb (default) or spark.", "--engine"),),
        outputs=(RESULT,),
        extras=("data",),
        needs_project=False,
    ),
    StageSpec(
        name="train",
        ci_id="train",
        entry="mlci.stages.train:run",
        help="train the entrypoint under an MLflow run",
        description=(
            "Train train.entrypoint under an MLflow run: params, holdout metrics, lineage tags and the model "
            "with its signature and input example."
        ),
        ci_description=(
            "Train the project's entrypoint under an MLflow run with lineage tags; "
            "a metrics table goes to the job summary."
        ),
        job_name="Train",
        timeout_minutes=60,
        options=(TRACKING_URI,),
        inputs=(_TRACKING_INPUT,),
        outputs=(RESULT, Output("run-id", "MLflow run id."), Output("model-uri", "URI of the logged model.")),
        extras=("train",),
        needs_project=True,
    ),
    StageSpec(
        name="register",
        ci_id="register",
        entry="mlci.stages.register:run",
        help="register the trained model if it passes the gates",
        description=(
            "Score the trained model on the holdout, check the gates and the comparison with the champion, "
            "and register a passing model as challenger."
        ),
        ci_description="Check the gates and the champion comparison; register a passing model as challenger.",
        job_name="Register",
        timeout_minutes=30,
        options=(
            TRACKING_URI,
            # Under `mlci run`: this run's own model, never whatever .mlci/out/train.json says by now.
            Option(
                ("--run-id",),
                "run_id",
                "MLflow run to register (default: the last 'mlci train')",
                handover="run-id",
            ),
        ),
        inputs=(Input("run-id", "Run to register (default: the last mlci train).", "--run-id"), _TRACKING_INPUT),
        outputs=(
            RESULT,
            Output("model-name", "Registered model name."),
            Output("model-version", "Registered version."),
        ),
        extras=("train",),
        needs_project=True,
    ),
    StageSpec(
        name="deploy",
        ci_id="deploy",
        entry="mlci.stages.deploy:run",
        help="smoke-test a version served, then move the environment's alias",
        description=(
            "Serve a version on loopback, smoke-test it with its input example, and only then move the "
            "environment's alias (production also moves champion); aliases are put back on any failure. "
            "Environments, in order: staging, production. --env staging (the default) deploys --version or the "
            "challenger; a later environment takes exactly the version the one before it verified."
        ),
        ci_description=(
            "Serve and smoke-test a version, then move the environment's alias (production also moves champion); "
            "aliases are put back on failure."
        ),
        job_name="Deploy",  # a job per environment: "Deploy to <env>"
        timeout_minutes=30,
        options=(
            TRACKING_URI,
            Option(("--target",), "target", "default: mlci.yaml's target", choices=tuple(targets.NAMES)),
            Option(("--env",), "env", "environment: staging (default) or production", metavar="NAME"),
            # Under `mlci run` (the first environment only): the version this run's register answered.
            Option(
                ("--version",),
                "model_version",
                "version to deploy (default: challenger)",
                metavar="N",
                handover="model-version",
            ),
        ),
        inputs=(
            Input(
                "env",
                "Environment: staging (default; the challenger) or production (exactly what staging verified).",
                "--env",
            ),
            Input(
                "version",
                "Version to deploy (default: staging takes the challenger, production what staging serves); "
                "production accepts only exactly what staging serves and verified.",
                "--version",
            ),
            Input("target", "local or databricks (default: mlci.yaml).", "--target"),
            _TRACKING_INPUT,
        ),
        outputs=(
            RESULT,
            Output("model-version", "Version the environment now serves."),
            Output("environment", "The environment deployed to."),
            Output("endpoint-url", "URL the model was served at for the smoke test."),
        ),
        extras=("serve",),
        needs_project=True,
    ),
    StageSpec(
        name="monitor",
        ci_id="monitor",
        entry="mlci.stages.monitor:run",
        help="metric tables per window of what the served model logged, and the retrain decision",
        description=(
            "Monitor the served model: 'run' computes the metric tables per window (data, drift, realised and "
            "estimated performance) from the inference table and the labels, 'check' applies the retrain rule "
            "(exit 0 for hold and retrain alike, 1 when it cannot decide), 'report' writes the HTML report; "
            "without an action, all three."
        ),
        ci_description=(
            "Compute the monitoring metric tables, apply the retrain rule and write the report; "
            "the decision is the retrain output."
        ),
        job_name="Monitor",
        timeout_minutes=60,
        options=(
            Option(
                ("action",),
                "action",
                "run, check or report (default: all three)",
                choices=("run", "check", "report"),
                positional=True,
            ),
            TRACKING_URI,
            ENGINE,
            Option(("--since",), "since", "only windows starting this long ago or later, e.g. 30d", metavar="AGE"),
            Option(
                ("--now",),
                "now",
                "the time windows close and the cooldown is measured at (ISO 8601; default: now)",
                metavar="TIME",
            ),
        ),
        inputs=(_TRACKING_INPUT,),
        outputs=(
            RESULT,
            Output("retrain", "true when the retrain rule fired, else false."),
            Output("decision", "retrain, hold or insufficient_data."),
        ),
        in_run=False,
        extras=("train",),
        needs_project=True,
    ),
)
# The checks every commit is checked by: independent of each other and of what follows them,
# so CI runs them as parallel jobs and `mlci run` concurrently (--jobs), each before any later stage.
CHECKS: tuple[str, ...] = ("lint", "test", "data-test")
NAMES: tuple[str, ...] = tuple(spec.name for spec in STAGES)
# The stages `mlci run` runs when it is given no stage names, in order.
RUN_NAMES: tuple[str, ...] = tuple(spec.name for spec in STAGES if spec.in_run)
# Outputs `mlci run` hands from one stage to the options of later ones (Option.handover).
HANDED_OVER: frozenset[str] = frozenset(o.handover for spec in STAGES for o in spec.options if o.handover)


def stage_extras(spec: StageSpec, config: Config, options: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The extras of mlci the stage needs for this project: its own, and what mlci.yaml (or the
    command line's `options`, by dest, e.g. --engine) implies. What its CI job installs and
    what `mlci <stage>` checks is installed before it starts (mlci/extras.py)."""
    options = options or {}
    extras = list(spec.extras)
    if spec.name == "lint" and config.lint.pre_commit:
        extras.append("pre-commit")
    # monitor's --engine defaults to data_test.engine too (stages/monitor.py).
    if ENGINE in spec.options and (options.get(ENGINE.dest) or config.data_test.engine) == "spark":
        extras.append("spark")
    if spec.uses_tracking and (options.get("target") or config.target) == "databricks":
        extras.append("databricks")
    return tuple(dict.fromkeys(extras))
