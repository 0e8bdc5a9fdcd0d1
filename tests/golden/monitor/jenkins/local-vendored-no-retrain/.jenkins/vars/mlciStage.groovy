// mlci 0.1.0: the mlciStage step of mlci's shared library (vendored by mlci: managed,
// upgraded by `mlci upgrade`; the same file is published in the mlci repository under jenkins/).
// One mlci stage on the current agent, exactly as the Jenkinsfile mlci renders runs it: a clean
// workspace, the checkout, the state earlier stages handed over, mlci and the project installed,
// then `mlci <stage>` with its settings and credentials passed by name, and its reports kept.
// Every setting and its default: mlciStage.txt (the step's help in Jenkins).

// The settings mlciStage takes besides `stage`, with their defaults.
Map defaults() {
  return [
    job: '',               // the model's job id (MLCI_JOB): names its outputs file; default: the stage's CI id
    inputs: [:],           // fixed stage inputs, e.g. [env: 'staging'] (MLCI_IN_ENV)
    from: [:],             // inputs taken from an earlier stage's outputs, e.g. ['run-id': 'train:run-id']
    settings: [:],         // fixed environment values, e.g. [MLFLOW_TRACKING_URI: 'databricks']
    required: [],          // variables the controller or the agent must define, e.g. ['DATABRICKS_HOST']
    secrets: [],           // Secret text credentials bound to variables of the same name
    unstash: [],           // stashes of earlier stages to restore first
    stashState: false,     // stash .mlci/ for the next stage (the local MLflow store)
    stashOutputs: false,   // stash this stage's outputs file for a later stage
    restoreRegistry: false,  // restore the registry the Registry stage found (stash 'mlci-registry')
    saveRegistry: '',      // on builds of this branch, keep the local store for the next build
    checkout: true,        // check the repository out
    extras: null,          // mlci's extras to install, comma-separated ('' the core only); default: the stage's own
  ]
}

// The mlci stages: their CI job ids, the inputs they take, the JUnit report they write, and what
// their setup installs (mlci's extras the stage needs, and whether the project too).
Map stages() {
  return [
    'lint': [job: 'lint', inputs: [], junit: null, extras: '', project: false],
    'test': [job: 'unit-test', inputs: [], junit: '.mlci/out/junit.xml', extras: 'unit-test', project: true],
    'data-test': [job: 'data-test', inputs: ['engine'], junit: '.mlci/out/data-test.xml', extras: 'data', project: false],
    'train': [job: 'train', inputs: ['tracking-uri'], junit: null, extras: 'train', project: true],
    'register': [job: 'register', inputs: ['run-id', 'tracking-uri'], junit: null, extras: 'train', project: true],
    'deploy': [job: 'deploy', inputs: ['env', 'version', 'target', 'tracking-uri'], junit: null, extras: 'serve', project: true],
    'monitor': [job: 'monitor', inputs: ['tracking-uri'], junit: '.mlci/out/monitor.xml', extras: 'train', project: true],
  ]
}

