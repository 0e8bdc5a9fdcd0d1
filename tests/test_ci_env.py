"""Each CI system's own lines for an annotation and for step outputs, exactly as documented
(docs/stages.md, README.md): GitHub Actions (GITHUB_ACTIONS), Azure Pipelines (TF_BUILD),
Jenkins (JENKINS_URL) and off CI. test_ci_escape.py proves hostile values stay one command."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlci import console, providers
from mlci.stages._result import publish

# The variable each runner sets (Azure writes TF_BUILD=True), as the runner spells it.
RUNNER_ENV = {
    "github": ("GITHUB_ACTIONS", "true"),
    "azure": ("TF_BUILD", "True"),
    "jenkins": ("JENKINS_URL", "https://ci/"),
}
PROVIDERS = [*RUNNER_ENV, None]

# One finding, with every property an annotation can carry.
ANNOTATION = {
    "github": "::error file=src/a.py,line=3,col=7,title=ruff E501::line too long",
    # Azure's logissue has no title; its type is the level.
    "azure": "##vso[task.logissue type=error;sourcepath=src/a.py;linenumber=3;columnnumber=7]line too long",
    "jenkins": None,  # Jenkins reads no commands from the log
    None: None,
}

# What a stage's outputs become: GitHub's $GITHUB_OUTPUT file, Azure's output variables (printed).
OUTPUT_FILE = {"github": "result=passed\nmodel-version=3\n"}
# Jenkins': a properties file in the build's workspace.
JENKINS_FILE = {
    "jenkins": "# mlci outputs of Jenkins job stage: java.util.Properties format\nresult=passed\nmodel-version=3\n"
}
PRINTED = {
    "azure": "##vso[task.setvariable variable=result;isOutput=true]passed\n"
    "##vso[task.setvariable variable=model-version;isOutput=true]3\n"
}


@pytest.fixture(params=PROVIDERS, ids=[str(kind) for kind in PROVIDERS])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    runner: str | None = request.param
    if runner is not None:
        monkeypatch.setenv(*RUNNER_ENV[runner])
    console.configure()
    assert (runtime.name if (runtime := providers.detect()) else None) == runner
    return runner


def test_annotation_is_the_providers_documented_line(kind: str | None) -> None:
    runtime = providers.detect()
    line = runtime and runtime.annotation("error", "line too long", file="src/a.py", line=3, col=7, title="ruff E501")
    assert line == ANNOTATION[kind]


def test_set_outputs_uses_the_providers_own_channel(
    kind: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Set on every runner: only GitHub's branch may write it. Jenkins writes into its build's
    # workspace (WORKSPACE, set in every build; without it the current directory).
    github_output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(github_output))
    monkeypatch.setenv("WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.chdir(tmp_path)
    publish({"result": "passed", "model-version": 3}, "")
    captured = capsys.readouterr()
    assert captured.out + captured.err == PRINTED.get(kind, "")
    assert (github_output.read_text() if github_output.exists() else None) == OUTPUT_FILE.get(kind)
    jenkins = tmp_path / "workspace" / ".mlci" / "out" / "jenkins" / "stage.properties"
    assert (jenkins.read_text() if jenkins.exists() else None) == JENKINS_FILE.get(kind)
