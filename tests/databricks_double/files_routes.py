"""The Files API 2.0 of the workspace double: `/api/2.0/fs/files{path}` and `/api/2.0/fs/directories{path}`.

What databricks-sdk 0.162.0 sends (service/files.py, and mixins/files.py's `FilesExt`, which `w.files` is):
- `PUT  /api/2.0/fs/files{path}?overwrite=true|false`, the raw bytes as the body
  (`Content-Type: application/octet-stream`): 204; parents are created as the Files API does;
  409 ALREADY_EXISTS when the file exists and `overwrite=false` (unspecified means overwrite);
  409 when the path, or one of its parents, is a file/directory of the other kind.
- `GET  /api/2.0/fs/files{path}` (optionally `Range: bytes=a-b`, `If-Unmodified-Since`): the bytes, with
  Content-Length, Content-Type and Last-Modified; 206 for a range; 412 when the file changed since.
- `HEAD /api/2.0/fs/files{path}`: the same headers, no body; 404 for a missing file.
- `DELETE /api/2.0/fs/files{path}`: 204; 404 when missing.
- `PUT  /api/2.0/fs/directories{path}`: create (idempotent, parents too); 409 when a file is in the way.
- `HEAD /api/2.0/fs/directories{path}`: 200 or 404.
- `GET  /api/2.0/fs/directories{path}?page_size=&page_token=`: `{"contents": [DirectoryEntry...],
  "next_page_token": ...}` (entries sorted by name, `page_size` at most 1000); 404 when missing.
- `DELETE /api/2.0/fs/directories{path}`: 204 for an empty directory, 409 DIRECTORY_NOT_EMPTY otherwise.
- `POST /api/2.0/fs/create-download-url` and `/create-upload-part-urls` (the SDK's IO_OFFLOAD
  presigned-URL path, tried first for downloads and multipart uploads): 403 FEATURE_DISABLED, which a
  workspace without presigned URLs answers; the SDK then walks to the Files API on the host.

Every path goes through `double.file_path`, which refuses `.`/`..` segments (400, recorded); paths must
start with `/Volumes/<catalog>/<schema>/<volume>/`, `/Models/<catalog>/<schema>/<model>/<version>/`
or (MLflow's tracking artifacts, see mlflow_routes.py) `/WorkspaceInternal/Mlflow/Artifacts/<experiment>/`
like on a workspace, and a file lies below such a folder. Writes under `/Models/...` are accepted
only while the UC model version exists and is PENDING_REGISTRATION (a READY version's files are
immutable: 403 PERMISSION_DENIED), when `double.uc` is installed; their catalog, schema and model
segments are case-insensitive (stored lower-case), as UC names are.
"""

from __future__ import annotations

import email.utils
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .server import Double, Invalid, NotFound, Request, Response, error

_PAGE_MAX = 1000
# The top folder -> how many segments name the securable (a volume, a model version, an experiment's
# tracking artifacts): a directory is at least that deep, a file deeper.
_ROOTS = {"Volumes": 4, "Models": 5, "WorkspaceInternal": 5}


def _check_securable(api_path: str, *, is_file: bool) -> None:
    parts = [p for p in api_path.split("/") if p]
    depth = _ROOTS.get(parts[0], 0) if parts else 0
    if (
        not depth
        or len(parts) < depth + (1 if is_file else 0)
        or (parts[0] == "WorkspaceInternal" and parts[1:3] != ["Mlflow", "Artifacts"])
    ):
        raise Invalid(
            f"Invalid {'file' if is_file else 'directory'} path {api_path!r}: the Files API takes "
            "/Volumes/<catalog>/<schema>/<volume>/... or /Models/<catalog>/<schema>/<model>/<version>/..."
        )


def _last_modified(path: Path) -> str:
    return email.utils.formatdate(path.stat().st_mtime, usegmt=True)


