"""The stage registry (mlci.stage_specs.STAGES): one spec per stage, and what is checked against it."""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import MINIMAL_CONFIG

from mlci.cli import main as cli_main
from mlci.config import Project
from mlci.errors import CheckFailed
from mlci.providers.github.actions import render_actions
from mlci.stage_specs import RESULT, STAGES, Output, StageSpec
from mlci.stages._result import StageResult


def test_each_github_action_is_its_stage_spec_rendered() -> None:
    # ACTIONS derive from STAGES: every stage has its action, whose inputs, outputs and
    # description are the spec's, and whose script passes each input as the option it names.
    import yaml

    rendered = render_actions("X.Y.Z", vendored=False)
    assert list(rendered) == ["setup", *(spec.ci_id for spec in STAGES)]
    for spec in STAGES:
        action = yaml.safe_load(rendered[spec.ci_id])
        assert action["description"] == spec.ci_description
        assert action["inputs"] == {
            "project-dir": {
                "description": "Directory of the project (where mlci.yaml is).",
                "required": False,
                "default": ".",
            },
            **{i.name: {"description": i.description, "required": False, "default": ""} for i in spec.inputs},
        }
        assert action["outputs"] == {
            o.name: {"description": o.description, "value": f"${{{{ steps.stage.outputs.{o.name} }}}}"}
            for o in spec.outputs
        }
        (step,) = action["runs"]["steps"]
        assert f'"$mlci" {spec.name} "${{args[@]}}"' in step["run"]
        for i in spec.inputs:
            variable = next(k for k, v in step["env"].items() if v == f"${{{{ inputs.{i.name} }}}}")
            assert f'args+=({i.flag} "${variable}")' in step["run"]


@pytest.mark.parametrize("spec", STAGES, ids=lambda spec: spec.name)
def test_each_spec_is_consistent(spec: StageSpec) -> None:
    flags = {flag for option in spec.options for flag in option.flags}
    assert [i.flag for i in spec.inputs if i.flag not in flags] == []  # a CI input feeds a real option
    assert spec.outputs[0] == RESULT
    assert callable(getattr(importlib.import_module(spec.module), spec.entry.partition(":")[2]))


# Throwaway stages, run in-process through the real command line with the registry injected.
def _declared(project: Project, options: Mapping[str, Any]) -> StageResult:
    return StageResult("ok", outputs={"answer": 42})


def _undeclared(project: Project, options: Mapping[str, Any]) -> StageResult:
    return StageResult("ok", outputs={"answer": 42, "extra": 1})


def _missing(project: Project, options: Mapping[str, Any]) -> StageResult:
    return StageResult("ok")


def _failing_with_undeclared(project: Project, options: Mapping[str, Any]) -> StageResult:
    raise CheckFailed("the check failed", outputs={"extra": 1})


def _throwaway(function: str) -> StageSpec:
    return StageSpec(
        name="throwaway",
        ci_id="throwaway",
        entry=f"{__name__}:{function}",
        help="a stage of the tests",
        description="A stage of the tests.",
        ci_description="A stage of the tests.",
        job_name="Throwaway",
        timeout_minutes=1,
        outputs=(RESULT, Output("answer", "The answer.")),
    )


@pytest.mark.parametrize(
    ("function", "code", "line"),
    [
        ("_declared", 0, "ok"),
        (
            "_undeclared",
            3,
            "mlci: error: mlci throwaway returned undeclared output(s) extra (declared: answer); "
            "this is a bug in mlci, please report it",
        ),
        (
            "_missing",
            3,
            "mlci: error: mlci throwaway returned no declared output(s) answer (declared: answer); "
            "this is a bug in mlci, please report it",
        ),
        (
            "_failing_with_undeclared",
            3,
            "mlci: error: mlci throwaway returned undeclared output(s) extra (declared: answer); "
            "this is a bug in mlci, please report it",
        ),
    ],
)
def test_a_stage_whose_outputs_differ_from_its_spec_is_a_bug_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], function: str, code: int, line: str
) -> None:
    (tmp_path / "mlci.yaml").write_text(MINIMAL_CONFIG)
    assert cli_main(["throwaway", "-C", str(tmp_path)], stages=(_throwaway(function),)) == code
    captured = capsys.readouterr()
    assert (captured.out if code == 0 else captured.err).splitlines() == [line]
    record = json.loads((tmp_path / ".mlci" / "out" / "throwaway.json").read_text())
    assert (record["status"], record["exit_code"]) == (("passed", 0) if code == 0 else ("error", 3))
