"""The offline Jenkins stand-in (tests/jenkins_stub.py, tests/jenkins/declarative.groovy) on
hand-written Jenkinsfiles: every Declarative rule it enforces fails a wrong file with its exact
message, and four executed builds prove what the integrator's tests rely on (separate
workspaces, stash, junit, when, input, credentials, copyArtifacts, the library form).

JVM starts are the cost (about 3 s each): all the validations are one call, the four builds
four more.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import jenkins_stub
import pytest
from jenkins_stub import stage

MARK = "// <-"

# A realistic Jenkinsfile in the shape mlci renders (the parallel CI stages, a gated deploy with
# an approval, credentials by name, single-quoted sh steps).
GOOD = """\
// A hand-written Jenkinsfile in the shape mlci renders.
pipeline {
  agent none
  options {
    disableConcurrentBuilds(abortPrevious: env.CHANGE_ID != null)
    buildDiscarder(logRotator(numToKeepStr: '50', artifactNumToKeepStr: '20'))
    timestamps()
    timeout(time: 240, unit: 'MINUTES')
    skipDefaultCheckout()
  }
  triggers {
    cron(env.BRANCH_NAME == 'main' ? 'TZ=UTC\\n0 3 * * 1' : '')
  }
  environment {
    MLCI_PYTHON = 'python3.11'
  }
  stages {
    stage('Checks') {
      when {
        anyOf {
          changeRequest()
          branch 'main'
          allOf { triggeredBy cause: 'UserIdCause'; not { changeRequest() } }
          triggeredBy 'TimerTrigger'
        }
      }
      parallel {
        stage('Lint') {
          agent any
          environment { MLCI_JOB = 'lint' }
          options { timeout(time: 15, unit: 'MINUTES') }
          steps {
            deleteDir()
            checkout scm
            sh(label: 'mlci lint', script: '''#!/bin/bash
set -euo pipefail
echo lint
''')
          }
          post {
            always {
              archiveArtifacts(artifacts: '.mlci/out/**', allowEmptyArchive: true)
            }
          }
        }
        stage('Unit tests') {
          agent any
          steps {
            sh 'echo test'
          }
          post {
            always {
              junit(testResults: '.mlci/out/junit.xml', allowEmptyResults: false)
            }
          }
        }
      }
    }
    stage('CI gate') {
      steps {
        echo 'Lint and Unit tests passed'
      }
    }
    stage('Train') {
      when { beforeAgent true; branch 'main' }
      agent any
      steps {
        copyArtifacts(projectName: env.JOB_NAME, selector: lastCompleted(), filter: 'mlci-registry/**',
                      optional: true, fingerprintArtifacts: false)
        withCredentials([string(credentialsId: 'MLFLOW_TRACKING_TOKEN', variable: 'MLFLOW_TRACKING_TOKEN'),
                         usernamePassword(credentialsId: 'DB', usernameVariable: 'DB_USER',
                                          passwordVariable: 'DB_PASSWORD')]) {
          sh 'echo train'
        }
        stash(name: 'state', includes: '.mlci/**', allowEmpty: true)
      }
    }
    stage('Deploy to production') {
      when { beforeAgent true; beforeInput true; branch 'main' }
      input {
        message 'Deploy this build\\'s model to production?'
        ok 'Deploy'
        submitter 'mlci-approvers'
      }
      agent any
      steps {
        unstash 'state'
        script {
          def where = sh(returnStdout: true, script: 'pwd').trim()
          echo where
        }
      }
    }
  }
  post {
    always {
      echo 'done'
    }
  }
}
"""

MINIMAL = """\
pipeline {
  agent any
  stages {
    stage('Build') {
      steps {
        sh 'true'
      }
    }
  }
}
"""


def _swap(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new)


# name -> (Jenkinsfile text, the error it must give; {line} is the line marked `// <-`).
WRONG: dict[str, tuple[str, str]] = {
    "no_pipeline": (
        "def greeting = 'hello'\n",
        "{file}: no pipeline {{}} block (a Declarative Jenkinsfile holds exactly one)",
    ),
    "two_pipelines": (
        MINIMAL + "pipeline { // <-\n  agent any\n  stages { stage('B') { steps { sh 'true' } } }\n}\n",
        "{file}:{line}: more than one pipeline {{}} block (a Declarative Jenkinsfile holds exactly one)",
    ),
    "unknown_section": (
        _swap("  agent any\n", "  agent any\n  wibble { } // <-\n"),
        "{file}:{line}: unknown pipeline section 'wibble' (allowed: agent, environment, libraries, options,"
        " parameters, post, stages, tools, triggers)",
    ),
    "no_agent": (
        "pipeline { // <-\n  stages {\n    stage('Build') {\n      steps {\n        echo 'x'\n      }\n    }\n  }\n}\n",
        "{file}:{line}: pipeline has no agent (add agent any, agent none or agent {{ label '...' }})",
    ),
    "two_agents": (
        _swap("  agent any\n", "  agent any\n  agent none // <-\n"),
        "{file}:{line}: Multiple occurrences of the agent section in pipeline",
    ),
    "no_stages": ("pipeline { // <-\n  agent any\n}\n", "{file}:{line}: pipeline has no stages {{}} section"),
    "two_stages": (
        _swap("  stages {\n", "  stages { stage('A') { steps { echo 'a' } } }\n  stages { // <-\n"),
        "{file}:{line}: Multiple occurrences of the stages section in pipeline",
    ),
    "unnamed_stage": (
        _swap("stage('Build') {", "stage { // <-"),
        "{file}:{line}: stage needs a name: stage('Build') {{ ... }}",
    ),
    "steps_and_parallel": (
        _swap("stage('Build') {", "stage('Build') { // <-\n      parallel { stage('P') { steps { echo 'p' } } }"),
        "{file}:{line}: stage 'Build' must have exactly one of steps, stages, parallel or matrix",
    ),
    "empty_stage": (
        "pipeline {\n  agent any\n  stages {\n    stage('Build') { // <-\n      when { branch 'main' }\n"
        "    }\n  }\n}\n",
        "{file}:{line}: stage 'Build' must have exactly one of steps, stages, parallel or matrix",
    ),
    "sh_without_agent": (
        _swap("  agent any\n", "  agent none\n").replace("sh 'true'", "sh 'true' // <-"),
        "{file}:{line}: sh in stage 'Build' needs an agent: the pipeline has agent none and this stage none"
        " (add agent any to the stage)",
    ),
    "bad_post_condition": (
        MINIMAL[: -len("}\n")] + "  post {\n    alwayz { echo 'x' } // <-\n  }\n}\n",
        "{file}:{line}: unknown post condition 'alwayz' (allowed: always, changed, fixed, regression, aborted,"
        " failure, success, unstable, unsuccessful, cleanup)",
    ),
    "bad_when_condition": (
        _swap("      steps {", "      when { branchName 'main' } // <-\n      steps {"),
        "{file}:{line}: unknown when condition 'branchName' (allowed: allOf, anyOf, branch, buildingTag,"
        " changeRequest, environment, equals, expression, not, tag, triggeredBy, and the flags beforeAgent,"
        " beforeInput, beforeOptions)",
    ),
    "input_without_message": (
        _swap("      steps {", "      input { // <-\n        ok 'Go'\n      }\n      steps {"),
        "{file}:{line}: input in stage 'Build' needs a message",
    ),
    "unknown_input_field": (
        _swap(
            "      steps {", "      input {\n        message 'Go?'\n        approvers 'x' // <-\n      }\n      steps {"
        ),
        "{file}:{line}: unknown input field 'approvers' (allowed: message, ok, submitter, submitterParameter, id,"
        " parameters)",
    ),
    "unknown_option": (
        _swap("  agent any\n", "  agent any\n  options {\n    keepGoing() // <-\n  }\n"),
        "{file}:{line}: unknown option 'keepGoing' in pipeline (allowed: buildDiscarder, checkoutToSubdirectory,"
        " disableConcurrentBuilds, disableResume, durabilityHint, newContainerPerStage, overrideIndexTriggers,"
        " parallelsAlwaysFailFast, preserveStashes, quietPeriod, retry, skipDefaultCheckout,"
        " skipStagesAfterUnstable, timeout, timestamps, copyArtifactPermission)",
    ),
    "pipeline_option_in_stage": (
        _swap("      steps {", "      options { disableConcurrentBuilds() } // <-\n      steps {"),
        "{file}:{line}: option 'disableConcurrentBuilds' is only allowed in the pipeline's options, not in"
        " stage 'Build'",
    ),
    "unknown_binding": (
        _swap(
            "sh 'true'",
            "withCredentials([secretText(credentialsId: 'T', variable: 'T')]) { // <-\n          sh 'true'\n        }",
        ),
        "{file}:{line}: unknown withCredentials binding 'secretText' (allowed: string, usernamePassword, file,"
        " sshUserPrivateKey, usernameColonPassword)",
    ),
    "binding_without_variable": (
        _swap(
            "sh 'true'",
            "withCredentials([usernamePassword(credentialsId: 'T', usernameVariable: 'U')]) { // <-\n"
            "          sh 'true'\n        }",
        ),
        "{file}:{line}: withCredentials binding usernamePassword needs passwordVariable:",
    ),
    "unknown_step": (
        _swap("sh 'true'", "bat 'dir' // <-"),
        "{file}:{line}: unknown step 'bat' (the stub allows: archiveArtifacts, checkout, copyArtifacts, deleteDir,"
        " dir, echo, error, fileExists, input, junit, readProperties, script, sh, stash, timeout, unstash,"
        " withCredentials, withEnv)",
    ),
    "gstring_sh": (
        _swap(
            "sh 'true'",
            "withCredentials([string(credentialsId: 'T', variable: 'TOKEN')]) {\n"
            '          sh "curl -H ${env.TOKEN} https://example.invalid" // <-\n        }',
        ),
        "{file}:{line}: sh at line {line} interpolates Groovy (a GString): use a single-quoted string",
    ),
    "gstring_sh_script_arg": (
        _swap("sh 'true'", 'sh(label: \'x\', script: """echo ${currentBuild.number}""") // <-'),
        "{file}:{line}: sh at line {line} interpolates Groovy (a GString): use a single-quoted string",
    ),
    "missing_library": (
        "@Library('nolib') _ // <-\n" + MINIMAL,
        "{file}:1: library 'nolib' is not available to the stub (pass --library nolib=DIR)",
    ),
    "var_in_stages": (
        "@Library('mlci') _\n"
        + _swap("    stage('Build') {", "    mlciStage(label: 'x', script: 'true') // <-\n    stage('Build') {"),
        "{file}:{line}: mlciStage(...) in stages {{}}: Declarative only accepts stage('name') {{ ... }} there",
    ),
    "chained_blocks": (
        MINIMAL[: -len("}\n")] + "  post {\n    always { echo 'a' } failure { echo 'f' } // <-\n  }\n}\n",
        "{file}:{line}: failure {{ ... }} is chained onto always(...) on one line: put each on its own line",
    ),
    "duplicate_stage": (
        _swap("  stages {\n", "  stages {\n    stage('Build') { steps { echo 'first' } }\n").replace(
            "    stage('Build') {\n", "    stage('Build') { // <-\n"
        ),
        "{file}:{line}: duplicate stage name 'Build'",
    ),
    "empty_steps": (
        "pipeline {\n  agent any\n  stages {\n    stage('Build') {\n      steps { } // <-\n    }\n  }\n}\n",
        "{file}:{line}: stage 'Build' has an empty steps {{}} block",
    ),
    "unknown_helper": (
        _swap("  agent any\n", "  agent any\n  options {\n    buildDiscarder(rotate(numToKeepStr: '5')) // <-\n  }\n"),
        "{file}:{line}: unknown function 'rotate' (used as an argument of buildDiscarder)",
    ),
    "environment_call": (
        _swap("  agent any\n", "  agent any\n  environment {\n    sh 'true' // <-\n  }\n"),
        "{file}:{line}: environment {{}} only holds NAME = value assignments, not sh(...)",
    ),
}

SYNTAX = "pipeline {\n  agent any\n  stages {\n    stage('Build') {\n      steps { sh 'true' }\n    }\n\n"

MLCI_STAGE = """\
// One mlci stage as a step. Defaults: label 'mlci stage', script 'true'; config overrides them.
def call(Map config = [:]) {
  Map cfg = [label: 'mlci stage', script: 'true'] + config
  sh(label: cfg.label, script: cfg.script)
}
"""

MLCI_PIPELINE = """\
// The whole pipeline in one call: mlciPipeline(approvers: 'group').
def call(Map config = [:]) {
  pipeline {
    agent none
    options { skipDefaultCheckout() }
    stages {
      stage('Build') {
        agent any
        steps {
          mlciStage(label: 'build', script: 'echo built > built.txt')
          stash(name: 'built', includes: 'built.txt')
        }
      }
      stage('Approve') {
        input {
          message 'Ship it?'
          ok 'Ship'
          submitter config.approvers
        }
        agent any
        steps {
          unstash 'built'
          mlciStage(label: 'ship', script: 'cat built.txt')
        }
      }
      stage('After') {
        steps {
          echo 'after'
        }
      }
    }
    post {
      aborted {
        echo 'aborted'
      }
      always {
        echo 'always'
      }
    }
  }
}
"""

LIBRARY_FORM = "@Library('mlci@main') _\nmlciPipeline(approvers: 'mlci-approvers')\n"

# The same pipeline written inline: executing either must give the same build.
INLINE_FORM = (
    MLCI_PIPELINE.split("def call(Map config = [:]) {\n", 1)[1]
    .rsplit("}\n", 1)[0]
    .replace("mlciStage(label: 'build', script: ", "sh(label: 'build', script: ")
    .replace("mlciStage(label: 'ship', script: ", "sh(label: 'ship', script: ")
    .replace("submitter config.approvers", "submitter 'mlci-approvers'")
)


def _line(text: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if MARK in line)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mlci-library")
    (root / "vars").mkdir()
    (root / "vars" / "mlciStage.groovy").write_text(MLCI_STAGE, encoding="utf-8")
    (root / "vars" / "mlciPipeline.groovy").write_text(MLCI_PIPELINE, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory, library: Path) -> dict[str, dict[str, Any]]:
    """Every hand-written file through ONE validate call (one JVM)."""
    root = tmp_path_factory.mktemp("jenkinsfiles")
    texts = {"good": GOOD, "library": LIBRARY_FORM, "inline": INLINE_FORM, "syntax": SYNTAX}
    texts.update({name: text for name, (text, _) in WRONG.items()})
    files = []
    for name, text in texts.items():
        path = root / f"{name}.Jenkinsfile"
        path.write_text(text, encoding="utf-8")
        files.append(path)
    results = jenkins_stub.validate(files, libraries={"mlci": library})
    return {Path(r["file"]).name.removesuffix(".Jenkinsfile"): r for r in results}


def test_a_realistic_jenkinsfile_validates_clean(validated: dict[str, dict[str, Any]]) -> None:
    good = validated["good"]
    assert good["errors"] == [] and good["ok"] is True and good["syntax_error"] is None
    assert [(s["path"], s["kind"], s["agent"]) for s in good["stages"]] == [
        ("Checks", "parallel", None),
        ("Checks/Lint", "steps", "any"),
        ("Checks/Unit tests", "steps", "any"),
        ("CI gate", "steps", None),
        ("Train", "steps", "any"),
        ("Deploy to production", "steps", "any"),
    ]
    # Calls evaluated as arguments are the arguments, not steps of their own.
    assert stage(good, "Train")["steps"] == ["copyArtifacts", "withCredentials", "sh", "stash"]
    assert stage(good, "Deploy to production")["input"] is True


@pytest.mark.parametrize("name", sorted(WRONG))
def test_each_rule_fails_its_wrong_jenkinsfile_with_its_message(
    validated: dict[str, dict[str, Any]], name: str
) -> None:
    text, template = WRONG[name]
    result = validated[name]
    line = _line(text) if MARK in text else 0
    assert result["errors"] == [template.format(file=f"{name}.Jenkinsfile", line=line)]
    assert result["ok"] is False and result["syntax_error"] is None


def test_a_syntax_error_names_file_and_line(validated: dict[str, dict[str, Any]]) -> None:
    assert validated["syntax"]["syntax_error"] == "syntax.Jenkinsfile:8: expecting '}', found ''"
    assert validated["syntax"]["ok"] is False


def test_the_library_form_validates_like_the_inline_form(validated: dict[str, dict[str, Any]]) -> None:
    lib, inline = validated["library"], validated["inline"]
    assert lib["errors"] == [] and inline["errors"] == []
    assert [s["path"] for s in lib["stages"]] == [s["path"] for s in inline["stages"]] == ["Build", "Approve", "After"]
    assert stage(lib, "Build")["steps"] == ["mlciStage", "sh", "stash"]
    assert stage(inline, "Build")["steps"] == ["sh", "stash"]


# ---- executed builds ------------------------------------------------------------------------

RUN_MAIN = """\
pipeline {
  agent none
  options {
    skipDefaultCheckout()
    timeout(time: 10, unit: 'MINUTES')
  }
  triggers {
    cron(env.BRANCH_NAME == 'main' ? 'H 3 * * 1' : '')
  }
  environment {
    GREETING = 'hello'
  }
  stages {
    stage('Checks') {
      parallel {
        stage('One') {
          agent any
          steps {
            checkout scm
            sh '''touch made-by-one; mkdir -p out
echo "$GREETING $BRANCH_NAME $BUILD_NUMBER $JOB_NAME $BUILD_URL" > out/env.txt'''
            stash(name: 'one', includes: 'made-by-one,out/**')
          }
        }
        stage('Two') {
          agent any
          steps {
            sh 'test ! -e made-by-one; test ! -e .git; touch made-by-two'
          }
        }
      }
    }
    stage('Carry') {
      agent any
      steps {
        unstash 'one'
        sh 'test -e made-by-one; test ! -e made-by-two; test -d "$WORKSPACE_TMP"'
        withCredentials([string(credentialsId: 'TOK', variable: 'TOKEN')]) {
          sh 'printf %s "$TOKEN" > token.txt; echo "the token is $TOKEN"'
        }
        archiveArtifacts(artifacts: 'out/**')
      }
    }
    stage('Tests') {
      agent any
      steps {
        sh '''mkdir -p reports
cat > reports/unit.xml <<'XML'
<testsuite name="unit" tests="2"><testcase classname="t" name="ok"/>
<testcase classname="t" name="bad"><failure message="boom"/></testcase></testsuite>
XML
'''
        junit(testResults: 'reports/*.xml', allowEmptyResults: false)
      }
    }
    stage('Feature only') {
      when { branch 'feature/*' }
      steps { echo 'feature' }
    }
    stage('Nightly') {
      when { triggeredBy 'TimerTrigger' }
      steps { echo 'nightly' }
    }
    stage('On push') {
      when { allOf { branch 'main'; triggeredBy 'BranchEventCause'; not { changeRequest() } } }
      steps { echo 'pushed' }
    }
    stage('Approve') {
      input {
        message 'Go?'
        ok 'Go'
        submitter 'mlci-approvers'
        submitterParameter 'APPROVER'
      }
      agent any
      steps {
        sh 'test "$APPROVER" = stub-approver'
      }
    }
    stage('Fail') {
      agent any
      steps {
        sh 'exit 3'
        echo 'not reached'
      }
      post {
        always {
          echo 'stage post always'
        }
        success {
          echo 'stage post success'
        }
      }
    }
    stage('After') {
      agent any
      steps {
        sh 'touch after'
      }
    }
  }
  post {
    always {
      echo 'pipeline post always'
    }
    failure {
      echo 'pipeline post failure'
    }
    success {
      echo 'pipeline post success'
    }
  }
}
"""

RUN_FEATURE = """\
pipeline {
  agent none
  options {
    skipDefaultCheckout()
  }
  triggers {
    cron(env.BRANCH_NAME == 'main' ? 'H 3 * * 1' : '')
  }
  stages {
    stage('Restore') {
      agent any
      steps {
        copyArtifacts(projectName: env.JOB_NAME, selector: lastCompleted(), filter: 'out/**', optional: false,
                      fingerprintArtifacts: false)
        sh 'cat out/env.txt'
      }
    }
    stage('Deploy') {
      when { branch 'main' }
      steps { echo 'deploying' }
    }
    stage('Manual') {
      when { triggeredBy cause: 'UserIdCause', detail: 'alice' }
      steps { echo 'by alice' }
    }
    stage('Broken') {
      parallel {
        stage('No stash') {
          agent any
          steps { unstash 'never-stashed' } // <- stash
        }
        stage('No report') {
          agent any
          steps { junit 'reports/*.xml' } // <- junit
        }
        stage('Leak') {
          agent any
          steps {
            withCredentials([string(credentialsId: 'TOK', variable: 'TOKEN')]) {
              sh(script: 'echo ' + env.TOKEN) // <- leak
            }
          }
        }
        stage('Typo') {
          steps {
            script { echo UNDEFINED_NAME } // <- typo
          }
        }
        stage('Slow') {
          agent any
          options { timeout(time: 1, unit: 'SECONDS') }
          steps { sh 'sleep 20' } // <- slow
        }
      }
    }
    stage('Never') {
      steps { echo 'never' }
    }
  }
}
"""

SECRET = "dummy-token-4f2a"


def _git_source(root: Path) -> Path:
    source = root / "source"
    source.mkdir()
    (source / "README.md").write_text("a project\n", encoding="utf-8")
    git = ["git", "-C", str(source), "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return source


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two builds of job `demo` sharing one store: main (pushed), then feature/login (by alice)."""
    root = tmp_path_factory.mktemp("jenkins-builds")
    source = _git_source(root)
    store = root / "store"
    main_file = root / "main.Jenkinsfile"
    main_file.write_text(RUN_MAIN, encoding="utf-8")
    feature_file = root / "feature.Jenkinsfile"
    feature_file.write_text(RUN_FEATURE, encoding="utf-8")
    creds = {"TOK": SECRET}
    main = jenkins_stub.execute(
        main_file,
        source,
        root / "main",
        env={"BRANCH_NAME": "main", "JOB_NAME": "demo"},
        cause="BranchEventCause",
        credentials=creds,
        store=store,
    )
    feature = jenkins_stub.execute(
        feature_file,
        source,
        root / "feature",
        env={"BRANCH_NAME": "feature/login", "JOB_NAME": "demo"},
        cause="UserIdCause:alice",
        credentials=creds,
        store=store,
    )
    return {"main": main, "feature": feature, "store": store}


