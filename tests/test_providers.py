"""The provider registry (mlci/providers/): managed paths, the typed render context, injected
template roots, and each CI system's runtime adapter line by line (code review T15, T20, P3)."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import jinja2
import pytest

from mlci import __version__, providers, templates
from mlci.commands.new import collect_answers
from mlci.install_source import InstallSource

SHA = "0123456789abcdef0123456789abcdef01234567"
# Every option that changes which CI files a provider writes.
OPTIONS = {
    "target": ("local", "databricks"),
    "actions": ("vendored", "remote"),
    "retrain_cron": (None, "0 3 * * 1"),
}


def answers_for(provider: str, target: str, actions: str, retrain_cron: str | None) -> dict[str, Any]:
    data = {"actions": actions, "mlci_install": f"mlci=={__version__}"}
    if actions == "remote":
        data.update(mlci_repository="mlci-dev/mlci", mlci_ref=SHA)
        del data["mlci_install"]
    if retrain_cron:
        data["retrain_cron"] = retrain_cron
    install = InstallSource(f"mlci=={__version__}", None)
    return collect_answers("churn-model", provider, target, data, interactive=False, install=install)


def config_text(answers: dict[str, Any]) -> str:
    scaffold = templates.TemplateSource().scaffold()
    return templates.render_tree(scaffold, answers, keep=lambda path: path == "mlci.yaml")["mlci.yaml"].decode()


COMBOS = [(name, *combo) for name in providers.NAMES for combo in itertools.product(*OPTIONS.values())]


@pytest.mark.parametrize(("provider", "target", "actions", "retrain_cron"), COMBOS)
def test_every_path_a_provider_renders_is_managed(
    provider: str, target: str, actions: str, retrain_cron: str | None, tmp_path: Path
) -> None:
    # A rendered path missed by `managed` would be recorded as seeded and never upgraded again.
    answers = answers_for(provider, target, actions, retrain_cron)
    files = templates.render_ci(config_text(answers), answers, tmp_path)
    assert files
    unmanaged = [path for path in files if not templates.is_managed(path, provider)]
    assert unmanaged == []
    # ... and the union every manifest is checked against holds them too.
    assert all(templates.is_managed(path) for path in files)


def test_managed_is_the_scaffolds_list_plus_each_providers() -> None:
    assert templates.managed_paths("github") == (*templates.SCAFFOLD_MANAGED, ".github/")
    assert not templates.is_managed("Jenkinsfile")  # nothing renders it in this version
    assert not templates.is_managed(".github")  # a prefix owns what is under it, not the name


@pytest.fixture(scope="module")
def github_answers() -> dict[str, Any]:
    return answers_for("github", "local", "vendored", None)


def copied_source(tmp_path: Path) -> templates.TemplateSource:
    root = tmp_path / "templates"
    shutil.copytree(templates.shipped_dir("scaffold"), root / "scaffold")
    shutil.copytree(providers.get("github").shipped_templates(), root / "providers" / "github")
    return templates.TemplateSource(root)


def test_a_template_root_is_passed_not_patched(tmp_path: Path, github_answers: dict[str, Any]) -> None:
    source = copied_source(tmp_path)
    workflow = source.root / "providers" / "github" / "workflow.yml.j2"  # type: ignore[operator]
    workflow.write_text("# from the copy\n" + workflow.read_text(), encoding="utf-8")
    text = config_text(github_answers)
    copied = templates.render_ci(text, github_answers, tmp_path, source)
    shipped = templates.render_ci(text, github_answers, tmp_path)
    assert copied[".github/workflows/ci.yml"] == b"# from the copy\n" + shipped[".github/workflows/ci.yml"]
    # The same copy through the environment (how the upgrade tests hand it to `mlci upgrade`).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(templates.TEMPLATE_ROOT_ENV, str(source.root))
        assert templates.render_ci(text, github_answers, tmp_path) == copied


def test_provider_templates_see_only_the_render_context(tmp_path: Path, github_answers: dict[str, Any]) -> None:
    # Before issue 10 every answer (a stale manifest's too) reached the provider's templates.
    source = copied_source(tmp_path)
    workflow = source.root / "providers" / "github" / "mlci-upgrade.yml.j2"  # type: ignore[operator]
    original = workflow.read_text(encoding="utf-8")
    text = config_text(github_answers)
    workflow.write_text("# <%= model_name %>\n" + original, encoding="utf-8")
    with pytest.raises(jinja2.UndefinedError, match="'model_name' is undefined"):
        templates.render_ci(text, {**github_answers, "model_name": "stale"}, tmp_path, source)
    workflow.write_text("# <%= python %> <%= actions %> <%= target %>\n" + original, encoding="utf-8")
    stale = {**github_answers, "python": "2.7", "actions": "remote", "target": "databricks"}
    rendered = templates.render_ci(text, stale, tmp_path, source)[".github/workflows/mlci-upgrade.yml"]
    assert rendered.startswith(b"# 3.11 vendored local\n")  # mlci.yaml's values, not the answers'


# ---------------------------------------------------------------- runtime adapters

AZURE = {"TF_BUILD": "True"}
JENKINS = {"JENKINS_URL": "https://ci.example/"}


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"GITHUB_ACTIONS": "true"}, "github"),
        (AZURE, "azure"),
        ({"TF_BUILD": "true"}, "azure"),
        (JENKINS, "jenkins"),
        ({"GITHUB_ACTIONS": "true", "TF_BUILD": "True", "JENKINS_URL": "x"}, "github"),  # the order of today
        ({"GITHUB_ACTIONS": "1", "TF_BUILD": "False", "JENKINS_URL": ""}, None),
    ],
)
def test_detect_finds_the_ci_system_from_its_variable(env: dict[str, str], name: str | None) -> None:
    runtime = providers.detect(env)
    assert (runtime.name if runtime else None) == name


def test_run_urls_link_to_the_run() -> None:
    github = providers.runtime("github")
    assert (
        github.run_url({"GITHUB_RUN_ID": "42", "GITHUB_REPOSITORY": "acme/churn"})
        == "https://github.com/acme/churn/actions/runs/42"
    )
    assert github.run_url({"GITHUB_SERVER_URL": "https://ghe.acme"}) is None
    azure = providers.runtime("azure")
    env = {"BUILD_BUILDID": "7", "SYSTEM_COLLECTIONURI": "https://dev.azure.com/acme/", "SYSTEM_TEAMPROJECT": "churn"}
    assert azure.run_url(env) == "https://dev.azure.com/acme/churn/_build/results?buildId=7"
    assert azure.run_url(AZURE) is None
    jenkins = providers.runtime("jenkins")
    assert jenkins.run_url({**JENKINS, "BUILD_URL": "https://ci.example/job/churn/12/"}) == (
        "https://ci.example/job/churn/12/"
    )
    assert jenkins.run_url(JENKINS) is None


def test_azure_logissue_escapes_every_value() -> None:
    line = providers.runtime("azure").annotation(
        "warning", "100% wrong\r\nnext", file="data/a;b].yml", line=3, col=None, title="ignored"
    )
    assert (
        line == "##vso[task.logissue type=warning;sourcepath=data/a%3Bb%5D.yml;linenumber=3]100%AZP25 wrong%0D%0Anext"
    )


def test_azure_output_variables_escape_names_and_values() -> None:
    lines = providers.runtime("azure").set_outputs({"run;id]": "50%\nx", "empty": None}, AZURE)
    assert lines == [
        "##vso[task.setvariable variable=run%3Bid%5D;isOutput=true]50%AZP25%0Ax",
        "##vso[task.setvariable variable=empty;isOutput=true]",
    ]


def test_jenkins_reads_no_commands(tmp_path: Path) -> None:
    jenkins = providers.runtime("jenkins")
    summary = tmp_path / "summary.md"
    env = {**JENKINS, "GITHUB_OUTPUT": str(tmp_path / "out"), "GITHUB_STEP_SUMMARY": str(summary)}
    assert jenkins.annotation("error", "x", file="a.py", line=1) is None
    assert jenkins.set_outputs({"result": "passed"}, env) == []
    jenkins.add_summary("### done", env)
    assert list(tmp_path.iterdir()) == []  # GitHub's files are GitHub's only
    assert jenkins.stop_commands("t") is None and jenkins.markers == () and jenkins.line_start_marker == ""


def test_a_runtime_only_ci_system_is_not_a_provider() -> None:
    assert set(providers.RUNTIME_ONLY).isdisjoint(providers.NAMES)
    with pytest.raises(KeyError, match="no CI provider 'azure'; this mlci renders github"):
        providers.get("azure")
    assert providers.later_message("azure") == "azure arrives in a later mlci version; use github"
    assert providers.later_message("github") is None
