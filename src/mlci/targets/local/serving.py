"""Serve an MLflow model on loopback with MLflow's own scoring server (FastAPI + uvicorn).

The server runs in a thread of this process on a socket we bind ourselves, so port 0 works
without a race and no `uvicorn` executable has to be on PATH.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci.errors import InfraError, MlciError, ModelLoadFailed, SmokeTestFailed, UsageError

if TYPE_CHECKING:
    from mlci.monitoring.inference_log import InferenceLogger


@dataclass
class Endpoint:
    url: str
    ready_seconds: float
    thread: threading.Thread | None = None
    stopped: threading.Event | None = None  # set once the server thread has returned


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InfraError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pass --port with a free port (0 picks one), "
            "or set deploy.port in mlci.yaml"
        ) from None
    sock.listen(128)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def scoring_app(model_path: Path, probabilities: bool = False, inference_log: InferenceLogger | None = None) -> Any:
    """MLflow's scoring app for the model; with `inference_log`, every prediction is logged to it
    and every answer carries an X-Request-Id header."""
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    try:
        model = mlflow.pyfunc.load_model(str(model_path))
    except MlciError:
        raise
    except Exception as exc:  # whatever the model's own code or dependencies raise on load
        raise ModelLoadFailed(f"the model in {model_path} does not load: {type(exc).__name__}: {exc}") from None
    if probabilities:
        model = with_probabilities(model)
    if inference_log is None:
        return scoring_server.init(model)
    inference_log.start(probability_function(model))
    return RequestIds(scoring_server.init(logged(model, inference_log)))


REQUEST_ID_HEADER = b"x-request-id"


def _client_request_id(value: bytes) -> str | None:
    """The client's X-Request-Id when it is a plain token (visible ASCII, at most 200 characters):
    anything else would be a log entry nobody can join labels to, so a fresh id replaces it."""
    if not 0 < len(value) <= 200 or not all(0x21 <= byte <= 0x7E for byte in value):
        return None
    return value.decode("ascii")


class RequestIds:
    """ASGI middleware: each HTTP request gets an id (the client's X-Request-Id, else a uuid4 hex),
    visible to the model wrapper through a context variable and echoed in the answer's header."""

    def __init__(self, app: Any) -> None:
        from mlci.monitoring import inference_log

        self.app = app
        self._log = inference_log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        arrived = datetime.now(timezone.utc)
        given = next((v for k, v in scope.get("headers", ()) if k.lower() == REQUEST_ID_HEADER), None)
        request_id = (_client_request_id(given) if given is not None else None) or self._log.new_request_id()
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Any) -> None:
            if message.get("type") == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*kept, header]}
            await send(message)

        token = self._log.CURRENT_REQUEST.set(self._log.Request(request_id, arrived))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._log.CURRENT_REQUEST.reset(token)


class _Logged:
    """A pyfunc implementation that answers as the model does and hands each predict's input
    (after MLflow's schema enforcement) and output to the inference log."""

    def __init__(self, implementation: Any, inference_log: InferenceLogger) -> None:
        import inspect

        from mlci.monitoring.inference_log import current_request

        self._predict = implementation.predict
        self._takes_params = "params" in inspect.signature(self._predict).parameters
        self._log = inference_log
        self._current_request = current_request

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        answer = self._predict(data, params=params) if self._takes_params else self._predict(data)
        with contextlib.suppress(Exception):  # logging never fails a prediction
            self._log.log(data, answer, self._current_request())
        return answer


def logged(model: Any, inference_log: InferenceLogger) -> Any:
    """The same model, logging every prediction to `inference_log`."""
    from mlflow.pyfunc import PyFuncModel

    wrapped = PyFuncModel(model_meta=model.metadata, model_impl=_Logged(model._model_impl, inference_log))
    wrapped.input_example = model.input_example  # MLflow reshapes inputs after it for some models
    return wrapped


def probability_function(model: Any) -> Any | None:
    """The model's `predict_proba`, or None when it has none (e.g. a LinearSVC)."""
    implementation = getattr(model, "_model_impl", None)
    found = getattr(implementation, "predict_proba", None)
    if found is None:
        try:
            found = getattr(model.get_raw_model(), "predict_proba", None)
        except Exception:  # not every flavour exposes a raw model
            found = None
    return found if callable(found) else None