def _statuses(result: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(s["path"], s["status"], s["skipped_by"]) for s in result["stages"]]


def test_a_build_runs_stages_in_order_and_a_failing_sh_stops_exactly_what_follows(builds: dict[str, Any]) -> None:
    main = builds["main"]
    assert main["exit_code"] == 0 and main["result"] == "FAILURE"
    assert _statuses(main) == [
        ("Checks", "SUCCESS", None),
        ("Checks/One", "SUCCESS", None),
        ("Checks/Two", "SUCCESS", None),
        ("Carry", "SUCCESS", None),
        ("Tests", "UNSTABLE", None),
        ("Feature only", "SKIPPED", "when"),
        ("Nightly", "SKIPPED", "when"),
        ("On push", "SUCCESS", None),
        ("Approve", "SUCCESS", None),
        ("Fail", "FAILURE", None),
        ("After", "SKIPPED", "failure"),
    ]
    line = next(i for i, text in enumerate(RUN_MAIN.splitlines(), 1) if "sh 'exit 3'" in text)
    assert main["errors"] == [f"main.Jenkinsfile:{line}: Fail: script returned exit code 3"]
    fail = stage(main, "Fail")
    assert [(s["step"], s["status"], s.get("exit")) for s in fail["steps"]] == [
        ("sh", "FAILURE", 3),
        ("echo", "SUCCESS", None),
    ]
    assert [s.get("post") for s in fail["steps"]] == [None, "always"]
    assert [p["condition"] for p in fail["post"]] == ["always"]
    assert [p["condition"] for p in main["post"]] == ["always", "failure"]
    assert main["triggers"] == [{"trigger": "cron", "spec": "H 3 * * 1", "line": "main.Jenkinsfile:8"}]
    assert main["inputs"][0]["submitter"] == "mlci-approvers" and main["inputs"][0]["approver"] == "stub-approver"


