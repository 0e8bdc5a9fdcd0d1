"""`mlci doctor`: mlci.yaml, the stages' tools, drift of the generated files, the target's checks,
and with --env the Databricks sign-in against a loopback workspace, never printing a secret."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import MINIMAL_CONFIG, free_port, run_cli, scaffold

from mlci.errors import ConfigError
from mlci.project import project_from_text

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
TOKEN = "dapi-DOCTOR-MARKER-7f3a9c"  # the PAT the loopback workspace accepts
SECRET = "doctor-client-secret-MARKER-b41e"
MARKERS = (TOKEN, SECRET)


@pytest.fixture(autouse=True)
def _no_databricks_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ARM_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", os.devnull)  # never the developer's ~/.databrickscfg


def doctor(capsys: pytest.CaptureFixture[str], project: Path, *args: str) -> tuple[int, list[str], str]:
    """Exit code, the printed lines, stderr."""
    code = run_cli("doctor", "-C", str(project), *args)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def doctor_json(capsys: pytest.CaptureFixture[str], project: Path, *args: str) -> dict[str, Any]:
    code = run_cli("doctor", "--json", "-C", str(project), *args)
    out, err = capsys.readouterr()
    for marker in MARKERS:
        assert marker not in out and marker not in err
    payload: dict[str, Any] = json.loads(out)
    assert payload["exit_code"] == code
    return payload


@pytest.fixture(scope="module")
def local_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("doctor-local")
    assert scaffold("doctorlocal", root, "--data", f"python_version={PYTHON}") == 0
    return root / "doctorlocal"


def test_a_default_local_project_is_all_ok(local_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = doctor(capsys, local_project)
    assert code == 0, lines
    *checks, summary = lines
    assert all(line.startswith("ok   ") for line in checks), lines
    assert summary == f"doctor: all {len(checks)} checks ok"
    assert checks[0] == "ok   mlci.yaml: valid (target local, ci.provider github, model doctorlocal)"
    assert f"ok   python: {PYTHON}, as ci.python" in checks
    assert "ok   generated files: 14 current with mlci.yaml (mlci 0.1.0)" in checks
    assert "ok   store: .mlci/mlflow.db does not exist yet: the first 'mlci train' creates it" in checks
    payload = doctor_json(capsys, local_project)
    assert payload["exit_code"] == 0 and {c["status"] for c in payload["checks"]} == {"ok"}
    assert [c["what"] for c in payload["checks"]][:2] == ["mlci.yaml", "python"]


def test_a_broken_mlci_yaml_exits_2_naming_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "schema: 1\nproject:\n  name: broken\n  package: broken\ndata:\n  train: 3\n  holdout: [\n"
    (tmp_path / "mlci.yaml").write_text(text)
    with pytest.raises(ConfigError) as loader:
        project_from_text(text, tmp_path)
    code, lines, _ = doctor(capsys, tmp_path)
    assert code == 2
    assert lines == [f"fail mlci.yaml: {loader.value.message}", "doctor: 0 ok, 0 warnings, 1 failed"]
    assert f"{tmp_path / 'mlci.yaml'}:" in lines[0]
    payload = doctor_json(capsys, tmp_path)
    assert payload["exit_code"] == 2 and payload["checks"][0]["detail"] == loader.value.message


def test_the_targets_own_rule_is_the_loaders_error_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = MINIMAL_CONFIG.replace("register:\n", "register:\n  model_name: churn\n") + "target: databricks\n"
    (tmp_path / "mlci.yaml").write_text(text)
    line = text.splitlines().index("  model_name: churn") + 1
    code, lines, _ = doctor(capsys, tmp_path)
    assert code == 2
    assert lines[0] == (
        f"fail mlci.yaml: {tmp_path / 'mlci.yaml'}:{line}: on Databricks the model name must be Unity Catalog's "
        "'catalog.schema.model', not 'churn'"
    )


def test_a_missing_tool_warns_or_fails_with_the_fix(
    local_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it: no git, no java
    monkeypatch.delenv("JAVA_HOME", raising=False)
    code, lines, _ = doctor(capsys, local_project)
    assert code == 0  # git only records lineage here: a warning
    assert "warn git: not on PATH (train records no git commit as lineage); install git (e.g. apt-get install git)" in (
        lines
    )
    # uv is found next to mlci's interpreter (a virtual environment used without activating it)
    assert f"ok   uv: {Path(sys.executable).parent / 'uv'}" in lines

    config = local_project / "mlci.yaml"
    original = config.read_text()
    try:
        config.write_text(
            original.replace("pre_commit: false", "pre_commit: true").replace("engine: duckdb", "engine: spark")
        )
        code, lines, _ = doctor(capsys, local_project)
    finally:
        config.write_text(original)
    assert code == 1
    assert (
        "fail git: not on PATH (lint.pre_commit runs the hooks on git's tracked files); "
        "install git (e.g. apt-get install git)"
    ) in lines
    assert (
        "fail java: not on PATH (data_test.engine spark runs PySpark, which needs Java 17); install one "
        "(e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    ) in lines
    assert f"ok   pre-commit: importable by {sys.executable}" in lines


def test_generated_files_edited_by_hand_or_stale_show_drift(
    local_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = local_project / ".github" / "workflows" / "ci.yml"
    config = local_project / "mlci.yaml"
    saved = workflow.read_bytes(), config.read_text()
    manifest = (local_project / ".mlci" / "manifest.json").read_bytes()
    try:
        workflow.write_text(saved[0].decode() + "# a step added by hand\n")
        code, lines, _ = doctor(capsys, local_project)
        assert code == 0
        assert (
            "warn generated .github/workflows/ci.yml: edited by hand since mlci rendered it (drift from mlci.yaml): "
            "'mlci render' and 'mlci upgrade' keep the edits; move them into mlci.yaml, or restore the file from git"
        ) in lines
        assert not any("generated files:" in line for line in lines)

        config.write_text(saved[1].replace("default_branch: main", "default_branch: trunk"))
        assert "default_branch: trunk" in config.read_text()
        code, lines, _ = doctor(capsys, local_project)
        assert code == 1
        assert (
            "fail generated .github/workflows/cd.yml: differs from what mlci.yaml renders now; run 'mlci render'"
        ) in lines
        assert (
            "fail generated .github/workflows/ci.yml: edited by hand and differs from what mlci.yaml renders now "
            "(your edits are kept); run 'mlci render'"
        ) in lines
        # Nothing written: the files and the manifest are as they were.
        assert workflow.read_bytes() == saved[0] + b"# a step added by hand\n"
        assert (local_project / ".mlci" / "manifest.json").read_bytes() == manifest
    finally:
        workflow.write_bytes(saved[0])
        config.write_text(saved[1])
    assert doctor(capsys, local_project)[0] == 0


# ---------------------------------------------------------------- Databricks


class Workspace(ThreadingHTTPServer):
    """The two calls `doctor --env` makes: the SDK's host-metadata probe and SCIM Me."""

    daemon_threads = True
    paths: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: Workspace

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path == "/.well-known/databricks-config":
            return self._send(404, {"error_code": "NOT_FOUND", "message": "no host metadata"})
        if self.path.split("?")[0] != "/api/2.0/preview/scim/v2/Me":
            return self._send(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no {self.path}"})
        given = self.headers.get("Authorization", "")
        if given != f"Bearer {TOKEN}":
            # A careless server echoes what it was sent: doctor must still print no secret.
            return self._send(401, {"error_code": "UNAUTHENTICATED", "message": f"bad token {given}"})
        return self._send(200, {"id": "7", "userName": "ci-bot@example.com", "displayName": "CI bot", "active": True})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def workspace_url() -> Iterator[str]:
    server = Workspace(("127.0.0.1", 0), _Handler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def databricks_section(host: str) -> str:
    return f"databricks:\n  host: {host}\n  http_timeout: 1\n  retry_timeout: 1\n"


@pytest.fixture(scope="module")
def databricks_project(tmp_path_factory: pytest.TempPathFactory, workspace_url: str) -> Path:
    root = tmp_path_factory.mktemp("doctor-databricks")
    assert scaffold("doctordbx", root, "--target", "databricks", "--data", f"python_version={PYTHON}") == 0
    project = root / "doctordbx"
    config = project / "mlci.yaml"
    text = config.read_text()
    assert text.count("\ndatabricks:\n") == 1
    config.write_text(text.replace("\ndatabricks:\n", "\n" + databricks_section(workspace_url), 1))
    assert run_cli("render", "-C", str(project)) == 0
    return project


def no_marker(*texts: str) -> None:
    for marker in MARKERS:
        for text in texts:
            assert marker not in text


def test_databricks_offline_checks_resolve_each_workspace_and_warn_of_a_secret_here(
    databricks_project: Path, workspace_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", SECRET)
    code, lines, err = doctor(capsys, databricks_project)
    no_marker("\n".join(lines), err)
    assert code == 0, lines
    for env in ("staging", "production"):
        assert (
            f"ok   workspace {env}: {workspace_url} (from databricks.host); endpoint doctordbx-{env}, "
            "tables in main.default"
        ) in lines
    assert (
        "warn secrets: DATABRICKS_CLIENT_SECRET set in this shell: a long-lived secret on a developer machine; "
        "unset it and sign in with 'databricks auth login' and databricks.profile in mlci.yaml"
    ) in lines
    assert not any("sign-in" in line for line in lines)  # offline without --env


def test_env_reports_pat_and_who_the_workspace_says_we_are(
    databricks_project: Path, workspace_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
    code, lines, err = doctor(capsys, databricks_project, "--env", "staging")
    no_marker("\n".join(lines), err)
    assert code == 0, lines
    assert f"ok   sign-in staging: pat on {workspace_url}" in lines
    assert "ok   workspace answers staging: signed in as ci-bot@example.com (CI bot)" in lines
    assert "warn secrets: DATABRICKS_TOKEN set in this shell" in "\n".join(lines)
    payload = doctor_json(capsys, databricks_project, "--env", "staging")
    answered = {c["what"]: c for c in payload["checks"]}
    assert answered["sign-in staging"]["detail"] == f"pat on {workspace_url}"


def test_env_a_refused_token_is_one_line_exit_3_without_the_token(
    databricks_project: Path, workspace_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = f"{TOKEN}-but-wrong"
    monkeypatch.setenv("DATABRICKS_TOKEN", wrong)
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
    code, lines, err = doctor(capsys, databricks_project, "--env", "production")
    assert code == 3
    no_marker("\n".join(lines), err)
    assert wrong not in "\n".join(lines) + err
    (failed,) = [line for line in lines if line.startswith("fail")]
    assert failed == (
        f"fail workspace answers production: {workspace_url} refused the sign-in (UNAUTHENTICATED: bad token "
        "Bearer ***); check the service principal, its federation policy or secret, and its workspace access "
        "(docs/databricks.md)"
    )
    assert err == ""


def test_env_against_an_unreachable_host_exits_3_at_once(
    databricks_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = databricks_project / "mlci.yaml"
    original = config.read_text()
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
    try:
        config.write_text(original.replace("  host: http://127.0.0.1:", f"  host: {dead}\n  # was: "))
        assert run_cli("render", "-C", str(databricks_project)) == 0  # the bundle names the host
        capsys.readouterr()
        started = time.monotonic()
        payload = doctor_json(capsys, databricks_project, "--env", "staging")
        took = time.monotonic() - started
    finally:
        config.write_text(original)
        assert run_cli("render", "-C", str(databricks_project)) == 0
    assert took < 10  # the SDK's defaults would retry for minutes
    assert payload["exit_code"] == 3
    (failed,) = [c for c in payload["checks"] if c["status"] == "fail"]
    assert failed["what"] == "workspace answers staging"
    assert failed["detail"].startswith(f"{dead} does not answer (Timed out after 0:00:01: Connection refused)")


def test_env_a_sign_in_the_sdk_cannot_make_is_a_failed_check(
    databricks_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "github-oidc")  # but this is no GitHub Actions job
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", SECRET)
    code, lines, err = doctor(capsys, databricks_project, "--env", "staging")
    assert code == 1  # the set-up's fault (exit 1), not an unreachable workspace (exit 3)
    no_marker("\n".join(lines), err)
    (failed,) = [line for line in lines if line.startswith("fail")]
    assert failed.startswith("fail sign-in staging: cannot sign in to Databricks workspace http://127.0.0.1:")
    assert failed.endswith(
        "(DATABRICKS_AUTH_TYPE=github-oidc chose the sign-in); docs/databricks.md says what each CI system needs"
    )


def test_an_unknown_environment_is_a_usage_error(local_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("doctor", "-C", str(local_project), "--env", "prod") == 2
    assert (
        capsys.readouterr().err == "mlci: error: --env prod: unknown environment; environments: staging, production\n"
    )


def test_a_store_that_cannot_be_opened_is_a_failed_check_exit_3(
    local_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = local_project / ".mlci" / "mlflow.db"
    store.write_bytes(b"not a database, but the size of one's header.." * 4)
    try:
        code, lines, _ = doctor(capsys, local_project)
    finally:
        store.unlink()
    assert code == 3
    (failed,) = [line for line in lines if line.startswith("fail")]
    assert failed.startswith(f"fail store: the MLflow store {store}")


@pytest.mark.parametrize(
    ("ci_env", "said"),
    [
        (
            {"GITHUB_ACTIONS": "true"},
            "warn secrets: DATABRICKS_CLIENT_SECRET set on github, whose jobs sign in by federation with no secret; "
            "remove it from the pipeline's variables (docs/databricks.md)",
        ),
        (
            {"JENKINS_URL": "http://jenkins.example/"},
            "ok   secrets: DATABRICKS_CLIENT_SECRET set on jenkins (OAuth M2M)",
        ),
    ],
)
def test_on_ci_a_secret_is_expected_only_where_there_is_no_federation(
    databricks_project: Path,
    ci_env: dict[str, str],
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in ci_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", SECRET)
    code, lines, err = doctor(capsys, databricks_project)
    no_marker("\n".join(lines), err)
    assert said in lines and code == 0, lines
