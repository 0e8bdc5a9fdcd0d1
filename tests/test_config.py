"""mlci.yaml validation: every error names file, line and the fix, and exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import MINIMAL_CONFIG, REPO, run_cli

from mlci import providers, targets
from mlci.config import Config, json_schema, parse_config
from mlci.errors import ConfigError
from mlci.project import load_project

VALID = MINIMAL_CONFIG


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "mlci.yaml")
    return caught.value.message


def semantic_error_of(tmp_path: Path, text: str) -> str:
    (tmp_path / "mlci.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    return caught.value.message


def test_valid_config_has_defaults_and_key_lines() -> None:
    config, lines = parse_config(VALID, "mlci.yaml")
    assert isinstance(config, Config)
    assert config.model_name == "churn_model" and config.primary_metric == "roc_auc"
    assert config.ci.provider == "github" and config.deploy.host == "127.0.0.1"
    assert config.train.params == {} and config.lint.paths == ["."]
    assert lines["register.gates[0]"] == 13 and lines["data.target"] == 8


# The fixes ci.jenkins' patterns name in words.
JENKINS_AGENT_FIX = (
    "use 'any' or a label expression of letters, digits, '-', '_', '.', spaces, &&, ||, ! and parentheses "
    "(no quotes, backslashes or $)"
)
JENKINS_APPROVERS_FIX = (
    "use comma-separated user or group names of letters, digits, '-', '_', '.', '@', '/', '*', '+' and spaces "
    "(no quotes, backslashes or $)"
)
# Documents the loader rejects before any semantic check, with the exact message.
STRUCTURAL_ERRORS = [
    (
        VALID.replace("  target: label", "  targt: label"),
        "mlci.yaml:8: unknown key 'data.targt'; did you mean 'target'?",
    ),
    (VALID + "deploi:\n  port: 1\n", "mlci.yaml:14: unknown key 'deploi'; did you mean 'deploy'?"),
    (
        VALID + "zzz: 1\n",
        "mlci.yaml:14: unknown key 'zzz'; allowed keys: schema, project, data, train, "
        "target, ci, tracking, register, deploy, lint, test, data_test, databricks, monitor",
    ),
    (
        VALID.replace("schema: 1", "schema: one"),
        "mlci.yaml:1: 'schema' must be an integer, not a string 'one'; e.g. 8080",
    ),
    (VALID + "deploy:\n  port: 70000\n", "mlci.yaml:15: 'deploy.port' is 70000; it must be at most 65535"),
    (
        VALID + "deploy:\n  port: '80'\n",
        "mlci.yaml:15: 'deploy.port' must be an integer, not a string '80'; e.g. 8080",
    ),
    (
        VALID + "lint:\n  pre_commit: yes please\n",
        "mlci.yaml:15: 'lint.pre_commit' must be true or false, not a string 'yes please'; e.g. true",
    ),
    # The choices are the registries' names (a new provider or target is one line there).
    (VALID + "target: dbx\n", f"mlci.yaml:14: 'target' is 'dbx'; use one of {', '.join(targets.NAMES)}"),
    (
        VALID + "ci:\n  provider: gitlab\n",
        f"mlci.yaml:15: 'ci.provider' is 'gitlab'; use one of {', '.join(providers.NAMES)}",
    ),
    (
        VALID.replace("    - roc_auc >= 0.9", "    roc_auc: 0.9"),
        "mlci.yaml:13: 'register.gates' must be a list, e.g. [\"text\"]",
    ),
    (
        VALID.replace("  package: churn_model\n", ""),
        "mlci.yaml:3: missing required key 'project.package' (Python import name of the project's package.)",
    ),
    (
        VALID.replace("  name: churn-model", "  name: Churn Model"),
        "mlci.yaml:3: 'project.name' is 'Churn Model', which does not match ^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$",
    ),
    (
        VALID.replace("  entrypoint: churn_model.train:train", "  entrypoint: churn_model/train.py"),
        "mlci.yaml:10: 'train.entrypoint' is 'churn_model/train.py', which does not match "
        "^[A-Za-z_][\\w]*(?:\\.[A-Za-z_][\\w]*)*:[A-Za-z_][\\w]*$",
    ),
    # ci.jenkins values land between single quotes in the Jenkinsfile: no quote, backslash or $.
    (
        VALID + "ci:\n  jenkins:\n    agent: \"linux'; sh 'id\"\n",
        "mlci.yaml:16: 'ci.jenkins.agent' is \"linux'; sh 'id\"; " + JENKINS_AGENT_FIX,
    ),
    (
        VALID + "ci:\n  jenkins:\n    agent: 'a\\b'\n",
        "mlci.yaml:16: 'ci.jenkins.agent' is 'a\\\\b'; " + JENKINS_AGENT_FIX,
    ),
    (
        VALID + "ci:\n  jenkins:\n    agent: '&& ||'\n",
        "mlci.yaml:16: 'ci.jenkins.agent' is '&& ||'; " + JENKINS_AGENT_FIX,
    ),
    (
        VALID + "ci:\n  jenkins:\n    approvers: alice,${USER}\n",
        "mlci.yaml:16: 'ci.jenkins.approvers' is 'alice,${USER}'; " + JENKINS_APPROVERS_FIX,
    ),
    (
        VALID + "ci:\n  jenkins:\n    approvers: alice,,bob\n",
        "mlci.yaml:16: 'ci.jenkins.approvers' is 'alice,,bob'; " + JENKINS_APPROVERS_FIX,
    ),
    (
        VALID + "ci:\n  jenkins:\n    libary: true\n",
        "mlci.yaml:16: unknown key 'ci.jenkins.libary'; did you mean 'library'?",
    ),
    (VALID + "project:\n  name: x\n", "mlci.yaml:14: key 'project' appears twice; keep one"),
    ("", "mlci.yaml:1: the file is empty; start it with 'schema: 1' (see docs/mlci-yaml.md)"),
    ("- a\n", "mlci.yaml:1: mlci.yaml must be a mapping of keys to values"),
]


@pytest.mark.parametrize(("text", "message"), STRUCTURAL_ERRORS)
def test_structural_errors(text: str, message: str) -> None:
    assert error_of(text) == message


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (
            ("roc_auc >= 0.9", "rocauc >= 0.9"),
            "mlci.yaml:13: register.gates[0]: unknown metric 'rocauc'; did you mean 'roc_auc'?",
        ),
        (
            ("roc_auc >= 0.9", "roc_auc => 0.9"),
            "mlci.yaml:13: register.gates[0]: gate 'roc_auc => 0.9' is not 'metric OP number' "
            "(OP one of >=, <=, >, <), "
            "e.g. 'roc_auc >= 0.9'",
        ),
        (
            ("roc_auc >= 0.9", "rmse <= 3"),
            "mlci.yaml:13: register.gates[0]: unknown metric 'rmse'; classification metrics: accuracy, precision, "
            "recall, f1, roc_auc, log_loss",
        ),
        (("schema: 1", "schema: 9"), "mlci.yaml:1: schema 9 is newer than this mlci understands (1); upgrade mlci"),
        (
            ("train: data/train.csv", "train: ../elsewhere.csv"),
            "mlci.yaml:6: '../elsewhere.csv' must be a path inside the project, relative to mlci.yaml",
        ),
        (
            ("  package: churn_model", "  package: class"),
            "mlci.yaml:4: package 'class' is not a lowercase Python identifier; choose another name (and rename "
            "src/class/ to match)",
        ),
        # The same name rule as `mlci new` (issue 9 item 14): mlci.yaml accepted these before.
        (
            ("  package: churn_model", "  package: json"),
            "mlci.yaml:4: package 'json' would shadow Python's standard-library module 'json'; choose another "
            "name (and rename src/json/ to match)",
        ),
        (
            ("  package: churn_model", "  package: sqlalchemy"),
            "mlci.yaml:4: package 'sqlalchemy' would shadow the 'sqlalchemy' module the pipeline imports; choose "
            "another name (and rename src/sqlalchemy/ to match)",
        ),
        (
            ("  package: churn_model", "  package: lpt1"),
            "mlci.yaml:4: package 'lpt1' is a device name Windows reserves, so src/lpt1/ could not be checked out "
            "there; choose another name (and rename src/lpt1/ to match)",
        ),
        (
            ("  name: churn-model", "  name: con"),
            "mlci.yaml:3: project name 'con' is a device name Windows reserves, so the repository could not be "
            "checked out there; choose another, e.g. 'con-model'",
        ),
    ],
)
def test_semantic_errors(tmp_path: Path, replace: tuple[str, str], message: str) -> None:
    message = message.replace("mlci.yaml:", f"{tmp_path / 'mlci.yaml'}:")
    assert semantic_error_of(tmp_path, VALID.replace(*replace)) == message


def test_ci_jenkins_is_optional_and_reaches_the_render_context(tmp_path: Path) -> None:
    """Every mlci.yaml written before ci.jenkins loads unchanged with its defaults (every option
    combination the goldens render, and the minimal one); set values reach the providers'
    RenderContext (issue 12)."""
    import sys

    from mlci.config import JenkinsSection
    from mlci.providers.base import RenderContext

    sys.path.insert(0, str(REPO / "scripts"))
    from update_golden import COMBOS, combo_answers, config_text

    texts = [VALID, *(config_text(combo_answers(provider, combo)) for provider in providers.NAMES for combo in COMBOS)]
    assert all("  jenkins:" not in text for text in texts)
    for text in texts:
        assert parse_config(text, "mlci.yaml")[0].ci.jenkins == JenkinsSection("any", "mlci-approvers", False)
    context = RenderContext.of(parse_config(VALID, "mlci.yaml")[0], "0.1.0")
    assert (context.jenkins_agent, context.jenkins_approvers, context.jenkins_library) == (
        "any",
        "mlci-approvers",
        False,
    )
    text = VALID + "ci:\n  jenkins:\n    agent: '(linux || mac) && !arm64 && python3.11'\n"
    text += "    approvers: ml-leads,alice@acme.com,Domain Admins,acme*ml-team\n    library: true\n"
    (tmp_path / "mlci.yaml").write_text(text)
    project = load_project(tmp_path)
    context = RenderContext.of(project.config, "0.1.0")
    assert (context.jenkins_agent, context.jenkins_approvers, context.jenkins_library) == (
        "(linux || mac) && !arm64 && python3.11",
        "ml-leads,alice@acme.com,Domain Admins,acme*ml-team",
        True,
    )
    assert project.line_of("ci.jenkins.approvers") == 17


def test_yaml_syntax_error_names_the_line() -> None:
    message = error_of("schema: 1\nproject: [\n")
    assert message.startswith("mlci.yaml:3: invalid YAML: ") and message.endswith("; fix the syntax")


def test_databricks_target_needs_three_level_model_name(tmp_path: Path) -> None:
    text = VALID + "target: databricks\n"
    assert semantic_error_of(tmp_path, text) == (
        f"{tmp_path / 'mlci.yaml'}: on Databricks the model name must be Unity Catalog's 'catalog.schema.model', "
        "not 'churn_model'"
    )
    (tmp_path / "mlci.yaml").write_text(text.replace("register:\n", "register:\n  model_name: main.ml.churn\n"))
    assert load_project(tmp_path).config.model_name == "main.ml.churn"


def test_cli_reports_config_error_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mlci.yaml").write_text(VALID.replace("  target: label", "  targt: label"))
    assert run_cli("lint", "-C", str(tmp_path)) == 2
    assert (
        capsys.readouterr().err
        == f"mlci: error: {tmp_path / 'mlci.yaml'}:8: unknown key 'data.targt'; did you mean 'target'?\n"
    )


def test_missing_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("train", "-C", str(tmp_path)) == 2
    assert "no mlci.yaml here or in any parent; run 'mlci new NAME' or cd into a project" in capsys.readouterr().err


def test_published_schema_matches_the_dataclasses() -> None:
    published = json.loads((REPO / "schema" / "mlci.schema.json").read_text())
    assert published == json_schema(), "run: mlci schema > schema/mlci.schema.json"


@pytest.mark.parametrize(("text", "message"), STRUCTURAL_ERRORS)
def test_schema_rejects_what_the_loader_rejects(text: str, message: str) -> None:
    """A differential test: editors validate mlci.yaml with the published schema, so each
    document the loader refuses is refused by a real JSON Schema validator too."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema comes with check-jsonschema (Python 3.11+)")
    schema = json.loads((REPO / "schema" / "mlci.schema.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert list(validator.iter_errors(yaml.safe_load(VALID))) == []  # so a rejection below is the edit's
    assert list(validator.iter_errors(yaml.safe_load(text))), f"the schema accepts what the loader rejects: {message}"


def test_every_list_of_provider_names_is_the_registry() -> None:
    """ci.provider's schema enum, `mlci new --provider` and its prompt read providers.NAMES."""
    from mlci import providers
    from mlci.answers import choices_of
    from mlci.cli import build_parser
    from mlci.config import CISection

    names = list(providers.NAMES)
    assert json_schema()["properties"]["ci"]["properties"]["provider"]["enum"] == names
    assert list(choices_of(CISection, "provider")) == names
    new = build_parser()._subparsers._group_actions[0].choices["new"]  # type: ignore[union-attr]
    assert next(a.choices for a in new._actions if a.dest == "provider") == tuple(names)


def test_reference_documents_every_key() -> None:
    from mlci.commands.schema import key_table

    docs = (REPO / "docs" / "mlci-yaml.md").read_text()
    assert key_table() in docs, "run: mlci schema --markdown, and paste it into docs/mlci-yaml.md"


def test_the_projects_own_importable_package_costs_no_dependency_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a runner the project is installed (or src/ is on the path), so find_spec finds its
    package: every stage would read all distributions' metadata unless its own is told apart."""
    from mlci import names

    # A name no other test imports: find_spec answers from sys.modules for an imported one.
    (tmp_path / "mlci.yaml").write_text(MINIMAL_CONFIG.replace("churn_model", "scan_free_model"))
    (tmp_path / "src" / "scan_free_model").mkdir(parents=True)
    (tmp_path / "src" / "scan_free_model" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    names.dependency_modules.cache_clear()
    load_project(tmp_path)
    assert names.dependency_modules.cache_info().misses == 0
    # The same package found outside the project is looked up.
    assert names.package_problem("scan_free_model", tmp_path / "elsewhere") is None
    assert names.dependency_modules.cache_info().misses == 1


# Validation once, in the config layer (issue 10 item 3): mlci.yaml accepted `python: "3.9"`,
# which `mlci new` refuses; both doors now apply config.python_problem and names.package_problem.
@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (
            ("register:\n", 'ci:\n  python: "3.9"\nregister:\n'),
            "ci.python '3.9' is not a supported Python; use 3.10 or newer, e.g. 3.11",
        ),
        (
            ("register:\n", 'ci:\n  python: "3.010"\nregister:\n'),
            "ci.python '3.010' is not a supported Python; use 3.10 or newer, e.g. 3.11",
        ),
        (
            ("  package: churn_model", "  package: mlflow"),
            "package 'mlflow' would shadow the 'mlflow' module the "
            "pipeline imports; choose another name (and rename src/mlflow/ to match)",
        ),
    ],
)
def test_mlci_yaml_refuses_what_mlci_new_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], replace: tuple[str, str], message: str
) -> None:
    text = VALID.replace(*replace)
    key = "python:" if "python" in replace[1] else "package:"
    line = next(n for n, row in enumerate(text.splitlines(), start=1) if row.strip().startswith(key))
    (tmp_path / "mlci.yaml").write_text(text)
    assert run_cli("lint", "-C", str(tmp_path)) == 2
    assert capsys.readouterr().err == f"mlci: error: {tmp_path / 'mlci.yaml'}:{line}: {message}\n"
