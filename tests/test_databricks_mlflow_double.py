"""The MLflow half of the Databricks workspace double: an unmodified MLflow client, in a subprocess with
a Databricks client's environment, tracks, logs, registers in Unity Catalog and loads back through it;
the double refuses the bodies and paths a workspace refuses."""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from databricks_double import files_routes, mlflow_routes
from databricks_double.server import PAT, Double, Request, Response, error

NAME = "main.default.demo"
STORY = Path(__file__).parent / "databricks_double" / "mlflow_story.py"


@pytest.fixture(scope="module")
def double(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Double]:
    workspace = Double(tmp_path_factory.mktemp("workspace"))
    files_routes.install(workspace)
    mlflow_routes.install(workspace)

    # sdk_routes serves host metadata in the full double; this module installs only its own routes.
    @workspace.route("GET", r"/\.well-known/databricks-config", public=True)
    def host_metadata(request: Request) -> Response:
        return error(404, "NOT_FOUND", "No host metadata")

    workspace.start()
    yield workspace
    workspace.stop()


@pytest.fixture(scope="module")
def story(double: Double, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("client")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_"))}
    env.update(
        MLFLOW_TRACKING_URI="databricks",
        MLFLOW_REGISTRY_URI="databricks-uc",
        DATABRICKS_HOST=double.url,
        DATABRICKS_TOKEN=PAT,
        DATABRICKS_AUTH_TYPE="pat",
        MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC="true",
        MLFLOW_DISABLE_TELEMETRY="true",  # no network from the test suite
    )
    done = subprocess.run(
        [sys.executable, str(STORY), str(work)], env=env, cwd=work, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("FACTS "))
    facts: dict[str, Any] = json.loads(line[len("FACTS ") :])
    return facts


def call(
    double: Double,
    method: str,
    path: str,
    body: Any = None,
    *,
    query: dict[str, str] | None = None,
    raw: bytes | None = None,
    token: str = PAT,
) -> tuple[int, Any]:
    """One request as sent, path unnormalised (http.client keeps `..`)."""
    parts = urlsplit(double.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Authorization": f"Bearer {token}"}
    headers["Content-Type"] = "application/octet-stream" if raw is not None else "application/json"
    connection.request(method, path + (f"?{urlencode(query)}" if query else ""), body=data, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    try:
        return response.status, json.loads(payload) if payload else None
    except ValueError:
        return response.status, payload


@pytest.fixture
def refusals(double: Double) -> Iterator[Callable[[], list[str]]]:
    """The rejections the test provoked on purpose (a call returns them so far); taken out of
    `double.rejections` afterwards, so the other tests still see an empty list."""
    before = len(double.rejections)
    yield lambda: double.rejections[before:]
    del double.rejections[before:]


# ----- the story: an unmodified MLflow client against the double


def test_an_mlflow_client_tracks_registers_in_unity_catalog_and_loads_back(
    story: dict[str, Any], double: Double
) -> None:
    assert story["experiment"] == [True, "/Users/double-user@example.com/mlci-story"]
    assert story["artifact_location"] == "dbfs:/databricks/mlflow-tracking/1"
    assert story["search_runs"] == [True]
    assert story["run"] == {"params": {"C": "1.0", "solver": "lbfgs"}, "metrics": {"accuracy": 1.0}, "tag": "train"}
    assert story["model_uri"].startswith("models:/m-")
    expected = story["expected"]
    assert expected == [0, 0, 1, 1]
    for key in ("predict_model_id", "predict_runs", "predict_alias", "predict_version"):
        assert story[key] == expected, key
    assert story["versions"] == ["1", "2", "READY", "READY"]
    assert story["challenger"] == "2"
    assert story["deleted_alias"] == "RESOURCE_DOES_NOT_EXIST"
    assert story["search_versions"] == [[NAME, "1"], [NAME, "2"]]
    assert story["version"] == ["1", "READY", ["champion"], {"validated": "true"}, True]
    assert story["registered_model"] == {"champion": "1"}
    assert story["downloaded"] == [
        "MLmodel",
        "code",
        "conda.yaml",
        "input_example.json",
        "model.pkl",
        "python_env.yaml",
        "registered_model_meta",
        "requirements.txt",
        "serving_input_example.json",
    ]
    assert story["downloaded_code"] == ["story_helpers.py"]
    assert "signature:\n  inputs:" in story["mlmodel"]
    assert story["model_uri"].removeprefix("models:/") in story["mlmodel"]
    assert double.rejections == []


def test_the_versions_files_went_through_the_files_api_into_the_double(story: dict[str, Any], double: Double) -> None:
    uc: Any = double.uc  # type: ignore[attr-defined]
    folder = uc.version_dir(NAME, "1")
    assert folder == double.files_dir / "Models" / "main" / "default" / "demo" / "1"
    assert (folder / "MLmodel").read_text() == story["mlmodel"]
    assert (folder / "code" / "story_helpers.py").read_text() == "SCALE = 2\n"
    assert uc.alias_version(NAME, "champion") == "1"
    assert uc.alias_version(NAME, "Champion") == "1"  # UC names are case-insensitive
    assert uc.alias_version(NAME, "challenger") is None
    assert uc.alias_version("main.default.nothing", "champion") is None
    uploads = {r.path for r in double.calls("PUT", r"/api/2.0/fs/files/Models/main/default/demo/2/.*")}
    assert "/api/2.0/fs/files/Models/main/default/demo/2/model.pkl" in uploads
    logged = double.calls(
        "PUT", r"/api/2.0/fs/files/WorkspaceInternal/Mlflow/Artifacts/1/LoggedModels/m-\w+/artifacts/MLmodel"
    )
    assert len(logged) == 1
    created = double.calls("POST", r"/api/2.0/mlflow/unity-catalog/model-versions/create")
    assert [r.body["name"] for r in created] == [NAME, NAME]
    assert created[0].body["run_tracking_server_id"] == mlflow_routes.DOUBLE_WORKSPACE_ID


# ----- the Unity Catalog registry refuses what UC refuses


BAD_BODIES = [
    ("POST", "registered-models/create", {"name": "main.default.x", "bogus": 1}, 'no field named "bogus"'),
    ("POST", "registered-models/create", {"name": "default.x"}, "all three levels"),
    ("POST", "registered-models/create", {"description": "no name"}, "missing required field(s) name"),
    ("PATCH", "registered-models/update", {"name": NAME, "description": 3}, "description"),
    ("DELETE", "registered-models/delete", {}, "missing required field(s) name"),
    ("POST", "model-versions/create", {"name": NAME}, "missing required field(s) source"),
    ("POST", "model-versions/finalize", {"name": NAME, "version": 1}, "expected string"),
    ("PATCH", "model-versions/update", {"name": NAME, "version": "1", "stage": "Production"}, '"stage"'),
    ("DELETE", "model-versions/delete", {"name": NAME, "version": "one"}, "positive integer"),
    (
        "POST",
        "model-versions/generate-temporary-credentials",
        {"name": NAME, "version": "1", "operation": "BOGUS"},
        "Invalid enum value BOGUS",
    ),
    ("POST", "registered-models/alias", {"name": NAME, "alias": "champion"}, "missing required field(s) version"),
    ("POST", "registered-models/alias", {"name": NAME, "alias": "latest", "version": "1"}, "Invalid alias 'latest'"),
    ("POST", "registered-models/alias", {"name": NAME, "alias": "v2", "version": "1"}, "Invalid alias 'v2'"),
    ("DELETE", "registered-models/alias", {"name": NAME, "alias": "a b"}, "Invalid alias 'a b'"),
    ("POST", "registered-models/set-tag", {"name": NAME, "value": "x"}, "missing required field(s) key"),
    ("DELETE", "registered-models/delete-tag", {"name": NAME, "key": "k", "value": "v"}, '"value"'),
    ("POST", "model-versions/set-tag", {"name": NAME, "key": "k", "value": "v"}, "missing required field(s) version"),
    ("DELETE", "model-versions/delete-tag", {"name": NAME, "version": "1"}, "missing required field(s) key"),
    (
        "POST",
        "model-versions/emit-lineage",
        {"name": NAME, "version": "1", "model_version_lineage_info": {"entities": []}},
        "model_version_lineage_info.direction",
    ),
]

BAD_QUERIES = [
    ("registered-models/get", {"name": NAME, "extra": "1"}, "unknown query parameter 'extra'"),
    ("registered-models/search", {"max_results": "many"}, "max_results"),
    ("model-versions/get", {"name": NAME}, "missing required field(s) version"),
    ("model-versions/search", {"filter": "name LIKE 'main.%'"}, "Unsupported filter"),
    ("model-versions/get-download-uri", {"version": "1"}, "missing required field(s) name"),
    ("registered-models/alias", {"name": NAME}, "missing required field(s) alias"),
]


@pytest.mark.parametrize(("method", "endpoint", "body", "message"), BAD_BODIES)
def test_a_bad_uc_body_is_refused_and_recorded(
    story: dict[str, Any],
    double: Double,
    refusals: Callable[[], list[str]],
    method: str,
    endpoint: str,
    body: Any,
    message: str,
) -> None:
    status, answer = call(double, method, f"/api/2.0/mlflow/unity-catalog/{endpoint}", body)
    assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert message in answer["message"]
    assert len(refusals()) == 1
    assert message in refusals()[0]
    assert refusals()[0].startswith(f"{method} /api/2.0/mlflow/unity-catalog/{endpoint}: ")


@pytest.mark.parametrize(("endpoint", "query", "message"), BAD_QUERIES)
def test_a_bad_uc_query_is_refused_and_recorded(
    story: dict[str, Any],
    double: Double,
    refusals: Callable[[], list[str]],
    endpoint: str,
    query: dict[str, str],
    message: str,
) -> None:
    status, answer = call(double, "GET", f"/api/2.0/mlflow/unity-catalog/{endpoint}", query=query)
    assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert message in answer["message"]
    assert len(refusals()) == 1
    assert message in refusals()[0]


def test_missing_models_and_aliases_are_404_not_rejections(story: dict[str, Any], double: Double) -> None:
    uc = "/api/2.0/mlflow/unity-catalog"
    assert call(double, "GET", f"{uc}/registered-models/get", query={"name": "main.default.nothing"}) == (
        404,
        {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered model 'main.default.nothing' does not exist."},
    )
    status, answer = call(double, "GET", f"{uc}/registered-models/alias", query={"name": NAME, "alias": "gone"})
    assert (status, answer["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    status, answer = call(double, "GET", f"{uc}/model-versions/get", query={"name": NAME, "version": "99"})
    assert (status, answer["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    status, answer = call(double, "POST", f"{uc}/registered-models/create", {"name": NAME})
    assert (status, answer["error_code"]) == (400, "RESOURCE_ALREADY_EXISTS")
    assert double.rejections == []


def test_a_version_is_finalized_only_with_a_signature_and_is_then_immutable(
    story: dict[str, Any], double: Double, refusals: Callable[[], list[str]]
) -> None:
    uc = "/api/2.0/mlflow/unity-catalog"
    name = "main.default.unsigned"
    assert call(double, "POST", f"{uc}/registered-models/create", {"name": name})[0] == 200
    status, created = call(double, "POST", f"{uc}/model-versions/create", {"name": name, "source": "models:/m-x"})
    assert status == 200
    assert created["model_version"]["status"] == "PENDING_REGISTRATION"
    assert created["model_version"]["version"] == "1"
    files = "/api/2.0/fs/files/Models/main/default/unsigned/1"
    # UC names are case-insensitive, so are the version's Files API paths
    assert (
        call(double, "PUT", "/api/2.0/fs/files/Models/Main/Default/UNSIGNED/1/MLmodel", raw=b"flavors: {}\n")[0] == 204
    )
    assert (double.files_dir / "Models/main/default/unsigned/1/MLmodel").read_bytes() == b"flavors: {}\n"
    status, answer = call(double, "POST", f"{uc}/model-versions/finalize", {"name": name, "version": "1"})
    assert status == 400
    assert "did not contain any signature metadata" in answer["message"]
    assert double.uc.version_status(name, "1") == "PENDING_REGISTRATION"  # type: ignore[attr-defined]
    signed = b"signature:\n  inputs: '[{\"type\": \"double\"}]'\n  outputs: ''\n"
    assert call(double, "PUT", f"{files}/MLmodel", raw=signed)[0] == 204
    status, answer = call(double, "POST", f"{uc}/model-versions/finalize", {"name": name, "version": "1"})
    assert "signature that includes only inputs" in answer["message"]
    signed = b'signature:\n  inputs: \'[{"type": "double"}]\'\n  outputs: \'[{"type": "long"}]\'\n'
    assert call(double, "PUT", f"{files}/MLmodel", raw=signed)[0] == 204
    status, answer = call(double, "POST", f"{uc}/model-versions/finalize", {"name": name, "version": "1"})
    assert (status, answer["model_version"]["status"]) == (200, "READY")
    status, answer = call(double, "PUT", f"{files}/MLmodel", raw=b"changed")
    assert (status, answer["error_code"]) == (403, "PERMISSION_DENIED")
    assert (double.files_dir / "Models/main/default/unsigned/1/MLmodel").read_bytes() == signed
    status, answer = call(double, "PUT", "/api/2.0/fs/files/Models/main/default/unsigned/7/MLmodel", raw=b"x")
    assert (status, answer["error_code"]) == (403, "PERMISSION_DENIED")
    assert len(refusals()) == 2  # the two unsigned finalizes
    assert all("finalize" in r for r in refusals())
    assert call(double, "DELETE", f"{uc}/registered-models/delete", {"name": name})[0] == 200
    assert not (double.files_dir / "Models/main/default/unsigned").exists()


def test_an_experiment_name_must_be_a_workspace_path(
    story: dict[str, Any], double: Double, refusals: Callable[[], list[str]]
) -> None:
    status, answer = call(double, "POST", "/api/2.0/mlflow/experiments/create", {"name": "relative-name"})
    assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "must be an absolute path within the Databricks workspace" in answer["message"]
    status, answer = call(double, "POST", "/api/2.0/mlflow/experiments/create", {"name": "/Shared/x", "colour": "red"})
    assert status == 400
    assert 'no field named "colour"' in answer["message"]
    assert len(refusals()) == 2


# ----- the Files API


def test_the_files_api_refuses_an_overwrite_without_overwrite_true(double: Double) -> None:
    path = "/api/2.0/fs/files/Volumes/main/default/landing/data.csv"
    assert call(double, "PUT", path, raw=b"a,b\n1,2\n", query={"overwrite": "false"})[0] == 204
    status, answer = call(double, "PUT", path, raw=b"other", query={"overwrite": "false"})
    assert (status, answer) == (
        409,
        {"error_code": "ALREADY_EXISTS", "message": "The file being created already exists."},
    )
    assert (double.files_dir / "Volumes/main/default/landing/data.csv").read_bytes() == b"a,b\n1,2\n"
    assert call(double, "PUT", path, raw=b"new")[0] == 204  # unspecified means overwrite
    assert call(double, "GET", path) == (200, b"new")
    assert double.rejections == []


def test_the_files_api_refuses_a_path_escape_and_a_path_outside_the_securables(
    double: Double, refusals: Callable[[], list[str]]
) -> None:
    status, answer = call(double, "PUT", "/api/2.0/fs/files/Volumes/main/default/landing/../../../../x", raw=b"x")
    assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "bad file path" in answer["message"]
    status, answer = call(double, "PUT", "/api/2.0/fs/files/tmp/x", raw=b"x")
    assert status == 400
    assert "Invalid file path '/tmp/x'" in answer["message"]
    status, answer = call(double, "PUT", "/api/2.0/fs/files/Volumes/main/default/landing", raw=b"x")
    assert status == 400  # a volume is a folder, not a file
    assert not (double.root / "x").exists() and not (double.files_dir / "x").exists()
    assert len(refusals()) == 3


def test_the_files_api_directories_and_metadata_as_the_sdk_reads_them(double: Double) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import NotFound

    w = WorkspaceClient(host=double.url, token=PAT, auth_type="pat")
    w.files.create_directory("/Volumes/main/default/sdk/in")
    w.files.upload("/Volumes/main/default/sdk/in/a.txt", io.BytesIO(b"hello"), overwrite=True)
    assert w.files.get_metadata("/Volumes/main/default/sdk/in/a.txt").content_length == 5
    assert w.files.download("/Volumes/main/default/sdk/in/a.txt").contents.read() == b"hello"
    w.files.get_directory_metadata("/Volumes/main/default/sdk/in")
    entries = list(w.files.list_directory_contents("/Volumes/main/default/sdk"))
    assert [(e.path, e.is_directory) for e in entries] == [("/Volumes/main/default/sdk/in/", True)]
    with pytest.raises(NotFound):
        w.files.get_directory_metadata("/Volumes/main/default/sdk/missing")
    w.files.delete("/Volumes/main/default/sdk/in/a.txt")
    with pytest.raises(NotFound):
        w.files.get_metadata("/Volumes/main/default/sdk/in/a.txt")
    w.files.delete_directory("/Volumes/main/default/sdk/in")
    assert not (double.files_dir / "Volumes/main/default/sdk/in").exists()
    assert double.rejections == []


def test_two_doubles_in_one_process_keep_their_own_tracking_stores(double: Double, tmp_path: Path) -> None:
    other = Double(tmp_path / "other")
    mlflow_routes.install(other)
    other.start()
    try:
        name = "/Shared/only-in-the-other-workspace"
        status, created = call(other, "POST", "/api/2.0/mlflow/experiments/create", {"name": name})
        assert status == 200
        query = {"experiment_name": name}
        status, found = call(other, "GET", "/api/2.0/mlflow/experiments/get-by-name", query=query)
        assert (status, found["experiment"]["experiment_id"]) == (200, created["experiment_id"])
        assert (
            found["experiment"]["artifact_location"] == f"dbfs:/databricks/mlflow-tracking/{created['experiment_id']}"
        )
        status, missing = call(double, "GET", "/api/2.0/mlflow/experiments/get-by-name", query=query)
        assert (status, missing["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
        assert other.rejections == [] and double.rejections == []
    finally:
        other.stop()
