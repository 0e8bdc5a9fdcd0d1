"""MLflow on the workspace double: tracking served by a real MLflow store, and the Unity Catalog registry.

Tracking (`/api/2.0/mlflow/...`, `/api/3.0/mlflow/...`: every endpoint of MLflow's `MlflowService`
proto, experiments, runs, metrics, logged models, traces) is answered by MLflow's own server
handlers (`mlflow.server.handlers`, in-process through a Flask test client) on a real
`SqlAlchemyStore` in `double.root / "mlflow.db"`; nothing of tracking is reimplemented. The
store's migrations run once per pytest process (a template database copied per double), and the
handlers' global store is swapped in under a lock per request, so several doubles can live in one
process. Every body is first parsed strictly against the endpoint's request proto.

What differs from a workspace, and why it does not matter to an MLflow client:
- Nothing, for artifacts: as on a workspace, experiments live at
  `dbfs:/databricks/mlflow-tracking/<id>`, runs at `.../<id>/<run>/artifacts` and logged models at
  `.../<id>/logged_models/<model>/artifacts`, which MLflow 3 reads and writes through the Files API
  (`/WorkspaceInternal/Mlflow/Artifacts/<id>/Runs/<run>/...`, `.../LoggedModels/<model>/...`:
  files_routes.py, on disk under `double.files_dir`). Run artifacts also have the older presigned
  path MLflow falls back to when the Files API fails (a missing file, say): `credentials-for-read`/
  `-for-write` hand out AWS_PRESIGNED_URL URIs to the double's public `/storage/...` route, signed
  with a per-double secret (a wrong signature is a 403 like S3's). The logged-model equivalents
  (`logged-models/{id}/artifacts/credentials-for-*`) are not served: a call is a 404 and a rejection.
  Model versions use the Files API too, under `/Models/<catalog>/<schema>/<model>/<version>/`.
- Experiment names must be absolute workspace paths (`/Users/...`, `/Shared/...`), as on a
  workspace; the workspace folder is not checked to exist.
- The legacy workspace model registry (`/api/2.0/mlflow/registered-models/...`) is not served:
  mlci registers in Unity Catalog only, so a call there is a defect (404 and a rejection).
- Responses carry `X-Databricks-Org-Id` (DOUBLE_WORKSPACE_ID), which MLflow records as the
  model version's `run_tracking_server_id`.

Unity Catalog (`/api/2.0/mlflow/unity-catalog/...`, every method of `UcModelRegistryService`):
state lives in `double.uc` (a `UnityCatalog`), in the test process, so it survives client
processes. Each request is parsed with `json_format.ParseDict(..., ignore_unknown_fields=False)`
into MLflow's request proto and every field marked `validate_required` (nested too) must be set;
a bad body raises `Invalid` (400, kept in `double.rejections`). UC rules kept: three-level names
(`catalog.schema.model`, identifiers of letters, digits, `_`, `-`; stored lower-case, looked up
case-insensitively; catalogs/schemas are not checked to exist), versions numbered from 1 per model,
PENDING_REGISTRATION until `finalize`, which needs an MLmodel in the version's folder whose
signature has inputs and outputs (UC refuses a model without one; MLflow checks it client-side
too), files under `/Models/...` writable only while PENDING_REGISTRATION, alias names UC accepts
(`[A-Za-z0-9_-]`, not `latest`, not `v<digits>`), an alias moves (one version per alias),
deleting a version drops its aliases and files, deleting a model deletes its versions, 404
RESOURCE_DOES_NOT_EXIST for a missing model, version or alias, 400 RESOURCE_ALREADY_EXISTS for a
model that exists. `registered-models:is-databricks-sdk-models-artifact-repository-enabled`
answers true, so a client that does not set MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC
uses the Files API too. `generate-temporary-credentials` answers DEFAULT_STORAGE credentials, but
this workspace serves no presigned-URL model storage: a client that needs it fails visibly.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from .server import Double, Invalid, NotFound, Request, Response, error

DOUBLE_WORKSPACE_ID = "1234567890123456"
USER = "double-user@example.com"

_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,255}")
_STORE_LOCK = threading.Lock()  # mlflow.server.handlers keeps one global tracking store
_TEMPLATE: dict[str, Path] = {}


# ----- strict parsing against MLflow's protos


def _missing_required(message: Message, prefix: str = "") -> list[str]:
    from mlflow.protos import databricks_pb2

    missing = []
    for fd in message.DESCRIPTOR.fields:
        name = f"{prefix}{fd.name}"
        required = fd.GetOptions().Extensions[databricks_pb2.validate_required]
        if fd.is_repeated:
            values = getattr(message, fd.name)
            if required and not len(values):
                missing.append(name)
            if fd.message_type is not None and not fd.message_type.GetOptions().map_entry:
                for i, item in enumerate(values):
                    missing += _missing_required(item, f"{name}[{i}].")
            continue
        present = message.HasField(fd.name)
        if required and (not present or getattr(message, fd.name) in ("",)):
            missing.append(name)
        if present and fd.message_type is not None:
            missing += _missing_required(getattr(message, fd.name), f"{name}.")
    return missing


def _query_as_dict(message_cls: type[Message], query: dict[str, list[str]]) -> dict[str, Any]:
    fields = {fd.name: fd for fd in message_cls.DESCRIPTOR.fields}
    body: dict[str, Any] = {}
    for key, values in query.items():
        fd = fields.get(key)
        if fd is None:
            raise Invalid(f"{message_cls.__name__}: unknown query parameter {key!r}")
        if fd.message_type is not None:
            raise Invalid(f"{message_cls.__name__}: {key!r} cannot be a query parameter")
        if fd.is_repeated:
            body[key] = values
        elif len(values) != 1:
            raise Invalid(f"{message_cls.__name__}: {key!r} given {len(values)} times")
        else:
            body[key] = values[0]
    return body


def parse(message_cls: type[Message], request: Request, *, check_required: bool = True) -> Message:
    """The request's body (query for GET) as `message_cls`, strictly; `Invalid` otherwise."""
    if request.method == "GET":
        data: Any = _query_as_dict(message_cls, request.query)
    else:
        try:
            data = request.json()
        except ValueError as exc:
            raise Invalid(f"{message_cls.__name__}: the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Invalid(f"{message_cls.__name__}: the body must be a JSON object")
    message = message_cls()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise Invalid(f"{message_cls.__name__}: {exc}") from None
    if check_required:
        missing = _missing_required(message)
        if missing:
            raise Invalid(f"{message_cls.__name__}: missing required field(s) {', '.join(missing)}")
    return message


def _checked(message_cls: type[Message], body: dict[str, Any]) -> dict[str, Any]:
    """A response body, proven to parse as MLflow's response proto (a double bug fails loudly)."""
    json_format.ParseDict(body, message_cls(), ignore_unknown_fields=False)
    return body


# ----- Unity Catalog state


def _now() -> int:
    return int(time.time() * 1000)


@dataclass
class _Version:
    name: str
    version: int
    source: str
    run_id: str
    description: str
    model_id: str
    run_tracking_server_id: str
    created: int = field(default_factory=_now)
    updated: int = field(default_factory=_now)
    status: str = "PENDING_REGISTRATION"
    status_message: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _Model:
    name: str
    description: str = ""
    deployment_job_id: str = ""
    created: int = field(default_factory=_now)
    updated: int = field(default_factory=_now)
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    versions: dict[int, _Version] = field(default_factory=dict)
    next_version: int = 1


def _split_name(name: str) -> tuple[str, str, str]:
    parts = name.split(".")
    if len(parts) != 3:
        raise Invalid(
            f"Invalid name {name!r}: the registered model name must specify all three levels (catalog.schema.model)"
        )
    for part in parts:
        if not _IDENTIFIER.fullmatch(part):
            raise Invalid(f"Invalid name {name!r}: {part!r} is not a valid Unity Catalog identifier")
    catalog, schema, model = (p.lower() for p in parts)
    return catalog, schema, model


def _alias_name(alias: str) -> str:
    if not _ALIAS.fullmatch(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise Invalid(
            f"Invalid alias {alias!r}: an alias is letters, digits, '_' and '-', and is not 'latest' "
            "or of the form v<number>"
        )
    return alias.lower()


def _version_number(version: str) -> int:
    if not version.isdigit() or int(version) < 1:
        raise Invalid(f"Invalid version {version!r}: a model version is a positive integer")
    return int(version)


class UnityCatalog:
    """The registry's state; `double.uc`."""

    def __init__(self, double: Double) -> None:
        self.double = double
        self.models: dict[str, _Model] = {}

    # ----- what other doubles and tests ask

    def version_dir(self, name: str, version: str | int) -> Path:
        """The folder holding the version's files (its MLmodel), as the Files API stores them."""
        catalog, schema, model = _split_name(name)
        return self.double.file_path(f"/Models/{catalog}/{schema}/{model}/{int(version)}")

    def alias_version(self, name: str, alias: str) -> str | None:
        model = self.models.get(".".join(_split_name(name)))
        if model is None or alias.lower() not in model.aliases:
            return None
        return str(model.aliases[alias.lower()])

    def version_status(self, name: str, version: str | int) -> str | None:
        try:
            model = self.models.get(".".join(_split_name(name)))
            number = int(version)
        except (Invalid, ValueError):
            return None
        found = model.versions.get(number) if model else None
        return found.status if found else None

    # ----- lookups

    def model(self, name: str) -> _Model:
        full = ".".join(_split_name(name))
        model = self.models.get(full)
        if model is None:
            raise NotFound(f"Registered model '{full}' does not exist.")
        return model

    def version(self, name: str, version: str) -> _Version:
        model = self.model(name)
        number = _version_number(version)
        found = model.versions.get(number)
        if found is None:
            raise NotFound(f"Model version {model.name}/{number} does not exist.")
        return found

    # ----- JSON in MLflow's UC proto shapes

    def model_json(self, model: _Model) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": model.name,
            "creation_timestamp": model.created,
            "last_updated_timestamp": model.updated,
            "user_id": USER,
            "aliases": [{"alias": a, "version": str(v)} for a, v in sorted(model.aliases.items())],
            "tags": [{"key": k, "value": v} for k, v in sorted(model.tags.items())],
        }
        if model.description:
            body["description"] = model.description
        if model.deployment_job_id:
            body["deployment_job_id"] = model.deployment_job_id
        return body

    def version_json(self, v: _Version) -> dict[str, Any]:
        model = self.models[v.name]
        catalog, schema, name = v.name.split(".")
        body: dict[str, Any] = {
            "name": v.name,
            "version": str(v.version),
            "creation_timestamp": v.created,
            "last_updated_timestamp": v.updated,
            "user_id": USER,
            "source": v.source,
            "status": v.status,
            "storage_location": f"{self.double.url}/api/2.0/fs/files/Models/{catalog}/{schema}/{name}/{v.version}",
            "aliases": [{"alias": a, "version": str(n)} for a, n in sorted(model.aliases.items()) if n == v.version],
            "tags": [{"key": k, "value": val} for k, val in sorted(v.tags.items())],
        }
        for key, value in (
            ("description", v.description),
            ("run_id", v.run_id),
            ("model_id", v.model_id),
            ("run_tracking_server_id", v.run_tracking_server_id),
            ("status_message", v.status_message),
        ):
            if value:
                body[key] = value
        return body


def _check_signature(version_dir: Path, label: str) -> None:
    mlmodel = version_dir / "MLmodel"
    if not mlmodel.is_file():
        raise Invalid(f"Model version {label} has no MLmodel file: upload the model's files before finalizing")
    try:
        meta = yaml.safe_load(mlmodel.read_text()) or {}
    except yaml.YAMLError as exc:
        raise Invalid(f"Model version {label}: MLmodel is not YAML: {exc}") from None
    signature = meta.get("signature") if isinstance(meta, dict) else None
    explanation = (
        "All models in the Unity Catalog must be logged with a model signature containing both input "
        "and output type specifications"
    )
    if not isinstance(signature, dict) or not signature.get("inputs"):
        raise Invalid(f"Model version {label} did not contain any signature metadata. {explanation}")
    if not signature.get("outputs"):
        raise Invalid(f"Model version {label} contains a signature that includes only inputs. {explanation}")


def _install_uc(double: Double) -> UnityCatalog:
    from mlflow.protos import databricks_uc_registry_messages_pb2 as uc_pb
    from mlflow.protos.databricks_uc_registry_service_pb2 import UcModelRegistryService
    from mlflow.utils.rest_utils import extract_all_api_info_for_service

    uc = UnityCatalog(double)
    handlers: dict[str, Any] = {}

    def handles(request_name: str) -> Any:
        def register(fn: Any) -> Any:
            handlers[request_name] = fn
            return fn

        return register

    def answer(response_name: str, body: dict[str, Any]) -> Response:
        return Response(200, _checked(getattr(uc_pb, response_name), body))

    # ----- registered models

    @handles("CreateRegisteredModelRequest")
    def create_registered_model(m: Any) -> Response:
        full = ".".join(_split_name(m.name))
        if full in uc.models:
            return error(400, "RESOURCE_ALREADY_EXISTS", f"Registered model '{full}' already exists.")
        model = _Model(full, description=m.description, deployment_job_id=m.deployment_job_id)
        model.tags = {t.key: t.value for t in m.tags}
        uc.models[full] = model
        return answer("CreateRegisteredModelResponse", {"registered_model": uc.model_json(model)})

    @handles("GetRegisteredModelRequest")
    def get_registered_model(m: Any) -> Response:
        return answer("GetRegisteredModelResponse", {"registered_model": uc.model_json(uc.model(m.name))})

    @handles("UpdateRegisteredModelRequest")
    def update_registered_model(m: Any) -> Response:
        model = uc.model(m.name)
        if m.HasField("new_name"):
            new = ".".join(_split_name(m.new_name))
            if new in uc.models:
                return error(400, "RESOURCE_ALREADY_EXISTS", f"Registered model '{new}' already exists.")
            raise Invalid("Renaming a registered model is not supported by this double")
        if m.HasField("description"):
            model.description = m.description
        if m.HasField("deployment_job_id"):
            model.deployment_job_id = m.deployment_job_id
        model.updated = _now()
        return answer("UpdateRegisteredModelResponse", {"registered_model": uc.model_json(model)})

    @handles("DeleteRegisteredModelRequest")
    def delete_registered_model(m: Any) -> Response:
        model = uc.model(m.name)
        del uc.models[model.name]
        catalog, schema, name = model.name.split(".")
        shutil.rmtree(double.file_path(f"/Models/{catalog}/{schema}/{name}"), ignore_errors=True)
        return answer("DeleteRegisteredModelResponse", {})

    @handles("SearchRegisteredModelsRequest")
    def search_registered_models(m: Any) -> Response:
        names = sorted(uc.models)
        page, token = _page(names, m)
        body: dict[str, Any] = {"registered_models": [uc.model_json(uc.models[n]) for n in page]}
        if token:
            body["next_page_token"] = token
        return answer("SearchRegisteredModelsResponse", body)

    @handles("SetRegisteredModelTagRequest")
    def set_registered_model_tag(m: Any) -> Response:
        model = uc.model(m.name)
        model.tags[m.key] = m.value
        return answer("SetRegisteredModelTagResponse", {})

    @handles("DeleteRegisteredModelTagRequest")
    def delete_registered_model_tag(m: Any) -> Response:
        model = uc.model(m.name)
        if m.key not in model.tags:
            raise NotFound(f"Tag '{m.key}' does not exist on registered model '{model.name}'.")
        del model.tags[m.key]
        return answer("DeleteRegisteredModelTagResponse", {})

    # ----- aliases

    @handles("SetRegisteredModelAliasRequest")
    def set_alias(m: Any) -> Response:
        alias = _alias_name(m.alias)
        found = uc.version(m.name, m.version)
        model = uc.models[found.name]
        model.aliases[alias] = found.version
        model.updated = _now()
        return answer("SetRegisteredModelAliasResponse", {})

    @handles("DeleteRegisteredModelAliasRequest")
    def delete_alias(m: Any) -> Response:
        alias = _alias_name(m.alias)
        model = uc.model(m.name)
        if alias not in model.aliases:
            raise NotFound(f"Alias '{alias}' does not exist on registered model '{model.name}'.")
        del model.aliases[alias]
        return answer("DeleteRegisteredModelAliasResponse", {})

    @handles("GetModelVersionByAliasRequest")
    def get_by_alias(m: Any) -> Response:
        alias = _alias_name(m.alias)
        model = uc.model(m.name)
        if alias not in model.aliases:
            raise NotFound(f"Alias '{alias}' does not exist on registered model '{model.name}'.")
        found = model.versions[model.aliases[alias]]
        return answer("GetModelVersionByAliasResponse", {"model_version": uc.version_json(found)})

    # ----- model versions

    @handles("CreateModelVersionRequest")
    def create_model_version(m: Any) -> Response:
        model = uc.model(m.name)
        number = model.next_version
        model.next_version += 1
        found = _Version(
            model.name,
            number,
            source=m.source,
            run_id=m.run_id,
            description=m.description,
            model_id=m.model_id,
            run_tracking_server_id=m.run_tracking_server_id,
        )
        found.tags = {t.key: t.value for t in m.tags}
        model.versions[number] = found
        uc.version_dir(model.name, number).mkdir(parents=True, exist_ok=True)
        return answer("CreateModelVersionResponse", {"model_version": uc.version_json(found)})

    @handles("FinalizeModelVersionRequest")
    def finalize(m: Any) -> Response:
        found = uc.version(m.name, m.version)
        if found.status != "PENDING_REGISTRATION":
            return error(
                400, "INVALID_STATE", f"Model version {found.name}/{found.version} is {found.status}, not pending"
            )
        _check_signature(uc.version_dir(found.name, found.version), f"{found.name}/{found.version}")
        found.status = "READY"
        found.updated = _now()
        return answer("FinalizeModelVersionResponse", {"model_version": uc.version_json(found)})

    @handles("GetModelVersionRequest")
    def get_model_version(m: Any) -> Response:
        return answer("GetModelVersionResponse", {"model_version": uc.version_json(uc.version(m.name, m.version))})

    @handles("UpdateModelVersionRequest")
    def update_model_version(m: Any) -> Response:
        found = uc.version(m.name, m.version)
        if m.HasField("description"):
            found.description = m.description
        found.updated = _now()
        return answer("UpdateModelVersionResponse", {"model_version": uc.version_json(found)})

    @handles("DeleteModelVersionRequest")
    def delete_model_version(m: Any) -> Response:
        found = uc.version(m.name, m.version)
        model = uc.models[found.name]
        del model.versions[found.version]
        model.aliases = {a: n for a, n in model.aliases.items() if n != found.version}
        shutil.rmtree(uc.version_dir(found.name, found.version), ignore_errors=True)
        return answer("DeleteModelVersionResponse", {})

    @handles("SearchModelVersionsRequest")
    def search_model_versions(m: Any) -> Response:
        wanted = m.filter.strip()
        versions = [v for model in uc.models.values() for v in model.versions.values()]
        if wanted:
            match = re.fullmatch(r"(name|run_id)\s*=\s*(['\"])(.*)\2", wanted)
            if not match:
                raise Invalid(
                    f"Unsupported filter {m.filter!r}: Unity Catalog searches model versions by "
                    "name = '<catalog.schema.model>' or run_id = '<run id>' only"
                )
            key, value = match[1], match[3]
            if key == "name":
                full = ".".join(_split_name(value))
                versions = [v for v in versions if v.name == full]
            else:
                versions = [v for v in versions if v.run_id == value]
        versions.sort(key=lambda v: (v.name, -v.version))
        page, token = _page(versions, m)
        body: dict[str, Any] = {"model_versions": [uc.version_json(v) for v in page]}
        if token:
            body["next_page_token"] = token
        return answer("SearchModelVersionsResponse", body)

    @handles("SetModelVersionTagRequest")
    def set_model_version_tag(m: Any) -> Response:
        found = uc.version(m.name, m.version)
        found.tags[m.key] = m.value
        return answer("SetModelVersionTagResponse", {})

    @handles("DeleteModelVersionTagRequest")
    def delete_model_version_tag(m: Any) -> Response:
        found = uc.version(m.name, m.version)
        if m.key not in found.tags:
            raise NotFound(f"Tag '{m.key}' does not exist on model version {found.name}/{found.version}.")
        del found.tags[m.key]
        return answer("DeleteModelVersionTagResponse", {})

    @handles("GetModelVersionDownloadUriRequest")
    def download_uri(m: Any) -> Response:
        found = uc.version(m.name, m.version)
        return answer(
            "GetModelVersionDownloadUriResponse", {"artifact_uri": uc.version_json(found)["storage_location"]}
        )

    @handles("GenerateTemporaryModelVersionCredentialsRequest")
    def temporary_credentials(m: Any) -> Response:
        found = uc.version(m.name, m.version)
        operation = uc_pb.ModelVersionOperation.Name(m.operation)
        if operation == "MODEL_VERSION_OPERATION_READ_WRITE" and found.status != "PENDING_REGISTRATION":
            return error(403, "PERMISSION_DENIED", f"Model version {found.name}/{found.version} is {found.status}")
        if operation == "MODEL_VERSION_OPERATION_UNSPECIFIED":
            raise Invalid("GenerateTemporaryModelVersionCredentialsRequest: operation is unspecified")
        body = {"credentials": {"storage_mode": "DEFAULT_STORAGE", "expiration_time": _now() + 3600_000}}
        return answer("GenerateTemporaryModelVersionCredentialsResponse", body)

    @handles("EmitModelVersionLineageRequest")
    def emit_lineage(m: Any) -> Response:
        uc.version(m.name, m.version)
        return answer("EmitModelVersionLineageResponse", {})

    @handles("IsDatabricksSdkModelsArtifactRepositoryEnabledRequest")
    def sdk_repo_enabled(m: Any) -> Response:
        body = {"is_databricks_sdk_models_artifact_repository_enabled": True}
        return answer("IsDatabricksSdkModelsArtifactRepositoryEnabledResponse", body)

    for request_cls, endpoints in extract_all_api_info_for_service(UcModelRegistryService, "/api/2.0").items():
        fn = handlers[request_cls.__name__]  # a UC method the double forgot fails at install
        for path, method in endpoints:

            def route(request: Request, cls: Any = request_cls, fn: Any = fn) -> Response:
                message = parse(cls, request)
                with double.lock:
                    result: Response = fn(message)
                return result

            double.route(method, re.escape(path))(route)
    return uc


def _page(items: list[Any], m: Any) -> tuple[list[Any], str]:
    # MLflow asks for 10000 model versions at once, which UC takes.
    size = m.max_results if m.HasField("max_results") and m.max_results else 100
    if size < 1:
        raise Invalid(f"max_results must be positive, got {size}")
    start = 0
    if m.page_token:
        if not m.page_token.isdigit() or int(m.page_token) > len(items):
            raise Invalid(f"Invalid page_token {m.page_token!r}")
        start = int(m.page_token)
    page = items[start : start + size]
    return page, str(start + size) if start + size < len(items) else ""


# ----- tracking: MLflow's own server handlers on a real store


def _template_db() -> Path:
    """A migrated, empty sqlite tracking database, made once per process (the migrations take seconds)."""
    with _STORE_LOCK:
        if "db" not in _TEMPLATE:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            folder = Path(tempfile.mkdtemp(prefix="mlci-double-mlflow-"))
            db = folder / "template.db"
            store = SqlAlchemyStore(f"sqlite:///{db}", (folder / "artifacts").as_uri())
            store.engine.dispose()
            _TEMPLATE["db"] = db
        return _TEMPLATE["db"]


_FLASK: dict[str, Any] = {}


def _flask_app() -> Any:
    with _STORE_LOCK:
        if "app" not in _FLASK:
            from flask import Flask
            from mlflow.protos.service_pb2 import MlflowService
            from mlflow.server import handlers

            app = Flask("mlci-databricks-double")
            for i, (path, view, methods) in enumerate(
                handlers.get_service_endpoints(MlflowService, handlers.get_handler)
            ):
                if path.startswith("/api/"):
                    app.add_url_rule(path, endpoint=f"e{i}", view_func=view, methods=methods)
            _FLASK["app"] = app
        return _FLASK["app"]


def _tracking_endpoints() -> list[tuple[str, str, type[Message]]]:
    """(HTTP method, path regex, request class) for every MlflowService endpoint; literal paths first."""
    from mlflow.protos import databricks_pb2
    from mlflow.protos.service_pb2 import MlflowService

    found = []
    for method in MlflowService.DESCRIPTOR.methods:
        request_cls = MlflowService().GetRequestClass(method)
        for endpoint in method.GetOptions().Extensions[databricks_pb2.rpc].endpoints:
            path = f"/api/{endpoint.since.major}.0{endpoint.path}"
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
            found.append((endpoint.method, regex, request_cls))
    found.sort(key=lambda item: "(?P<" in item[1])
    return found


_TRACKING_ROOT = "dbfs:/databricks/mlflow-tracking"


def _workspace_store(db: Path) -> Any:
    """A real SqlAlchemyStore whose artifact locations are a workspace's: experiments at
    dbfs:/databricks/mlflow-tracking/<id>, runs below them, logged models at .../logged_models/<id>/artifacts."""
    from mlflow.store.tracking.dbmodels.models import SqlLoggedModel
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    class WorkspaceTrackingStore(SqlAlchemyStore):  # type: ignore[misc]
        def create_logged_model(self, experiment_id: str, *args: Any, **kwargs: Any) -> Any:
            created = super().create_logged_model(experiment_id, *args, **kwargs)
            location = f"{_TRACKING_ROOT}/{experiment_id}/logged_models/{created.model_id}/artifacts"
            with self.ManagedSessionMaker(read_only=False) as session:
                session.query(SqlLoggedModel).filter(SqlLoggedModel.model_id == created.model_id).update(
                    {"artifact_location": location}
                )
            return self.get_logged_model(created.model_id)

    return WorkspaceTrackingStore(f"sqlite:///{db}", _TRACKING_ROOT)


def _install_tracking(double: Double) -> Any:
    from mlflow.server import handlers

    db = double.root / "mlflow.db"
    double.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template_db(), db)
    store = _workspace_store(db)
    client = _flask_app().test_client()

    def forward(request: Request, cls: type[Message]) -> Response:
        message = parse(cls, request, check_required=False)
        if cls.__name__ == "CreateExperiment" and not getattr(message, "name", "").startswith("/"):
            raise Invalid(
                f"Got an invalid experiment name '{getattr(message, 'name', '')}'. An experiment name must be an "
                "absolute path within the Databricks workspace, e.g. '/Users/<some-username>/my-experiment'."
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
        with _STORE_LOCK:
            previous, handlers._tracking_store = handlers._tracking_store, store
            try:
                answer = client.open(
                    request.path,
                    method=request.method,
                    query_string=urlencode(request.query, doseq=True),
                    data=request.raw,
                    headers=headers,
                )
            finally:
                handlers._tracking_store = previous
        if answer.status_code >= 500:  # MLflow's handler broke on what the double gave it: a double bug
            double.rejections.append(f"{request.method} {request.path}: tracking answered {answer.status_code}")
        content_type = answer.headers.get("Content-Type", "application/json")
        body: Any = answer.get_data()
        if "json" in content_type:
            body = answer.get_json(silent=True) if body else None
        else:
            headers_out = {"Content-Type": content_type}
            return Response(answer.status_code, body, {**headers_out, "X-Databricks-Org-Id": DOUBLE_WORKSPACE_ID})
        return Response(answer.status_code, body, {"X-Databricks-Org-Id": DOUBLE_WORKSPACE_ID})

    secret = secrets.token_hex(16)

    def signature(api_path: str) -> str:
        return hmac.new(secret.encode(), api_path.encode(), hashlib.sha256).hexdigest()[:32]

    def run_files_root(run_id: str) -> tuple[Any, str]:
        from mlflow.exceptions import MlflowException

        with _STORE_LOCK:
            try:
                run = store.get_run(run_id)
            except MlflowException:
                raise NotFound(f"Run '{run_id}' not found.") from None
        return run, f"/WorkspaceInternal/Mlflow/Artifacts/{run.info.experiment_id}/Runs/{run_id}/artifacts"

    def credentials(request: Request, cls: Any) -> Response:
        """Presigned URLs to the run's files (AWS_PRESIGNED_URL to the double's storage route), what
        MLflow's DatabricksArtifactRepository asks for when the Files API path fails."""
        message: Any = parse(cls, request)
        if not message.run_id:
            raise Invalid(f"{cls.__name__}: run_id is required")
        _, root = run_files_root(message.run_id)
        infos = []
        for relative in message.path:
            if any(part in ("", ".", "..") for part in relative.split("/")):
                raise Invalid(f"{cls.__name__}: bad path {relative!r}")
            api_path = f"{root}/{relative}"
            infos.append(
                {
                    "run_id": message.run_id,
                    "path": relative,
                    "signed_uri": f"{double.url}/storage{api_path}?sig={signature(api_path)}",
                    "type": "AWS_PRESIGNED_URL",
                }
            )
        return Response(200, _checked(cls.Response, {"credential_infos": infos}))

    @double.route("POST", re.escape("/api/2.0/mlflow/artifacts/credentials-for-read"))
    def credentials_for_read(request: Request) -> Response:
        from mlflow.protos.databricks_artifacts_pb2 import GetCredentialsForRead

        return credentials(request, GetCredentialsForRead)

    @double.route("POST", re.escape("/api/2.0/mlflow/artifacts/credentials-for-write"))
    def credentials_for_write(request: Request) -> Response:
        from mlflow.protos.databricks_artifacts_pb2 import GetCredentialsForWrite

        return credentials(request, GetCredentialsForWrite)

    def signed_target(request: Request) -> Path | Response:
        assert request.match is not None
        api_path = request.match["path"]
        if not hmac.compare_digest(request.arg("sig") or "", signature(api_path)):
            return Response(
                403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", {"Content-Type": "application/xml"}
            )
        return double.file_path(api_path)

    @double.route("GET", r"/storage(?P<path>/.+)", public=True)
    def storage_get(request: Request) -> Response:
        target = signed_target(request)
        if isinstance(target, Response):
            return target
        if not target.is_file():
            return Response(404, b"<Error><Code>NoSuchKey</Code></Error>", {"Content-Type": "application/xml"})
        return Response(200, target.read_bytes())

    @double.route("PUT", r"/storage(?P<path>/.+)", public=True)
    def storage_put(request: Request) -> Response:
        target = signed_target(request)
        if isinstance(target, Response):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(request.raw)
        return Response(200, b"")

    @double.route("GET", re.escape("/api/2.0/mlflow/artifacts/list"))
    def list_artifacts(request: Request) -> Response:
        """A workspace lists run artifacts from its own storage, which here is the Files API folder
        MLflow's SDK run-artifacts repository writes (the OSS handler cannot read dbfs:)."""
        from mlflow.protos.service_pb2 import ListArtifacts

        message: Any = parse(ListArtifacts, request, check_required=False)
        run_id = message.run_id or message.run_uuid
        if not run_id:
            raise Invalid("ListArtifacts: run_id is required")
        run, files_root = run_files_root(run_id)
        prefix = f"{_TRACKING_ROOT}/{run.info.experiment_id}/{run_id}/artifacts"
        if run.info.artifact_uri != prefix:
            raise Invalid(f"Run {run_id} has artifact location {run.info.artifact_uri}, not the workspace's")
        relative = message.path.strip("/")
        if any(part in (".", "..") for part in relative.split("/")):
            raise Invalid(f"ListArtifacts: bad path {message.path!r}")
        root = double.file_path(files_root)
        folder = root / relative if relative else root
        files = []
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                item: dict[str, Any] = {"path": entry.relative_to(root).as_posix(), "is_dir": entry.is_dir()}
                if entry.is_file():
                    item["file_size"] = entry.stat().st_size
                files.append(item)
        body = {"root_uri": prefix, "files": files}
        return Response(200, _checked(ListArtifacts.Response, body), {"X-Databricks-Org-Id": DOUBLE_WORKSPACE_ID})

    for method, regex, cls in _tracking_endpoints():

        def route(request: Request, cls: type[Message] = cls) -> Response:
            return forward(request, cls)

        double.route(method, regex)(route)
    return store


def install(double: Double) -> None:
    """The UC registry on `double.uc`, and MLflow tracking on `double.mlflow_store` (a SqlAlchemyStore)."""
    double.uc = _install_uc(double)  # type: ignore[attr-defined]
    double.mlflow_store = _install_tracking(double)  # type: ignore[attr-defined]
