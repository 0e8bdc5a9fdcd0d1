"""The Databricks bundle (issue 13, item 5): `databricks.yml` and `resources/` of a
`target: databricks` project, rendered from mlci.yaml (mlci/targets/databricks/bundle.py).

No Databricks CLI is installable here, so the bundle is checked offline the three ways the
research found (../shared/research/databricks-double.md, 5.5): every resource through
databricks-bundles' typed classes, whose `from_dict` is strict; databricks.yml (top-level keys,
targets, variables) against the bundle JSON schema, vendored under tests/data/ by
scripts/vendor_bundle_schema.py; and mlci's own check that every `${var.x}` is declared.
Then: the bundle agrees with mlci.yaml, matches its goldens (scripts/update_golden.py writes
them), and `mlci render` keeps it current (three-way merge) and adds or removes it when the
target switches.
"""

from __future__ import annotations

import difflib
import json
import shutil
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, run_cli, scaffold

from mlci import templates
from mlci.manifest import MANIFEST_PATH
from mlci.project import project_from_text
from mlci.targets.databricks import batch, bundle, jobs, monitoring, serving

sys.path.insert(0, str(REPO / "scripts"))
from update_golden import BUNDLE_CASES, BUNDLE_GOLDEN, bundle_answers, bundle_config_text, render_bundle_files

SCHEMA = REPO / "tests" / "data" / "databricks-bundle.schema.json"
NAME = "churn-model"
BUNDLE_PATHS = [
    "databricks.yml",
    f"resources/{NAME}.job.yml",
    f"resources/{NAME}.model.yml",
    f"resources/{NAME}.serving.yml",
]
MONITOR_PATH = f"resources/{NAME}.monitor.yml"  # with monitor.schedule only
CASES = list(BUNDLE_CASES)


@cache
def rendered(case: str) -> dict[str, bytes]:
    return render_bundle_files(case, REPO)


