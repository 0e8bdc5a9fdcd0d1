// mlci 0.1.0: the mlciPipeline step of mlci's shared library (vendored by mlci: managed,
// upgraded by `mlci upgrade`; the same file is published in the mlci repository under jenkins/).
// The whole declarative pipeline of an mlci project in one call: the stages, conditions,
// hand-overs and approvals of the Jenkinsfile mlci renders, each stage run by mlciStage.
// Every setting and its default: mlciPipeline.txt (the step's help in Jenkins).

// The settings mlciPipeline takes, with their defaults.
Map defaults() {
  return [
    defaultBranch: 'main',       // the branch whose builds deliver (ci.default_branch)
    python: '3.11',              // the agents' Python: python3.X on PATH (ci.python)
    install: 'mlci==0.1.0',  // the pip requirement mlci is installed from (ci.mlci_install)
    agent: 'any',                // 'any', or the label expression of the agents (ci.jenkins.agent)
    approvers: 'mlci-approvers', // who may approve production (ci.jenkins.approvers)
    retrainCron: '',             // the retrain schedule, UTC ('': none) (ci.retrain_cron)
    keepRegistry: true,          // carry the local MLflow store between stages and builds (no tracking.uri)
    abortSuperseded: true,       // a pull request's newer commit aborts the build it supersedes
    settings: [:],               // fixed environment values of the delivery stages
    required: [],                // variables the controller or the agent must define for them
    secrets: [],                 // Secret text credentials they bind, by variable name
    extras: [:],                 // mlci's extras a stage installs instead of its own, by stage ('pre-commit' for lint, ...)
  ]
}

