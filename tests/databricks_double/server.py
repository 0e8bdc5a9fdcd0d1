"""The loopback Databricks workspace double: one ThreadingHTTPServer, routes by method and path.

Route modules (sdk_routes.py: jobs, files, serving, OIDC; mlflow_routes.py: MLflow tracking and
the Unity Catalog model registry) register handlers on a `Double`; every handler gets a parsed
`Request` and returns a `Response`. Every request is recorded in `double.requests` (method, path,
query, body) so tests can assert on traffic; a handler's `Invalid` becomes the 400 a workspace
gives (error_code INVALID_PARAMETER_VALUE) and is also kept in `double.rejections`, which the
fixture asserts empty at teardown: a request body mlci got wrong fails the test even when mlci
would swallow the 400.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Request:
    method: str
    path: str  # unquoted, no query
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw: bytes
    match: re.Match[str] | None = None

    def json(self) -> Any:
        return json.loads(self.raw or b"{}")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)


class Invalid(Exception):
    """A request the real workspace would refuse with 400 (a body the SDK's types reject)."""


class NotFound(Exception):
    def __init__(self, message: str, error_code: str = "RESOURCE_DOES_NOT_EXIST") -> None:
        super().__init__(message)
        self.error_code = error_code


def error(status: int, error_code: str, message: str) -> Response:
    return Response(status, {"error_code": error_code, "message": message})


Handler = Callable[[Request], Response]

PAT = "dapi-double-token"  # the personal access token tests that sign in with a PAT use


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int = 0


class Double:
    """A workspace at `url`; `root` holds its files (Files API, model artifacts, run outputs)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.routes: list[tuple[str, re.Pattern[str], Handler, bool]] = []
        # Bearer tokens the workspace accepts: a PAT for tests that sign in with one, and every
        # OAuth access token the OIDC routes issued. Any other request is a 401.
        self.tokens: set[str] = {PAT}
        self.requests: list[Recorded] = []
        self.rejections: list[str] = []
        self.lock = threading.RLock()
        # Fault injection: (method, path regex) -> list of statuses to answer before the real
        # handler runs (e.g. [429, 503]); consumed one per matching request.
        self.faults: list[tuple[str, re.Pattern[str], list[int]]] = []
        self.delay: float = 0.0  # seconds every request waits before it is answered (a slow workspace)
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # ----- routing

    def route(self, method: str, pattern: str, *, public: bool = False) -> Callable[[Handler], Handler]:
        """Register a handler for `method` and a full-match path regex; `public` routes (host
        metadata, the OIDC token endpoint) answer without a bearer token."""

        def register(handler: Handler) -> Handler:
            self.routes.append((method, re.compile(pattern + r"\Z"), handler, public))
            return handler

        return register

    def inject(self, method: str, pattern: str, statuses: list[int]) -> None:
        self.faults.append((method, re.compile(pattern + r"\Z"), list(statuses)))

    def dispatch(self, request: Request) -> Response:
        for method, pattern, statuses in self.faults:
            if method == request.method and pattern.match(request.path) and statuses:
                status = statuses.pop(0)
                return Response(
                    status,
                    {"error_code": "TEMPORARILY_UNAVAILABLE", "message": f"injected {status}"},
                    {"Retry-After": "0"} if status in (429, 503) else {},
                )
        for method, pattern, handler, public in self.routes:
            match = pattern.match(request.path)
            if method == request.method and match:
                request.match = match
                if not public and not self.authorised(request):
                    return error(401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type")
                try:
                    return handler(request)
                except Invalid as exc:
                    self.rejections.append(f"{request.method} {request.path}: {exc}")
                    return error(400, "INVALID_PARAMETER_VALUE", str(exc))
                except NotFound as exc:
                    return error(404, exc.error_code, str(exc))
        self.rejections.append(f"{request.method} {request.path}: no such endpoint in the double")
        return error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'")

    def authorised(self, request: Request) -> bool:
        header = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = header.partition(" ")
        return scheme == "Bearer" and token in self.tokens

    # ----- the workspace's files (Files API paths: /Volumes/..., /Models/...)

    @property
    def files_dir(self) -> Path:
        return self.root / "files"

    def file_path(self, api_path: str) -> Path:
        """Where the Files API path `/Volumes/c/s/v/x` lives on disk; refuses escapes."""
        parts = [p for p in api_path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise Invalid(f"bad file path {api_path!r}")
        return self.files_dir.joinpath(*parts)

    # ----- lifecycle

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Double:
        double = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _serve(self) -> None:
                import time

                if double.delay:
                    time.sleep(double.delay)
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = Request(
                    self.command, unquote(parts.path), parse_qs(parts.query), dict(self.headers.items()), raw
                )
                try:
                    body: Any = json.loads(raw) if raw and "json" in self.headers.get("Content-Type", "json") else None
                except ValueError:
                    body = None
                recorded = Recorded(request.method, request.path, request.query, body)
                with double.lock:
                    double.requests.append(recorded)
                try:
                    response = double.dispatch(request)
                except Exception as exc:  # a bug in the double: answer 500 and keep it for the test
                    double.rejections.append(f"{request.method} {request.path}: double crashed: {exc!r}")
                    response = error(500, "INTERNAL_ERROR", repr(exc))
                recorded.status = response.status
                payload = response.body
                if isinstance(payload, bytes):
                    data = payload
                    content_type = response.headers.pop("Content-Type", "application/octet-stream")
                else:
                    data = b"" if payload is None else json.dumps(payload).encode()
                    content_type = "application/json"
                try:
                    self.send_response(response.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in response.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (its timeout): nothing to tell it

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # ----- what tests ask

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        compiled = re.compile(pattern + r"\Z")
        return [r for r in self.requests if r.method == method and compiled.match(r.path)]
