"""Per-stage installs: mlci's core install runs lint (and new, render, upgrade, doctor, schema);
every other stage names the extra it needs (pyproject.toml, the stage registry), its CI job
installs only that, and a stage whose extra is missing says so in one line with exit code 4.

The proof that matters is a real one: a venv with only mlci's core install (a wheel of this
checkout, its dependencies from the warm uv cache, offline) scaffolds a project, passes its lint
job, and fails `mlci train` with the one-line hint.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from conftest import REPO

from mlci import extras, install_source, pipeline
from mlci.config import project_from_text
from mlci.errors import EXIT_NOT_INSTALLED
from mlci.stage_specs import STAGES, stage_extras

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
OPTIONAL = PYPROJECT["project"]["optional-dependencies"]
SPECS = {spec.name: spec for spec in STAGES}
# What the issue says a lint job must not install (the ML stack, the test runner, the hooks).
NOT_CORE = {
    "mlflow",
    "scikit-learn",
    "pandas",
    "pyarrow",
    "numpy",
    "scipy",
    "duckdb",
    "pytest",
    "pre-commit",
    "uvicorn",
}


def names(requirements: list[str]) -> set[str]:
    return {extras.normal(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in requirements}  # type: ignore[union-attr]


def test_the_core_install_carries_no_ml_stack() -> None:
    core = names(PYPROJECT["project"]["dependencies"])
    assert core == {"jinja2", "pyyaml", "packaging", "merge3", "ruff"}
    assert not core & NOT_CORE


def test_every_stage_names_extras_pyproject_declares_and_lint_needs_none() -> None:
    for spec in STAGES:
        assert set(spec.extras) <= set(OPTIONAL), spec.name
    assert {s.name: (s.extras, s.needs_project) for s in STAGES} == {
        "lint": ((), False),
        "test": (("unit-test",), True),
        "data-test": (("data",), False),
        "train": (("train",), True),
        "register": (("train",), True),
        "deploy": (("serve",), True),
        "monitor": (("train",), True),
    }
    # `all` is what `mlci run` on a laptop needs: every stage of the embedded default.
    run_extras = {e for s in STAGES for e in s.extras}
    assert set(extras.extra_requirements("all", _requires()) or ()) >= {
        name for extra in run_extras for name in extras.extra_requirements(extra, _requires()) or ()
    }


def _requires() -> list[str]:
    """mlci's Requires-Dist as the installed metadata writes it, from pyproject.toml."""
    lines = [*PYPROJECT["project"]["dependencies"]]
    for extra, requirements in OPTIONAL.items():
        lines += [f"{r.split(';')[0].strip()} ; extra == '{extra}'" for r in requirements]
    return lines


def test_extra_requirements_follow_mlcis_own_extras() -> None:
    requires = _requires()
    assert extras.extra_requirements("pre-commit", requires) == ("pre-commit",)
    serve = set(extras.extra_requirements("serve", requires) or ())
    assert serve == {"mlflow", "scikit-learn", "scipy", "pandas", "pyarrow", "duckdb", "uvicorn"}
    assert extras.extra_requirements("no-such-extra", requires) == ()


@pytest.mark.parametrize(
    ("yaml_extra", "stage", "wanted"),
    [
        ("", "lint", ()),
        ("lint:\n  pre_commit: true\n", "lint", ("pre-commit",)),
        ("data_test:\n  engine: spark\n", "data-test", ("data", "spark")),
        ("data_test:\n  engine: spark\n", "monitor", ("train", "spark")),  # monitor's engine defaults to it
        ("", "train", ("train",)),
    ],
)
def test_stage_extras_add_what_mlci_yaml_implies(yaml_extra: str, stage: str, wanted: tuple[str, ...]) -> None:
    config = project_from_text(_MINIMAL + yaml_extra, Path("/nowhere")).config
    assert stage_extras(SPECS[stage], config) == wanted


_MINIMAL = """schema: 1
project:
  name: demo
  package: demo
data:
  train: data/train.csv
  holdout: data/holdout.csv
  target: label
train:
  entrypoint: demo.train:train
"""


def test_the_command_line_engine_overrides_mlci_yaml() -> None:
    config = project_from_text(_MINIMAL, Path("/nowhere")).config
    assert stage_extras(SPECS["data-test"], config, {"engine": "spark"}) == ("data", "spark")
    spark = project_from_text(_MINIMAL + "data_test:\n  engine: spark\n", Path("/nowhere")).config
    assert stage_extras(SPECS["data-test"], spark, {"engine": "duckdb"}) == ("data",)