def call(Map config = [:]) {
  Map known = defaults()
  for (String key in config.keySet()) {
    if (!known.containsKey(key)) {
      error("mlciPipeline: unknown setting '" + key + "'; the settings are " + known.keySet().join(', ') + ' (vars/mlciPipeline.txt)')
    }
  }
  Map c = known + config
  String agentLabel = c.agent == 'any' ? '' : c.agent
  pipeline {
    agent none
    options {
      // A pull request's newer commit aborts the build it supersedes; other branches queue, so a
      // build that deploys is never stopped half-way.
      disableConcurrentBuilds(abortPrevious: c.abortSuperseded && env.CHANGE_ID != null)
      buildDiscarder(logRotator(numToKeepStr: '50', artifactNumToKeepStr: '20'))
      // Restart from stage: the stashes of the last builds are kept for it.
      preserveStashes(buildCount: 5)
      // The kept registry is copied from this job's own earlier builds (Copy Artifact).
      copyArtifactPermission(env.JOB_BASE_NAME)
      timestamps()
      timeout(time: 240, unit: 'MINUTES')
      skipDefaultCheckout()
    }
    triggers {
      // Retraining on a schedule (UTC), on the default branch only: '' schedules nothing.
      cron(c.retrainCron && env.BRANCH_NAME == c.defaultBranch ? 'TZ=UTC\n' + c.retrainCron : '')
    }
    environment {
      MLCI_PYTHON = 'python' + c.python
      MLCI_INSTALL = c.install
      MLCI_UV_VERSION = '0.13.8'
    }
    stages {
      stage('Registry') {
        when {
          beforeAgent true
          allOf {
            expression { c.keepRegistry }
            anyOf {
              expression { env.BRANCH_NAME == c.defaultBranch }
              allOf {
                triggeredBy cause: 'UserIdCause'
                not { changeRequest() }
              }
              triggeredBy 'TimerTrigger'
            }

          }
        }
        agent { label agentLabel }
        steps {
          deleteDir()
          script {
            if (env.BRANCH_NAME == c.defaultBranch) {
              // The newest registry the last builds kept (a failed or aborted build may have kept none).
              int build = Integer.parseInt(env.BUILD_NUMBER)
              for (int n = build - 1; n >= 1 && n >= build - 20 && !fileExists('mlci-newest/mlci-registry/key'); n--) {
                copyArtifacts(projectName: env.JOB_NAME, selector: specific(String.valueOf(n)), filter: 'mlci-registry/**', target: 'mlci-newest', optional: true, fingerprintArtifacts: false)
              }

            }
          }
          sh(label: 'Say which registry this build uses', script: '''#!/bin/bash
set -euo pipefail
rm -rf mlci-registry
if [ -s mlci-newest/mlci-registry/key ]; then
  mv mlci-newest/mlci-registry mlci-registry
  echo "Registry: the local MLflow store kept by an earlier build ($(cat mlci-registry/key))"
else
  echo "Registry: no kept local MLflow store (the first build, discarded, or not the default branch): starting empty"
  mkdir -p mlci-registry
  : > mlci-registry/key
fi
rm -rf mlci-newest
''')
          archiveArtifacts(artifacts: 'mlci-registry/**', allowEmptyArchive: true)
          stash(name: 'mlci-registry', includes: 'mlci-registry/**', allowEmpty: true)
        }
      }
      stage('Checks') {
        when {
          beforeAgent true
          anyOf {
            changeRequest()
            expression { env.BRANCH_NAME == c.defaultBranch }
            allOf {
              triggeredBy cause: 'UserIdCause'
              not { changeRequest() }
            }
            triggeredBy 'TimerTrigger'
          }

        }
        parallel {
          stage('Lint') {
            agent { label agentLabel }
            options {
              timeout(time: 15, unit: 'MINUTES')
            }
            steps {
              mlciStage(stage: 'lint', job: 'lint', extras: c.extras['lint'])
            }
          }
          stage('Unit tests') {
            agent { label agentLabel }
            options {
              timeout(time: 30, unit: 'MINUTES')
            }
            steps {
              mlciStage(stage: 'test', job: 'unit-test', extras: c.extras['test'])
            }
          }
          stage('Data tests') {
            agent { label agentLabel }
            options {
              timeout(time: 30, unit: 'MINUTES')
            }
            steps {
              mlciStage(stage: 'data-test', job: 'data-test', extras: c.extras['data-test'])
            }
          }
        }
      }
      stage('CI gate') {
        when {
          beforeAgent true
          anyOf {
            changeRequest()
            expression { env.BRANCH_NAME == c.defaultBranch }
            allOf {
              triggeredBy cause: 'UserIdCause'
              not { changeRequest() }
            }
            triggeredBy 'TimerTrigger'
          }

        }
        options {
          timeout(time: 5, unit: 'MINUTES')
        }
        steps {
          echo 'every check passed: Lint, Unit tests, Data tests'
        }
      }
      stage('Train') {
        when {
          beforeAgent true
          anyOf {
            expression { env.BRANCH_NAME == c.defaultBranch }
            allOf {
              triggeredBy cause: 'UserIdCause'
              not { changeRequest() }
            }
            triggeredBy 'TimerTrigger'
          }

        }
        agent { label agentLabel }
        options {
          timeout(time: 60, unit: 'MINUTES')
        }
        steps {
          mlciStage(
            stage: 'train',
            job: 'train',
            inputs: [:],
            from: [:],
            settings: c.settings,
            required: c.required,
            secrets: c.secrets,
            extras: c.extras['train'],
            unstash: c.keepRegistry ? ['mlci-registry'] : [],
            stashState: c.keepRegistry,
            stashOutputs: true,
            restoreRegistry: c.keepRegistry,
            saveRegistry: ''
          )
        }
      }
      stage('Register') {
        when {
          beforeAgent true
          anyOf {
            expression { env.BRANCH_NAME == c.defaultBranch }
            allOf {
              triggeredBy cause: 'UserIdCause'
              not { changeRequest() }
            }
            triggeredBy 'TimerTrigger'
          }

        }
        agent { label agentLabel }
        options {
          timeout(time: 30, unit: 'MINUTES')
        }
        steps {
          mlciStage(
            stage: 'register',
            job: 'register',
            inputs: [:],
            from: ['run-id': 'train:run-id'],
            settings: c.settings,
            required: c.required,
            secrets: c.secrets,
            extras: c.extras['register'],
            unstash: c.keepRegistry ? ['mlci-state-train', 'mlci-outputs-train'] : ['mlci-outputs-train'],
            stashState: c.keepRegistry,
            stashOutputs: true,
            restoreRegistry: false,
            saveRegistry: c.keepRegistry ? c.defaultBranch : ''
          )
        }
      }
      stage('Deploy to staging') {
        when {
          beforeAgent true
          allOf {
            expression { env.BRANCH_NAME == c.defaultBranch }
            anyOf {
              expression { env.BRANCH_NAME == c.defaultBranch }
              allOf {
                triggeredBy cause: 'UserIdCause'
                not { changeRequest() }
              }
              triggeredBy 'TimerTrigger'
            }
          }

        }
        agent { label agentLabel }
        options {
          timeout(time: 30, unit: 'MINUTES')
        }
        steps {
          mlciStage(
            stage: 'deploy',
            job: 'deploy-staging',
            inputs: ['env': 'staging'],
            from: ['version': 'register:model-version'],
            settings: c.settings,
            required: c.required,
            secrets: c.secrets,
            extras: c.extras['deploy'],
            unstash: c.keepRegistry ? ['mlci-state-register', 'mlci-outputs-register'] : ['mlci-outputs-register'],
            stashState: c.keepRegistry,
            stashOutputs: true,
            restoreRegistry: false,
            saveRegistry: c.keepRegistry ? c.defaultBranch : ''
          )
        }
      }
      stage('Deploy to production') {
        when {
          beforeAgent true
          beforeInput true
          allOf {
            expression { env.BRANCH_NAME == c.defaultBranch }
            anyOf {
              expression { env.BRANCH_NAME == c.defaultBranch }
              allOf {
                triggeredBy cause: 'UserIdCause'
                not { changeRequest() }
              }
              triggeredBy 'TimerTrigger'
            }
          }

        }
        input {
          message 'Deploy the model version this build verified to production?'
          ok 'Deploy'
          submitter c.approvers
        }
        agent { label agentLabel }
        options {
          timeout(time: 30, unit: 'MINUTES')
        }
        steps {
          mlciStage(
            stage: 'deploy',
            job: 'deploy-production',
            inputs: ['env': 'production'],
            from: ['version': 'deploy-staging:model-version'],
            settings: c.settings,
            required: c.required,
            secrets: c.secrets,
            extras: c.extras['deploy'],
            unstash: c.keepRegistry ? ['mlci-state-deploy-staging', 'mlci-outputs-deploy-staging'] : ['mlci-outputs-deploy-staging'],
            stashState: false,
            stashOutputs: false,
            restoreRegistry: false,
            saveRegistry: c.keepRegistry ? c.defaultBranch : ''
          )
        }
      }
    }
  }
}