def _bool_arg(request: Request, name: str) -> bool | None:
    value = request.arg(name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise Invalid(f"Invalid boolean {name}={value!r}")
    return value == "true"


def _blocking_file(target: Path, stop: Path) -> Path | None:
    """A parent of `target` (below `stop`) that exists as a file."""
    for parent in target.parents:
        if parent == stop:
            break
        if parent.is_file():
            return parent
    return None


def install(double: Double) -> None:
    files_root = double.files_dir

    def resolve(request: Request) -> tuple[str, Path]:
        assert request.match is not None
        api_path = request.match["path"]
        target = double.file_path(api_path)  # refuses escapes first
        _check_securable(api_path, is_file="/fs/files/" in request.path)
        parts = [p for p in api_path.split("/") if p]
        if parts[0] == "Models":  # UC names are case-insensitive: one folder per model version
            api_path = "/" + "/".join(["Models", *(p.lower() for p in parts[1:4]), *parts[4:]])
            target = double.file_path(api_path)
        return api_path, target

    def model_write_allowed(api_path: str) -> None:
        parts = [p for p in api_path.split("/") if p]
        uc = getattr(double, "uc", None)
        if parts[0] != "Models" or uc is None:
            return
        name, version = ".".join(parts[1:4]), parts[4]
        status = uc.version_status(name, version)
        if status != "PENDING_REGISTRATION":
            return_status = "does not exist" if status is None else f"is {status}"
            raise _Forbidden(f"Model version {name}/{version} {return_status}: its files cannot be written")

    def guarded(handler: Any) -> Any:
        def run(request: Request) -> Response:
            try:
                result: Response = handler(request)
            except _Forbidden as exc:
                return error(403, "PERMISSION_DENIED", str(exc))
            return result

        return run

    # ----- files

    @double.route("PUT", r"/api/2.0/fs/files(?P<path>/.*)")
    @guarded
    def put_file(request: Request) -> Response:
        api_path, target = resolve(request)
        overwrite = _bool_arg(request, "overwrite")
        model_write_allowed(api_path)
        with double.lock:
            if target.is_dir():
                return error(409, "ALREADY_EXISTS", f"A directory exists at {api_path}")
            if _blocking_file(target, files_root) is not None:
                return error(409, "ALREADY_EXISTS", f"A parent of {api_path} is a file")
            if target.exists() and overwrite is False:
                return error(409, "ALREADY_EXISTS", "The file being created already exists.")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.upload")
            partial.write_bytes(request.raw)
            os.replace(partial, target)
        return Response(204)

    def existing_file(request: Request) -> tuple[str, Path]:
        api_path, target = resolve(request)
        if not target.is_file():
            raise NotFound("The file being accessed is not found.", "NOT_FOUND")
        return api_path, target

    def file_headers(target: Path) -> dict[str, str]:
        return {"Last-Modified": _last_modified(target), "Content-Type": "application/octet-stream"}

    @double.route("GET", r"/api/2.0/fs/files(?P<path>/.*)")
    def get_file(request: Request) -> Response:
        _, target = existing_file(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        since = headers.get("if-unmodified-since")
        if since:
            parsed = email.utils.parsedate_to_datetime(since).timestamp()
            if int(target.stat().st_mtime) > parsed:
                return error(412, "PRECONDITION_FAILED", "The file has been modified since the given time")
        data = target.read_bytes()
        response_headers = file_headers(target)
        wanted = headers.get("range")
        if wanted:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if not match:
                raise Invalid(f"Invalid Range header {wanted!r}")
            start = int(match[1])
            end = int(match[2]) if match[2] else len(data) - 1
            if start >= len(data) and data:
                return error(416, "INVALID_PARAMETER_VALUE", f"Range {wanted} not satisfiable")
            end = min(end, len(data) - 1)
            response_headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return Response(206, data[start : end + 1], response_headers)
        return Response(200, data, response_headers)

    @double.route("HEAD", r"/api/2.0/fs/files(?P<path>/.*)")
    def head_file(request: Request) -> Response:
        _, target = existing_file(request)
        # The server sends the body's length for a GET; HEAD answers with the same headers and no body.
        return Response(200, target.read_bytes(), file_headers(target))

    @double.route("DELETE", r"/api/2.0/fs/files(?P<path>/.*)")
    @guarded
    def delete_file(request: Request) -> Response:
        api_path, target = existing_file(request)
        model_write_allowed(api_path)
        target.unlink()
        return Response(204)

    # ----- directories

    @double.route("PUT", r"/api/2.0/fs/directories(?P<path>/.*)")
    @guarded
    def create_directory(request: Request) -> Response:
        api_path, target = resolve(request)
        model_write_allowed(api_path)
        with double.lock:
            if target.is_file() or _blocking_file(target, files_root) is not None:
                return error(409, "ALREADY_EXISTS", f"A file exists at {api_path} or one of its parents")
            target.mkdir(parents=True, exist_ok=True)
        return Response(204)

    def existing_directory(request: Request) -> tuple[str, Path]:
        api_path, target = resolve(request)
        if not target.is_dir():
            raise NotFound("The directory being accessed is not found.", "NOT_FOUND")
        return api_path, target

    @double.route("HEAD", r"/api/2.0/fs/directories(?P<path>/.*)")
    def head_directory(request: Request) -> Response:
        existing_directory(request)
        return Response(200)

    @double.route("GET", r"/api/2.0/fs/directories(?P<path>/.*)")
    def list_directory(request: Request) -> Response:
        api_path, target = existing_directory(request)
        size_arg = request.arg("page_size")
        try:
            page_size = min(int(size_arg), _PAGE_MAX) if size_arg is not None else _PAGE_MAX
        except ValueError:
            raise Invalid(f"Invalid page_size {size_arg!r}") from None
        if page_size < 1:
            page_size = _PAGE_MAX
        token = request.arg("page_token")
        entries = sorted(p for p in target.iterdir() if not p.name.endswith(".upload"))
        start = 0
        if token:
            if not token.isdigit() or int(token) > len(entries):
                raise Invalid(f"Invalid page_token {token!r}")
            start = int(token)
        page = entries[start : start + page_size]
        base = "/" + "/".join(p for p in api_path.split("/") if p)
        contents = []
        for entry in page:
            item: dict[str, Any] = {
                "path": f"{base}/{entry.name}" + ("/" if entry.is_dir() else ""),
                "is_directory": entry.is_dir(),
                "name": entry.name,
                "last_modified": int(entry.stat().st_mtime * 1000),
            }
            if entry.is_file():
                item["file_size"] = entry.stat().st_size
            contents.append(item)
        body: dict[str, Any] = {"contents": contents} if contents else {}
        if start + page_size < len(entries):
            body["next_page_token"] = str(start + page_size)
        return Response(200, body)

    @double.route("DELETE", r"/api/2.0/fs/directories(?P<path>/.*)")
    @guarded
    def delete_directory(request: Request) -> Response:
        api_path, target = existing_directory(request)
        model_write_allowed(api_path)
        if any(target.iterdir()):
            return error(409, "DIRECTORY_NOT_EMPTY", f"The directory {api_path} is not empty")
        shutil.rmtree(target)
        return Response(204)

    # ----- the presigned-URL (IO_OFFLOAD) control calls: disabled on this workspace

    @double.route("POST", r"/api/2.0/fs/create-(?:download-url|upload-part-urls|abort-upload-url)")
    def presigned(request: Request) -> Response:
        return error(403, "FEATURE_DISABLED", "Presigned URLs are not enabled for this workspace")


class _Forbidden(Exception):
    pass
