"""Every rendered Azure pipeline expanded offline (tests/azure_pipelines/expander.py), for every
option combination the provider kit renders and the compile-time variables of each way a run
starts: every `template:` resolves to a file, every parameter passed is declared with its type
and allowed values, no `${{ }}` is left, and every step is one the host runner can execute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure_pipelines.expander import expand
from azure_pipelines.expressions import AzurePipelineError
from azure_pipelines.runner import TASKS
from conftest import REPO
from provider_kit import COMBOS, Combo
from update_golden import combo_name, render_ci_files

PIPELINES = ("azure-pipelines.yml", ".azure/mlci-upgrade.yml")
RUNS = {  # the compile-time predefined variables of each way a run starts
    "pull-request": {"Build.Reason": "PullRequest", "Build.SourceBranch": "refs/pull/7/merge"},
    "push": {"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/main"},
    "manual": {"Build.Reason": "Manual", "Build.SourceBranch": "refs/heads/main"},
    "schedule": {"Build.Reason": "Schedule", "Build.SourceBranch": "refs/heads/main"},
}
STEP_KINDS = ("script", "bash", "task", "checkout", "download", "publish")
# mlci's own published templates (ci.actions: remote), the `mlci` repository resource's files.
PUBLISHED = REPO / "azure" / "templates"


def write_project(root: Path, combo: Combo) -> Path:
    project = root / combo_name(combo)
    for path, data in render_ci_files("azure", combo, project).items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_bytes(data)
    return project


def steps_of(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    jobs = [job for stage in pipeline.get("stages") or [] for job in stage.get("jobs") or []]
    jobs += pipeline.get("jobs") or []
    steps = [step for job in jobs for step in job.get("steps") or []]
    for job in jobs:
        steps += (((job.get("strategy") or {}).get("runOnce") or {}).get("deploy") or {}).get("steps") or []
    return steps


def unexpanded(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*(str(k) for k in node if "${{" in str(k)), *(x for v in node.values() for x in unexpanded(v))]
    if isinstance(node, list):
        return [x for v in node for x in unexpanded(v)]
    return [node] if isinstance(node, str) and "${{" in node else []


@pytest.mark.parametrize("combo", COMBOS, ids=[combo_name(c) for c in COMBOS])
def test_every_rendered_pipeline_expands_for_every_kind_of_run(combo: Combo, tmp_path: Path) -> None:
    # Remote pipelines take mlci's published templates (scripts/render_actions.py writes them).
    assert combo[1] != "remote" or PUBLISHED.is_dir(), f"{PUBLISHED} is missing: run scripts/render_actions.py"
    project = write_project(tmp_path, combo)
    repositories = {"mlci": REPO} if combo[1] == "remote" else None
    for run, variables in RUNS.items():
        for name in PIPELINES:
            pipeline = expand(project / name, repositories, variables)  # raises one line on any fault
            where = f"{combo_name(combo)} {name} ({run})"
            assert unexpanded(pipeline) == [], where
            steps = steps_of(pipeline)
            assert steps, where
            assert [s for s in steps if not any(k in s for k in STEP_KINDS)] == [], where
            tasks = {str(step["task"]) for step in steps if "task" in step}
            assert tasks <= set(TASKS), (where, sorted(tasks - set(TASKS)))
            if name == "azure-pipelines.yml":  # every stage template is in: each check job runs mlci
                mlci_steps = [s for s in steps if s.get("name") == "stage"]
                assert len(mlci_steps) == 7, (where, len(mlci_steps))  # 3 checks, train, register, 2 deploys


def test_a_wrong_parameter_in_a_rendered_pipeline_is_caught(tmp_path: Path) -> None:
    """The expansion above can fail: a parameter the setup template does not declare is named."""
    project = write_project(tmp_path, ("local", "vendored", "no-retrain"))
    pipeline = project / "azure-pipelines.yml"
    pipeline.write_text(pipeline.read_text().replace("mlciInstall:", "mlciInstal:", 1))
    with pytest.raises(AzurePipelineError, match=r"setup\.yml: unknown parameter 'mlciInstal' \(declared: "):
        expand(pipeline, None, RUNS["push"])
