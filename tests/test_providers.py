"""The provider registry (mlci/providers/): managed paths, the typed render context, injected
template roots (code review T15, P3). What every provider must do is the conformance kit's
(tests/provider_kit.py, run by tests/test_provider_contract.py)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
from conftest import REPO, run_cli

from mlci import providers, templates

sys.path.insert(0, str(REPO / "scripts"))
from update_golden import combo_answers, config_text


def answers_for(provider: str, target: str, actions: str, retrain_cron: str | None) -> dict[str, Any]:
    return combo_answers(provider, (target, actions, "retrain" if retrain_cron else "no-retrain"))


def test_managed_is_the_scaffolds_list_plus_the_providers_and_the_targets() -> None:
    assert templates.managed_paths("github", "local") == (*templates.SCAFFOLD_MANAGED, ".github/")
    assert templates.managed_paths("github", "databricks") == (
        *templates.SCAFFOLD_MANAGED,
        ".github/",
        "databricks.yml",
        "resources/",
    )
    assert templates.managed_paths("jenkins", "local") == (
        *templates.SCAFFOLD_MANAGED,
        "Jenkinsfile",
        "Jenkinsfile.upgrade",
        ".jenkins/",
    )
    assert not templates.is_managed(".gitlab-ci.yml")  # nothing renders it in this version
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


def test_a_runtime_only_ci_system_is_not_a_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(providers.RUNTIME_ONLY).isdisjoint(providers.NAMES)
    # None is runtime-only in this version (Jenkins renders since issue 12): a stand-in one.
    monkeypatch.setitem(providers.RUNTIME_ONLY, "gitlab", "mlci.providers.jenkins")
    with pytest.raises(KeyError, match="no CI provider 'gitlab'; this mlci renders github, azure, jenkins"):
        providers.get("gitlab")
    assert providers.later_message("gitlab") == "gitlab arrives in a later mlci version; use github or azure or jenkins"
    assert providers.later_message("github") is None


def test_a_template_root_that_is_not_one_is_refused_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLCI_TEMPLATE_ROOT", str(tmp_path / "nowhere"))
    assert run_cli("new", "rooted", "--defaults", "--no-git", "--output-dir", str(tmp_path)) == 2
    assert capsys.readouterr().err == (
        f"mlci: error: MLCI_TEMPLATE_ROOT={tmp_path / 'nowhere'}: no scaffold/ there; unset MLCI_TEMPLATE_ROOT "
        "(it points mlci at a copy of its templates, for tests)\n"
    )
    assert not (tmp_path / "rooted").exists()
