"""`mlci serve` on a real registered model: announced only once it answers, the version it
serves, the README's curl request, probabilities, a busy port, a fresh project; the inference
log of its requests (monitor.log) under concurrent load, across a restart, full, unwritable, off."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import free_port, run_cli, scaffold

from mlci.config import load_project


@pytest.fixture(scope="module")
def served_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    assert scaffold("serve-model", root) == 0
    project = root / "serve-model"
    for stage in ("train", "register", "deploy"):
        assert run_cli(stage, "-C", str(project)) == 0, stage
    assert run_cli("deploy", "--env", "production", "-C", str(project)) == 0  # champion = production
    # The deploy stage's smoke-test requests are not user traffic: nothing is logged for them.
    assert not (project / ".mlci" / "inference").exists()
    return project


def post(url: str, body: bytes) -> Any:
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def readme_body(project: Path) -> bytes:
    """The JSON body of the curl request in the project's README, exactly as written."""
    text = (project / "README.md").read_text()
    found = re.search(r"curl -s http://127\.0\.0\.1:5055/invocations .*?\\\n\s+-d '(.+)'\n", text)
    assert found, "no curl request in the README"
    return found.group(1).encode()


def test_serve_announces_the_version_once_it_answers_and_the_readme_request_works(served_project: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlci", "serve", "--port", str(port)],
        cwd=served_project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, f"mlci serve ended: {process.wait()} {process.stderr.read() if process.stderr else ''}"
            lines.append(line)
            if line.startswith("serving "):
                break
        url = f"http://127.0.0.1:{port}"
        # Announced only when it answers: no retry needed right after the line.
        with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
            assert answer.status == 200
        assert lines[-1].startswith(f"serving serve_model v1 (alias champion) on {url}  (POST /invocations")
        assert post(url, readme_body(served_project)) == {"predictions": [0]}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert process.stderr is not None
        err = process.stderr.read()
        assert "Creating initial MLflow database tables" not in err and "INFO" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_probabilities_come_with_each_label(served_project: Path) -> None:
    import mlflow

    from mlci.targets.local import serving
    from mlci.targets.local.tracking import model_dir

    mlflow.set_tracking_uri(f"sqlite:///{served_project / '.mlci' / 'mlflow.db'}")
    path = model_dir("models:/serve_model/1")
    rows = pd.read_csv(served_project / "data" / "holdout.csv").drop(columns=["malignant"]).head(3)
    with serving.serve_in_thread(path, "127.0.0.1", 0, 60, probabilities=True) as endpoint:
        answer, _ = serving.predict(endpoint.url, rows)
    labels = mlflow.pyfunc.load_model(str(path)).predict(rows).tolist()
    assert [row["prediction"] for row in answer] == labels
    for row in answer:
        assert set(row) == {"prediction", "probability_0", "probability_1"}
        assert row["probability_0"] + row["probability_1"] == pytest.approx(1.0)
        assert row["prediction"] == (1 if row["probability_1"] > 0.5 else 0)


def test_a_busy_port_suggests_port_and_deploy_never_uses_it(
    served_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert run_cli("serve", "-C", str(served_project), "--port", str(port)) == 3
        assert f"cannot listen on 127.0.0.1:{port} (Address already in use); pass --port" in capsys.readouterr().err
        # deploy.port is serve's; the smoke test takes a free port, so it cannot collide.
        config = served_project / "mlci.yaml"
        text = config.read_text()
        config.write_text(text.replace("  port: 5055\n", f"  port: {port}\n"))
        name = load_project(served_project).config.model_name
        from mlflow.tracking import MlflowClient

        store = f"sqlite:///{served_project / '.mlci' / 'mlflow.db'}"
        # Take v1 out of staging, so the deploy below really serves and smoke-tests it.
        MlflowClient(tracking_uri=store, registry_uri=store).delete_registered_model_alias(name, "staging")
        try:
            assert run_cli("deploy", "--version", "1", "-C", str(served_project)) == 0
        finally:
            config.write_text(text)
    deployed = json.loads((served_project / ".mlci" / "out" / "deploy.json").read_text())
    assert deployed["details"]["promoted"] is True and "served on loopback" in deployed["summary"]
    assert not deployed["details"]["smoke_test"]["url"].endswith(f":{port}")
    assert load_project(served_project).config.deploy.port == 5055


def test_serve_on_a_fresh_project_says_there_is_no_model(new_project: Any, capsys: pytest.CaptureFixture[str]) -> None:
    project = new_project()
    assert run_cli("serve", "-C", str(project)) == 2
    err = capsys.readouterr().err
    assert err == (
        f"mlci: error: no model to serve: the MLflow store {project / '.mlci' / 'mlflow.db'} does not exist yet; "
        "run 'mlci run' (or mlci train, register and deploy) first\n"
    )
    assert not (project / ".mlci" / "mlflow.db").exists()


# -- inference logging (monitor.log): the log of mlci serve's requests ------------------------------


LOG_QUERY = "read_parquet('{folder}/**/*.parquet', hive_partitioning = true, union_by_name = true)"


@contextmanager
def monitor_config(project: Path, monitor: str) -> Iterator[None]:
    """mlci.yaml with a `monitor:` section for the length of the block."""
    config = project / "mlci.yaml"
    text = config.read_text()
    config.write_text(text + "\nmonitor:\n" + textwrap.indent(textwrap.dedent(monitor).strip() + "\n", "  "))
    try:
        yield
    finally:
        config.write_text(text)


@dataclass
class Session:
    url: str
    out: list[str]  # stdout lines, complete once the block ends
    err: str = ""
    code: int | None = None


@contextmanager
def cli_server(project: Path, stop: signal.Signals = signal.SIGTERM) -> Iterator[Session]:
    """`mlci serve` as a process, stopped with `stop` when the block ends."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlci", "serve", "--port", str(port)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    session = Session(url=f"http://127.0.0.1:{port}", out=[])
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, f"mlci serve ended: {process.wait()} {process.stderr.read() if process.stderr else ''}"
            session.out.append(line.rstrip("\n"))
            if line.startswith("serving "):
                break
        yield session
        process.send_signal(stop)
        rest, session.err = process.communicate(timeout=60)
        session.out.extend(rest.splitlines())
        session.code = process.returncode
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def post_rows(url: str, rows: pd.DataFrame, request_id: str | None) -> tuple[list[Any], str]:
    """POST rows to /invocations; (the predictions, the answer's X-Request-Id)."""
    split = json.loads(rows.to_json(orient="split", index=False))
    body = json.dumps({"dataframe_split": split}).encode()
    headers = {"Content-Type": "application/json", **({"X-Request-Id": request_id} if request_id else {})}
    request = urllib.request.Request(f"{url}/invocations", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status == 200
        return json.loads(answer.read())["predictions"], answer.headers["X-Request-Id"]


def send_concurrently(url: str, holdout: pd.DataFrame, requests: int, tag: str) -> dict[str, pd.DataFrame]:
    """`requests` requests of 1 to 3 holdout rows from 6 threads; {answered request id: rows sent}.
    Every 7th sends no id (the server makes one), every 11th an id the server must replace."""

    def one(index: int) -> tuple[str, pd.DataFrame, list[Any], str | None]:
        rows = holdout.iloc[[(index * 7 + k) % len(holdout) for k in range(index % 3 + 1)]]
        given = None if index % 7 == 0 else f"{tag} bad id {index}" if index % 11 == 0 else f"{tag}-{index}"
        predictions, answered = post_rows(url, rows, given)
        return answered, rows.assign(prediction=predictions), predictions, given

    sent: dict[str, pd.DataFrame] = {}
    with ThreadPoolExecutor(max_workers=6) as pool:
        for answered, rows, predictions, given in pool.map(one, range(requests)):
            assert len(predictions) == len(rows)
            if given is not None and " " not in given:
                assert answered == given
            else:
                assert re.fullmatch(r"[0-9a-f]{32}", answered), answered
            assert answered not in sent
            sent[answered] = rows
    return sent


def logged_rows(folder: Path) -> pd.DataFrame:
    import duckdb

    # In the order written: a request's rows stay in the order they were sent.
    source = LOG_QUERY.format(folder=folder).replace(")", ", filename = true, file_row_number = true)")
    rows = duckdb.sql(f"SELECT * FROM {source} ORDER BY request_id, filename, file_row_number").df()
    return rows.drop(columns=["filename", "file_row_number"])


@pytest.fixture(scope="module")
def first_session(served_project: Path) -> tuple[Path, Session, dict[str, pd.DataFrame], pd.DataFrame]:
    """300 requests from 6 threads to `mlci serve` with logging on, stopped with SIGTERM."""
    folder = served_project / ".mlci" / "inference-load"
    holdout = pd.read_csv(served_project / "data" / "holdout.csv").drop(columns=["malignant"])
    # batch_rows 50: the 300 requests span several files, so batching and file naming are exercised.
    config = "inference: .mlci/inference-load\nlog: {batch_rows: 50}"
    with monitor_config(served_project, config), cli_server(served_project) as session:
        sent = send_concurrently(session.url, holdout, 300, "a")
    return folder, session, sent, holdout


def test_every_request_is_logged_once_with_its_id_features_prediction_and_probabilities(
    served_project: Path, first_session: tuple[Path, Session, dict[str, pd.DataFrame], pd.DataFrame]
) -> None:
    import mlflow
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlci.targets.local.tracking import model_dir

    folder, session, sent, holdout = first_session
    assert session.code == 130
    rows_sent = sum(len(rows) for rows in sent.values())
    assert f"mlci serve: logging every request to {folder} (monitor.inference;" in "\n".join(session.out)
    assert session.out[-1] == (
        f"mlci serve: inference log: {rows_sent} row(s) written to {folder} in "
        f"{len(list(folder.glob('date=*/part-*.parquet')))} file(s), 0 dropped"
    )
    assert session.err == "mlci: interrupted\n"  # no warning, no traceback of the server thread
    logged = logged_rows(folder)
    assert len(logged) == rows_sent
    assert set(logged["request_id"]) == set(sent)
    assert set(logged["model_id"]) == {"serve_model@1"}
    for path in folder.glob("date=*/*.parquet"):
        schema = pq.read_schema(path)
        assert schema.names[:3] == ["request_id", "timestamp", "model_id"]
        assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
        assert schema.names[-3:] == ["prediction", "probability_0", "probability_1"]
    assert set(logged["date"].astype(str)) == {t.strftime("%Y-%m-%d") for t in logged["timestamp"]}
    assert not list(folder.rglob(".*"))  # no temporary file left behind
    mlflow.set_tracking_uri(f"sqlite:///{served_project / '.mlci' / 'mlflow.db'}")
    classifier = mlflow.pyfunc.load_model(str(model_dir("models:/serve_model/1"))).get_raw_model()
    # The rows sent, in the order logged_rows gives: by request id, each request's rows as sent.
    expected = pd.concat([sent[request_id] for request_id in sorted(sent)], ignore_index=True)
    assert logged["request_id"].tolist() == [r for r in sorted(sent) for _ in range(len(sent[r]))]
    features = list(holdout.columns)
    pd.testing.assert_frame_equal(logged[features], expected[features], check_dtype=False)
    assert logged["prediction"].tolist() == expected["prediction"].tolist()
    probabilities = classifier.predict_proba(expected[features])
    for index, label in enumerate(classifier.classes_):
        assert logged[f"probability_{label}"].to_numpy() == pytest.approx(probabilities[:, index])


def test_a_restart_appends_without_losing_or_repeating_a_row(
    served_project: Path, first_session: tuple[Path, Session, dict[str, pd.DataFrame], pd.DataFrame]
) -> None:
    folder, _, before, holdout = first_session
    files_before = {path: path.read_bytes() for path in folder.glob("date=*/*.parquet")}
    with (
        monitor_config(served_project, "inference: .mlci/inference-load"),
        cli_server(served_project, signal.SIGINT) as session,
    ):
        after = send_concurrently(session.url, holdout, 100, "b")
    assert session.code == 130 and session.err == "mlci: interrupted\n"
    assert not set(before) & set(after)
    logged = logged_rows(folder)
    assert logged["request_id"].value_counts().to_dict() == {
        request_id: len(rows) for request_id, rows in {**before, **after}.items()
    }
    # The first session's files are kept as they were; the second only added files.
    assert {path: path.read_bytes() for path in files_before} == files_before
    assert len(list(folder.glob("date=*/*.parquet"))) > len(files_before)


def test_logging_off_writes_nothing(served_project: Path) -> None:
    folder = served_project / ".mlci" / "inference-off"
    holdout = pd.read_csv(served_project / "data" / "holdout.csv").drop(columns=["malignant"])
    config = "inference: .mlci/inference-off\nlog: {enabled: false}"
    with monitor_config(served_project, config), cli_server(served_project) as session:
        predictions, request_id = post_rows(session.url, holdout.head(2), "off-1")
    assert len(predictions) == 2 and request_id is None
    assert "mlci serve: not logging requests (monitor.log.enabled: false)" in session.out
    assert not any("inference log:" in line for line in session.out)
    assert not folder.exists()


def in_process_log(folder: Path, **settings: Any) -> tuple[Any, list[str]]:
    """An InferenceLogger of serve_model@1 and the warning lines it prints."""
    from mlci.monitoring.inference_log import InferenceLogger

    warnings: list[str] = []
    options = {"queue_rows": 1000, "batch_rows": 1000, "flush_seconds": 1.0, **settings}
    log = InferenceLogger(folder, "serve_model@1", classifier=True, warn=warnings.append, **options)
    return log, warnings


def serve_logged(project: Path, log: Any) -> Any:
    import mlflow

    from mlci.targets.local import serving
    from mlci.targets.local.tracking import model_dir

    mlflow.set_tracking_uri(f"sqlite:///{project / '.mlci' / 'mlflow.db'}")
    return serving.serve_in_thread(model_dir("models:/serve_model/1"), "127.0.0.1", 0, 60, inference_log=log)


def test_a_full_queue_drops_and_counts_rows_and_never_blocks_a_request(served_project: Path, tmp_path: Path) -> None:
    holdout = pd.read_csv(served_project / "data" / "holdout.csv").drop(columns=["malignant"])
    # One row of room and requests of two rows: every request is dropped from the log, answered all the same.
    log, warnings = in_process_log(tmp_path / "inference", queue_rows=1)
    with serve_logged(served_project, log) as endpoint:
        for index in range(20):
            predictions, _ = post_rows(endpoint.url, holdout.iloc[index : index + 2], f"full-{index}")
            assert len(predictions) == 2
    assert log.close() == type(log.counts())(written=0, dropped=40, files=0)
    assert len(warnings) == 1 and "the queue is full (1 rows, monitor.log.queue_rows)" in warnings[0]
    assert not (tmp_path / "inference").exists()


def test_the_queue_keeps_what_fits_and_the_shutdown_writes_it(tmp_path: Path) -> None:
    from mlci.monitoring.inference_log import Request

    folder = tmp_path / "inference"
    # flush_seconds of an hour, batch_rows above what is logged: nothing is written before close().
    log, warnings = in_process_log(folder, queue_rows=5, flush_seconds=3600)
    log.start()
    arrived = datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=timezone.utc)
    log.log(pd.DataFrame({"x": [1.0, 2.0, 3.0], "kind": ["a", "b", "c"]}), [0, 1, 0], Request("r1", arrived))
    log.log(pd.DataFrame({"x": [4.0, 5.0, 6.0], "kind": ["d", "e", "f"]}), [1, 1, 1], Request("r2", arrived))
    log.log(pd.DataFrame({"x": [7.0, 8.0], "kind": ["g", "h"]}), [1, 0], Request("r3", arrived + timedelta(seconds=1)))
    assert log.counts().dropped == 3 and log.counts().written == 0
    counts = log.close()
    assert (counts.written, counts.dropped, counts.files) == (5, 3, 2)
    assert len(warnings) == 1
    logged = logged_rows(folder)
    assert logged[["request_id", "x", "kind", "prediction"]].to_numpy().tolist() == [
        ["r1", 1.0, "a", 0],
        ["r1", 2.0, "b", 1],
        ["r1", 3.0, "c", 0],
        ["r3", 7.0, "g", 1],
        ["r3", 8.0, "h", 0],
    ]
    # Partitioned by the day each request arrived (UTC), r3 a microsecond after midnight.
    assert sorted(p.parent.name for p in folder.glob("*/*.parquet")) == ["date=2026-03-01", "date=2026-03-02"]
    assert re.fullmatch(r"part-\d{8}T\d{12}-\d+-\d{6}\.parquet", next(folder.glob("*/*.parquet")).name)


def test_an_unwritable_folder_never_fails_a_request(served_project: Path, tmp_path: Path) -> None:
    holdout = pd.read_csv(served_project / "data" / "holdout.csv").drop(columns=["malignant"])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")  # a folder below a file: unwritable even for root
    log, warnings = in_process_log(blocker / "inference", batch_rows=3, flush_seconds=0.05)
    with serve_logged(served_project, log) as endpoint:
        for index in range(30):
            predictions, _ = post_rows(endpoint.url, holdout.iloc[[index]], f"unwritable-{index}")
            assert len(predictions) == 1
    assert log.close() == type(log.counts())(written=0, dropped=30, files=0)
    assert len(warnings) == 1 and f"cannot write under {blocker / 'inference'}" in warnings[0]


def test_served_probabilities_are_logged_as_answered(served_project: Path, tmp_path: Path) -> None:
    import mlflow

    from mlci.targets.local import serving
    from mlci.targets.local.tracking import model_dir

    holdout = pd.read_csv(served_project / "data" / "holdout.csv").drop(columns=["malignant"])
    log, warnings = in_process_log(tmp_path / "inference")
    mlflow.set_tracking_uri(f"sqlite:///{served_project / '.mlci' / 'mlflow.db'}")
    path = model_dir("models:/serve_model/1")
    with serving.serve_in_thread(path, "127.0.0.1", 0, 60, probabilities=True, inference_log=log) as endpoint:
        answers = [post_rows(endpoint.url, holdout.iloc[[i, i + 1]], f"p-{i}")[0] for i in range(5)]
    assert log.close().written == 10 and not warnings
    logged = logged_rows(tmp_path / "inference")
    answered = [row for pair in answers for row in pair]
    assert logged[["prediction", "probability_0", "probability_1"]].to_dict("records") == answered
