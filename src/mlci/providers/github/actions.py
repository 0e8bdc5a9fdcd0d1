"""mlci's composite actions: one template and one list of specs below, both for mlci's own
`actions/<name>/action.yml` (used remotely, pinned by commit) and for the copies a project
vendors under `.github/actions/mlci-<name>/`, so the two can never drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.providers.github import PROVIDER
from mlci.template_env import compiled


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


def template(templates: Path, name: str) -> Any:
    """A template of the folder `templates`, compiled once per distinct text (templates.compiled)."""
    return compiled((templates / name).read_text(encoding="utf-8"))


def action_pins(templates: Path | None = None) -> dict[str, dict[str, str]]:
    """The pinned third-party actions ({name: {"sha", "tag"}}) of action-pins.json."""
    path = (templates or PROVIDER.shipped_templates()) / "action-pins.json"
    pins: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))["actions"]
    return pins


def render_actions(mlci_version: str, vendored: bool, templates: Path | None = None) -> dict[str, str]:
    """Every composite action: {action name: action.yml text}."""
    templates = templates or PROVIDER.shipped_templates()
    pins = action_pins(templates)
    rendered = {
        "setup": template(templates, "setup-action.yml.j2").render(
            mlci_version=mlci_version, vendored=vendored, pins=pins
        )
    }
    action_template = template(templates, "action.yml.j2")
    for spec in ACTIONS:
        rendered[spec.name] = action_template.render(action=spec, mlci_version=mlci_version, vendored=vendored)
    return rendered


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
