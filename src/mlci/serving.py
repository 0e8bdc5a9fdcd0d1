"""Serve an MLflow model on loopback with MLflow's own scoring server (FastAPI + uvicorn).

The server runs in a thread of this process on a socket we bind ourselves, so port 0 works
without a race and no `uvicorn` executable has to be on PATH.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.errors import InfraError


@dataclass
class Endpoint:
    url: str
    ready_seconds: float


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InfraError(
            f"cannot listen on {host}:{port} ({exc.strerror}); set deploy.port in mlci.yaml to a free port or 0"
        ) from None
    sock.listen(128)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def scoring_app(model_path: Path) -> Any:
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    return scoring_server.init(mlflow.pyfunc.load_model(str(model_path)))


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
def serve_in_thread(model_path: Path, host: str, port: int, ready_timeout: float) -> Iterator[Endpoint]:
    """Serve a model for the duration of the block; yields its URL once /health answers."""
    import uvicorn

    app = scoring_app(model_path)
    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="mlci-serve", daemon=True)
    thread.start()
    url = _url(sock)
    try:
        ready = wait_ready(url, ready_timeout, thread)
        yield Endpoint(url=url, ready_seconds=ready)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve_forever(model_path: Path, host: str, port: int) -> None:
    import uvicorn

    app = scoring_app(model_path)
    sock = bind(host, port)
    print(f"serving on {_url(sock)}  (POST /invocations, GET /health; Ctrl-C to stop)", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="info", lifespan="off")).run(sockets=[sock])


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
        raise RuntimeError(f"/invocations answered HTTP {exc.code}: {detail}") from None
    latency = time.monotonic() - started
    predictions = payload.get("predictions") if isinstance(payload, dict) else None
    if not isinstance(predictions, list):
        raise RuntimeError(f"/invocations answered without a 'predictions' list: {str(payload)[:200]}")
    return predictions, latency
