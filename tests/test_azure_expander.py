"""The offline Azure template expander (tests/azure_pipelines/expander.py): a good pipeline
expands to exactly the expected YAML; each wrong one fails with its one exact line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure_pipelines.expander import expand
from azure_pipelines.expressions import AzurePipelineError, evaluate

PIPELINE = """\
trigger: [main]
resources:
  repositories:
    - repository: mlci
      type: github
      name: acme/mlci
      ref: refs/tags/v1
variables:
  pythonVersion: '3.11'
stages:
  - template: templates/ci.yml
    parameters:
      pythonVersion: ${{ variables.pythonVersion }}
      epochs: 3
      useGpu: 'false'
      extraArgs: [--fast, --seed=1]
      preSteps:
        - script: echo pre
  - template: t/deploy.yml@mlci
    parameters:
      environment: staging
"""
CI = """\
parameters:
  - name: pythonVersion
    type: string
    values: ['3.10', '3.11', '3.12']
  - name: epochs
    type: number
    default: 1
  - name: useGpu
    type: boolean
    default: false
  - name: extraArgs
    type: object
    default: []
  - name: preSteps
    type: stepList
    default: []
stages:
  - stage: CI
    jobs:
      - job: Test
        steps:
          - ${{ parameters.preSteps }}
          - template: steps.yml
            parameters:
              version: ${{ parameters.pythonVersion }}
          - script: train --epochs ${{ parameters.epochs }} ${{ join(' ', parameters.extraArgs) }}
            displayName: ${{ format('Train on {0}', parameters.pythonVersion) }}
            ${{ if eq(parameters.useGpu, true) }}:
              env: {GPU: '1'}
            ${{ else }}:
              env: {GPU: '0'}
          - ${{ each arg in parameters.extraArgs }}:
            - script: echo ${{ upper(arg) }}
          - ${{ if in(variables['Build.Reason'], 'PullRequest', 'Manual') }}:
            - script: echo on a pull request
          - ${{ if ne(coalesce(variables.missing, 'x'), 'x') }}:
            - script: never
"""
STEPS = """\
parameters:
  - name: version
    type: string
steps:
  - task: UsePythonVersion@0
    inputs:
      versionSpec: ${{ parameters.version }}
"""
DEPLOY = """\
parameters:
  - name: environment
    type: string
    values: [staging, production]
stages:
  - stage: Deploy_${{ parameters.environment }}
    jobs:
      - deployment: Deploy
        environment: ${{ parameters.environment }}
        strategy:
          runOnce:
            deploy:
              steps:
                - script: echo deploy to ${{ lower(parameters.environment) }}
