"""The champion/challenger loop over days of work: feature changes, per-environment aliases,
unchanged retrains, promote/rollback/status, and the project lock. Real sqlite MLflow store,
real served models, real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import aliases, client_for, run_cli, run_cli_process, stage_json

from mlci.config import load_project


def package_dir(project: Path) -> Path:
    return project / "src" / load_project(project).config.project.package


def change_features_and_data(project: Path) -> None:
    """What a data scientist does in week two: a derived feature and a new data column."""
    features = package_dir(project) / "features.py"
    text = features.read_text()
    text = text.replace(
        '    "area_to_perimeter": ("mean_area", "mean_perimeter"),\n',
        '    "area_to_perimeter": ("mean_area", "mean_perimeter"),\n'
        '    "area_to_radius": ("mean_area", "mean_radius"),\n',
    )
    text = text.replace(
        '    *(f"worst_{m}" for m in _MEASURES),\n]',
        '    *(f"worst_{m}" for m in _MEASURES),\n    "patient_age",\n]',
    )
    assert "area_to_radius" in text and '"patient_age"' in text
    features.write_text(text)
    for split in ("train", "holdout"):
        path = project / "data" / f"{split}.csv"
        frame = pd.read_csv(path)
        frame.insert(frame.shape[1] - 1, "patient_age", (frame.index * 7) % 50 + 25)
        frame.to_csv(path, index=False)


def test_feature_change_compares_against_champion_scored_with_its_own_code(
    new_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project()
    # As an editable install (or a PYTHONPATH set by hand) does: the working tree is importable.
    monkeypatch.setenv("PYTHONPATH", str(project / "src"))
    for args in (("train",), ("register",), ("deploy",), ("deploy", "--env", "production")):
        assert run_cli(*args, "-C", str(project)) == 0, args
    name = load_project(project).config.model_name
    assert aliases(project)["champion"] == "1"
    recorded = client_for(project).get_model_version(name, "1").tags["mlci.metric.roc_auc"]

    change_features_and_data(project)
    # Separate processes, as a user runs them: this test process has the old features cached.
    trained = run_cli_process("train", cwd=project)
    assert trained.returncode == 0, trained.stderr[-3000:]
    registered = run_cli_process("register", cwd=project)
    out, err = registered.stdout, registered.stderr
    # Decided on merit, never a crash: whether the new features beat the champion is the
    # model's score, so the exit code must be the decision recorded from the two scores.
    register = stage_json(project, "register")
    comparison = register["details"]["champion"]
    assert comparison["metric"] == "roc_auc"  # higher is better
    assert comparison["candidate"] == stage_json(project, "train")["details"]["metrics"]["roc_auc"]
    merit = comparison["candidate"] >= comparison["champion"] - comparison["tolerance"]
    assert comparison["passed"] is merit
    decided = merit and all(gate["passed"] for gate in register["details"]["gates"])
    assert (registered.returncode, register["status"]) == ((0, "passed") if decided else (1, "failed")), err[-3000:]
    assert comparison["champion_version"] == "1" and comparison["against"] == "champion"
    # The champion was scored exactly as it was when it was registered: its own feature code.
    assert f"{comparison['champion']:.6g}" == recorded
    assert "in isolation" in out


def test_isolated_scoring_refuses_a_model_whose_code_comes_from_elsewhere(
    new_project: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model without its own code, with the package importable from an installed copy: it
    would be scored with code it was not trained with, so scoring fails and says why."""
    import shutil

    import mlflow

    from mlci import scoring
    from mlci.errors import InfraError
    from mlci.splits import read_split

    project = new_project()
    for stage in ("train", "register"):
        assert run_cli(stage, "-C", str(project)) == 0
    loaded = load_project(project)
    mlflow.set_tracking_uri(f"sqlite:///{project / '.mlci' / 'mlflow.db'}")
    model = Path(
        mlflow.artifacts.download_artifacts(f"models:/{loaded.config.model_name}/1", dst_path=str(tmp_path / "model"))
    )
    shutil.rmtree(model / "code")
    installed = tmp_path / "site-packages"
    shutil.copytree(package_dir(project), installed / loaded.config.project.package)
    monkeypatch.setenv("PYTHONPATH", str(installed))
    features, target, _ = read_split(loaded, "holdout")
    with pytest.raises(InfraError) as failure:
        scoring.score_isolated(project, loaded.config.project.package, model, features, target, "classification", "v1")
    assert failure.value.message.startswith("could not score v1 in isolation from the working tree: RuntimeError: ")
    assert f"was imported from {installed / loaded.config.project.package / '__init__.py'}" in failure.value.message
    assert "not from the model's own logged code" in failure.value.message