def documents(files: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    return {path: yaml.safe_load(data.decode("utf-8")) for path, data in files.items()}


def resources(files: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    """{resource type: {key: definition}} over every file, as the CLI merges `include`d files."""
    merged: dict[str, dict[str, Any]] = {}
    for doc in documents(files).values():
        for kind, items in (doc.get("resources") or {}).items():
            for key, value in items.items():
                assert key not in merged.setdefault(kind, {}), f"{kind}.{key} defined twice"
                merged[kind][key] = value
    return merged


def typed(files: Mapping[str, bytes]) -> dict[str, Any]:
    """Every resource through databricks-bundles' strict from_dict: {type.key: object}."""
    from databricks.bundles.jobs import Job
    from databricks.bundles.model_serving_endpoints import ModelServingEndpoint
    from databricks.bundles.quality_monitors import QualityMonitor
    from databricks.bundles.registered_models import RegisteredModel

    classes: dict[str, Any] = {
        "jobs": Job,
        "registered_models": RegisteredModel,
        "model_serving_endpoints": ModelServingEndpoint,
        "quality_monitors": QualityMonitor,
    }
    return {
        f"{kind}.{key}": classes[kind].from_dict(value)
        for kind, items in resources(files).items()
        for key, value in items.items()
    }


@cache
def schema_validator() -> Any:
    """A validator of the vendored bundle schema; its patterns use \\p{L}, so they are matched
    with regress (ECMAScript regular expressions, what check-jsonschema uses), not Python's re."""
    jsonschema = pytest.importorskip("jsonschema")
    regress = pytest.importorskip("regress")

    def pattern(validator: Any, expected: str, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, "string") and not regress.Regex(expected, flags="u").find(instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {expected!r}")

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    base = jsonschema.validators.validator_for(schema)
    return jsonschema.validators.extend(base, {"pattern": pattern})(schema)


def schema_errors(files: Mapping[str, bytes]) -> list[str]:
    """One line per error, at the most relevant of the alternatives a oneOf tried (best_match)."""
    from jsonschema.exceptions import best_match

    found = []
    for path, doc in documents(files).items():
        for error in schema_validator().iter_errors(doc):
            leaf = best_match([error])
            found.append(f"{path}: {'.'.join(map(str, leaf.absolute_path))}: {leaf.message}")
    return found


# ----- the three offline checks, on every case


@pytest.mark.parametrize("case", CASES)
def test_the_bundle_passes_every_offline_check(case: str) -> None:
    files = rendered(case)
    assert sorted(files) == sorted(BUNDLE_PATHS + ([MONITOR_PATH] if case == "custom" else []))
    assert sorted(typed(files)) == sorted(
        ["jobs.train", "registered_models.model", "model_serving_endpoints.serving"]
        + (["jobs.batch", "jobs.monitor", "quality_monitors.monitor"] if case == "custom" else [])
    )
    assert schema_errors(files) == []
    assert bundle.check(files) == []
    for data in files.values():  # UTF-8, one final newline, nothing after it
        assert data.decode("utf-8").endswith("\n") and not data.endswith(b"\n\n")


def test_the_render_is_deterministic() -> None:
    assert render_bundle_files("custom", REPO) == render_bundle_files("custom", REPO) == rendered("custom")


@pytest.mark.parametrize("case", CASES)
def test_the_bundle_matches_its_golden(case: str) -> None:
    """After an intended template change run `python scripts/update_golden.py` and review the diff."""
    golden = BUNDLE_GOLDEN / case
    expected = {p.relative_to(golden).as_posix(): p.read_bytes() for p in sorted(golden.rglob("*")) if p.is_file()}
    files = rendered(case)
    diff = "".join(
        line
        for name in sorted(set(files) | set(expected))
        for line in difflib.unified_diff(
            expected.get(name, b"").decode().splitlines(keepends=True),
            files.get(name, b"").decode().splitlines(keepends=True),
            f"golden/{name}",
            f"rendered/{name}",
        )
    )
    assert files == expected, f"run `python scripts/update_golden.py` if intended:\n{diff}"


# ----- each check can fail


def broken(case: str, path: str, old: str, new: str) -> dict[str, bytes]:
    files = dict(rendered(case))
    text = files[path].decode("utf-8")
    assert old in text, f"{old!r} not in {path}"
    files[path] = text.replace(old, new, 1).encode("utf-8")
    return files


def test_a_resource_with_an_unknown_field_fails_the_typed_check(tmp_path: Path) -> None:
    # Through a copy of the templates (what a wrong template change renders), not an edited output.
    source = tmp_path / "templates"
    shutil.copytree(templates.shipped_dir("scaffold"), source / "scaffold")
    shutil.copytree(templates.targets.get("databricks").shipped_templates(), source / "targets" / "databricks")
    job = source / "targets" / "databricks" / "resources" / "job.yml.j2"
    job.write_text(job.read_text().replace("timeout_seconds:", "timeout_secs:"), encoding="utf-8")
    files = templates.render_target(
        bundle_config_text("default"), bundle_answers(), tmp_path, templates.TemplateSource(source)
    )
    assert b"timeout_secs: 3600" in files[f"resources/{NAME}.job.yml"]
    with pytest.raises(ValueError, match=r"^Unexpected field 'timeout_secs' for class Job$"):
        typed(files)


def test_a_wrong_enum_fails_the_typed_check() -> None:
    files = broken(
        "custom",
        f"resources/{NAME}.job.yml",
        "        timezone_id: UTC\n",
        "        timezone_id: UTC\n        pause_status: STOPPED\n",
    )
    with pytest.raises(ValueError, match="'STOPPED' is not a valid PauseStatus"):
        typed(files)


def test_a_wrong_target_fails_the_schema() -> None:
    files = broken("default", "databricks.yml", "    mode: production\n", "    mode: staging\n    stage: 1\n")
    errors = schema_errors(files)
    assert errors and all(e.startswith("databricks.yml: targets.staging: ") for e in errors), errors
    files = broken("default", f"resources/{NAME}.job.yml", "resources:\n  jobs:", "resources:\n  job:")
    assert [e for e in schema_errors(files) if "'job' was unexpected" in e], schema_errors(files)


def test_mlci_check_finds_an_undeclared_variable_and_an_unknown_key() -> None:
    files = broken("default", f"resources/{NAME}.serving.yml", "${var.catalog}", "${var.catalogue}")
    files = {**files, "databricks.yml": files["databricks.yml"] + b"deploy: {}\n"}
    assert bundle.check(files) == [
        "databricks.yml: unknown top-level key 'deploy'",
        f"resources/{NAME}.serving.yml: ${{var.catalogue}} is not declared under variables:",
    ]
    assert bundle.check({f"resources/{NAME}.job.yml": b"resources: [\n"}) == [
        f"resources/{NAME}.job.yml: not YAML: while parsing a flow node",
        "databricks.yml is missing",
    ]


# ----- agreement with mlci.yaml


def test_the_default_bundle_agrees_with_the_default_mlci_yaml() -> None:
    docs = documents(rendered("default"))
    main = docs["databricks.yml"]
    assert main["bundle"] == {"name": NAME}
    assert main["include"] == ["resources/*.yml"]
    assert list(main["targets"]) == ["staging", "production"]
    for env in ("staging", "production"):
        target = main["targets"][env]
        assert target["mode"] == "production"
        assert "workspace" not in target  # no host in mlci.yaml: the CLI's DATABRICKS_HOST
        assert target["variables"] == {
            "catalog": "main",
            "schema": "default",
            "endpoint_name": f"{NAME}-{env}",
            "inference_table_prefix": f"churn_model_{env}",
            "workload_size": "Small",
            "scale_to_zero": True,
        }
    assert main["variables"]["model_name"]["default"] == "main.default.churn_model"
    assert "default" not in main["variables"]["model_version"]  # mlci deploy moves it: always passed
    assert main["run_as"] == {"service_principal_name": "${var.service_principal}"}
    found = resources(rendered("default"))
    assert found["registered_models"]["model"] | {"comment": None} == {
        "catalog_name": "main",
        "schema_name": "default",
        "name": "churn_model",
        "comment": None,
    }
    project = project_from_text(bundle_config_text("default"), REPO)
    (train,) = found["jobs"].values()
    assert train["name"] == f"{NAME}-train" and train["timeout_seconds"] == 3600
    # The task mlci train submits (jobs._submit), its source a folder mlci train uploaded.
    assert train["parameters"] == [{"name": "source", "default": jobs.volume_path(project)}]
    (task,) = train["tasks"]
    assert task["task_key"] == jobs.TASK_KEY
    assert task["python_wheel_task"] == {
        "package_name": "mlci",
        "entry_point": "mlci",
        "parameters": ["databricks-task", "train", "--source", "{{job.parameters.source}}"],
    }
    (environment,) = train["environments"]
    assert task["environment_key"] == environment["environment_key"] == jobs.ENVIRONMENT_KEY
    assert environment["spec"] == {
        "environment_version": "3",
        "dependencies": [jobs.mlci_requirement(project), "../dist/*.whl"],
    }
    # The endpoint mlci deploy creates (serving.deploy): its served entity's name, its tables' prefix.
    endpoint = found["model_serving_endpoints"]["serving"]
    assert endpoint["name"] == "${var.endpoint_name}"
    served_name = "churn-model-${var.model_version}"
    assert serving.served_name("main.default.churn_model", "7") == "churn-model-7"
    assert endpoint["config"] == {
        "served_entities": [
            {
                "name": served_name,
                "entity_name": "${var.model_name}",
                "entity_version": "${var.model_version}",
                "workload_size": "${var.workload_size}",
                "scale_to_zero_enabled": "${var.scale_to_zero}",
            }
        ],
        "traffic_config": {"routes": [{"served_entity_name": served_name, "traffic_percentage": 100}]},
    }
    assert endpoint["ai_gateway"] == {
        "inference_table_config": {
            "enabled": True,
            "catalog_name": "${var.catalog}",
            "schema_name": "${var.schema}",
            "table_name_prefix": "${var.inference_table_prefix}",
        }
    }
    assert endpoint["tags"] == [{"key": "mlci-project", "value": NAME}]


def test_a_customised_mlci_yaml_reaches_every_file() -> None:
    docs = documents(rendered("custom"))
    main = docs["databricks.yml"]
    assert main["targets"]["staging"]["workspace"] == {"host": "https://adb-1111.11.azuredatabricks.net"}
    assert main["targets"]["production"]["workspace"] == {"host": "https://adb-2222.22.azuredatabricks.net"}
    assert main["targets"]["staging"]["variables"] == {
        "catalog": "ml_staging",
        "schema": "churn",
        "endpoint_name": "churn-stg",
        "inference_table_prefix": "churn_stg",
        "workload_size": "Small",
        "scale_to_zero": True,
    }
    assert main["targets"]["production"]["variables"] == {
        "catalog": "ml_prod",
        "schema": "churn_live",
        "endpoint_name": "churn-live",
        "inference_table_prefix": "churn_live",
        "workload_size": "Medium",
        "scale_to_zero": False,
    }
    assert main["variables"]["model_name"]["default"] == "ml.models.churn"
    found = resources(rendered("custom"))
    model = found["registered_models"]["model"]
    assert (model["catalog_name"], model["schema_name"], model["name"]) == ("ml", "models", "churn")
    train, batch_job = found["jobs"]["train"], found["jobs"]["batch"]
    assert train["timeout_seconds"] == 1800 and "environments" not in train
    assert train["job_clusters"] == [
        {
            "job_cluster_key": "train",
            "new_cluster": {
                "spark_version": "15.4.x-cpu-ml-scala2.12",
                "node_type_id": "Standard_DS3_v2",
                "num_workers": 2,
                "data_security_mode": "SINGLE_USER",  # Unity Catalog access, as mlci train's own cluster
            },
        }
    ]
    (task,) = train["tasks"]
    assert task["job_cluster_key"] == "train"
    project = project_from_text(bundle_config_text("custom"), REPO)
    assert task["libraries"] == [{"whl": "../dist/*.whl"}, {"pypi": {"package": jobs.mlci_requirement(project)}}]
    assert batch_job["name"] == f"{NAME}-batch"
    assert batch_job["schedule"] == {"quartz_cron_expression": "0 30 2 * * ?", "timezone_id": "UTC"}
    assert batch_job["tasks"][0]["python_wheel_task"]["parameters"] == [
        "databricks-task",
        "batch",
        "--model",
        "models:/ml.models.churn@champion",
        "--input",
        "ml_prod.churn_live.customers",
        "--output",
        "ml_prod.churn_live.customers_predictions",
    ]
    # Exactly the settings mlci deploy creates or resets the job to: the two never fight.
    assert batch_job == batch.job_settings(project).as_dict()
    # The monitor and its check job as mlci deploy --env production keeps them, on each
    # target's tables; the retrain starts this bundle's train job.
    names = monitoring.BUNDLE_NAMES
    assert (
        found["jobs"]["monitor"]
        == monitoring.job_settings(
            project, names, "${resources.jobs.train.id}", monitoring.config_path(project)
        ).as_dict()
    )
    settings = monitoring.monitor_settings(project, names)
    assert found["quality_monitors"]["monitor"] == {
        "table_name": "${var.catalog}.${var.schema}.${var.inference_table_prefix}_inference",
        "output_schema_name": "${var.catalog}.${var.schema}",
        "assets_dir": f"/Workspace/Users/${{workspace.current_user.userName}}/mlci/{NAME}/monitoring",
        "inference_log": settings["inference_log"].as_dict(),
        "slicing_exprs": ["plan"],
        "schedule": {"quartz_cron_expression": "0 0 6 ? * 2-6", "timezone_id": "UTC"},
    }
    assert found["jobs"]["monitor"]["tasks"][-1]["run_job_task"] == {"job_id": "${resources.jobs.train.id}"}


def test_a_single_node_cluster_without_a_node_type_asks_for_one(tmp_path: Path) -> None:
    text = bundle_config_text("default")
    assert "    compute: serverless\n" in text
    text = text.replace("    compute: serverless\n", "    compute: cluster\n")
    files = templates.render_target(text, bundle_answers(), tmp_path)
    (train,) = resources(files)["jobs"].values()
    cluster = train["job_clusters"][0]["new_cluster"]
    assert cluster["node_type_id"] == "${var.node_type_id}" and cluster["num_workers"] == 0
    assert cluster["custom_tags"] == {"ResourceClass": "SingleNode"}  # as jobs._submit's single node
    assert cluster["spark_conf"] == {"spark.master": "local[*]", "spark.databricks.cluster.profile": "singleNode"}
    assert "node_type_id" in documents(files)["databricks.yml"]["variables"]
    assert bundle.check(files) == [] and schema_errors(files) == []
    typed(files)


def test_project_text_is_emitted_not_spliced(tmp_path: Path) -> None:
    """A description (free text) never reaches the bundle; names that look like YAML stay strings."""
    text = bundle_config_text("default").replace("model_name: main.default.churn_model", "model_name: 'on.null.true'")
    files = templates.render_target(text, bundle_answers(), tmp_path)
    model = resources(files)["registered_models"]["model"]
    assert (model["catalog_name"], model["schema_name"], model["name"]) == ("on", "null", "true")
    assert documents(files)["databricks.yml"]["variables"]["model_name"]["default"] == "on.null.true"


# ----- mlci new / render / upgrade keep the bundle


@pytest.fixture(scope="module")
def databricks_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("bundle")
    assert scaffold(NAME, where, "--target", "databricks") == 0
    return where / NAME


@pytest.fixture
def project(databricks_project: Path, tmp_path: Path) -> Path:
    copy = tmp_path / NAME
    shutil.copytree(databricks_project, copy, symlinks=True)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def managed(root: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((root / MANIFEST_PATH).read_text(encoding="utf-8"))["managed"]
    return result


def test_mlci_new_writes_the_bundle_as_managed_files(databricks_project: Path) -> None:
    for path in BUNDLE_PATHS:
        assert (databricks_project / path).read_bytes() == rendered("default")[path]
        assert path in managed(databricks_project)


def test_render_follows_mlci_yaml_and_keeps_a_hand_edit(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main, job = project / "databricks.yml", project / f"resources/{NAME}.job.yml"
    # The team's edits: a sync rule at the end of databricks.yml, a tag on the training job.
    main.write_text(main.read_text() + "\nsync:\n  exclude:\n    - data/*.csv\n", encoding="utf-8")
    job.write_text(
        job.read_text().replace(
            "      max_concurrent_runs: 1\n", "      max_concurrent_runs: 1\n      tags:\n        team: ml\n", 1
        ),
        encoding="utf-8",
    )
    config = project / "mlci.yaml"
    edit(
        config,
        f"      endpoint: {NAME}-production\n",
        "      endpoint: churn-live\n      host: https://adb-2222.22.azuredatabricks.net\n",
    )
    edit(config, "  ready_timeout: 120\n", "  ready_timeout: 120\n  batch:\n    input_table: a.b.c\n")
    capsys.readouterr()
    assert run_cli("render", cwd=project) == 0
    out = capsys.readouterr().out
    assert f"merged   resources/{NAME}.job.yml" in out and "merged   databricks.yml" in out, out
    docs = {path: yaml.safe_load((project / path).read_text()) for path in BUNDLE_PATHS}
    production = docs["databricks.yml"]["targets"]["production"]
    assert production["variables"]["endpoint_name"] == "churn-live"
    assert production["workspace"] == {"host": "https://adb-2222.22.azuredatabricks.net"}
    assert docs["databricks.yml"]["sync"] == {"exclude": ["data/*.csv"]}  # kept
    jobs = docs[f"resources/{NAME}.job.yml"]["resources"]["jobs"]
    assert jobs["train"]["tags"] == {"team": "ml"}  # kept
    assert jobs["batch"]["tasks"][0]["python_wheel_task"]["parameters"][-4:] == [
        "--input",
        "a.b.c",
        "--output",
        "a.b.c_predictions",
    ]
    files = {path: (project / path).read_bytes() for path in BUNDLE_PATHS}
    assert bundle.check(files) == [] and schema_errors(files) == []
    typed(files)
    assert run_cli("upgrade", "--check", str(project)) == 0


def test_switching_the_target_adds_and_removes_the_bundle(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = project / "mlci.yaml"
    text = config.read_text()
    config.write_text(text.replace("target: databricks\n", "target: local\n"), encoding="utf-8")
    capsys.readouterr()
    assert run_cli("render", cwd=project) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("render: switched target from databricks to local: 0 added, 4 removed, 0 kept"), out
    assert "removed  resources/ (empty)" in out
    assert not (project / "databricks.yml").exists() and not (project / "resources").exists()
    assert not [path for path in managed(project) if path in BUNDLE_PATHS]

    config.write_text(text, encoding="utf-8")  # and back
    assert run_cli("render", cwd=project) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("render: switched target from local to databricks: 4 added, 0 removed, 0 kept"), out
    for path in BUNDLE_PATHS:
        assert (project / path).read_bytes() == rendered("default")[path]
        assert path in managed(project)


def test_a_resource_file_deleted_by_the_team_stays_deleted(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/databricks-bundle.md: a team deploying only jobs with the CLI deletes the endpoint's file."""
    (project / f"resources/{NAME}.serving.yml").unlink()
    config = project / "mlci.yaml"
    edit(config, f"      endpoint: {NAME}-staging\n", "      endpoint: churn-stg\n")
    capsys.readouterr()
    assert run_cli("render", cwd=project) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "rendered databricks.yml",
        f"skipped  resources/{NAME}.serving.yml (deleted by you: stays deleted)",
        "render: 1 file(s) changed",
    ]
    assert not (project / f"resources/{NAME}.serving.yml").exists()
    assert (
        yaml.safe_load((project / "databricks.yml").read_text())["targets"]["staging"]["variables"]["endpoint_name"]
        == "churn-stg"
    )