"""

EXPECTED: dict[str, Any] = {
    "trigger": ["main"],
    "resources": {
        "repositories": [{"repository": "mlci", "type": "github", "name": "acme/mlci", "ref": "refs/tags/v1"}]
    },
    "variables": {"pythonVersion": "3.11"},
    "stages": [
        {
            "stage": "CI",
            "jobs": [
                {
                    "job": "Test",
                    "steps": [
                        {"script": "echo pre"},
                        {"task": "UsePythonVersion@0", "inputs": {"versionSpec": "3.11"}},
                        {
                            "script": "train --epochs 3 --fast --seed=1",
                            "displayName": "Train on 3.11",
                            "env": {"GPU": "0"},
                        },
                        {"script": "echo --FAST"},
                        {"script": "echo --SEED=1"},
                        {"script": "echo on a pull request"},
                    ],
                }
            ],
        },
        {
            "stage": "Deploy_staging",
            "jobs": [
                {
                    "deployment": "Deploy",
                    "environment": "staging",
                    "strategy": {"runOnce": {"deploy": {"steps": [{"script": "echo deploy to staging"}]}}},
                }
            ],
        },
    ],
}


def write_tree(tmp_path: Path, edits: dict[str, str | None] | None = None) -> tuple[Path, dict[str, Path]]:
    files: dict[str, str | None] = {
        "p/azure-pipelines.yml": PIPELINE,
        "p/templates/ci.yml": CI,
        "p/templates/steps.yml": STEPS,
        "lib/t/deploy.yml": DEPLOY,
        **(edits or {}),
    }
    for name, text in files.items():
        if text is not None:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
    return tmp_path / "p/azure-pipelines.yml", {"mlci": tmp_path / "lib"}


def test_a_good_pipeline_expands_to_exactly_the_expected_yaml(tmp_path: Path) -> None:
    pipeline, repositories = write_tree(tmp_path)
    assert expand(pipeline, repositories, variables={"Build.Reason": "PullRequest"}) == EXPECTED


def test_compile_time_conditions_follow_the_variables_given(tmp_path: Path) -> None:
    pipeline, repositories = write_tree(tmp_path, {"p/azure-pipelines.yml": PIPELINE.replace("'false'", "'True'")})
    steps = expand(pipeline, repositories, variables={"Build.Reason": "IndividualCI"})["stages"][0]["jobs"][0]["steps"]
    assert steps[2]["env"] == {"GPU": "1"}
    assert "echo on a pull request" not in [s.get("script") for s in steps]


CHAIN = "azure-pipelines.yml -> templates/ci.yml"


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        pytest.param(
            {"p/azure-pipelines.yml": PIPELINE.replace("epochs: 3", "epoch: 3")},
            f"{CHAIN}: unknown parameter 'epoch' (declared: pythonVersion, epochs, useGpu, extraArgs, preSteps); "
            "fix its name or declare it in the template's parameters:",
            id="typo",
        ),
        pytest.param(
            {"p/azure-pipelines.yml": PIPELINE.replace("epochs: 3", "epochs: five")},
            f"{CHAIN}: parameter 'epochs' expects a number, got 'five'; pass a number",
            id="number",
        ),
        pytest.param(
            {"p/azure-pipelines.yml": PIPELINE.replace("'false'", "maybe")},
            f"{CHAIN}: parameter 'useGpu' expects a boolean (true or false), got 'maybe'; "
            "pass a boolean (true or false)",
            id="boolean",
        ),
        pytest.param(
            {"p/azure-pipelines.yml": PIPELINE.replace("pythonVersion: '3.11'", "pythonVersion: '2.7'")},
            f"{CHAIN}: parameter 'pythonVersion' has value '2.7', not one of '3.10', '3.11', '3.12'; "
            "pass one of the allowed values",
            id="values",
        ),
        pytest.param(
            {"p/azure-pipelines.yml": PIPELINE.replace("environment: staging", "environment: qa")},
            "azure-pipelines.yml -> t/deploy.yml@mlci: parameter 'environment' has value 'qa', not one of "
            "'staging', 'production'; pass one of the allowed values",
            id="values-in-a-repository-template",
        ),
        pytest.param(
            {"p/templates/steps.yml": None},
            f"{CHAIN} -> templates/steps.yml: template file {{root}}/p/templates/steps.yml does not exist "
            "(included from templates/ci.yml); fix the template: path",
            id="missing-template",
        ),
        pytest.param(
            {"p/azure-pipelines.yml": PIPELINE.replace("      pythonVersion: ${{ variables.pythonVersion }}\n", "")},
            f"{CHAIN}: parameter 'pythonVersion' is required and was not passed; "
            "pass pythonVersion: or give it a default",
            id="missing-required",
        ),
        pytest.param(
            {"p/templates/ci.yml": CI.replace("upper(arg)", "shout(arg)")},
            f"{CHAIN}: unknown function 'shout' in expression ' shout(arg) '; fix the expression",
            id="unknown-function",
        ),
        pytest.param(
            {"p/templates/ci.yml": CI.replace("parameters.epochs }}", "parameters.epoch }}")},
            f"{CHAIN}: parameters.epoch is not declared (declared: epochs, extraArgs, preSteps, pythonVersion, "
            "useGpu); fix the expression",
            id="undeclared-parameter-used",
        ),
        pytest.param(
            {"p/azure-pipelines.yml": PIPELINE.replace("- script: echo pre", "- echo pre")},
            f"{CHAIN}: parameter 'preSteps' expects a stepList (each item a mapping with one of ['bash', 'checkout', "
            "'download', 'powershell', 'publish', 'pwsh', 'script', 'task', 'template']), got ['echo pre']; pass a "
            "stepList (each item a mapping with one of ['bash', 'checkout', 'download', 'powershell', 'publish', "
            "'pwsh', 'script', 'task', 'template'])",
            id="steplist",
        ),
        pytest.param(
            {"p/azure-pipelines.yml": PIPELINE.replace("@mlci", "@tools")},
            "azure-pipelines.yml: template 't/deploy.yml@tools' names repository 'tools', which "
            "resources.repositories does not declare; declare 'tools' there",
            id="undeclared-repository",
        ),
        pytest.param(
            {"p/templates/steps.yml": STEPS.replace("steps:", "jobs:")},
            f"{CHAIN} -> templates/steps.yml: a template used in steps: must hold steps:, this one holds jobs; "
            "include it under ['jobs']",
            id="wrong-level",
        ),
        pytest.param(
            {"p/templates/ci.yml": CI.replace("env: {GPU: '1'}", "env: {GPU: '1'}\n              env: {GPU: '2'}")},
            f"{CHAIN}: invalid YAML line 30: key 'env' appears twice; fix the YAML syntax",
            id="duplicate-key",
        ),
    ],
)
def test_each_wrong_pipeline_fails_with_its_one_line(
    tmp_path: Path, edits: dict[str, str | None], message: str
) -> None:
    pipeline, repositories = write_tree(tmp_path, edits)
    with pytest.raises(AzurePipelineError) as raised:
        expand(pipeline, repositories, variables={"Build.Reason": "PullRequest"})
    assert str(raised.value) == message.format(root=tmp_path)
    assert "\n" not in str(raised.value)


def test_a_repository_alias_without_a_local_folder_is_named(tmp_path: Path) -> None:
    pipeline, _ = write_tree(tmp_path)
    with pytest.raises(
        AzurePipelineError,
        match=r"^azure-pipelines.yml: repository 'mlci' has no local folder; "
        r"pass repositories=\{'mlci': <folder>\}$",
    ):
        expand(pipeline)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("eq('Main', 'main')", True),  # strings compare ignoring case
        ("eq(true, 'false')", True),  # Azure casts the right side: a non-empty string is True
        ("eq(3, '3.0')", True),
        ("ne('a', 'b')", True),
        ("and(true, or(false, not(false)))", True),
        ("in('b', 'a', 'B')", True),
        ("contains('refs/heads/main', 'HEADS')", True),
        ("format('{0}-{{x}}-{1}', 'a', true)", "a-{x}-True"),
        ("coalesce('', null, 'c')", "c"),
        ("join(',', variables.list)", "1,2"),
        ("variables['Build.SourceBranch']", "refs/heads/main"),
        ("variables['NOT.there']", None),
    ],
)
def test_expression_functions_follow_azure(expression: str, value: Any) -> None:
    names = {"variables": {"list": ["1", "2"], "build.sourcebranch": "refs/heads/main"}}
    assert evaluate(expression, names) == value


def test_the_constructs_mlcis_stage_templates_use(tmp_path: Path) -> None:
    """What the Azure renderer emits beyond the pipeline above: `${{ each v in parameters.x }}:`
    over an object inside a mapping (a stage step's env: one key per setting, none for an empty
    object), and a native `false` passed to a boolean parameter, tested against `true`."""
    (tmp_path / "t").mkdir()
    (tmp_path / "azure-pipelines.yml").write_text(
        """\
steps:
  - template: t/stage.yml
    parameters:
      cache: false
      settings:
        HOST: $(DATABRICKS_HOST)
        AUTH: "azure-cli"
  - template: t/stage.yml
"""
    )
    (tmp_path / "t" / "stage.yml").write_text(
        """\
parameters:
  - name: cache
    type: boolean
    default: "true"
  - name: settings
    type: object
    default: {}
steps:
  - ${{ if eq(parameters.cache, true) }}:
    - task: Cache@2
  - bash: mlci train
    env:
      CACHED: ${{ parameters.cache }}
      ${{ each variable in parameters.settings }}:
        ${{ variable.key }}: ${{ variable.value }}
"""
    )
    assert expand(tmp_path / "azure-pipelines.yml") == {
        "steps": [
            {"bash": "mlci train", "env": {"CACHED": False, "HOST": "$(DATABRICKS_HOST)", "AUTH": "azure-cli"}},
            {"task": "Cache@2"},
            {"bash": "mlci train", "env": {"CACHED": True}},
        ]
    }
