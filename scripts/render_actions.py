"""Render mlci's published CI building blocks (run after changing them): the composite actions
at actions/<name>/action.yml with actions/README.md, and the Azure Pipelines stage templates at
azure/templates/<name>.yml with azure/README.md, and the Jenkins shared library at
jenkins/vars/ with jenkins/README.md.

They come from the same templates and specs as the copies projects vendor, and a test
(tests/test_published.py) fails when the committed files differ from this rendering.
"""

from __future__ import annotations

from pathlib import Path

from mlci import __version__
from mlci.providers.azure.published import published_templates, templates_readme
from mlci.providers.github.actions import actions_readme, render_actions
from mlci.providers.jenkins.published import library_readme, published_library

ROOT = Path(__file__).resolve().parents[1]
# The folders whose every file this script writes: a file there that it does not write is stale.
FOLDERS = ("actions", "azure", "jenkins")


def published_files(mlci_version: str = __version__) -> dict[str, str]:
    """{path in the mlci repository: text} of every published building block."""
    files = {f"actions/{name}/action.yml": text for name, text in render_actions(mlci_version, vendored=False).items()}
    files["actions/README.md"] = actions_readme()
    files.update(published_templates(mlci_version))
    files["azure/README.md"] = templates_readme()
    files.update(published_library(mlci_version))
    files["jenkins/README.md"] = library_readme()
    return files


if __name__ == "__main__":
    for relative, text in published_files().items():
        path = ROOT / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {relative}")