def _log_ungated_model(project: Path) -> str:
    """A version registered by hand, outside mlci register: no gates, never verified."""
    import mlflow

    info = json.loads((project / ".mlci" / "out" / "train.json").read_text())["details"]
    mlflow.set_tracking_uri(f"sqlite:///{project / '.mlci' / 'mlflow.db'}")
    version = mlflow.register_model(info["logged_model_uri"], load_project(project).config.model_name)
    return str(version.version)


def test_environments_unchanged_retrain_promote_rollback_and_status(
    new_project: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project()
    name = load_project(project).config.model_name
    loop = ("run", "train", "register", "deploy", "-C", str(project))

    assert run_cli(*loop) == 0
    assert aliases(project) == {"staging": "1"}  # mlci run deploys to staging only
    assert "no champion yet" in stage_json(project, "register")["summary"]

    # Nothing changed: nothing new registered, and deploying what staging serves is a no-op.
    assert run_cli(*loop) == 0
    register = stage_json(project, "register")
    assert register["summary"] == (
        "unchanged: same code, data and params as v1; nothing registered (local sqlite store .mlci/mlflow.db)"
    )
    assert register["details"]["version"] == "1" and register["details"]["unchanged"] is True
    assert stage_json(project, "deploy")["summary"] == f"{name} v1 is already in staging; nothing to do"
    assert [str(v.version) for v in client_for(project).search_model_versions(f"name='{name}'")] == ["1"]

    assert run_cli("deploy", "--env", "production", "-C", str(project)) == 0
    assert aliases(project) == {"staging": "1", "production": "1", "champion": "1"}

    # A change that leaves the model as it was: a new version, which ties the champion.
    features = package_dir(project) / "features.py"
    features.write_text(features.read_text() + "\n# reviewed\n")
    assert run_cli(*loop) == 0
    register = stage_json(project, "register")
    assert register["details"]["version"] == "2"
    score = f"{register['details']['candidate_metrics']['roc_auc']:.4f}"
    assert f"2 gate(s) met, ties champion v1 ({score} vs {score})" in register["summary"]
    assert register["details"]["champion_existed"] is True
    assert aliases(project) == {"staging": "2", "production": "1", "champion": "1"}  # production waits

    capsys.readouterr()
    assert run_cli("deploy", "--env", "prod", "-C", str(project)) == 2
    assert "mlci: error: unknown environment 'prod'; environments: staging, production" in capsys.readouterr().err
    assert run_cli("deploy", "--env", "production", "--version", "1", "-C", str(project)) == 2
    assert "releases exactly the version staging serves (v2), not v1" in capsys.readouterr().err

    assert run_cli("deploy", "--env", "production", "-C", str(project)) == 0
    assert aliases(project) == {"staging": "2", "production": "2", "champion": "2"}

    capsys.readouterr()
    assert run_cli("status", "--json", "-C", str(project)) == 0
    status = json.loads(capsys.readouterr().out)
    production = status["aliases"]["production"]
    assert production["version"] == "2" and status["aliases"]["challenger"] is None
    assert production["metrics"]["roc_auc"] == pytest.approx(float(score), abs=1e-4)
    assert production["run_id"] == stage_json(project, "train")["details"]["run_id"]
    assert set(production["deployed_at"]) == {"staging", "production"}
    assert production["previous"] == {"staging": "1", "production": "1"}
    assert len(production["data_sha256"]["train"]) == 64
    assert status["registry"] == "local sqlite store .mlci/mlflow.db"
    assert run_cli("status", "-C", str(project)) == 0
    table = capsys.readouterr().out
    assert "production  v2" in table and "challenger  -" in table

    assert run_cli("rollback", "--env", "production", "-C", str(project)) == 0
    assert stage_json(project, "rollback")["summary"] == f"rolled production back from {name} v2 to v1"
    assert aliases(project) == {"staging": "2", "production": "1", "champion": "1"}
    capsys.readouterr()
    assert run_cli("rollback", "--env", "production", "-C", str(project)) == 2
    assert "production has no earlier version recorded before v1" in capsys.readouterr().err

    assert run_cli("promote", "--env", "production", "--version", "2", "-C", str(project)) == 0
    assert aliases(project) == {"staging": "2", "production": "2", "champion": "2"}

    # Rolling staging back revokes its verification of v2: production can no longer take v2.
    assert run_cli("rollback", "--env", "staging", "-C", str(project)) == 0
    assert aliases(project) == {"staging": "1", "production": "2", "champion": "2"}
    assert "mlci.verified.staging" not in client_for(project).get_model_version(name, "2").tags
    capsys.readouterr()
    assert run_cli("promote", "--env", "production", "--version", "2", "-C", str(project)) == 1
    assert f"{name} v2 was never verified in staging" in capsys.readouterr().err

    # A version that skipped the gates or staging is refused, and nothing moves.
    ungated = _log_ungated_model(project)
    capsys.readouterr()
    assert run_cli("promote", "--env", "production", "--version", ungated, "-C", str(project)) == 1
    assert f"{name} v{ungated} did not pass the gates" in capsys.readouterr().err
    client_for(project).set_registered_model_alias(name, "staging", ungated)
    assert run_cli("deploy", "--env", "production", "-C", str(project)) == 1
    assert f"{name} v{ungated} is in staging but was never verified there" in capsys.readouterr().err
    assert run_cli("promote", "--env", "staging", "--version", "99", "-C", str(project)) == 2
    assert f"model '{name}' has no version 99" in capsys.readouterr().err
    # Naming a version does not skip the gates either.
    assert run_cli("deploy", "--version", ungated, "-C", str(project)) == 1
    assert f"{name} v{ungated} did not pass the gates" in capsys.readouterr().err
    assert aliases(project) == {"staging": ungated, "production": "2", "champion": "2"}


def test_a_second_mlci_is_refused_while_one_holds_the_lock(new_project: Any) -> None:
    import os
    import subprocess
    import sys
    import time

    project = new_project()
    lock = project / ".mlci" / "lock"
    first = subprocess.Popen(
        [sys.executable, "-m", "mlci", "run", "train"],
        cwd=project,
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (lock.is_file() and f'"pid": {first.pid}' in lock.read_text()):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.1)
        second = run_cli_process("register", cwd=project)
        assert second.returncode == 2
        assert f"mlci: error: another mlci run is active (pid {first.pid}, started " in second.stderr
        assert "'mlci run')" in second.stderr
    finally:
        _out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    # The lock died with its process: the text left behind does not block the next command.
    assert run_cli_process("status", cwd=project).returncode == 0
    assert run_cli("register", "-C", str(project)) == 0


def test_registry_label_never_shows_credentials(new_project: Any) -> None:
    from mlci.targets.local.tracking import registry_label

    project = load_project(new_project())
    assert registry_label(project) == "local sqlite store .mlci/mlflow.db"
    assert (
        registry_label(project, "https://alice:s3cret@mlflow.example.com:8443/prefix?token=abc")
        == "registry https://mlflow.example.com:8443/prefix"
    )
    assert registry_label(project, "sqlite:////data/shared.db") == "local sqlite store sqlite:////data/shared.db"


def test_fingerprint_changes_with_the_label_dependencies_and_any_source_file(new_project: Any) -> None:
    from mlci.stages.train import file_digest, fingerprint, load_entrypoint

    project = new_project()
    digests = {which: file_digest(project / "data" / f"{which}.csv") for which in ("train", "holdout")}

    def current() -> str:
        loaded = load_project(project)
        return fingerprint(loaded, load_entrypoint(loaded), digests)

    seen = [current()]
    assert current() == seen[0]  # stable: nothing changed, same fingerprint
    edits = [
        (project / "mlci.yaml", "target: malignant", "target: benign"),  # same files, other label
        (project / "pyproject.toml", 'version = "0.1.0"', 'version = "0.1.1"'),
    ]
    for path, old, new in edits:
        text = path.read_text()
        assert old in text, (path, old)
        path.write_text(text.replace(old, new, 1))
        seen.append(current())
    helper = project / "src" / "shared_helpers.py"  # a module beside the package, under src/
    helper.write_text("SCALE = 1\n")
    seen.append(current())
    assert len(set(seen)) == len(seen), seen


def test_a_revert_to_an_older_model_is_compared_not_passed_as_unchanged(new_project: Any) -> None:
    # Same code, data and params as v1 -- but v1 no longer serves anywhere (v2 does): going
    # back to it is a change, so it is compared with the champion and registered anew.
    project = new_project()
    loop = ("run", "train", "register", "deploy", "-C", str(project))
    features = package_dir(project) / "features.py"
    original = features.read_text()
    assert run_cli(*loop) == 0
    assert run_cli("deploy", "--env", "production", "-C", str(project)) == 0
    features.write_text(original + "\n# reviewed\n")
    assert run_cli(*loop) == 0
    assert run_cli("deploy", "--env", "production", "-C", str(project)) == 0
    assert aliases(project) == {"staging": "2", "production": "2", "champion": "2"}
    features.write_text(original)
    assert run_cli(*loop) == 0
    register = stage_json(project, "register")["details"]
    assert register["unchanged"] is False and register["version"] == "3"
    assert register["champion"]["champion_version"] == "2" and register["champion"]["passed"] is True
    assert aliases(project) == {"staging": "3", "production": "2", "champion": "2"}
