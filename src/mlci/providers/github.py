"""GitHub Actions: workflows from the pipeline model, and mlci's composite actions.

The composite actions are rendered from one template and one list of specs below, both for
mlci's own `actions/<name>/action.yml` (used remotely, pinned by commit) and for the copies
a project vendors under `.github/actions/mlci-<name>/`, so the two can never drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from mlci.errors import InfraError
from mlci.pipeline import Job, Pipeline
from mlci.templates import action_pins, environment, shipped_dir, version_text

NAME = "github"
WORKFLOWS = ".github/workflows"
VENDORED = ".github/actions"


@dataclass(frozen=True)
class ActionInput:
    name: str
    description: str
    flag: str  # the mlci option the input becomes; passed only when the input is not empty

    @property
    def env(self) -> str:
        return "MLCI_IN_" + self.name.upper().replace("-", "_")


@dataclass(frozen=True)
class ActionSpec:
    name: str
    command: tuple[str, ...]
    description: str
    inputs: tuple[ActionInput, ...] = ()
    outputs: tuple[tuple[str, str], ...] = ()


_RESULT = ("result", "passed, failed or error, as in .mlci/out/<stage>.json.")
_TRACKING = ActionInput(
    "tracking-uri", "MLflow tracking URI (default: MLFLOW_TRACKING_URI, then mlci.yaml).", "--tracking-uri"
)
ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec(
        "lint",
        ("lint",),
        "ruff check and ruff format --check (and pre-commit when enabled), with "
        "annotations; results in .mlci/out/lint.json.",
        outputs=(_RESULT, ("findings", "Number of ruff findings.")),
    ),
    ActionSpec(
        "unit-test",
        ("test",),
        "pytest with JUnit XML and coverage; failing tests become annotations.",
        outputs=(_RESULT, ("tests", "Number of tests run."), ("coverage", "Line coverage in percent.")),
    ),
    ActionSpec(
        "data-test",
        ("data-test",),
        "The data contract and drift checks; each check is a JUnit test case.",
        inputs=(ActionInput("engine", "duckdb (default) or spark.", "--engine"),),
        outputs=(_RESULT,),
    ),
    ActionSpec(
        "train",
        ("train",),
        "Train the project's entrypoint under an MLflow run with lineage tags; "
        "a metrics table goes to the job summary.",
        inputs=(_TRACKING,),
        outputs=(_RESULT, ("run-id", "MLflow run id."), ("model-uri", "URI of the logged model.")),
    ),
    ActionSpec(
        "register",
        ("register",),
        "Check the gates and the champion comparison; register a passing model as challenger.",
        inputs=(ActionInput("run-id", "Run to register (default: the last mlci train).", "--run-id"), _TRACKING),
        outputs=(_RESULT, ("model-name", "Registered model name."), ("model-version", "Registered version.")),
    ),
    ActionSpec(
        "deploy",
        ("deploy",),
        "Serve and smoke-test a version, then move the environment's alias (production also moves champion); "
        "aliases are put back on failure.",
        inputs=(
            ActionInput(
                "env",
                "Environment: staging (default; the challenger) or production (exactly what staging verified).",
                "--env",
            ),
            ActionInput(
                "version",
                "Version to deploy (default: staging takes the challenger, production what staging serves); "
                "production accepts only exactly what staging serves and verified.",
                "--version",
            ),
            ActionInput("target", "local or databricks (default: mlci.yaml).", "--target"),
            _TRACKING,
        ),
        outputs=(
            _RESULT,
            ("model-version", "Version the environment now serves."),
            ("environment", "The environment deployed to."),
            ("endpoint-url", "URL the model was served at for the smoke test."),
        ),
    ),
)
ACTION_FOR_STAGE = {spec.command[0]: spec.name for spec in ACTIONS}

# Why each permission is granted, written next to it in the workflow.
PERMISSION_REASONS = {
    ("contents", "read"): "check out the repository",
    ("id-token", "write"): "OIDC token for Databricks: no long-lived secret",
}


@cache
def _template(name: str) -> Any:
    return environment().from_string((shipped_dir("workflow_templates") / NAME / name).read_text(encoding="utf-8"))


def render_actions(mlci_version: str, vendored: bool) -> dict[str, str]:
    """Every composite action: {action name: action.yml text}."""
    pins = action_pins()
    rendered = {
        "setup": _template("setup-action.yml.j2").render(mlci_version=mlci_version, vendored=vendored, pins=pins)
    }
    template = _template("action.yml.j2")
    for spec in ACTIONS:
        rendered[spec.name] = template.render(action=spec, mlci_version=mlci_version, vendored=vendored)
    return rendered


def action_ref(name: str, context: Mapping[str, Any]) -> str:
    """The `uses:` value of an mlci action, with its version comment for remote pins."""
    if context["ci_actions"] == "vendored":
        # `$/` is this repository at the workflow's own commit, independent of what was checked out.
        return f"$/{VENDORED}/mlci-{name}"
    version = version_text(context["mlci_version"])  # in a YAML comment: must stay on its line
    return f"{context['mlci_repository']}/actions/{name}@{context['mlci_ref']} # mlci {version}"


def permissions(job: Job) -> dict[str, str]:
    granted = dict(job.permissions)
    if "databricks" in job.credentials:
        granted["id-token"] = "write"
    return granted


def registry_key(pipeline: Pipeline) -> str:
    """The prefix of the cache keys the kept registry is saved under (see docs/github.md).

    Named after the one branch that saves it; every save adds the run id, attempt and job, so
    keys never collide and a restore by this prefix gets the newest save."""
    if pipeline.registry_branch is None:
        raise ValueError(f"pipeline {pipeline.id} keeps no registry")
    return f"mlci-registry-{pipeline.registry_branch}"


def _check_yaml(text: str, what: str) -> None:
    """Refuse to write a workflow that is not YAML: a template bug must never reach a repository."""
    import yaml

    try:
        yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise InfraError(
            f"mlci rendered an invalid {what} workflow ({exc}); this is a bug in mlci, please report it"
        ) from None


def render(pipelines: tuple[Pipeline, ...], context: Mapping[str, Any]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    template = _template("workflow.yml.j2")
    install = context.get("mlci_install") or (
        f"mlci=={context['mlci_version']}" if context["ci_actions"] == "vendored" else ""
    )
    for pipeline in pipelines:
        text = template.render(
            **context,
            pipeline=pipeline,
            action_ref=lambda name: action_ref(name, context),
            action_for=lambda job: ACTION_FOR_STAGE[job.stage],
            permissions=permissions,
            reasons=PERMISSION_REASONS,
            registry_key=registry_key,
            mlci_install_spec=install,
            pins=action_pins(),
        )
        _check_yaml(text, pipeline.id)
        files[f"{WORKFLOWS}/{pipeline.id}.yml"] = text.encode("utf-8")
    # Not a pipeline of the model: the weekly `mlci upgrade` pull request (docs/upgrades.md).
    upgrade = _template("mlci-upgrade.yml.j2").render(**context, pins=action_pins())
    files[f"{WORKFLOWS}/mlci-upgrade.yml"] = upgrade.encode("utf-8")
    if context["ci_actions"] == "vendored":
        for name, text in render_actions(str(context["mlci_version"]), vendored=True).items():
            files[f"{VENDORED}/mlci-{name}/action.yml"] = text.encode("utf-8")
    return files


def actions_readme() -> str:
    """actions/README.md: every action's inputs and outputs, from the rendered action files."""
    import yaml

    lines = [
        "# mlci composite actions",
        "",
        "Thin wrappers: `setup` installs mlci and the project; every other action runs one `mlci` stage in",
        "`project-dir`, which writes `.mlci/out/<stage>.json`, the job summary and the outputs below.",
        "Inputs reach scripts only through `env:`. Use them pinned by full commit SHA:",
        "",
        "```yaml",
        "- uses: OWNER/mlci/actions/setup@<40-character SHA> # mlci X.Y.Z",
        "- uses: OWNER/mlci/actions/train@<40-character SHA> # mlci X.Y.Z",
        "```",
        "",
        "or let `mlci new` vendor them into `.github/actions/` (the default, `ci.actions: vendored`).",
        "This file is generated by `scripts/render_actions.py`.",
    ]
    for name, text in render_actions("X.Y.Z", vendored=False).items():
        action = yaml.safe_load(text)
        lines += ["", f"## {name}", "", action["description"], "", "| input | default | description |", "|---|---|---|"]
        lines += [
            f"| `{key}` | {_shown(spec.get('default', ''))} | {spec['description']} |"
            for key, spec in action["inputs"].items()
        ]
        lines += ["", "| output | description |", "|---|---|"]
        lines += [f"| `{key}` | {spec['description']} |" for key, spec in action["outputs"].items()]
    return "\n".join(lines) + "\n"


def _shown(default: object) -> str:
    return f"`{default}`" if default != "" else "(empty)"
