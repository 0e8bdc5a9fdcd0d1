"""The monitor pipeline (mlci.yaml's monitor.schedule) in the pipeline model and as GitHub renders
it: the monitor stage on its schedule, then the retrain pipeline's jobs, each run only when the
monitor decided `retrain=true` (a condition on the monitor job's output, checked by the model),
skipped and never failed otherwise. The GitHub files are compared with their goldens, read back
into exactly the model, and pass actionlint (with shellcheck), zizmor and GitHub's schema.
Azure renders it into its one pipeline (the monitor's own schedule displayName and a manual
parameter tell its run apart; every other stage runs when the monitor was skipped or decided),
read back, expanded, schema-checked, and its conditions walked by the host runner. Jenkins
renders it into its one Jenkinsfile (goldens, read back here; its builds run by the Groovy stub
in test_jenkins_monitor.py) and refuses the two schedules together (a timer build does not say
which cron fired)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import MINIMAL_CONFIG, REPO
from test_github import tool, zizmor

from mlci import pipeline, providers, templates
from mlci.config import parse_config
from mlci.errors import ConfigError
from mlci.project import project_from_text

sys.path.insert(0, str(REPO / "scripts"))
from update_golden import (
    GOLDEN_ROOT,
    MONITOR_COMBOS,
    MONITOR_GOLDEN,
    MONITOR_PROVIDERS,
    combo_answers,
    combo_name,
    config_text,
    monitor_combos,
    monitor_config_text,
    render_monitor_files,
)

SCHEDULED = "monitor:\n  schedule: '0 6 * * *'\n"
CHECKS = ("lint", "unit-test", "data-test")
RETRAIN = ("lint", "unit-test", "data-test", "gate", "train", "register", "deploy-staging", "deploy-production")


def model(extra: str = "") -> dict[str, pipeline.Pipeline]:
    config = parse_config(MINIMAL_CONFIG + extra, "mlci.yaml")[0]
    return {p.id: p for p in pipeline.build(config)}


# ---------------------------------------------------------------- the model


def test_no_schedule_no_monitor_pipeline() -> None:
    assert set(model()) == {"ci", "cd"}


def test_the_monitor_pipeline_runs_the_retrain_jobs_only_on_its_decision() -> None:
    found = model("ci:\n  retrain_cron: '0 3 * * 1'\n" + SCHEDULED)
    monitor, retrain = found["monitor"], found["retrain"]
    assert monitor.triggers == (pipeline.Trigger("schedule", cron="0 6 * * *"), pipeline.Trigger("manual"))
    assert [j.id for j in monitor.jobs] == ["monitor", *RETRAIN]
    first = monitor.jobs[0]
    assert first.stage is not None and first.stage.name == "monitor" and first.options == {}  # all of run+check+report
    assert first.needs == () and first.when is None
    for job, same in zip(monitor.jobs[1:], retrain.jobs, strict=True):
        # Exactly the retrain pipeline's job, needing the monitor and conditioned on its output.
        assert job.needs == (*same.needs, "monitor")
        assert job.when == pipeline.Condition("monitor", "retrain", "true")
        assert dataclasses.replace(job, needs=same.needs, when=None) == same
    assert monitor.outputs_of("monitor") == ("retrain",)
    # Delivery still requires every check, and now the decision too.
    assert monitor.requires("train") >= {"monitor", *CHECKS, "gate"}
    # One delivery at a time with cd and retrain: they write one registry; never cancelled.
    assert monitor.concurrency_group == retrain.concurrency_group == found["cd"].concurrency_group == "delivery"
    assert not monitor.cancel_in_progress and monitor.registry_branch == "main"


def test_the_monitor_job_reads_the_registry_and_never_writes_it() -> None:
    """It reads the served version's baseline: the tracking credentials and, without a tracking
    server, the kept registry restored read-only; no write permission of any kind."""
    for extra, keeps in (("", True), ("tracking:\n  uri: https://mlflow.example.com\n", False)):
        found = model(extra + SCHEDULED)["monitor"]
        job, train = found.job("monitor"), found.job("train")
        assert job.restores_registry is keeps and not job.saves_registry
        assert not job.saves_state and not job.restores_state
        assert job.credentials == train.credentials and job.capabilities == train.capabilities
        assert job.capabilities <= {pipeline.READ_REPOSITORY, pipeline.OIDC_TOKEN}
        assert job.reports == (".mlci/monitor/decision.json", ".mlci/monitor/report.html", ".mlci/out/monitor.xml")


def test_a_target_that_monitors_in_its_workspace_gets_no_ci_monitor_pipeline(tmp_path: Path) -> None:
    """Databricks runs monitor.schedule as its own check job (the production deploy makes it):
    no CI pipeline reads a local inference table that holds none of the endpoint's traffic,
    and `mlci monitor` there says where the monitor is instead of computing empty tables."""
    assert set(model("target: databricks\n" + SCHEDULED)) == {"ci", "cd"}
    from conftest import run_cli, scaffold

    assert scaffold("dbxwatched", tmp_path, "--target", "databricks") == 0
    project = tmp_path / "dbxwatched"
    assert run_cli("monitor", "-C", str(project)) == 2


def test_the_reports_follow_monitor_output() -> None:
    job = model("monitor:\n  schedule: '0 6 * * *'\n  output: out/mon/\n")["monitor"].job("monitor")
    assert job.reports[:2] == ("out/mon/decision.json", "out/mon/report.html")


@pytest.mark.parametrize(
    ("when", "needs", "message"),
    [
        (
            pipeline.Condition("monitor", "retrain", "true"),
            (),
            "pipeline p: job train runs when monitor's retrain is 'true', but it does not need monitor",
        ),
        (
            pipeline.Condition("monitor", "run-id", "x"),
            ("monitor",),
            "pipeline p: job train runs when monitor's run-id is 'x', which has no output run-id",
        ),
        (
            pipeline.Condition("monitor", "retrain", ""),
            ("monitor",),
            "pipeline p: job train runs when monitor's retrain is '': "
            "an empty value is what a skipped or failed job outputs",
        ),
    ],
)
def test_a_condition_names_an_output_of_a_job_it_needs(
    when: pipeline.Condition, needs: tuple[str, ...], message: str
) -> None:
    train = pipeline.stage_job("train", needs=needs, when=when)
    with pytest.raises(ValueError) as raised:
        pipeline.Pipeline("p", "p", (), (pipeline.stage_job("monitor"), train))
    assert str(raised.value) == message


def test_a_condition_on_a_gate_is_refused_it_has_no_outputs() -> None:
    gate = pipeline.Job("monitor", "Gate", None, gate=True)
    with pytest.raises(ValueError, match="which has no output retrain"):
        pipeline.Pipeline(
            "p", "p", (), (gate, pipeline.stage_job("lint", needs=("monitor",), when=pipeline.RETRAIN_WHEN))
        )


# ---------------------------------------------------------------- GitHub


Combo = tuple[str, str, str]
PER_PROVIDER = [(provider, combo) for provider in MONITOR_PROVIDERS for combo in monitor_combos(provider)]
PER_PROVIDER_IDS = [f"{provider}-{combo_name(combo)}" for provider, combo in PER_PROVIDER]


@pytest.fixture(scope="module")
def every(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, Combo], dict[str, bytes]]:
    root = tmp_path_factory.mktemp("monitor")
    return {(provider, combo): render_monitor_files(provider, combo, root) for provider, combo in PER_PROVIDER}


@pytest.fixture(scope="module")
def rendered(every: dict[tuple[str, Combo], dict[str, bytes]]) -> dict[Combo, dict[str, bytes]]:
    return {combo: files for (provider, combo), files in every.items() if provider == "github"}


def test_every_provider_renders_the_monitor_pipeline() -> None:
    assert set(MONITOR_PROVIDERS) == set(providers.NAMES)


@pytest.mark.parametrize(("provider", "combo"), PER_PROVIDER, ids=PER_PROVIDER_IDS)
def test_files_are_their_goldens(every: dict[tuple[str, Combo], dict[str, bytes]], provider: str, combo: Combo) -> None:
    golden = GOLDEN_ROOT / MONITOR_GOLDEN.name / provider / combo_name(combo)
    expected = {p.relative_to(golden).as_posix(): p.read_bytes() for p in sorted(golden.rglob("*")) if p.is_file()}
    # After an intended change: python scripts/update_golden.py, then review git diff tests/golden.
    assert every[(provider, combo)] == expected


@pytest.mark.parametrize(("provider", "combo"), PER_PROVIDER, ids=PER_PROVIDER_IDS)
def test_files_read_back_into_the_model(
    every: dict[tuple[str, Combo], dict[str, bytes]], provider: str, combo: Combo, tmp_path: Path
) -> None:
    config = project_from_text(monitor_config_text(provider, combo), tmp_path).config
    expected = {p.id: pipeline.as_rendered(p, provider) for p in pipeline.build(config)}
    back = {p.id: p for p in providers.get(provider).parse_back(every[(provider, combo)])}
    assert "monitor" in back and back == expected
    assert all(j.when == pipeline.RETRAIN_WHEN for j in back["monitor"].jobs[1:])


def test_the_workflow_skips_the_retrain_jobs_unless_the_monitor_decided(
    rendered: dict[tuple[str, str, str], dict[str, bytes]],
) -> None:
    """What GitHub evaluates: the gate's always() holds only with the decision, so a held
    decision skips it (a gate that ran would fail on its skipped checks); deployments keep
    their branch guard; the monitor job hands `retrain` out and uploads its reports."""
    workflow = yaml.safe_load(rendered[MONITOR_COMBOS[0]][".github/workflows/monitor.yml"])
    jobs = workflow["jobs"]
    decided = "needs.monitor.outputs.retrain == 'true'"
    assert jobs["gate"]["if"] == f"always() && {decided}"
    assert jobs["deploy-staging"]["if"] == f"github.ref == 'refs/heads/main' && {decided}"
    assert all(jobs[j]["if"] == decided for j in (*CHECKS, "train", "register"))
    assert all("monitor" in jobs[j]["needs"] for j in RETRAIN)
    monitor = jobs["monitor"]
    assert "if" not in monitor and monitor["outputs"] == {"retrain": "${{ steps.stage.outputs.retrain }}"}
    assert monitor["permissions"] == {"contents": "read"}
    stage = next(s for s in monitor["steps"] if s.get("id") == "stage")
    assert stage["uses"] == "$/.github/actions/mlci-monitor" and "with" not in stage
    upload = next(s for s in monitor["steps"] if s.get("with", {}).get("name") == "mlci-reports-monitor")
    assert upload["if"] == "always()" and ".mlci/out/monitor.xml" in upload["with"]["path"]
    # No step of the monitor job saves anything: the registry is read, never kept.
    assert not any(s.get("uses", "").startswith("actions/cache/save") for s in monitor["steps"])


def test_github_parse_back_refuses_a_condition_the_model_has_no_word_for(
    rendered: dict[tuple[str, str, str], dict[str, bytes]],
) -> None:
    files = dict(rendered[MONITOR_COMBOS[0]])
    text = files[".github/workflows/monitor.yml"].decode()
    files[".github/workflows/monitor.yml"] = text.replace(
        "if: needs.monitor.outputs.retrain == 'true'", "if: needs.monitor.outputs.retrain != 'false'", 1
    ).encode()
    with pytest.raises(ValueError, match=r"monitor\.yml: not a workflow mlci renders .*condition"):
        providers.get("github").parse_back(files)


@pytest.fixture(scope="module")
def on_disk(rendered: dict[tuple[str, str, str], dict[str, bytes]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("monitor-files")
    for combo, files in rendered.items():
        for path, data in files.items():
            (root / combo_name(combo) / path).parent.mkdir(parents=True, exist_ok=True)
            (root / combo_name(combo) / path).write_bytes(data)
    return root


def test_actionlint_zizmor_and_the_schema_accept_the_monitor_workflow(on_disk: Path) -> None:
    workflows = [str(p) for p in sorted(on_disk.glob("*/.github/workflows/monitor.yml"))]
    assert len(workflows) == len(MONITOR_COMBOS)
    done = subprocess.run(
        [tool("actionlint"), "-shellcheck", tool("shellcheck"), *workflows], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    audit = zizmor(*(str(p) for p in sorted(on_disk.glob("*/.github"))))
    assert audit.returncode == 0, audit.stdout + audit.stderr
    schema = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *workflows],
        capture_output=True,
        text=True,
        check=False,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr


# ---------------------------------------------------------------- Azure

AZURE_FILE = "azure-pipelines.yml"
DECIDED = (
    "or(eq(dependencies.monitor.result, 'Skipped'), eq(dependencies.monitor.outputs['monitor.stage.retrain'], 'true'))"
)
RUN_OF_MONITOR = (
    "or(eq(variables['Build.CronSchedule.DisplayName'], 'monitor'), eq('${{ parameters.monitor }}', 'true'))"
)
AZURE_STAGES = ("monitor", "checks", "train", "register", "deploy_staging", "deploy_production")


def azure_doc(every: dict[tuple[str, Combo], dict[str, bytes]], combo: Combo) -> dict:
    return yaml.safe_load(every[("azure", combo)][AZURE_FILE])


def test_azure_tells_the_monitor_run_apart_and_runs_delivery_on_its_decision(
    every: dict[tuple[str, Combo], dict[str, bytes]],
) -> None:
    """One file: the monitor's schedule has its own displayName (what Build.CronSchedule.DisplayName
    reads), a manual run asks for it through a boolean parameter; the monitor stage runs only then;
    every other stage depends on it and runs when it was skipped (cd, retrain, a pull request) or
    decided retrain=true; `succeeded()` is gone from those stages, as it counts the skipped monitor."""
    doc = azure_doc(every, ("local", "remote", "retrain"))
    assert [(s["cron"], s["displayName"]) for s in doc["schedules"]] == [
        ("0 3 * * 1", "retrain"),
        ("0 6 * * *", "monitor"),
    ]
    assert doc["parameters"][0] == {
        "name": "monitor",
        "displayName": "Run the monitor (it decides whether to retrain)",
        "type": "boolean",
        "default": "false",
    }
    stages = {s["stage"]: s for s in doc["stages"]}
    assert tuple(stages) == AZURE_STAGES
    assert stages["monitor"]["condition"] == RUN_OF_MONITOR and "dependsOn" not in stages["monitor"]
    assert (
        stages["checks"]["dependsOn"] == ["monitor"]
        and stages["checks"]["condition"] == f"and(not(canceled()), {DECIDED})"
    )
    for name, previous in zip(AZURE_STAGES[2:], AZURE_STAGES[1:], strict=False):
        assert stages[name]["dependsOn"] == [previous, "monitor"]
        condition = stages[name]["condition"]
        assert condition.startswith(
            f"and(not(canceled()), in(dependencies.{previous}.result, 'Succeeded', 'SucceededWithIssues'), "
        )
        assert condition.endswith(f", {DECIDED})") and "succeeded()" not in condition
    assert "eq(variables['Build.SourceBranch'], 'refs/heads/main')" in stages["deploy_staging"]["condition"]
    monitor = stages["monitor"]["jobs"][0]
    keep = next(s for s in monitor["steps"] if s.get("displayName") == "Keep the reports of Monitor")
    assert keep["condition"] == "succeededOrFailed()" and keep["inputs"]["artifact"] == "mlci-reports-monitor"
    local = {s["stage"]: s for s in azure_doc(every, MONITOR_COMBOS[0])["stages"]}["monitor"]["jobs"][0]
    local_names = [step.get("name") for step in local["steps"]]
    assert "registry" in local_names and "newest_registry" not in local_names  # read, never kept


def test_azure_parse_back_refuses_a_stage_on_the_monitor_without_its_decision(
    every: dict[tuple[str, Combo], dict[str, bytes]],
) -> None:
    files = dict(every[("azure", MONITOR_COMBOS[0])])
    text = files[AZURE_FILE].decode()
    assert text.count(DECIDED) == 5
    files[AZURE_FILE] = text.replace(f", {DECIDED})", ")", 1).encode()  # the checks stage's
    with pytest.raises(
        ValueError,
        match=r"azure-pipelines\.yml: not a pipeline mlci renders .*lint needs \['monitor'\] without its decision",
    ):
        providers.get("azure").parse_back(files)


AZURE_RUNS = {
    "pull-request": ({"Build.Reason": "PullRequest", "Build.SourceBranch": "refs/pull/7/merge"}, None),
    "push": ({"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/main"}, None),
    "manual": ({"Build.Reason": "Manual", "Build.SourceBranch": "refs/heads/main"}, None),
    "manual-monitor": ({"Build.Reason": "Manual", "Build.SourceBranch": "refs/heads/main"}, {"monitor": True}),
    "retrain-schedule": (
        {
            "Build.Reason": "Schedule",
            "Build.SourceBranch": "refs/heads/main",
            "Build.CronSchedule.DisplayName": "retrain",
        },
        None,
    ),
    "monitor-schedule": (
        {
            "Build.Reason": "Schedule",
            "Build.SourceBranch": "refs/heads/main",
            "Build.CronSchedule.DisplayName": "monitor",
        },
        None,
    ),
}


@pytest.fixture(scope="module")
def azure_projects(
    every: dict[tuple[str, Combo], dict[str, bytes]], tmp_path_factory: pytest.TempPathFactory
) -> dict[Combo, Path]:
    root = tmp_path_factory.mktemp("monitor-azure")
    for combo in MONITOR_COMBOS:
        for path, data in every[("azure", combo)].items():
            (root / combo_name(combo) / path).parent.mkdir(parents=True, exist_ok=True)
            (root / combo_name(combo) / path).write_bytes(data)
    return {combo: root / combo_name(combo) for combo in MONITOR_COMBOS}


@pytest.mark.parametrize("combo", MONITOR_COMBOS, ids=combo_name)
def test_azure_monitor_pipeline_expands_for_every_kind_of_run(azure_projects: dict[Combo, Path], combo: Combo) -> None:
    from azure_pipelines.expander import expand
    from azure_pipelines.runner import TASKS
    from test_azure_expand import steps_of, unexpanded

    repositories = {"mlci": REPO} if combo[1] == "remote" else None
    for run, (variables, parameters) in AZURE_RUNS.items():
        expanded = expand(azure_projects[combo] / AZURE_FILE, repositories, variables, parameters)
        assert unexpanded(expanded) == [], run
        steps = steps_of(expanded)
        assert {str(s["task"]) for s in steps if "task" in s} <= set(TASKS), run
        assert len([s for s in steps if s.get("name") == "stage"]) == 8, run  # the monitor and the seven others
        monitor_condition = expanded["stages"][0]["condition"]
        assert monitor_condition.endswith("'True', 'true'))" if parameters else "'False', 'true'))"), run


@pytest.mark.skipif(sys.version_info < (3, 11), reason="check-jsonschema's Azure transform needs Python 3.11+")
def test_azure_monitor_pipeline_keeps_azures_schema(azure_projects: dict[Combo, Path], tmp_path: Path) -> None:
    from test_azure import CHECK_JSONSCHEMA, _patched_schema

    paths = [str(project / AZURE_FILE) for project in azure_projects.values()]
    command = [str(CHECK_JSONSCHEMA), "--schemafile", str(_patched_schema(tmp_path)), "--regex-variant", "nonunicode"]
    done = subprocess.run(
        [*command, "--data-transform", "azure-pipelines", *paths], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def _conditions_only(expanded: dict, monitor_says: str | None) -> dict:
    """The expanded pipeline with its stages, dependencies and conditions as rendered, each job's
    steps one stand-in: the monitor's step hands its outputs over through mlci's own publishing
    (stages/_result.publish: the Azure runtime adapter's `task.setvariable` lines, under the step
    name the stage template gives it), or fails as `mlci monitor` does when it cannot decide;
    the others say they ran. The gate keeps its real script (it is no mlci command)."""
    publish = (
        f'"{sys.executable}" -c "from mlci.stages._result import publish; '
        f"publish({{'result': 'passed', 'retrain': '{monitor_says}', 'decision': 'x'}}, '')\""
        if monitor_says is not None
        else 'echo "mlci monitor: insufficient data"; exit 1'
    )
    for stage in expanded["stages"]:
        for job in stage["jobs"]:
            if job.get("condition") == "always()":  # the gate
                continue
            step = {"bash": publish if job.get("job") == "monitor" else "echo ran", "name": "stage"}
            if "deployment" in job:
                job["strategy"]["runOnce"]["deploy"]["steps"] = [step]
            else:
                job["steps"] = [step]
    return expanded


@pytest.mark.parametrize(
    ("run", "monitor_says", "ran"),
    [
        ("monitor-schedule", "true", AZURE_STAGES),
        ("monitor-schedule", "false", ("monitor",)),
        ("monitor-schedule", None, ()),  # the monitor failed: nothing retrains
        ("manual-monitor", "true", AZURE_STAGES),
        ("manual-monitor", "false", ("monitor",)),
        ("retrain-schedule", "true", AZURE_STAGES[1:]),  # the monitor does not run: retrain as ever
        ("push", "false", AZURE_STAGES[1:]),
        ("manual", "false", AZURE_STAGES[1:]),
        ("pull-request", "true", ("checks",)),
    ],
    ids=lambda v: str(v) if not isinstance(v, tuple) else "+".join(v) or "none",
)
def test_azure_runs_the_retrain_stages_only_on_the_monitors_decision(
    azure_projects: dict[Combo, Path], tmp_path: Path, run: str, monitor_says: str | None, ran: tuple[str, ...]
) -> None:
    """The host runner (tests/azure_pipelines/runner.py) walks the rendered stages: their
    dependsOn, conditions and the monitor's output variable as Azure evaluates them. A held
    decision leaves every other stage skipped, not failed, and the run with no failed stage."""
    from azure_pipelines.expander import expand
    from azure_pipelines.runner import run_expanded

    variables, parameters = AZURE_RUNS[run]
    project = azure_projects[MONITOR_COMBOS[0]]
    expanded = _conditions_only(expand(project / AZURE_FILE, None, variables, parameters), monitor_says)
    result = run_expanded(expanded, project, tmp_path / "agent", variables)
    monitored = run in ("monitor-schedule", "manual-monitor")
    expected = {stage: "succeeded" if stage in ran else "skipped" for stage in AZURE_STAGES}
    if monitored and monitor_says is None:
        expected["monitor"] = "failed"
    assert result.stages == expected, result.explain()
    if monitored and monitor_says is not None:
        assert result.outputs["monitor.monitor"]["stage.retrain"] == monitor_says


# ---------------------------------------------------------------- Azure, Jenkins, the scaffold


def test_jenkins_refuses_the_retrain_and_the_monitor_schedule_together(tmp_path: Path) -> None:
    """A timer build does not say which cron fired: with both keys one line naming both; with
    ci.retrain_cron alone the Jenkinsfile renders as before."""
    combo = ("local", "vendored", "retrain")
    text = monitor_config_text("jenkins", combo)
    assert "retrain_cron:" in text
    with pytest.raises(ConfigError) as raised:
        templates.render_ci(text, combo_answers("jenkins", combo), tmp_path)
    assert raised.value.exit_code == 2 and "\n" not in str(raised.value)
    assert str(raised.value) == (
        "mlci.yaml: ci.retrain_cron and monitor.schedule are both set, and a Jenkins timer build cannot tell "
        "which cron started it; unset one of them (ci.retrain_cron: the monitor decides when to retrain)"
    )
    assert "Jenkinsfile" in templates.render_ci(
        config_text(combo_answers("jenkins", combo)), combo_answers("jenkins", combo), tmp_path
    )


def test_a_new_project_explains_the_schedule_and_leaves_it_off(tmp_path: Path) -> None:
    text = config_text(combo_answers("github", ("local", "vendored", "no-retrain")))
    assert project_from_text(text, tmp_path).config.monitor.schedule is None
    block = text[text.index("# Monitoring of the served model") :]
    assert "a volume the runner mounts" in block and "#   schedule:" in block
    # Uncommenting the block is all it takes.
    enabled = text.replace("# monitor:", "monitor:").replace("#   ", "  ")
    config = project_from_text(enabled, tmp_path).config
    assert config.monitor.schedule == "0 6 * * *"
    assert "monitor" in {p.id for p in pipeline.build(config)}


def test_jenkins_refuses_the_monitor_in_the_library_form(tmp_path: Path) -> None:
    combo = MONITOR_COMBOS[0]
    text = monitor_config_text("jenkins", combo).replace("\nci:\n", "\nci:\n  jenkins:\n    library: true\n", 1)
    with pytest.raises(ConfigError) as raised:
        templates.render_ci(text, combo_answers("jenkins", combo), tmp_path)
    assert raised.value.exit_code == 2 and "\n" not in str(raised.value)
    assert "monitor.schedule is set with ci.jenkins.library: true" in str(raised.value)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        # A later stage without the decision clause would retrain on every timer build.
        (
            "expression { MLCI_OUTPUTS['monitor'] == null || MLCI_OUTPUTS['monitor']['retrain'] == 'true' }",
            "expression { true }",
            "an expression other than a decision clause",
        ),
        # A monitor stage that never reads its outputs would leave every stage unconditioned.
        ("MLCI_OUTPUTS['monitor'] = readProperties", "MLCI_OUTPUTS['monitor'] = readYaml", "other than render.py"),
        ("expression { params.MLCI_RUN_MONITOR }", "expression { params.OTHER }", "not a boolean parameter"),
    ],
)
def test_jenkins_parse_back_refuses_a_file_that_does_not_run_on_the_decision(
    every: dict[tuple[str, Combo], dict[str, bytes]], old: str, new: str, problem: str
) -> None:
    files = dict(every[("jenkins", monitor_combos("jenkins")[0])])
    text = files["Jenkinsfile"].decode()
    assert old in text
    files["Jenkinsfile"] = text.replace(old, new, 1).encode()
    with pytest.raises(ValueError, match=f"Jenkinsfile: not a pipeline mlci renders .*{problem}"):
        providers.get("jenkins").parse_back(files)
