"""mlci's published CI building blocks (scripts/render_actions.py): the committed `actions/` and
`azure/` are exactly their rendering, and a project's remote Azure pipeline references only
published templates, from the repository and commit it pins, with parameters they declare."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from azure_pipelines.expander import expand
from conftest import REPO
from provider_kit import COMBOS, Combo
from render_actions import FOLDERS, published_files
from update_golden import SHA, combo_answers, combo_name, render_ci_files

from mlci.providers.azure.render import PIPELINE_FILE

REMOTE = [combo for combo in COMBOS if combo[1] == "remote"]
TEMPLATE_REF = re.compile(r"^\s*-?\s*template:\s*(\S+)\s*$", re.MULTILINE)


@pytest.fixture(scope="module")
def published() -> dict[str, str]:
    return published_files()


def test_published_building_blocks_match_their_rendering(published: dict[str, str]) -> None:
    for relative, text in published.items():
        assert (REPO / relative).read_text(encoding="utf-8") == text, f"{relative}: run scripts/render_actions.py"
    # Nothing stale beside them: a template that is no longer rendered must not stay published.
    files = [path for folder in FOLDERS for path in (REPO / folder).rglob("*") if path.is_file()]
    committed = {path.relative_to(REPO).as_posix() for path in files}
    assert committed == set(published)
    assert {p for p in published if p.startswith("azure/templates/")} == {
        f"azure/templates/{name}.yml"
        for name in ("setup", "lint", "unit-test", "data-test", "train", "register", "deploy", "monitor")
    }


@pytest.fixture(scope="module")
def remote_pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[Combo, Path]:
    root = tmp_path_factory.mktemp("azure-remote")
    pipelines = {}
    for combo in REMOTE:
        files = render_ci_files("azure", combo, root)
        assert not any(name.startswith(".azure/templates/") for name in files), "remote mode vendors no templates"
        path = root / combo_name(combo) / PIPELINE_FILE
        path.parent.mkdir(parents=True)
        path.write_bytes(files[PIPELINE_FILE])
        pipelines[combo] = path
    return pipelines


@pytest.mark.parametrize("combo", REMOTE, ids=combo_name)
def test_remote_pipeline_references_published_templates(
    remote_pipelines: dict[Combo, Path], published: dict[str, str], combo: Combo
) -> None:
    text = remote_pipelines[combo].read_text(encoding="utf-8")
    answers = combo_answers("azure", combo)
    assert answers["mlci_ref"] == SHA
    assert yaml.safe_load(text)["resources"]["repositories"] == [
        {
            "repository": "mlci",
            "type": "github",
            "endpoint": "mlci-github",
            "name": answers["mlci_repository"],
            "ref": answers["mlci_ref"],
        }
    ]
    references = TEMPLATE_REF.findall(text)
    assert references, "the pipeline references no template"
    for reference in references:
        path, _, alias = reference.partition("@")
        assert alias == "mlci", f"{reference}: a remote pipeline takes every template from the mlci resource"
        assert path in published and (REPO / path).is_file(), f"{reference} is not published in the mlci repository"


@pytest.mark.parametrize("combo", REMOTE, ids=combo_name)
def test_remote_pipeline_expands_against_the_published_templates(
    remote_pipelines: dict[Combo, Path], combo: Combo
) -> None:
    # The expander binds each passed parameter to the published template's declarations
    # (unknown name, wrong type, value outside `values:` all fail): what the project passes is
    # what the committed templates accept.
    for reason in ("PullRequest", "IndividualCI"):
        expanded = expand(remote_pipelines[combo], {"mlci": REPO}, variables={"Build.Reason": reason})
        steps = [
            step
            for stage in expanded["stages"]
            for job in stage["jobs"]
            for step in job.get("steps") or job["strategy"]["runOnce"]["deploy"]["steps"]
        ]
        assert not any("template" in step for step in steps)
        assert any(step.get("name") == "stage" for step in steps)


def test_published_azure_templates_are_the_vendored_ones_but_their_header(published: dict[str, str]) -> None:
    # A remote project runs exactly what a vendored one does: only the first comment line differs.
    from mlci import __version__
    from mlci.providers.azure import PROVIDER
    from mlci.providers.azure.render import render_templates

    vendored = render_templates(__version__, PROVIDER.shipped_templates(), vendored=True)
    for name, text in vendored.items():
        remote = published[f"azure/templates/{name}"].splitlines()
        assert remote[0] != text.splitlines()[0]
        assert remote[1:] == text.splitlines()[1:], name