String stageScript(String stage) {
  if (stage == 'lint') {
    return '''#!/bin/bash
set -euo pipefail
for name in ${MLCI_REQUIRED:-}; do
  if [ -z "${!name:-}" ]; then
    echo "mlci: $name is not set: define it in the controller's global properties or the agent's node properties (docs/jenkins.md)" >&2
    exit 2
  fi
done
args=()
"${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-venv/bin/mlci" lint "${args[@]}"
'''
  }
  if (stage == 'test') {
    return '''#!/bin/bash
set -euo pipefail
for name in ${MLCI_REQUIRED:-}; do
  if [ -z "${!name:-}" ]; then
    echo "mlci: $name is not set: define it in the controller's global properties or the agent's node properties (docs/jenkins.md)" >&2
    exit 2
  fi
done
args=()
"${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-venv/bin/mlci" test "${args[@]}"
'''
  }
  if (stage == 'data-test') {
    return '''#!/bin/bash
set -euo pipefail
for name in ${MLCI_REQUIRED:-}; do
  if [ -z "${!name:-}" ]; then
    echo "mlci: $name is not set: define it in the controller's global properties or the agent's node properties (docs/jenkins.md)" >&2
    exit 2
  fi
done
# An input an earlier stage handed over (`job:output`): the value in that job's outputs file.
# Run ids and versions need no escaping there; anything else, or nothing, stops the stage.
handed_over() {
  local file=".mlci/out/jenkins/${1%%:*}.properties" key="${1#*:}" value
  value="$(sed -n "s/^$key=//p" "$file" 2>/dev/null || true)"
  if [ -z "$value" ] || [[ "$value" == *\\\\* ]]; then
    echo "mlci: $file holds no plain $key: the stage that hands it over did not run or failed" >&2
    exit 2
  fi
  printf '%s' "$value"
}
args=()
if [ -n "${MLCI_FROM_ENGINE:-}" ]; then MLCI_IN_ENGINE="$(handed_over "$MLCI_FROM_ENGINE")"; fi
if [ -n "${MLCI_IN_ENGINE:-}" ]; then args+=(--engine "$MLCI_IN_ENGINE"); fi
"${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-venv/bin/mlci" data-test "${args[@]}"
'''
  }
  if (stage == 'train') {
    return '''#!/bin/bash
set -euo pipefail
for name in ${MLCI_REQUIRED:-}; do
  if [ -z "${!name:-}" ]; then
    echo "mlci: $name is not set: define it in the controller's global properties or the agent's node properties (docs/jenkins.md)" >&2
    exit 2
  fi
done
# An input an earlier stage handed over (`job:output`): the value in that job's outputs file.
# Run ids and versions need no escaping there; anything else, or nothing, stops the stage.
handed_over() {
  local file=".mlci/out/jenkins/${1%%:*}.properties" key="${1#*:}" value
  value="$(sed -n "s/^$key=//p" "$file" 2>/dev/null || true)"
  if [ -z "$value" ] || [[ "$value" == *\\\\* ]]; then
    echo "mlci: $file holds no plain $key: the stage that hands it over did not run or failed" >&2
    exit 2
  fi
  printf '%s' "$value"
}
args=()
if [ -n "${MLCI_FROM_TRACKING_URI:-}" ]; then MLCI_IN_TRACKING_URI="$(handed_over "$MLCI_FROM_TRACKING_URI")"; fi
if [ -n "${MLCI_IN_TRACKING_URI:-}" ]; then args+=(--tracking-uri "$MLCI_IN_TRACKING_URI"); fi
"${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-venv/bin/mlci" train "${args[@]}"
'''
  }
  if (stage == 'register') {
    return '''#!/bin/bash
set -euo pipefail
for name in ${MLCI_REQUIRED:-}; do
  if [ -z "${!name:-}" ]; then
    echo "mlci: $name is not set: define it in the controller's global properties or the agent's node properties (docs/jenkins.md)" >&2
    exit 2
  fi
done
# An input an earlier stage handed over (`job:output`): the value in that job's outputs file.
# Run ids and versions need no escaping there; anything else, or nothing, stops the stage.
handed_over() {
  local file=".mlci/out/jenkins/${1%%:*}.properties" key="${1#*:}" value
  value="$(sed -n "s/^$key=//p" "$file" 2>/dev/null || true)"
  if [ -z "$value" ] || [[ "$value" == *\\\\* ]]; then
    echo "mlci: $file holds no plain $key: the stage that hands it over did not run or failed" >&2
    exit 2
  fi
  printf '%s' "$value"
}
args=()
if [ -n "${MLCI_FROM_RUN_ID:-}" ]; then MLCI_IN_RUN_ID="$(handed_over "$MLCI_FROM_RUN_ID")"; fi
if [ -n "${MLCI_IN_RUN_ID:-}" ]; then args+=(--run-id "$MLCI_IN_RUN_ID"); fi
if [ -n "${MLCI_FROM_TRACKING_URI:-}" ]; then MLCI_IN_TRACKING_URI="$(handed_over "$MLCI_FROM_TRACKING_URI")"; fi
if [ -n "${MLCI_IN_TRACKING_URI:-}" ]; then args+=(--tracking-uri "$MLCI_IN_TRACKING_URI"); fi
"${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-venv/bin/mlci" register "${args[@]}"
'''
  }
  if (stage == 'deploy') {
    return '''#!/bin/bash
set -euo pipefail
for name in ${MLCI_REQUIRED:-}; do
  if [ -z "${!name:-}" ]; then
    echo "mlci: $name is not set: define it in the controller's global properties or the agent's node properties (docs/jenkins.md)" >&2
    exit 2
  fi
done
# An input an earlier stage handed over (`job:output`): the value in that job's outputs file.
# Run ids and versions need no escaping there; anything else, or nothing, stops the stage.
handed_over() {
  local file=".mlci/out/jenkins/${1%%:*}.properties" key="${1#*:}" value
  value="$(sed -n "s/^$key=//p" "$file" 2>/dev/null || true)"
  if [ -z "$value" ] || [[ "$value" == *\\\\* ]]; then
    echo "mlci: $file holds no plain $key: the stage that hands it over did not run or failed" >&2
    exit 2
  fi
  printf '%s' "$value"
}
args=()
if [ -n "${MLCI_FROM_ENV:-}" ]; then MLCI_IN_ENV="$(handed_over "$MLCI_FROM_ENV")"; fi
if [ -n "${MLCI_IN_ENV:-}" ]; then args+=(--env "$MLCI_IN_ENV"); fi
if [ -n "${MLCI_FROM_VERSION:-}" ]; then MLCI_IN_VERSION="$(handed_over "$MLCI_FROM_VERSION")"; fi
if [ -n "${MLCI_IN_VERSION:-}" ]; then args+=(--version "$MLCI_IN_VERSION"); fi
if [ -n "${MLCI_FROM_TARGET:-}" ]; then MLCI_IN_TARGET="$(handed_over "$MLCI_FROM_TARGET")"; fi
if [ -n "${MLCI_IN_TARGET:-}" ]; then args+=(--target "$MLCI_IN_TARGET"); fi
if [ -n "${MLCI_FROM_TRACKING_URI:-}" ]; then MLCI_IN_TRACKING_URI="$(handed_over "$MLCI_FROM_TRACKING_URI")"; fi
if [ -n "${MLCI_IN_TRACKING_URI:-}" ]; then args+=(--tracking-uri "$MLCI_IN_TRACKING_URI"); fi
"${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-venv/bin/mlci" deploy "${args[@]}"
'''
  }
  if (stage == 'monitor') {
    return '''#!/bin/bash
set -euo pipefail
for name in ${MLCI_REQUIRED:-}; do
  if [ -z "${!name:-}" ]; then
    echo "mlci: $name is not set: define it in the controller's global properties or the agent's node properties (docs/jenkins.md)" >&2
    exit 2
  fi
done
# An input an earlier stage handed over (`job:output`): the value in that job's outputs file.
# Run ids and versions need no escaping there; anything else, or nothing, stops the stage.
handed_over() {
  local file=".mlci/out/jenkins/${1%%:*}.properties" key="${1#*:}" value
  value="$(sed -n "s/^$key=//p" "$file" 2>/dev/null || true)"
  if [ -z "$value" ] || [[ "$value" == *\\\\* ]]; then
    echo "mlci: $file holds no plain $key: the stage that hands it over did not run or failed" >&2
    exit 2
  fi
  printf '%s' "$value"
}
args=()
if [ -n "${MLCI_FROM_TRACKING_URI:-}" ]; then MLCI_IN_TRACKING_URI="$(handed_over "$MLCI_FROM_TRACKING_URI")"; fi
if [ -n "${MLCI_IN_TRACKING_URI:-}" ]; then args+=(--tracking-uri "$MLCI_IN_TRACKING_URI"); fi
"${WORKSPACE_TMP:-$WORKSPACE@tmp}/mlci-venv/bin/mlci" monitor "${args[@]}"
'''
  }
  return null
}

