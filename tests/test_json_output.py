"""--json is data: exact values on CI, and no line of it a CI command (issue 9, item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MINIMAL_CONFIG, run_cli
from test_ci_escape import azure_commands, github_commands


@pytest.mark.parametrize(("variable", "setting"), [("GITHUB_ACTIONS", "true"), ("TF_BUILD", "True")])
def test_json_output_is_exact_on_ci_and_no_line_of_it_is_a_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, setting: str
) -> None:
    """The failure summary quotes mlci.yaml's text: a LogGuard space in it would alter the value."""
    hostile = "::error::x ##[x] ##vso[task.complete result=Failed] ##VSO[x] ###[y]"
    config = MINIMAL_CONFIG.replace("  package: churn_model", f"  package: {json.dumps(hostile)}")
    (tmp_path / "mlci.yaml").write_text(config, encoding="utf-8")
    monkeypatch.setenv(variable, setting)
    capsys.readouterr()
    assert run_cli("lint", "--json", cwd=tmp_path) == 2
    out = capsys.readouterr().out
    summary = json.loads(out)["summary"]
    assert f"'project.package' is {hostile!r}, which does not match" in summary  # exactly, no space inserted
    assert github_commands(out) == [] and azure_commands(out) == []
