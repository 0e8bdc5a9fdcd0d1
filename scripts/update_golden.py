"""Regenerate tests/golden/<provider>/ after an intended change to the generated CI files,
and tests/golden/databricks-bundle/<case>/ after one to the Databricks bundle.

For every provider in mlci.providers.NAMES, renders every combination of the option matrix
(target x actions x retrain) from the mlci.yaml `mlci new` writes for it, and writes every CI
file the provider renders to tests/golden/<provider>/<combination>/<path>. The provider
conformance kit (tests/provider_kit.py) renders the same combinations with the functions here
and only compares: a test never rewrites what it checks. Review the diff
(`git diff tests/golden`) before committing, and record the change in CHANGELOG.md: every
template change is an upgrade for projects generated earlier.

Usage: python scripts/update_golden.py
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_ROOT = ROOT / "tests" / "golden"
GOLDEN = GOLDEN_ROOT / "github"
SHA = "0123456789abcdef0123456789abcdef01234567"  # a stand-in mlci_ref for remote actions
# Every option of mlci.yaml that changes which CI files a provider writes.
COMBOS: list[tuple[str, str, str]] = list(
    itertools.product(("local", "databricks"), ("vendored", "remote"), ("no-retrain", "retrain"))
)


def combo_name(combo: tuple[str, str, str]) -> str:
    return "-".join(combo)


def answer_data(actions: str, retrain: str) -> dict[str, str]:
    """The `--data` answers of one combination (target and provider are answers of their own)."""
    from mlci import __version__

    data = {"actions": actions}
    if actions == "vendored":
        # Pinned, so the goldens never depend on how the mlci under test was installed.
        data["mlci_install"] = f"mlci=={__version__}"
    if actions == "remote":
        data.update(mlci_repository="mlci-dev/mlci", mlci_ref=SHA)
    if retrain == "retrain":
        data["retrain_cron"] = "0 3 * * 1"
    return data


def render_combo(root: Path, target: str, actions: str, retrain: str, provider: str = "github") -> Path:
    """`mlci new` one combination into root; returns the project directory."""
    from mlci.cli import main

    data = [arg for key, value in answer_data(actions, retrain).items() for arg in ("--data", f"{key}={value}")]
    name = combo_name((target, actions, retrain))
    argv = ["new", name, "--defaults", "--no-git", "--output-dir", str(root), "--target", target]
    code = main([*argv, "--provider", provider, *data])
    if code != 0:
        raise SystemExit(f"mlci new {name} exited {code}")
    return root / name


def combo_answers(provider: str, combo: tuple[str, str, str]) -> dict[str, Any]:
    """The answers `mlci new --defaults` records for one combination on `provider`."""
    from mlci import __version__
    from mlci.commands.new import collect_answers
    from mlci.install_source import InstallSource

    target, actions, retrain = combo
    install = InstallSource(f"mlci=={__version__}", None)
    return collect_answers(
        "churn-model", provider, target, answer_data(actions, retrain), interactive=False, install=install
    )


def config_text(answers: dict[str, Any]) -> str:
    """The mlci.yaml `mlci new` writes for these answers."""
    from mlci import templates

    scaffold = templates.TemplateSource().scaffold()
    return templates.render_tree(scaffold, answers, keep=lambda path: path == "mlci.yaml")["mlci.yaml"].decode()


def render_ci_files(provider: str, combo: tuple[str, str, str], root: Path) -> dict[str, bytes]:
    """Every CI file `provider` renders for one combination, from its project's mlci.yaml."""
    from mlci import templates

    answers = combo_answers(provider, combo)
    return templates.render_ci(config_text(answers), answers, root)


