"""mlci's published CI building blocks (scripts/render_actions.py): the committed `actions/` and
`azure/` are exactly their rendering."""

from __future__ import annotations

import provider_kit  # noqa: F401  (puts scripts/ on sys.path)
import pytest
from conftest import REPO
from render_actions import FOLDERS, published_files


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
        for name in ("setup", "lint", "unit-test", "data-test", "train", "register", "deploy")
    }