def call(Map config = [:]) {
  Map known = defaults()
  for (String key in config.keySet()) {
    if (key != 'stage' && !known.containsKey(key)) {
      error("mlciStage: unknown setting '" + key + "'; the settings are stage, " + known.keySet().join(', ') + ' (vars/mlciStage.txt)')
    }
  }
  Map c = known + config
  String stage = c.stage
  Map facts = stages()[stage]
  if (facts == null) {
    error("mlciStage: stage '" + stage + "' is not an mlci stage; use one of " + stages().keySet().join(', '))
  }
  String job = c.job ?: facts.job
  List variables = ['MLCI_JOB=' + job]
  // What the setup step installs (its script checks the extras' names).
  variables.add('MLCI_EXTRAS=' + (c.extras != null ? c.extras : facts.extras))
  variables.add('MLCI_INSTALL_PROJECT=' + facts.project)
  for (String name in c.settings.keySet()) {
    variables.add(checkedName(name) + '=' + c.settings[name])
  }
  for (String name in c.inputs.keySet()) {
    variables.add(inputVariable('MLCI_IN_', name, facts) + '=' + c.inputs[name])
  }
  for (String name in c.from.keySet()) {
    variables.add(inputVariable('MLCI_FROM_', name, facts) + '=' + c.from[name])
  }
  if (c.required) {
    for (String name in c.required) {
      checkedName(name)
    }
    variables.add('MLCI_REQUIRED=' + c.required.join(' '))
  }
  for (String name in c.secrets) {
    checkedName(name)
  }
  withEnv(variables) {
    try {
      deleteDir()
      if (c.checkout) {
        checkout scm
      }
      for (String name in c.unstash) {
        unstash name
      }
      if (c.restoreRegistry) {
        sh(label: 'Restore the registry kept by earlier builds', script: '''#!/bin/bash
set -euo pipefail
mkdir -p .mlci
cp -R mlci-registry/mlflow.db mlci-registry/artifacts .mlci/ 2>/dev/null || true
# Which registry this build started from, and every one it kept since: a save replaces only one
# of them (registry-save.sh).
cp mlci-registry/key .mlci/registry-lineage
rm -rf mlci-registry
''')
      }
      sh(label: 'Install mlci and the project', script: '''#!/bin/bash
set -euo pipefail
# No uv.toml of the agent's user applies: a pull request's code, run on the same agent, could
# have written one (another index, say) for the next default-branch build to read.
export UV_NO_CONFIG=1
tmp="${WORKSPACE_TMP:-$WORKSPACE@tmp}"
# uv of the pinned version: the agent's own (on PATH), or installed for this stage beside the
# workspace (nothing an earlier build on the agent could have left in its place).
uv="$(command -v uv || true)"
if [ -z "$uv" ] || [ "$("$uv" --version | cut -d' ' -f2)" != "$MLCI_UV_VERSION" ]; then
  "$MLCI_PYTHON" -m venv --clear "$tmp/mlci-uv"
  "$tmp/mlci-uv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$MLCI_UV_VERSION"
  uv="$tmp/mlci-uv/bin/uv"
fi
# Agents are shared: a change request's build runs its code where branch builds run theirs, so
# it downloads into a uv cache of its own, never the one a branch build installs from.
cache="${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}"
if [ -n "${CHANGE_ID:-}" ]; then
  cache="$cache-change-requests"
fi
export UV_CACHE_DIR="$cache"
# mlci and the project in a venv beside the workspace (WORKSPACE_TMP), not in it: lint and
# the tests see only the project.
venv="$tmp/mlci-venv"
"$uv" venv --quiet --clear --python "$MLCI_PYTHON" "$venv"
extras="${MLCI_EXTRAS:-}"
if ! [[ "$extras" =~ ^[a-z0-9,-]*$ ]]; then
  echo "mlci: MLCI_EXTRAS must be names of mlci's extras, comma-separated (e.g. train), not $extras" >&2
  exit 2
fi
# Only what the stage needs: the extras as a second requirement of mlci, which uv takes from
# MLCI_INSTALL with them.
with_extras=()
if [ -n "$extras" ]; then
  with_extras=("mlci[$extras]")
fi
"$uv" pip install --quiet --python "$venv/bin/python" "$MLCI_INSTALL" ${with_extras[@]+"${with_extras[@]}"}
if [ "${MLCI_INSTALL_PROJECT:-true}" = "true" ]; then
  "$uv" pip install --quiet --python "$venv/bin/python" -e .
fi
echo "mlci $("$venv/bin/mlci" --version | cut -d' ' -f2)${extras:+ [$extras]} in $venv (uv cache $UV_CACHE_DIR)"
''')
      if (c.secrets) {
        // Each secret bound to the variable of its credentials id, for this one step.
        withCredentials(c.secrets.collect { String name -> string(credentialsId: name, variable: name) }) {
          sh(label: 'mlci ' + stage, script: stageScript(stage))
        }
      } else {
        sh(label: 'mlci ' + stage, script: stageScript(stage))
      }
      if (c.saveRegistry && env.BRANCH_NAME == c.saveRegistry) {
        copyNewestRegistry('mlci-registry/key')
        sh(label: 'Keep this registry for the next build', script: '''#!/bin/bash
set -euo pipefail
# A replayed or restarted stage of an older build must not replace the registry later builds
# kept: save only while the newest kept one is the registry this build started from, or one it
# kept since (.mlci/registry-lineage travels with the state from stage to stage).
newest="$(cat mlci-newest/mlci-registry/key 2>/dev/null || true)"
rm -rf mlci-newest mlci-registry
if [ -s .mlci/registry-lineage ] && [ ! -f .mlci/mlflow.db ]; then
  echo "mlci: this build restored a kept registry but has no .mlci/mlflow.db to keep; refusing to replace it with an empty one" >&2
  exit 3
fi
if [ -z "$newest" ] || grep -qxF -- "$newest" .mlci/registry-lineage 2>/dev/null; then
  mkdir -p mlci-registry
  cp -R .mlci/mlflow.db mlci-registry/ 2>/dev/null || true
  if [ -d .mlci/artifacts ]; then cp -R .mlci/artifacts mlci-registry/; fi
  echo "$BUILD_NUMBER-$MLCI_JOB" > mlci-registry/key
  cat mlci-registry/key >> .mlci/registry-lineage
  echo "Registry: kept for the next build ($(cat mlci-registry/key))"
else
  echo "Registry: a newer registry exists ($newest; this build started from $(head -n 1 .mlci/registry-lineage 2>/dev/null || echo 'an empty registry')), so this build's was not kept"
fi
''')
        archiveArtifacts(artifacts: 'mlci-registry/**', allowEmptyArchive: true)
      }
      if (c.stashState) {
        stash(name: 'mlci-state-' + job, includes: '.mlci/**', allowEmpty: true)
      }
      if (c.stashOutputs) {
        stash(name: 'mlci-outputs-' + job, includes: '.mlci/out/jenkins/' + job + '.properties')
      }
    } finally {
      if (facts.junit) {
        junit(testResults: facts.junit, allowEmptyResults: false)
      }
      archiveArtifacts(artifacts: '.mlci/out/**', allowEmptyArchive: true)
    }
  }
}

// The newest registry the last builds of this branch kept, in mlci-newest/ (Copy Artifact).
void copyNewestRegistry(String filter) {
  // The newest registry the last builds kept (a failed or aborted build may have kept none).
  int build = Integer.parseInt(env.BUILD_NUMBER)
  for (int n = build - 1; n >= 1 && n >= build - 20 && !fileExists('mlci-newest/mlci-registry/key'); n--) {
    copyArtifacts(projectName: env.JOB_NAME, selector: specific(String.valueOf(n)), filter: filter, target: 'mlci-newest', optional: true, fingerprintArtifacts: false)
  }

}

// A variable name as a credentials id or an environment entry: nothing a shell would read otherwise.
String checkedName(String name) {
  if (!(name ==~ /[A-Za-z_][A-Za-z0-9_]*/)) {
    error("mlciStage: '" + name + "' is not an environment variable name")
  }
  return name
}

String inputVariable(String prefix, String name, Map facts) {
  if (!facts.inputs.contains(name)) {
    error("mlciStage: stage input '" + name + "' is not one of " + facts.inputs.join(', '))
  }
  return prefix + name.toUpperCase().replace('-', '_')
}
