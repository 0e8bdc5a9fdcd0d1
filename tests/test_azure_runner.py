"""The host runner for Azure pipelines (tests/azure_pipelines/runner.py) on small hand-written
pipelines: dependsOn order, failure and skip propagation, output variables across jobs and
stages, artifacts and caches between jobs, branch/reason conditions, the task stand-ins."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure_pipelines.expressions import AzurePipelineError
from azure_pipelines.runner import RunResult, run_pipeline


def run(tmp_path: Path, pipeline: str, variables: dict[str, str] | None = None) -> RunResult:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "hello.txt").write_text("hello from the project\n")
    (project / "azure-pipelines.yml").write_text(pipeline)
    work = tmp_path / f"work{len(list(tmp_path.glob('work*')))}"
    return run_pipeline(project, "azure-pipelines.yml", work, variables=variables)


def test_stages_and_jobs_run_in_depends_on_order(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """\
stages:
  - stage: Build
    jobs:
      - job: Package
        dependsOn: Compile
        steps: [{script: 'true'}]
      - job: Compile
        steps: [{script: 'true'}]
  - stage: Test
    jobs: [{job: Unit, steps: [{script: 'true'}]}]
  - stage: Late
    dependsOn: [Build, Test]
    jobs: [{job: Last, steps: [{script: 'true'}]}]
  - stage: Early
    dependsOn: []
    jobs: [{job: First, steps: [{script: cat hello.txt}]}]
""",
    )
    assert result.order == ["Build.Compile", "Build.Package", "Test.Unit", "Late.Last", "Early.First"], result.explain()
    assert result.stages == {"Build": "succeeded", "Test": "succeeded", "Late": "succeeded", "Early": "succeeded"}
    assert "[Early.First] hello from the project" in result.log


def test_a_failing_step_fails_its_job_and_skips_what_depends_on_it(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """\
stages:
  - stage: CI
    jobs:
      - job: Lint
        steps:
          - script: echo linting; exit 3
          - script: echo never runs
          - script: echo cleanup
            condition: always()
      - job: Test
        steps: [{script: echo testing}]
      - job: Gate
        dependsOn: [Lint, Test]
        steps: [{script: 'true'}]
      - job: Report
        dependsOn: [Lint, Test]
        condition: always()
        steps: [{script: 'true'}]
      - job: OnFailure
        dependsOn: Lint
        condition: failed()
        steps: [{script: 'true'}]
      - job: Flaky
        steps: [{script: exit 1, continueOnError: true}]
  - stage: Train
    jobs: [{job: Fit, steps: [{script: 'true'}]}]
  - stage: Notify
    dependsOn: CI
    condition: failed()
    jobs: [{job: Mail, steps: [{script: 'true'}]}]
""",
    )
    assert result.jobs == {
        "CI.Lint": "failed",
        "CI.Test": "succeeded",
        "CI.Gate": "skipped",
        "CI.Report": "succeeded",
        "CI.OnFailure": "succeeded",
        "CI.Flaky": "succeededWithIssues",
        "Train.Fit": "skipped",
        "Notify.Mail": "succeeded",
    }, result.explain()
    lint = [line for line in result.log.splitlines() if line.startswith("[CI.Lint] ")]
    assert "[CI.Lint] linting" in lint and "[CI.Lint] cleanup" in lint and "[CI.Lint] never runs" not in lint
    assert "[CI.Lint] ##[error]Bash exited with code '3'." in lint


def test_output_variables_reach_later_jobs_and_stages(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """\
stages:
  - stage: Build
    jobs:
      - job: Train
        steps:
          - script: |
              echo "##vso[task.setvariable variable=model;isOutput=true]v7"
              echo "##vso[task.setvariable variable=note]a%3Bb%5D%0Ac%AZP255D"
            name: meta
          - script: echo "same job $(meta.model) $META_MODEL [$(note)]" '$(undefined.macro)'
      - job: Check
        dependsOn: Train
        condition: eq(dependencies.Train.outputs['meta.model'], 'v7')
        variables:
          model: $[ dependencies.Train.outputs['meta.model'] ]
        steps: [{script: echo "check sees $(model)"}]
      - job: Wrong
        dependsOn: Train
        condition: eq(dependencies.Train.outputs['meta.model'], 'v8')
        steps: [{script: 'true'}]
  - stage: Deploy
    jobs:
      - deployment: Ship
        environment: staging
        variables:
          model: $[ stageDependencies.Build.Train.outputs['meta.model'] ]
        strategy:
          runOnce:
            deploy:
              steps:
                - script: echo "##vso[task.setvariable variable=url;isOutput=true]https://x/$(model)"
                  name: out
  - stage: Smoke
    condition: eq(dependencies.Deploy.outputs['Ship.Ship.out.url'], 'https://x/v7')
    jobs:
      - job: Probe
        variables:
          url: $[ stageDependencies.Deploy.Ship.outputs['Ship.out.url'] ]
        steps: [{script: echo "probe $(url)"}]
