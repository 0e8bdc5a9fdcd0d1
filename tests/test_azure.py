"""Azure Pipelines audits beside the provider kit (issue 11): the vendored Azure schema on
every rendered file, the same model graph as GitHub's rendering, hostile answers inert, and
`mlci new --provider azure` giving a complete project."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from provider_kit import COMBOS, Combo, model_graph
from update_golden import combo_name, render_ci_files

from mlci import providers
from mlci.errors import UsageError
from mlci.providers.azure.render import env_value
from mlci.targets.base import ByProvider, Literal, Secret, Variable

# What Azure expands in any value before a script runs: a macro `$(name)`, a template expression
# `${{ }}`, a runtime expression `$[ ]` (bash's `$(command args)` is no macro: not a name).
AZURE_EXPANDS = re.compile(r"\$\([\w.]+\)|\$\{\{|\$\[")
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[Combo, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("azure")
    return {combo: render_ci_files("azure", combo, root) for combo in COMBOS}


def _patched_schema(folder: Path) -> Path:
    """check-jsonschema's vendored Azure schema, plus PublishCodeCoverageResults@2: the schema
    (service-schema v1.261.1) still lists only @1, which Microsoft deprecated for @2."""
    import check_jsonschema

    vendored = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "azure-pipelines.json"
    schema = json.loads(vendored.read_text(encoding="utf-8"))
    tasks = schema["definitions"]["task"]["anyOf"]
    v1 = next(
        t for t in tasks if t.get("properties", {}).get("task", {}).get("pattern") == "^PublishCodeCoverageResults@1$"
    )
    v2 = copy.deepcopy(v1)
    v2["properties"]["task"]["pattern"] = "^PublishCodeCoverageResults@2$"
    inputs = v2["properties"]["inputs"]["properties"]
    v2["properties"]["inputs"]["properties"] = {
        k: inputs[k] for k in ("summaryFileLocation", "pathToSources", "failIfCoverageEmpty")
    }
    v2.pop("deprecationMessage", None)
    tasks.append(v2)
    path = folder / "azure-pipelines.schema.json"
    path.write_text(json.dumps(schema), encoding="utf-8")
    return path


@pytest.mark.skipif(sys.version_info < (3, 11), reason="check-jsonschema's Azure transform needs Python 3.11+")
def test_every_rendered_file_keeps_azures_schema(rendered: dict[Combo, dict[str, bytes]], tmp_path: Path) -> None:
    paths = []
    for combo, files in rendered.items():
        for name, data in files.items():
            path = tmp_path / combo_name(combo) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            paths.append(str(path))
    assert len(paths) == 4 * 10 + 4 * 2  # vendored: the pipeline, the upgrade, 8 templates; remote: the first two
    schema = _patched_schema(tmp_path)
    command = [str(CHECK_JSONSCHEMA), "--schemafile", str(schema), "--regex-variant", "nonunicode"]
    done = subprocess.run(
        [*command, "--data-transform", "azure-pipelines", *paths], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


@pytest.mark.parametrize("combo", COMBOS, ids=[combo_name(c) for c in COMBOS])
def test_github_and_azure_parse_back_to_the_same_graph(
    combo: Combo, rendered: dict[Combo, dict[str, bytes]], tmp_path: Path
) -> None:
    github = providers.get("github").parse_back(render_ci_files("github", combo, tmp_path))
    azure = providers.get("azure").parse_back(rendered[combo])
    assert model_graph(azure) == model_graph(github)
    assert {p.id for p in azure} == ({"ci", "cd", "retrain"} if combo[2] == "retrain" else {"ci", "cd"})


def test_credential_values_are_names_or_quoted_fixed_text() -> None:
    assert env_value(Secret("MLFLOW_TRACKING_TOKEN")) == "$(MLFLOW_TRACKING_TOKEN)"
    assert env_value(Variable("DATABRICKS_HOST")) == "$(DATABRICKS_HOST)"
    assert env_value(Literal("databricks-uc")) == '"databricks-uc"'
    assert env_value(ByProvider((("github", "github-oidc"), ("azure", "azure-cli")))) == '"azure-cli"'
    for macro in ("$(System.AccessToken)", "${{ parameters.x }}", "$[ variables.x ]"):
        with pytest.raises(ValueError, match="holds Azure macro syntax"):
            env_value(Literal(f"a {macro}"))  # Azure would expand it: a fixed value must stay fixed
    with pytest.raises(ValueError, match="is not an Azure Pipelines variable name"):
        env_value(Secret("X) $(System.AccessToken"))
    with pytest.raises(UsageError, match="cannot federate from CI provider 'azure'"):
        env_value(ByProvider((("github", "github-oidc"),), target="databricks"))


# Any macro `$(...)`, whatever its name holds (`-`, `.`), in a script body: none is allowed.
ANY_MACRO = re.compile(r"\$\([^)]*\)|\$\{\{|\$\[")
TOKEN_ENV = ("SYSTEM_ACCESSTOKEN", "AZURE_DEVOPS_EXT_PAT")


def test_secrets_reach_the_step_through_env_only(rendered: dict[Combo, dict[str, bytes]]) -> None:
    # Every `$(` in any rendered Azure file (the pipeline's gate and registry scripts, the upgrade
    # pipeline, the stage templates) is in a value Azure maps (env:, inputs), never a script body.
    import yaml

    assert ANY_MACRO.search("$(my-secret.v2)") and not AZURE_EXPANDS.search("$(my-secret.v2)")
    for combo, files in rendered.items():
        for name, data in files.items():
            if not name.endswith(".yml"):
                continue
            bodies = _scripts(yaml.safe_load(data))
            assert bodies or name.startswith(".azure/templates/"), (combo, name)
            for body in bodies:
                # bash's `$(command args)` is a macro to Azure too when it looks like a name
                for found in ANY_MACRO.findall(body):
                    assert found.startswith("$(") and " " in found.strip("$()"), (combo, name, found)


def _upgrade_steps(files: dict[str, bytes]) -> list[dict[str, object]]:
    import yaml

    document = yaml.safe_load(files[".azure/mlci-upgrade.yml"])
    return [step for job in document["jobs"] for step in job["steps"]]


def test_the_upgrade_token_reaches_only_the_pull_request_step(rendered: dict[Combo, dict[str, bytes]]) -> None:
    for combo, files in rendered.items():
        steps = _upgrade_steps(files)
        holding = [s for s in steps if any(name in (s.get("env") or {}) for name in TOKEN_ENV)]
        assert len(holding) == 1, combo  # the push and pull request step, not `mlci upgrade`
        (pr_step,) = holding
        assert "mlci upgrade --" not in pr_step["bash"] and "az repos pr create" in pr_step["bash"], combo
        assert "mlci upgrade --branch mlci/upgrade --commit" in "".join(_scripts(steps)), combo
        for step in steps:
            env = step.get("env") or {}
            assert all("AccessToken" not in str(v) for k, v in env.items() if k not in TOKEN_ENV), combo
            for body in _scripts(step):
                assert "AccessToken" not in body and "AZURE_DEVOPS_EXT_PAT" not in body, combo
                assert "extraheader=" not in body and " -c " not in body, combo  # no header on a command line
                for line in body.splitlines():
                    if "SYSTEM_ACCESSTOKEN" in line:  # only into git's environment, built in the script
                        assert line.strip().startswith('GIT_CONFIG_VALUE_0="AUTHORIZATION: bearer $SYSTEM_ACCESSTOKEN"')
        assert "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraheader" in pr_step["bash"], combo


def test_the_upgrade_pull_request_step_fails_on_any_error(rendered: dict[Combo, dict[str, bytes]]) -> None:
    for combo, files in rendered.items():
        (pr_step,) = [s for s in _upgrade_steps(files) if "az repos pr create" in s.get("bash", "")]
        body = pr_step["bash"]
        assert "|| echo" not in body and "|| true" not in body, combo
        assert body.startswith("set -euo pipefail"), combo
        assert body.index("az repos pr list") < body.index("az repos pr create"), combo
        assert "--status active" in body and "BUILD_SOURCEBRANCHNAME" not in body, combo
        assert body.count('--target-branch "$BUILD_SOURCEBRANCH"') == 2, combo  # the full ref, both calls


def test_the_upgrade_schedule_runs_on_the_default_branch_only(rendered: dict[Combo, dict[str, bytes]]) -> None:
    import yaml

    for combo, files in rendered.items():
        document = yaml.safe_load(files[".azure/mlci-upgrade.yml"])
        (schedule,) = document["schedules"]
        assert schedule["branches"] == {"include": ["main"]}, combo
        assert document["trigger"] == "none" and document["pr"] == "none", combo


def _scripts(step: object) -> list[str]:
    if isinstance(step, dict):
        found = [v for k, v in step.items() if k in ("bash", "script", "inlineScript") and isinstance(v, str)]
        return found + [s for v in step.values() for s in _scripts(v)]
    if isinstance(step, list):
        return [s for item in step for s in _scripts(item)]
    return []


def test_mlci_new_with_azure_gives_a_complete_project(tmp_path: Path) -> None:
    assert run_cli("new", "demo", "--provider", "azure", "--defaults", "--no-git", "--output-dir", str(tmp_path)) == 0
    project = tmp_path / "demo"
    assert (project / "azure-pipelines.yml").is_file() and not (project / ".github").exists()
    assert sorted(p.name for p in (project / ".azure" / "templates").iterdir()) == [
        "data-test.yml",
        "deploy.yml",
        "lint.yml",
        "monitor.yml",
        "register.yml",
        "setup.yml",
        "train.yml",
        "unit-test.yml",
    ]
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "azure-pipelines.yml" in readme and ".github" not in readme
    assert run_cli("upgrade", "--check", str(project)) == 0