def test_each_stage_agent_gets_its_own_empty_workspace_and_stash_carries_files(builds: dict[str, Any]) -> None:
    main = builds["main"]
    one, two, carry = (Path(stage(main, p)["workspace"]) for p in ("Checks/One", "Checks/Two", "Carry"))
    assert len({one, two, carry}) == 3
    assert (one / "made-by-one").is_file() and (one / ".git").is_dir()
    assert (two / "made-by-two").is_file() and not (two / "made-by-one").exists()
    assert (carry / "made-by-one").is_file() and not (carry / "made-by-two").exists()
    assert (carry / "out" / "env.txt").read_text(encoding="utf-8") == (
        "hello main 1 demo http://jenkins.stub/job/demo/1/\n"
    )


def test_junit_failures_make_the_build_unstable_and_archive_copies_files(builds: dict[str, Any]) -> None:
    main = builds["main"]
    assert main["junit"] == [
        {"stage": "Tests", "files": ["reports/unit.xml"], "tests": 2, "failures": 1, "errors": 0, "skipped": 0}
    ]
    assert main["archived"] == ["out/env.txt"]
    archive = builds["store"] / "builds" / "1" / "archive" / "out" / "env.txt"
    assert archive.read_text(encoding="utf-8").startswith("hello main 1 demo")