def test_every_job_of_the_model_installs_its_stage_and_a_gate_nothing() -> None:
    config = project_from_text(_MINIMAL + "lint:\n  pre_commit: true\n", Path("/nowhere")).config
    for p in pipeline.build(config):
        for job in p.jobs:
            if job.stage is None:
                assert job.install == pipeline.Install()
            else:
                assert job.install == pipeline.Install(stage_extras(job.stage, config), job.stage.needs_project)
    lint = pipeline.build(config)[0].job("lint")
    assert lint.install == pipeline.Install(("pre-commit",), False)


def test_every_github_job_caches_under_a_key_of_its_own_install(tmp_path: Path) -> None:
    """The setup action's cache suffix names the job's extras and whether it installs the
    project, and no job turns the cache off (cd's delivery jobs included)."""
    import yaml
    from provider_kit import render_ci_files

    files = render_ci_files("github", ("local", "vendored", "retrain"), tmp_path)
    action = yaml.safe_load(files[".github/actions/mlci-setup/action.yml"])
    setup_uv = next(s for s in action["runs"]["steps"] if "setup-uv" in s.get("uses", ""))
    assert setup_uv["with"]["cache-suffix"] == "mlci-${{ inputs.extras }}-${{ inputs.install-project }}"
    installs = set()
    for path, text in files.items():
        if not path.startswith(".github/workflows/") or path.endswith("mlci-upgrade.yml"):
            continue
        for job in yaml.safe_load(text)["jobs"].values():
            for step in job["steps"]:
                if step.get("uses", "").endswith("/mlci-setup"):
                    assert "cache" not in step["with"], (path, job["name"])  # the action's default: on
                    installs.add((job["name"], step["with"]["extras"], step["with"]["install-project"]))
    assert ("Lint", "", "false") in installs and ("Train", "train", "true") in installs
    assert ("Deploy to production", "serve", "true") in installs


def test_the_databricks_target_adds_the_sdk_to_the_mlflow_stages_only() -> None:
    from provider_kit import combo_answers, config_text

    text = config_text(combo_answers("github", ("databricks", "vendored", "no-retrain")))
    config = project_from_text(text, Path("/nowhere")).config
    assert stage_extras(SPECS["train"], config) == ("train", "databricks")
    assert stage_extras(SPECS["deploy"], config) == ("serve", "databricks")
    assert stage_extras(SPECS["data-test"], config) == ("data",)


def test_a_missing_module_of_an_extra_is_named_by_its_extra() -> None:
    found = extras.missing_module("train", ("train",), ModuleNotFoundError("No module named 'sklearn'", name="sklearn"))
    assert found is not None and found.exit_code == EXIT_NOT_INSTALLED
    assert found.message == ("mlci train needs mlci[train] (not installed: scikit-learn): pip install 'mlci[train]'")
    # A command beside the stages (promote, status, serve) is told the smallest extra that has it.
    status = extras.missing_module("status", (), ModuleNotFoundError(name="mlflow.tracking"))
    assert status is not None and "mlci status needs mlci[train] (not installed: mlflow)" in status.message
    # A module no extra of mlci installs (the project's own import) is left as it is.
    assert extras.missing_module("train", ("train",), ModuleNotFoundError(name="xgboost")) is None


def test_with_extras_adds_to_every_form_of_mlci_requirement() -> None:
    cases = {
        "mlci==1.2.0": "mlci[all]==1.2.0",
        "mlci": "mlci[all]",
        "mlci @ git+https://example.com/mlci@" + "0" * 40: "mlci[all] @ git+https://example.com/mlci@" + "0" * 40,
        "mlci[train]>=1": "mlci[train,all]>=1",
    }
    for requirement, wanted in cases.items():
        assert install_source.with_extras(requirement, ("all",)) == wanted
    assert install_source.dev_requirement("/src/mlci", "", "", "1.0") == "mlci[all] @ file:///src/mlci"