class _LabelsAndProbabilities:
    """A pyfunc implementation answering one record per row: the label and each class's
    probability (`prediction`, `probability_<class>`), for `mlci serve --probabilities`."""

    def __init__(self, model: Any, predict_proba: Any) -> None:
        self._model = model
        self._predict_proba = predict_proba
        raw = getattr(predict_proba, "__self__", None)
        self._classes = [str(c) for c in getattr(raw, "classes_", [])]

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        labels = self._model.predict(data)
        table = self._predict_proba(data)
        names = self._classes if len(self._classes) == table.shape[1] else [str(i) for i in range(table.shape[1])]
        frame = pd.DataFrame({"prediction": list(labels)})
        for index, name in enumerate(names):
            frame[f"probability_{name}"] = table[:, index]
        return frame


def with_probabilities(model: Any) -> Any:
    """The same model, answering labels and probabilities; UsageError when it has none."""
    from mlflow.pyfunc import PyFuncModel

    predict_proba = probability_function(model)
    if predict_proba is None:
        raise UsageError("--probabilities: this model has no predict_proba (e.g. a LinearSVC); serve it without")
    return PyFuncModel(model_meta=model.metadata, model_impl=_LabelsAndProbabilities(model, predict_proba))


def wait_ready(url: str, timeout: float, thread: threading.Thread | None = None) -> float:
    """Poll /health until it answers 200; seconds it took. InfraError on timeout."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout:
        if thread is not None and not thread.is_alive():
            raise InfraError(f"the model server at {url} stopped before it became ready")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
                last = f"HTTP {answer.status}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.1)
    raise InfraError(f"the model server at {url} was not ready after {timeout:g}s ({last}); raise deploy.ready_timeout")


@contextmanager
def serve_in_thread(
    model_path: Path,
    host: str,
    port: int,
    ready_timeout: float,
    probabilities: bool = False,
    log_level: str = "warning",
    inference_log: InferenceLogger | None = None,
) -> Iterator[Endpoint]:
    """Serve a model for the duration of the block; yields its URL once /health answers.

    With `inference_log` every prediction is logged; the caller closes the log after the block,
    when the server has stopped taking requests."""
    import uvicorn

    sock = bind(host, port)  # first: a port in use fails before seconds of loading the model
    try:
        app = scoring_app(model_path, probabilities, inference_log)
    except BaseException:
        sock.close()
        raise
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="off"))
    # The end of the server is told by an Event, not by Thread.join/is_alive: on Python 3.11 a
    # Ctrl-C landing in join() marks the still running thread stopped (threading's bpo-45274
    # branch releases the lock the live thread holds), so the socket was closed under a server
    # still shutting down (a ValueError traceback) and the inference log closed before the last
    # requests had been answered.
    stopped = threading.Event()

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            stopped.set()

    thread = threading.Thread(target=run, name="mlci-serve", daemon=True)
    thread.start()
    url = _url(sock)
    try:
        ready = wait_ready(url, ready_timeout, thread)
        yield Endpoint(url=url, ready_seconds=ready, thread=thread, stopped=stopped)
    finally:
        server.should_exit = True
        stopped.wait(timeout=10)
        sock.close()


def serve_until_interrupted(
    model_path: Path,
    host: str,
    port: int,
    ready_timeout: float,
    announce: Callable[[Endpoint], None],
    probabilities: bool = False,
    log_level: str = "warning",
    inference_log: InferenceLogger | None = None,
) -> None:
    """Serve in the foreground: `announce` is called once /health answers, then serve until
    Ctrl-C (or SIGTERM), or until the server stops by itself (an InfraError)."""
    with serve_in_thread(model_path, host, port, ready_timeout, probabilities, log_level, inference_log) as endpoint:
        announce(endpoint)
        assert endpoint.stopped is not None
        while not endpoint.stopped.wait(timeout=0.5):
            pass
    raise InfraError(f"the model server at {endpoint.url} stopped")


def predict(url: str, frame: Any, timeout: float = 30) -> tuple[list[Any], float]:
    """POST a DataFrame to /invocations (dataframe_split); the predictions and the latency."""
    split = json.loads(frame.to_json(orient="split", index=False, date_format="iso"))
    body = json.dumps({"dataframe_split": split}).encode("utf-8")
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            payload = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise SmokeTestFailed(f"/invocations answered HTTP {exc.code}: {detail}") from None
    latency = time.monotonic() - started
    predictions = payload.get("predictions") if isinstance(payload, dict) else None
    if not isinstance(predictions, list):
        raise SmokeTestFailed(f"/invocations answered without a 'predictions' list: {str(payload)[:200]}")
    return predictions, latency