def test_with_credentials_binds_the_dummy_value_by_name_and_masks_it_in_the_log(builds: dict[str, Any]) -> None:
    main = builds["main"]
    carry = Path(stage(main, "Carry")["workspace"])
    assert (carry / "token.txt").read_text(encoding="utf-8") == SECRET
    log = Path(main["log"]).read_text(encoding="utf-8")
    assert "the token is ****" in log and SECRET not in log


def _marked(text: str, mark: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.endswith(f"// <- {mark}"))


def test_a_second_build_copies_the_previous_archive_and_reports_each_broken_step(builds: dict[str, Any]) -> None:
    feature = builds["feature"]
    assert feature["build_number"] == 2
    restore = stage(feature, "Restore")
    assert restore["steps"][0]["from_build"] == 1 and restore["steps"][0]["files"] == ["out/env.txt"]
    assert (Path(restore["workspace"]) / "out" / "env.txt").is_file()
    assert feature["triggers"][0]["spec"] == ""
    # A timed-out step aborts its branch; ABORTED is the worst result, so it is the build's.
    assert feature["result"] == "ABORTED"
    assert _statuses(feature) == [
        ("Restore", "SUCCESS", None),
        ("Deploy", "SKIPPED", "when"),
        ("Manual", "SUCCESS", None),
        ("Broken", "ABORTED", None),
        ("Broken/No stash", "FAILURE", None),
        ("Broken/No report", "FAILURE", None),
        ("Broken/Leak", "FAILURE", None),
        ("Broken/Typo", "FAILURE", None),
        ("Broken/Slow", "ABORTED", None),
        ("Never", "SKIPPED", "aborted"),
    ]
    f = "feature.Jenkinsfile"
    leak = _marked(RUN_FEATURE, "leak")
    assert feature["errors"] == [
        f"{f}:{_marked(RUN_FEATURE, 'stash')}: Broken/No stash: No such saved stash 'never-stashed'",
        f"{f}:{_marked(RUN_FEATURE, 'junit')}: Broken/No report: No test report files were found. Configuration error?",
        f"{f}:{leak}: Broken/Leak: secret TOK appears in the sh script at {f}:{leak}",
        f"{f}:{_marked(RUN_FEATURE, 'typo')}: Broken/Typo: groovy.lang.MissingPropertyException:"
        " No such property: UNDEFINED_NAME for class: groovy.lang.Binding",
        f"{f}:{_marked(RUN_FEATURE, 'slow')}: Broken/Slow: Timeout has been exceeded",
    ]
    # The leaking script never ran.
    assert "exit" not in stage(feature, "Broken/Leak")["steps"][-1]
    assert SECRET not in Path(feature["log"]).read_text(encoding="utf-8")


