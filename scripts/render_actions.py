"""Render mlci's composite actions into actions/<name>/action.yml (run after changing them).

They come from the same template and specs as the copies projects vendor, and a test fails
when the committed files differ from this rendering.
"""

from __future__ import annotations

from pathlib import Path

from mlci import __version__
from mlci.providers.github.actions import actions_readme, render_actions

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    for name, text in render_actions(__version__, vendored=False).items():
        path = ROOT / "actions" / name / "action.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    (ROOT / "actions" / "README.md").write_text(actions_readme(), encoding="utf-8")
    print("wrote actions/README.md")