""",
    )
    assert result.jobs == {
        "Build.Train": "succeeded",
        "Build.Check": "succeeded",
        "Build.Wrong": "skipped",
        "Deploy.Ship": "succeeded",
        "Smoke.Probe": "succeeded",
    }, result.explain()
    assert result.outputs["Build.Train"] == {"meta.model": "v7"}
    assert result.outputs["Deploy.Ship"] == {"Ship.out.url": "https://x/v7"}
    assert "[Build.Train] same job v7 v7 [a;b]" in result.log
    assert "[Build.Train] c%5D] $(undefined.macro)" in result.log  # unescaped once; unknown macro literal
    assert "[Build.Check] check sees v7" in result.log
    assert "[Smoke.Probe] probe https://x/v7" in result.log


def test_artifacts_and_caches_pass_between_jobs_and_each_job_gets_a_fresh_copy(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """\
jobs:
  - job: Make
    steps:
      - script: mkdir -p out && echo model-bytes > out/model.bin
      - task: PublishPipelineArtifact@1
        inputs: {targetPath: out, artifact: model}
      - task: Cache@2
        inputs: {key: 'deps | hello.txt', path: .deps, cacheHitVar: HIT}
      - script: echo "first hit=$(HIT)"; mkdir -p .deps && echo cached > .deps/x && echo leak > hello.txt
  - job: Use
    dependsOn: Make
    steps:
      - task: DownloadPipelineArtifact@2
        inputs: {artifact: model, targetPath: $(Pipeline.Workspace)/m}
      - script: cat $(Pipeline.Workspace)/m/model.bin && cat hello.txt
      - task: Cache@2
        inputs: {key: 'deps | hello.txt', restoreKeys: deps, path: .deps, cacheHitVar: HIT}
      - script: echo "second hit=$(HIT) $(cat .deps/x)"
  - job: Missing
    steps:
      - download: current
        artifact: nothing
  - deployment: Release
    dependsOn: Make
    environment: production
    strategy:
      runOnce:
        deploy:
          steps: [{script: cat $(Pipeline.Workspace)/model/model.bin}]
""",
    )
    assert result.jobs == {
        "__default.Make": "succeeded",
        "__default.Use": "succeeded",
        "__default.Missing": "failed",
        "__default.Release": "succeeded",
    }, result.explain()
    log = result.log
    assert "[__default.Make] first hit=false" in log
    assert "[__default.Use] model-bytes" in log and "[__default.Use] hello from the project" in log
    # The agent resolves the key again at save time: Make changed hello.txt, so its cache went
    # under the new key (with a warning) and Use, whose fresh copy has the old hello.txt, only
    # finds it by the restore-key prefix.
    assert "[__default.Make] ##[warning]The given cache key has changed in its resolved value" in log
    assert "[__default.Use] second hit=inexact cached" in log
    assert "[__default.Missing] ##[error]artifact 'nothing' was not published by this run" in log
    assert "[__default.Release] model-bytes" in log


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"Build.Reason": "PullRequest", "Build.SourceBranch": "refs/pull/7/merge"}, "skipped"),
        ({"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/feature"}, "skipped"),
        ({"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/main"}, "succeeded"),
    ],
)
def test_a_branch_guarded_deploy_runs_only_for_a_push_to_main(
    tmp_path: Path, variables: dict[str, str], expected: str
) -> None:
    result = run(
        tmp_path,
        """\
stages:
  - stage: CI
    jobs: [{job: Test, steps: [{script: echo "$TF_BUILD $BUILD_REASON $BUILD_SOURCEBRANCHNAME $SYSTEM_TEAMPROJECT"}]}]
  - stage: Deploy
    condition: >-
      and(succeeded(), ne(variables['Build.Reason'], 'PullRequest'),
      eq(variables['Build.SourceBranch'], 'refs/heads/main'))
    jobs: [{job: Ship, steps: [{script: 'true'}]}]