def test_the_library_form_executes_the_same_as_inline_and_an_aborted_input_stops_the_build(
    tmp_path: Path, library: Path
) -> None:
    source = _git_source(tmp_path)
    runs = {}
    for form, text in (("library", LIBRARY_FORM), ("inline", INLINE_FORM)):
        jenkinsfile = tmp_path / f"{form}.Jenkinsfile"
        jenkinsfile.write_text(text, encoding="utf-8")
        runs[form] = jenkins_stub.execute(
            jenkinsfile,
            source,
            tmp_path / form,
            env={"BRANCH_NAME": "main"},
            cause="BranchEventCause",
            answer="abort",
            libraries={"mlci": library},
        )

    def shape(result: dict[str, Any]) -> list[Any]:
        return [
            (
                s["path"],
                s["status"],
                s["skipped_by"],
                [(x["step"], x.get("label")) for x in s["steps"] if not x.get("library_var")],
            )
            for s in result["stages"]
        ]

    lib, inline = runs["library"], runs["inline"]
    assert lib["result"] == inline["result"] == "ABORTED"
    assert (
        shape(lib)
        == shape(inline)
        == [
            ("Build", "SUCCESS", None, [("sh", "build"), ("stash", None)]),
            ("Approve", "ABORTED", None, []),
            ("After", "SKIPPED", "aborted", []),
        ]
    )
    assert [p["condition"] for p in lib["post"]] == [p["condition"] for p in inline["post"]] == ["always", "aborted"]
    assert lib["inputs"][0]["submitter"] == inline["inputs"][0]["submitter"] == "mlci-approvers"
    assert lib["errors"] == ["vars/mlciPipeline.groovy:15: Approve: Rejected by stub-approver"]
    assert inline["errors"] == ["inline.Jenkinsfile:13: Approve: Rejected by stub-approver"]


def test_without_groovy_the_harness_fails_naming_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(jenkins_stub.GroovyMissing, match=r"groovy is not on PATH: install Debian's groovy 2.4"):
        jenkins_stub._toolchain.__wrapped__()


def test_an_invalid_java_home_falls_back_to_a_jdk_17(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    home = jenkins_stub.java_home()
    assert "17" in home.name and (home / "bin" / "java").is_file()