def workflow_files(project: Path) -> dict[str, str]:
    """{file name: text} of a project's generated GitHub workflows."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted((project / ".github" / "workflows").glob("*.yml"))}


def write_goldens(
    provider: str, golden_root: Path = GOLDEN_ROOT, combos: list[tuple[str, str, str]] = COMBOS
) -> list[Path]:
    """Write golden_root/<provider>/<combination>/ for each combination (every one unless told);
    the folders written."""
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for combo in combos:
            files = render_ci_files(provider, combo, Path(tmp))
            golden = golden_root / provider / combo_name(combo)
            shutil.rmtree(golden, ignore_errors=True)
            for path, data in files.items():
                (golden / path).parent.mkdir(parents=True, exist_ok=True)
                (golden / path).write_bytes(data)
            written.append(golden)
    return written


# The monitor pipeline (mlci.yaml's monitor.schedule): off in a new project, so a case of its
# own, tests/golden/monitor/<provider>/<combination>/, for the providers that render it.
MONITOR_GOLDEN = GOLDEN_ROOT / "monitor"
MONITOR_PROVIDERS = ("github", "azure", "jenkins")
# Local only: a target that monitors in its workspace (Databricks) renders no CI monitor pipeline.
MONITOR_COMBOS: list[tuple[str, str, str]] = [("local", "vendored", "no-retrain"), ("local", "remote", "retrain")]
MONITOR_SCHEDULE = "0 6 * * *"


def monitor_combos(provider: str) -> list[tuple[str, str, str]]:
    """The combinations of `provider`'s monitor goldens: Jenkins refuses ci.retrain_cron beside
    monitor.schedule (a timer build does not say which cron fired), so it has no retrain ones."""
    if provider != "jenkins":
        return MONITOR_COMBOS
    return [(target, actions, "no-retrain") for target, actions, _ in MONITOR_COMBOS]


def monitor_config_text(provider: str, combo: tuple[str, str, str]) -> str:
    """The mlci.yaml of one combination with the monitor scheduled (the scaffold's commented block set)."""
    text = config_text(combo_answers(provider, combo))
    return text + f'\nmonitor:\n  schedule: "{MONITOR_SCHEDULE}"\n'


def render_monitor_files(provider: str, combo: tuple[str, str, str], root: Path) -> dict[str, bytes]:
    from mlci import templates

    return templates.render_ci(monitor_config_text(provider, combo), combo_answers(provider, combo), root)


def write_monitor_goldens(golden_root: Path = GOLDEN_ROOT) -> list[Path]:
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for provider in MONITOR_PROVIDERS:
            for combo in monitor_combos(provider):
                golden = golden_root / MONITOR_GOLDEN.name / provider / combo_name(combo)
                shutil.rmtree(golden, ignore_errors=True)
                for path, data in render_monitor_files(provider, combo, Path(tmp)).items():
                    (golden / path).parent.mkdir(parents=True, exist_ok=True)
                    (golden / path).write_bytes(data)
                written.append(golden)
    return written


# The Databricks bundle (databricks.yml, resources/; mlci/targets/databricks/bundle.py): the
# default project's, and one with every mlci.yaml key the bundle reads set to something else.
BUNDLE_GOLDEN = GOLDEN_ROOT / "databricks-bundle"
BUNDLE_COMBO = ("databricks", "vendored", "no-retrain")
BUNDLE_CASES: dict[str, dict[str, Any]] = {
    "default": {},
    "custom": {
        "register": {"model_name": "ml.models.churn"},
        "databricks": {
            "host": "https://adb-1111.11.azuredatabricks.net",
            "train": {
                "compute": "cluster",
                "spark_version": "15.4.x-cpu-ml-scala2.12",
                "node_type_id": "Standard_DS3_v2",
                "num_workers": 2,
                "timeout": 1800,
            },
            "environments": {
                "staging": {"catalog": "ml_staging", "schema": "churn", "endpoint": "churn-stg"},
                "production": {
                    "host": "https://adb-2222.22.azuredatabricks.net",
                    "catalog": "ml_prod",
                    "schema": "churn_live",
                    "endpoint": "churn-live",
                    "workload_size": "Medium",
                    "scale_to_zero": False,
                },
            },
        },
        "deploy": {"batch": {"input_table": "ml_prod.churn_live.customers", "schedule": "0 30 2 * * ?"}},
        "monitor": {"schedule": "0 6 * * 1-5", "slices": ["plan"], "labels": "ml_prod.churn_live.labels"},
    },
}


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def bundle_answers() -> dict[str, Any]:
    return combo_answers("github", BUNDLE_COMBO)


def bundle_config_text(case: str) -> str:
    """The mlci.yaml of one bundle case: `mlci new --target databricks`'s, with the case's keys set."""
    import yaml

    text = config_text(bundle_answers())
    if not BUNDLE_CASES[case]:
        return text
    return yaml.safe_dump(_merged(yaml.safe_load(text), BUNDLE_CASES[case]), sort_keys=False)


def render_bundle_files(case: str, root: Path) -> dict[str, bytes]:
    """The bundle files of one case, as `mlci new` / `mlci render` write them."""
    from mlci import templates

    return templates.render_target(bundle_config_text(case), bundle_answers(), root)


def write_bundle_goldens(golden_root: Path = GOLDEN_ROOT) -> list[Path]:
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in BUNDLE_CASES:
            golden = golden_root / BUNDLE_GOLDEN.name / case
            shutil.rmtree(golden, ignore_errors=True)
            for path, data in render_bundle_files(case, Path(tmp)).items():
                (golden / path).parent.mkdir(parents=True, exist_ok=True)
                (golden / path).write_bytes(data)
            written.append(golden)
    return written


def main() -> int:
    from mlci import providers

    for provider in providers.NAMES:
        for golden in write_goldens(provider):
            print(f"wrote {golden.relative_to(ROOT)}/")
    for golden in write_monitor_goldens():
        print(f"wrote {golden.relative_to(ROOT)}/")
    for golden in write_bundle_goldens():
        print(f"wrote {golden.relative_to(ROOT)}/")
    print("review the changes with: git diff tests/golden")
    return 0


if __name__ == "__main__":
    sys.exit(main())