""",
        variables,
    )
    assert result.jobs == {"CI.Test": "succeeded", "Deploy.Ship": expected}, result.explain()
    branch = variables["Build.SourceBranch"].rsplit("/", 1)[-1]
    assert f"[CI.Test] True {variables['Build.Reason']} {branch} offline" in result.log


JUNIT = '<testsuites><testsuite name="t" tests="2" failures="{failures}" errors="0"/></testsuites>'


def test_task_stand_ins_check_their_files_and_report_issues(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        f"""\
jobs:
  - job: Good
    steps:
      - task: UsePythonVersion@0
        inputs: {{versionSpec: '3.11'}}
      - script: |
          python -c "print('python ok')"
          echo '{JUNIT.format(failures=0)}' > TEST-unit.xml
          echo '<coverage/>' > coverage.xml
          echo '# Summary' > $(Agent.TempDirectory)/summary.md
          echo "##vso[task.uploadsummary]$(Agent.TempDirectory)/summary.md"
          echo "##vso[task.logissue type=error;sourcepath=src/a.py;linenumber=3]F401 unused%3B import"
      - task: PublishTestResults@2
        inputs: {{testResultsFiles: '**/TEST-*.xml', failTaskOnFailedTests: true}}
      - task: PublishCodeCoverageResults@2
        inputs: {{summaryFileLocation: coverage.xml}}
      - task: AzureCLI@2
        inputs: {{azureSubscription: arm, scriptType: bash, scriptLocation: inlineScript, inlineScript: echo cli}}
  - job: NoResults
    steps:
      - task: PublishTestResults@2
        inputs: {{testResultsFiles: '**/TEST-*.xml'}}
  - job: NotJunit
    steps:
      - script: echo '<html/>' > TEST-x.xml
      - task: PublishTestResults@2
  - job: FailedTests
    steps:
      - script: echo '{JUNIT.format(failures=1)}' > TEST-x.xml
      - task: PublishTestResults@2
        inputs: {{failTaskOnFailedTests: true}}
  - job: NoCoverage
    steps:
      - task: PublishCodeCoverageResults@2
        inputs: {{summaryFileLocation: coverage.xml}}