def uv(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uv", *args], capture_output=True, text=True, env=env, check=True)


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with mlci's core install only: a wheel of this checkout, its dependencies from
    the warm uv cache, offline (no index is asked)."""
    root = tmp_path_factory.mktemp("core")
    env = {**os.environ, "UV_OFFLINE": "1", "UV_CONSTRAINT": str(REPO / "requirements" / "constraints.txt")}
    uv("build", "--quiet", "--wheel", "--no-build-isolation", "--out-dir", str(root / "dist"), str(REPO), env=env)
    (wheel,) = (root / "dist").glob("mlci-*.whl")
    uv("venv", "--quiet", "--python", sys.executable, str(root / "venv"), env=env)
    uv("pip", "install", "--quiet", "--python", str(root / "venv" / "bin" / "python"), str(wheel), env=env)
    return root / "venv"


def test_the_core_install_runs_a_generated_projects_lint_and_names_trains_extra(
    core_venv: Path, tmp_path: Path
) -> None:
    python = core_venv / "bin" / "python"
    installed = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not {extras.normal(n) for n in installed} & NOT_CORE
    mlci = str(core_venv / "bin" / "mlci")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "TF_BUILD", "JENKINS_"))}
    env["PATH"] = f"{core_venv / 'bin'}:{env.get('PATH', '')}"
    run = subprocess.run
    new = run([mlci, "new", "core-model", "--defaults", "--output-dir", str(tmp_path)], capture_output=True, text=True)
    assert new.returncode == 0, new.stderr
    project = tmp_path / "core-model"
    lint = run([mlci, "lint"], cwd=project, capture_output=True, text=True, env=env)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    train = run([mlci, "train"], cwd=project, capture_output=True, text=True, env=env)
    assert train.returncode == EXIT_NOT_INSTALLED
    assert train.stderr.strip().splitlines() == [
        "mlci: error: mlci train needs mlci[train] (not installed: duckdb, mlflow, pandas, pyarrow, scikit-learn, "
        "scipy): pip install 'mlci[train]'"
    ]
    # The stage's record says so too (CI's summary reads it).
    record = (project / ".mlci" / "out" / "train.json").read_text()
    assert '"exit_code": 4' in record and '"status": "error"' in record
    # A command beside the stages that needs MLflow says so the same way.
    status = run([mlci, "status"], cwd=project, capture_output=True, text=True, env=env)
    assert status.returncode == EXIT_NOT_INSTALLED, status.stderr
    assert status.stderr.strip() == (
        "mlci: error: mlci status needs mlci[train] (not installed: duckdb, mlflow, pandas, pyarrow, "
        "scikit-learn, scipy): pip install 'mlci[train]'"
    )
    # serve names its own extra whole, not mlflow first and uvicorn on the next try.
    serve = run([mlci, "serve"], cwd=project, capture_output=True, text=True, env=env)
    assert serve.returncode == EXIT_NOT_INSTALLED, serve.stderr
    assert serve.stderr.strip().startswith("mlci: error: mlci serve needs mlci[serve] (not installed: duckdb, mlflow,")
    assert "uvicorn): pip install 'mlci[serve]'" in serve.stderr
    help_ = run([mlci, "--help"], capture_output=True, text=True, env=env)
    assert help_.returncode == 0 and "4 an extra of mlci not installed" in " ".join(help_.stdout.split())


def test_the_data_extra_alone_runs_a_generated_projects_data_test(core_venv: Path, tmp_path: Path) -> None:
    # A data-test job installs mlci[data] only: DuckDB, no scipy, pandas, pyarrow or numpy
    # (the drift checks' p-values are pure Python).
    env = {**os.environ, "UV_OFFLINE": "1", "UV_CONSTRAINT": str(REPO / "requirements" / "constraints.txt")}
    (wheel,) = (core_venv.parent / "dist").glob("mlci-*.whl")
    venv = tmp_path / "venv"
    uv("venv", "--quiet", "--python", sys.executable, str(venv), env=env)
    uv("pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), f"mlci[data] @ {wheel.as_uri()}", env=env)
    listed = uv("pip", "list", "--python", str(venv / "bin" / "python"), "--format", "freeze", env=env).stdout
    names = {extras.normal(line.split("==")[0]) for line in listed.split()}
    assert "duckdb" in names and not names & {"scipy", "pandas", "pyarrow", "numpy", "mlflow", "scikit-learn"}
    mlci = str(venv / "bin" / "mlci")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "TF_BUILD", "JENKINS_"))}
    made = subprocess.run([mlci, "new", "data-only", "--defaults", "--output-dir", str(tmp_path)], capture_output=True)
    assert made.returncode == 0, made.stderr
    checked = subprocess.run([mlci, "data-test"], cwd=tmp_path / "data-only", capture_output=True, text=True, env=clean)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "passed" in checked.stdout