""",
    )
    assert result.jobs == {
        "__default.Good": "succeeded",
        "__default.NoResults": "failed",
        "__default.NotJunit": "failed",
        "__default.FailedTests": "failed",
        "__default.NoCoverage": "failed",
    }, result.explain()
    assert "[__default.Good] python ok" in result.log and "[__default.Good] cli" in result.log
    assert result.summaries == ["# Summary\n"]
    assert [(i.job, i.type, i.message, i.properties["sourcepath"]) for i in result.issues] == [
        ("__default.Good", "error", "F401 unused; import", "src/a.py")
    ]
    assert "is not JUnit XML (root <html>)" in result.log


def test_an_unknown_task_or_dependency_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AzurePipelineError, match=r"^__default.J: task 'Nope@1' has no stand-in in runner.py; add one"):
        run(tmp_path, "jobs: [{job: J, steps: [{task: Nope@1}]}]\n")
    with pytest.raises(AzurePipelineError, match=r"^job 'J' dependsOn 'K', which does not exist; fix dependsOn$"):
        run(tmp_path, "jobs: [{job: J, dependsOn: K, steps: [{script: 'true'}]}]\n")


def test_a_relative_working_directory_is_rooted_at_the_sources(tmp_path: Path) -> None:
    """As the agent does: `workingDirectory: sub` (a step's, or an AzureCLI@2 input) is
    $(System.DefaultWorkingDirectory)/sub, never relative to where the agent was started."""
    (tmp_path / "project" / "sub").mkdir(parents=True)
    result = run(
        tmp_path,
        """\
steps:
  - bash: pwd > "$BUILD_ARTIFACTSTAGINGDIRECTORY/../step.txt"
    workingDirectory: sub
  - task: AzureCLI@2
    inputs:
      azureSubscription: none
      scriptType: bash
      scriptLocation: inlineScript
      workingDirectory: .
      inlineScript: pwd > "$BUILD_ARTIFACTSTAGINGDIRECTORY/../task.txt"
""",
    )
    assert result.jobs == {"__default.__default": "succeeded"}, result.explain()
    workspace = tmp_path / "work0" / "agent" / "_work" / "1"
    assert Path((workspace / "step.txt").read_text().strip()) == (workspace / "s" / "sub").resolve()
    assert Path((workspace / "task.txt").read_text().strip()) == (workspace / "s").resolve()


def test_kept_folders_reach_every_job_and_a_cache_restores_over_them(tmp_path: Path) -> None:
    """A self-hosted agent's kept folder (a warm cache) is in each job's Pipeline.Workspace as
    symlinks; Cache@2 restoring the same path replaces what is there, as its extraction does."""
    kept = tmp_path / "warm"
    (kept / "wheels").mkdir(parents=True)
    (kept / "wheels" / "w.txt").write_text("warm\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "azure-pipelines.yml").write_text(
        """\
jobs:
  - job: First
    steps:
      - task: Cache@2
        inputs: {key: '"uv"', path: $(Pipeline.Workspace)/.uv-cache}
      - bash: cat "$PIPELINE_WORKSPACE/.uv-cache/wheels/w.txt" && echo new > "$PIPELINE_WORKSPACE/.uv-cache/tag"
  - job: Second
    dependsOn: First
    steps:
      - task: Cache@2
        inputs: {key: '"uv"', path: $(Pipeline.Workspace)/.uv-cache}
      - bash: cat "$PIPELINE_WORKSPACE/.uv-cache/wheels/w.txt" "$PIPELINE_WORKSPACE/.uv-cache/tag"
"""
    )
    result = run_pipeline(project, "azure-pipelines.yml", tmp_path / "work", kept_folders={".uv-cache": kept})
    assert result.jobs == {"__default.First": "succeeded", "__default.Second": "succeeded"}, result.explain()
    assert "[__default.Second] warm\n[__default.Second] new\n" in result.log
    assert "cache key uv: true" in result.log
    assert (tmp_path / "work" / "agent" / "_work" / "2" / ".uv-cache" / "wheels").is_symlink()


def _rendered_registry_steps() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The registry steps exactly as the renderer emits them (the golden of a local project, kept
    equal to the renderer's output by the golden tests): train's restore and the one after it
    that says which registry the run uses; register's lookup, decision and save."""
    import yaml

    golden = Path(__file__).parent / "golden" / "azure" / "local-vendored-retrain" / "azure-pipelines.yml"
    doc = yaml.safe_load(golden.read_text(encoding="utf-8"))
    jobs = {job["job"]: job["steps"] for stage in doc["stages"] for job in stage["jobs"] if "job" in job}
    names = [step.get("name") for step in jobs["train"]]
    restore = jobs["train"][names.index("registry") :][:2]
    names = [step.get("name") for step in jobs["register"]]
    keep = jobs["register"][names.index("newest_registry") : names.index("keep_registry") + 1]
    return restore, keep


def test_each_run_restores_the_registry_the_previous_run_kept(tmp_path: Path) -> None:
    """Cache@2 saves every restore step's path at the end of the job, in reverse step order: a
    lookup saved under the registry's prefix would land after the real save and be restored as
    the registry by the next run."""
    import yaml
    from azure_pipelines.runner import run_expanded

    restore, keep = _rendered_registry_steps()
    model = {"bash": 'echo "model of run $BUILD_BUILDID" > .mlci/mlflow.db', "displayName": "Train"}
    shown = {"bash": 'echo "restored: $(cat .mlci/mlflow.db 2>/dev/null || echo nothing)"', "displayName": "Show"}
    pipeline = {"jobs": [{"job": "Registry", "steps": [*restore, shown, model, *keep]}]}
    project = tmp_path / "project"
    project.mkdir()
    (project / "azure-pipelines.yml").write_text(yaml.safe_dump(pipeline))
    store = tmp_path / "store"
    store.mkdir()
    for run_id in ("1", "2", "3"):
        work = tmp_path / f"work{run_id}"
        work.mkdir()
        (work / "store").symlink_to(store)  # one cache store across the runs, as on Azure
        result = run_expanded(pipeline, project, work, {"Build.BuildId": run_id})
        assert result.jobs == {"__default.Registry": "succeeded"}, result.explain()
        log, why = result.log, result.explain("__default.Registry")
        assert "a newer registry exists" not in log, why
        if run_id == "1":
            assert "[__default.Registry] restored: nothing" in log, why
        else:
            previous = int(run_id) - 1
            assert f"kept by an earlier run ({previous}-1-register)" in log, why
            assert f"[__default.Registry] restored: model of run {previous}" in log, why


def test_caches_save_as_the_agent_saves_them(tmp_path: Path) -> None:
    """Post-job saves run in reverse step order, only when the job Succeeded (not with issues),
    and a path that does not exist is a warning in the job's log."""
    result = run(
        tmp_path,
        """\
jobs:
  - job: Save
    steps:
      - task: Cache@2
        inputs: {key: 'order | "a"', path: .a}
      - task: Cache@2
        inputs: {key: 'order | "b"', path: .b}
      - task: Cache@2
        inputs: {key: 'gone', path: .gone}
      - script: mkdir .a .b && echo a > .a/f && echo b > .b/f
  - job: Issues
    dependsOn: Save
    steps:
      - task: Cache@2
        inputs: {key: 'issues', path: .i}
      - script: mkdir .i && echo i > .i/f
      - script: exit 1
        continueOnError: true
  - job: Later
    dependsOn: Issues
    steps:
      - task: Cache@2
        inputs: {key: 'order | "z"', restoreKeys: order, path: .r}
      - task: Cache@2
        inputs: {key: 'issues', path: .i, cacheHitVar: HIT}
      - script: echo "newest $(cat .r/f) issues hit=$(HIT)"
""",
    )
    assert result.jobs == {
        "__default.Save": "succeeded",
        "__default.Issues": "succeededWithIssues",
        "__default.Later": "succeeded",
    }, result.explain()
    log = result.log
    assert "[__default.Later] newest a issues hit=false" in log, result.explain("__default.Later")
    assert "[__default.Save] ##[warning]cache gone not saved: its path" in log
