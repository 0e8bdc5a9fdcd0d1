"""The routes databricks-sdk itself calls: host metadata, OIDC (OAuth M2M and GitHub token
federation) with a GitHub Actions ID-token service, current user, Jobs 2.2 and Model Serving.

Every request body is checked with strict.py against the SDK method that sends it, so a body
mlci builds wrong is a 400 (and a rejection the fixture fails on), as on a workspace.

Knobs a test sets on the double (all created by `install`):
- `host_metadata` (False): answer `/.well-known/databricks-config` (True) or 404 (False, a
  workspace without host metadata; SDK 0.162 then finds no OIDC discovery URL unless
  DATABRICKS_DISCOVERY_URL is set).
- `service_principals` {client_id: secret}: OAuth M2M clients.
- `federation` {client_id: expected GitHub `sub`}: the service principals' federation policies.
- `github_request_token`, `github_subject`: what the fake runner's ID-token service takes/issues.
- `ready_after_polls` (2): GETs a serving config update stays IN_PROGRESS.
- `failing_versions` {(uc model, version)}: an update serving one ends UPDATE_FAILED.
- `broken_query_versions` {(uc model, version)}: queries to it answer 500.
- `uc`: an object with `version_dir(name, version) -> Path` (helper double-mlflow's registry).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from databricks.sdk.service import iam, jobs, serving

from . import executor
from .server import Double, Invalid, NotFound, Request, Response, error
from .strict import problems, require_valid

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
PAT_USER = "ci@example.com"


# ----- small helpers


def _query(request: Request, method: Any, names: dict[str, type]) -> dict[str, Any]:
    """The query string checked against the SDK method's query parameters (`names`: name ->
    int/str/bool; the first of them, if it has no default in `method`, is required)."""
    import inspect

    signature = inspect.signature(method).parameters
    out: dict[str, Any] = {}
    bad: list[str] = []
    for key, values in request.query.items():
        if key not in names:
            bad.append(f"?{key}: unknown query parameter of {method.__qualname__}")
            continue
        value = values[-1]
        kind = names[key]
        if kind is int:
            try:
                out[key] = int(value)
            except ValueError:
                bad.append(f"?{key}: expected int, got {value!r}")
        elif kind is bool:
            if value not in ("true", "false"):
                bad.append(f"?{key}: expected true/false, got {value!r}")
            out[key] = value == "true"
        else:
            out[key] = value
    for name in names:
        parameter = signature.get(name)
        if parameter is not None and parameter.default is inspect.Parameter.empty and name not in out:
            bad.append(f"?{name}: required by {method.__qualname__}")
    if bad:
        raise Invalid("; ".join(bad))
    return out


def _form(request: Request) -> dict[str, str]:
    content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise Invalid(f"the token endpoint takes application/x-www-form-urlencoded, got {content_type or 'nothing'}")
    return {k: v[-1] for k, v in parse_qs(request.raw.decode()).items()}


def _oauth_error(status: int, code: str, description: str) -> Response:
    return Response(status, {"error": code, "error_description": description})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Workspace:
    """The double's Jobs and Serving state; one per double (`double.workspace`)."""

    def __init__(self, double: Double) -> None:
        self.double = double
        self.ids = iter(range(1000, 10**9))
        self.jobs: dict[int, dict[str, Any]] = {}
        self.runs: dict[int, executor.JobRun] = {}
        self.task_runs: dict[int, tuple[executor.JobRun, executor.TaskRun]] = {}
        self.idempotency: dict[str, int] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.principals: dict[str, str] = {}  # access token -> user name / application id
        self.signing_key = secrets.token_bytes(32)
        self.scorer: subprocess.Popen[str] | None = None
        self.scorer_lock = threading.Lock()

    def next_id(self) -> int:
        return next(self.ids)

    def issue(self, principal: str, prefix: str = "dsp") -> str:
        token = f"{prefix}-{secrets.token_hex(16)}"
        self.principals[token] = principal
        self.double.tokens.add(token)
        return token

    # ----- GitHub ID tokens (HS256-signed by the double; the token endpoint verifies them)

    def id_token(self, audience: str) -> str:
        now = int(time.time())
        subject = self.double.github_subject  # type: ignore[attr-defined]
        claims = {
            "iss": GITHUB_ISSUER,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "repository": subject.split(":")[1] if subject.count(":") >= 2 else "",
            "runner_environment": "github-hosted",
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims).encode())
        signature = _b64(hmac.new(self.signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"

    def verify(self, token: str) -> dict[str, Any] | str:
        """The claims of a JWT the double's ID-token service issued, or why it is refused."""
        parts = token.split(".")
        if len(parts) != 3:
            return "subject_token is not a JWT"
        expected = _b64(hmac.new(self.signing_key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return "subject_token signature does not verify against the issuer's keys"
        claims: dict[str, Any] = json.loads(_unb64(parts[1]))
        if claims.get("exp", 0) < time.time():
            return "subject_token has expired"
        return claims

    # ----- scoring: one long-lived subprocess that loads each model folder once

    def score(self, model_dir: Path, body: bytes) -> tuple[int, str]:
        with self.scorer_lock:
            if self.scorer is None or self.scorer.poll() is not None:
                self.scorer = subprocess.Popen(
                    [sys.executable, "-c", _SCORER],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env={**executor._task_environment(self.double, "none"), "PYTHONPATH": ""},
                )
            assert self.scorer.stdin is not None and self.scorer.stdout is not None
            self.scorer.stdin.write(json.dumps({"dir": str(model_dir), "body": body.decode()}) + "\n")
            self.scorer.stdin.flush()
            line = self.scorer.stdout.readline()
        if not line:
            return 500, json.dumps({"error_code": "INTERNAL_ERROR", "message": "the model server exited"})
        answer = json.loads(line)
        return int(answer["status"]), str(answer["response"])

    def stop(self) -> None:
        for run in self.runs.values():
            executor.cancel(run)
        if self.scorer is not None and self.scorer.poll() is None:
            self.scorer.kill()
            self.scorer.wait()


# MLflow's own scoring server logic (mlflow.pyfunc.scoring_server.invocations) on each request.
_SCORER = r"""
import json, sys
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import load_model
from mlflow.pyfunc.scoring_server import invocations
models = {}
for line in sys.stdin:
    request = json.loads(line)
    try:
        model = models.get(request["dir"])
        if model is None:
            model = models[request["dir"]] = load_model(request["dir"])
        result = invocations(request["body"], "application/json", model, model.metadata.get_input_schema())
        answer = {"status": result.status, "response": result.response}
    except MlflowException as exc:
        answer = {"status": exc.get_http_status_code(), "response": exc.serialize_as_json()}
    except Exception as exc:
        answer = {"status": 500, "response": json.dumps({"error_code": "INTERNAL_ERROR", "message": repr(exc)})}
    print(json.dumps(answer), flush=True)
"""


def install(double: Double) -> None:
    ws = Workspace(double)
    knobs: dict[str, Any] = {
        "workspace": ws,
        "host_metadata": False,
        "workspace_id": "1234567890123456",
        "service_principals": {},
        "federation": {},
        "github_request_token": secrets.token_hex(12),
        "github_subject": "repo:acme/churn:ref:refs/heads/main",
        "ready_after_polls": 2,
        "failing_versions": set(),
        "broken_query_versions": set(),
    }
    for name, value in knobs.items():
        setattr(double, name, value)
    if not hasattr(double, "uc"):
        double.uc = None  # type: ignore[attr-defined]
    _install_auth(double, ws)
    _install_jobs(double, ws)
    _install_serving(double, ws)


def _principal(double: Double, request: Request) -> str:
    header = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
    token = header.partition(" ")[2]
    ws: Workspace = double.workspace  # type: ignore[attr-defined]
    return ws.principals.get(token, PAT_USER)


# ----- host metadata, OIDC, GitHub ID tokens, current user


def _install_auth(double: Double, ws: Workspace) -> None:
    knob: Any = double

    @double.route("GET", r"/\.well-known/databricks-config", public=True)
    def host_metadata(request: Request) -> Response:
        if not knob.host_metadata:
            return error(404, "NOT_FOUND", "Not Found")
        return Response(200, {"oidc_endpoint": f"{double.url}/oidc", "workspace_id": knob.workspace_id, "cloud": "AWS"})

    @double.route("GET", r"/oidc/\.well-known/oauth-authorization-server", public=True)
    def discovery(request: Request) -> Response:
        base = f"{double.url}/oidc"
        return Response(
            200,
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/v1/authorize",
                "token_endpoint": f"{base}/v1/token",
                "jwks_uri": f"{base}/jwks.json",
                "grant_types_supported": [
                    "client_credentials",
                    "authorization_code",
                    "refresh_token",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ],
                "response_types_supported": ["code"],
                "scopes_supported": ["all-apis", "offline_access", "openid", "profile", "email"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            },
        )

    @double.route("POST", r"/oidc/v1/token", public=True)
    def token(request: Request) -> Response:
        form = _form(request)
        grant = form.get("grant_type")
        scope = form.get("scope", "")
        if "all-apis" not in scope.split():
            raise Invalid(f"scope must include all-apis, got {scope!r}")
        if grant == "client_credentials":
            return _client_credentials(request, form)
        if grant == "urn:ietf:params:oauth:grant-type:token-exchange":
            return _token_exchange(form)
        raise Invalid(f"unsupported grant_type {grant!r}")

    def _client_credentials(request: Request, form: dict[str, str]) -> Response:
        header = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            client_id, _, secret = base64.b64decode(value).decode().partition(":")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not client_id or knob.service_principals.get(client_id) != secret:
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        return _issued(ws.issue(client_id), form)

    def _token_exchange(form: dict[str, str]) -> Response:
        if form.get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt":
            raise Invalid(
                "subject_token_type must be urn:ietf:params:oauth:token-type:jwt, "
                f"got {form.get('subject_token_type')!r}"
            )
        client_id = form.get("client_id", "")
        if "client_secret" in form:
            raise Invalid("token federation takes no client_secret")
        policy = knob.federation.get(client_id)
        if policy is None:
            return _oauth_error(401, "invalid_client", f"no federation policy for client {client_id!r}")
        claims = ws.verify(form.get("subject_token", ""))
        if isinstance(claims, str):
            return _oauth_error(400, "invalid_grant", claims)
        audience = f"{double.url}/oidc/v1/token"
        if claims.get("iss") != GITHUB_ISSUER:
            return _oauth_error(400, "invalid_grant", f"issuer {claims.get('iss')!r} is not in the federation policy")
        if claims.get("aud") != audience:
            return _oauth_error(400, "invalid_grant", f"audience {claims.get('aud')!r} is not {audience!r}")
        if claims.get("sub") != policy:
            return _oauth_error(
                400, "invalid_grant", f"subject {claims.get('sub')!r} does not match the federation policy"
            )
        return _issued(ws.issue(client_id), form)

    def _issued(access_token: str, form: dict[str, str]) -> Response:
        return Response(
            200, {"access_token": access_token, "token_type": "Bearer", "expires_in": 3600, "scope": form.get("scope")}
        )

    @double.route("GET", r"/github-actions/idtoken", public=True)
    def github_id_token(request: Request) -> Response:
        header = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or value != knob.github_request_token:
            return Response(401, {"message": "Bad credentials"})
        audience = request.arg("audience")
        if not audience:
            audience = f"https://github.com/{knob.github_subject.split(':')[1].split('/')[0]}"
        return Response(200, {"count": 1, "value": ws.id_token(audience)})

    @double.route("GET", r"/api/2\.0/preview/scim/v2/Me")
    def me(request: Request) -> Response:
        _query(request, iam.CurrentUserAPI.me, {"attributes": str, "excludedAttributes": str})
        name = _principal(double, request)
        user: dict[str, Any] = {
            "id": str(abs(hash(name)) % 10**15),
            "userName": name,
            "displayName": name.split("@")[0],
            "active": True,
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        }
        if "@" in name:
            user["emails"] = [{"value": name, "type": "work", "primary": True}]
        return Response(200, user)


# ----- Jobs 2.2


def _install_jobs(double: Double, ws: Workspace) -> None:
    def check_tasks(body: dict[str, Any]) -> None:
        environments = {e["environment_key"] for e in body.get("environments", [])}
        clusters = {c["job_cluster_key"] for c in body.get("job_clusters", [])}
        keys: list[str] = [t["task_key"] for t in body.get("tasks", [])]
        bad = [f"task_key {k!r} is not unique" for k in sorted({k for k in keys if keys.count(k) > 1})]
        if not keys:
            bad.append("at least one task is required")
        for task in body.get("tasks", []):
            where = f"task {task['task_key']!r}"
            if "environment_key" in task and task["environment_key"] not in environments:
                bad.append(f"{where}: environment_key {task['environment_key']!r} is not among the job's environments")
            if "job_cluster_key" in task and task["job_cluster_key"] not in clusters:
                bad.append(f"{where}: job_cluster_key {task['job_cluster_key']!r} is not among the job's job_clusters")
            compute = [
                k for k in ("environment_key", "new_cluster", "existing_cluster_id", "job_cluster_key") if k in task
            ]
            if len(compute) > 1:
                bad.append(
                    f"{where}: takes one of environment_key, new_cluster, existing_cluster_id, job_cluster_key, "
                    f"got {compute}"
                )
            if "libraries" in task and "environment_key" in task:
                bad.append(f"{where}: libraries are not supported on serverless compute; list them in the environment")
            if "python_wheel_task" in task and not compute:
                bad.append(f"{where}: a python_wheel_task on serverless compute needs an environment_key")
            kinds = [k for k in ("python_wheel_task", "condition_task", "run_job_task") if k in task]
            if len(kinds) != 1:
                bad.append(
                    f"{where}: the double takes one of python_wheel_task, condition_task, run_job_task, got {kinds}"
                )
            if ("condition_task" in task or "run_job_task" in task) and compute:
                bad.append(f"{where}: a {kinds[0]} runs on no compute, got {compute}")
            if "run_job_task" in task and task["run_job_task"]["job_id"] not in ws.jobs:
                bad.append(f"{where}: run_job_task.job_id {task['run_job_task']['job_id']} is no job of the workspace")
            for dependency in task.get("depends_on", []):
                upstream = next((t for t in body["tasks"] if t["task_key"] == dependency["task_key"]), None)
                if upstream is None:
                    bad.append(f"{where}: depends on {dependency['task_key']!r}, which is no task of the job")
                elif "outcome" in dependency and (
                    "condition_task" not in upstream or dependency["outcome"] not in ("true", "false")
                ):
                    bad.append(f"{where}: outcome {dependency['outcome']!r} needs a condition task and true/false")
            condition = task.get("condition_task")
            for operand in (condition["left"], condition["right"]) if condition else ():
                for ref in re.findall(r"\{\{tasks\.([^.}]+)\.values\.[^}]+\}\}", operand):
                    if ref not in keys:
                        bad.append(f"{where}: {operand!r} reads a value of {ref!r}, which is no task of the job")
        if bad:
            raise Invalid("; ".join(bad))

    def new_run(
        body: dict[str, Any], job_id: int, run_type: str, parameters: dict[str, str], number: int = 1
    ) -> executor.JobRun:
        environments = {e["environment_key"]: e.get("spec", {}) for e in body.get("environments", [])}
        run_id = ws.next_id()
        tasks = []
        for spec in body["tasks"]:
            if "python_wheel_task" not in spec:
                raise Invalid(f"task {spec['task_key']!r}: the double runs python_wheel_task tasks only")
            task = json.loads(json.dumps(spec))
            wheel = task["python_wheel_task"]
            wheel["parameters"] = [executor.resolve(p, parameters) for p in wheel.get("parameters", [])]
            if "environment_key" in task:
                dependencies = list(environments[task["environment_key"]].get("dependencies", []))
            else:
                dependencies = []
                for library in task.get("libraries", []):
                    if "whl" in library:
                        dependencies.append(library["whl"])
                    elif "pypi" in library:
                        dependencies.append(library["pypi"]["package"])
                    else:
                        raise Invalid(f"task {task['task_key']!r}: the double installs whl and pypi libraries only")
            tasks.append(executor.TaskRun(ws.next_id(), task, dependencies, int(task.get("timeout_seconds", 0))))
        run = executor.JobRun(
            run_id,
            job_id,
            body.get("run_name") or body.get("name") or "Untitled",
            run_type,
            tasks,
            int(body.get("timeout_seconds", 0)),
            parameters,
            number,
        )
        ws.runs[run_id] = run
        for task_run in tasks:
            ws.task_runs[task_run.run_id] = (run, task_run)
        executor.start(double, run, ws.issue(PAT_USER, "dapi-task"))
        return run

    @double.route("POST", r"/api/2\.2/jobs/runs/submit")
    def submit(request: Request) -> Response:
        body = require_valid(jobs.JobsAPI.submit, request.json())
        check_tasks(body)
        token = body.get("idempotency_token")
        if token is not None and len(token) > 64:
            raise Invalid("idempotency_token must have at most 64 characters")
        with double.lock:
            if token is not None and token in ws.idempotency:
                return Response(200, {"run_id": ws.idempotency[token]})
            run = new_run(body, ws.next_id(), "SUBMIT_RUN", {})
            if token is not None:
                ws.idempotency[token] = run.run_id
        return Response(200, {"run_id": run.run_id})

    def life(run: executor.JobRun, observe: bool) -> str:
        if "PENDING" not in run.seen and not run.cancelled:
            state = "PENDING"
        elif run.done and ("RUNNING" in run.seen or run.cancelled):
            state = "TERMINATED"
        else:
            state = "RUNNING"
        if observe:
            run.seen.add(state)
        return state

    def page_url(run: executor.JobRun) -> str:
        return f"{double.url}/#job/{run.job_id}/run/{run.run_id}"

    def state(
        life_cycle: str, result: str | None, code: str | None, message: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        st: dict[str, Any] = {"life_cycle_state": life_cycle, "state_message": message}
        status: dict[str, Any] = {"state": life_cycle}
        if life_cycle == "TERMINATED" and result is not None:
            st["result_state"] = result
            st["user_cancelled_or_timedout"] = result in ("CANCELED", "TIMEDOUT")
            kind = "SUCCESS" if result == "SUCCESS" else "CLIENT_ERROR"
            status["termination_details"] = {"code": code, "type": kind, "message": message}
        return st, status

    def task_view(run: executor.JobRun, task: executor.TaskRun, run_life: str) -> dict[str, Any]:
        if run_life == "PENDING" or task.started is None:
            task_life = "PENDING"
        elif task.result is not None and run_life == "TERMINATED":
            task_life = "TERMINATED"
        else:
            task_life = "RUNNING"
        st, status = state(task_life, task.result, task.code, task.message)
        view = {k: v for k, v in task.task.items() if k in _RUN_TASK_FIELDS}
        view.update(
            run_id=task.run_id,
            state=st,
            status=status,
            attempt_number=0,
            run_page_url=f"{double.url}/#job/{run.job_id}/run/{task.run_id}",
        )
        if task.started is not None and task_life != "PENDING":
            view["start_time"] = task.started
        if task.ended is not None and task_life == "TERMINATED":
            view["end_time"] = task.ended
            view["execution_duration"] = task.ended - (task.started or task.ended)
        return view

    def run_view(run: executor.JobRun, observe: bool) -> dict[str, Any]:
        run_life = life(run, observe)
        st, status = state(run_life, run.result, run.code, run.message)
        view: dict[str, Any] = {
            "run_id": run.run_id,
            "job_id": run.job_id,
            "number_in_job": run.number_in_job,
            "run_name": run.run_name,
            "run_type": run.run_type,
            "creator_user_name": PAT_USER,
            "attempt_number": 0,
            "start_time": run.created,
            "setup_duration": 0,
            "cleanup_duration": 0,
            "run_page_url": page_url(run),
            "state": st,
            "status": status,
            "tasks": [task_view(run, t, run_life) for t in run.tasks],
        }
        if run.job_parameters:
            view["job_parameters"] = [{"name": k, "value": v} for k, v in run.job_parameters.items()]
        if run_life == "TERMINATED" and run.ended is not None:
            view["end_time"] = run.ended
            view["run_duration"] = view["execution_duration"] = run.ended - run.created
        return view

    @double.route("GET", r"/api/2\.2/jobs/runs/get")
    def get_run(request: Request) -> Response:
        query = _query(
            request,
            jobs.JobsAPI.get_run,
            {"run_id": int, "include_history": bool, "include_resolved_values": bool, "page_token": str},
        )
        with double.lock:
            if query["run_id"] in ws.runs:
                return Response(200, run_view(ws.runs[query["run_id"]], observe=True))
            if query["run_id"] in ws.task_runs:
                run, task = ws.task_runs[query["run_id"]]
                return Response(200, task_view(run, task, life(run, observe=False)))
        raise NotFound(f"Run {query['run_id']} does not exist.")

    @double.route("GET", r"/api/2\.2/jobs/runs/get-output")
    def get_output(request: Request) -> Response:
        query = _query(request, jobs.JobsAPI.get_run_output, {"run_id": int})
        with double.lock:
            if query["run_id"] in ws.runs and query["run_id"] not in ws.task_runs:
                raise Invalid(
                    "Retrieving the output of runs with multiple tasks is not supported. Please retrieve the output "
                    f"of each individual task run instead (run {query['run_id']} is a job run, not a task run)."
                )
            if query["run_id"] not in ws.task_runs:
                raise NotFound(f"Run {query['run_id']} does not exist.")
            run, task = ws.task_runs[query["run_id"]]
            output: dict[str, Any] = {"metadata": task_view(run, task, life(run, observe=False))}
            if task.ended is not None:
                output["logs"] = task.stdout
                output["logs_truncated"] = False
                if task.result not in ("SUCCESS", None):
                    output["error"] = task.message
                    if task.stderr:
                        output["error_trace"] = executor.error_trace(task)
        return Response(200, output)

    @double.route("POST", r"/api/2\.2/jobs/runs/cancel")
    def cancel_run(request: Request) -> Response:
        body = require_valid(jobs.JobsAPI.cancel_run, request.json())
        run = ws.runs.get(body["run_id"])
        if run is None:
            raise NotFound(f"Run {body['run_id']} does not exist.")
        if not run.done:
            executor.cancel(run)
        return Response(200, {})

    def job_view(job_id: int, expand: bool = True) -> dict[str, Any]:
        job = ws.jobs[job_id]
        settings = dict(job["settings"])
        if not expand:
            settings.pop("tasks", None)
            settings.pop("job_clusters", None)
        return {
            "job_id": job_id,
            "creator_user_name": job["creator"],
            "run_as_user_name": job["creator"],
            "created_time": job["created"],
            "settings": settings,
        }

    def job_or_404(job_id: int) -> dict[str, Any]:
        if job_id not in ws.jobs:
            raise NotFound(f"Job {job_id} does not exist.", "INVALID_PARAMETER_VALUE")
        return ws.jobs[job_id]

    def settings_defaults(settings: dict[str, Any]) -> dict[str, Any]:
        settings = {k: v for k, v in settings.items() if k != "access_control_list"}
        settings.setdefault("name", "Untitled")
        settings.setdefault("max_concurrent_runs", 1)
        settings.setdefault("timeout_seconds", 0)
        settings.setdefault("format", "MULTI_TASK")
        settings.setdefault("email_notifications", {})
        return settings

    @double.route("POST", r"/api/2\.2/jobs/create")
    def create_job(request: Request) -> Response:
        body = require_valid(jobs.JobsAPI.create, request.json())
        check_tasks(body)
        with double.lock:
            job_id = ws.next_id()
            ws.jobs[job_id] = {
                "settings": settings_defaults(body),
                "creator": _principal(double, request),
                "created": executor.now_ms(),
                "runs": 0,
            }
        return Response(200, {"job_id": job_id})

    @double.route("POST", r"/api/2\.2/jobs/reset")
    def reset_job(request: Request) -> Response:
        body = require_valid(jobs.JobsAPI.reset, request.json())
        job = job_or_404(body["job_id"])
        check_tasks(body["new_settings"])
        job["settings"] = settings_defaults(body["new_settings"])
        return Response(200, {})

    @double.route("GET", r"/api/2\.2/jobs/get")
    def get_job(request: Request) -> Response:
        query = _query(request, jobs.JobsAPI.get, {"job_id": int, "page_token": str})
        job_or_404(query["job_id"])
        return Response(200, job_view(query["job_id"]))

    @double.route("GET", r"/api/2\.2/jobs/list")
    def list_jobs(request: Request) -> Response:
        query = _query(
            request,
            jobs.JobsAPI.list,
            {"expand_tasks": bool, "limit": int, "name": str, "offset": int, "page_token": str},
        )
        if not 0 < query.get("limit", 20) <= 100:
            raise Invalid(f"?limit: must be between 1 and 100, got {query['limit']}")
        found = [
            job_view(job_id, query.get("expand_tasks", False))
            for job_id, job in sorted(ws.jobs.items())
            if "name" not in query or job["settings"].get("name") == query["name"]
        ]
        offset = int(query.get("page_token") or query.get("offset") or 0)
        limit = query.get("limit", 20)
        page = found[offset : offset + limit]
        answer: dict[str, Any] = {"has_more": offset + limit < len(found)}
        if page:
            answer["jobs"] = page
        if answer["has_more"]:
            answer["next_page_token"] = str(offset + limit)
        return Response(200, answer)

    @double.route("POST", r"/api/2\.2/jobs/delete")
    def delete_job(request: Request) -> Response:
        body = require_valid(jobs.JobsAPI.delete, request.json())
        job_or_404(body["job_id"])
        del ws.jobs[body["job_id"]]
        return Response(200, {})

    @double.route("POST", r"/api/2\.2/jobs/run-now")
    def run_now(request: Request) -> Response:
        body = require_valid(jobs.JobsAPI.run_now, request.json())
        unsupported = sorted(
            set(body) - {"job_id", "job_parameters", "idempotency_token", "queue", "performance_target"}
        )
        if unsupported:
            raise Invalid(
                f"the double's run-now takes job_id, job_parameters and idempotency_token only, got {unsupported}"
            )
        with double.lock:
            job = job_or_404(body["job_id"])
            token = body.get("idempotency_token")
            if token is not None and token in ws.idempotency:
                existing = ws.runs[ws.idempotency[token]]
                return Response(200, {"run_id": existing.run_id, "number_in_job": existing.number_in_job})
            settings = job["settings"]
            defined = {p["name"]: p.get("default", "") for p in settings.get("parameters", [])}
            given = body.get("job_parameters", {})
            unknown = sorted(set(given) - set(defined))
            if unknown:
                raise Invalid(f"job_parameters {unknown} are not defined by job {body['job_id']}")
            job["runs"] += 1
            run = new_run(settings, body["job_id"], "JOB_RUN", {**defined, **given}, job["runs"])
            if token is not None:
                ws.idempotency[token] = run.run_id
        return Response(200, {"run_id": run.run_id, "number_in_job": run.number_in_job})


_RUN_TASK_FIELDS = {f for f in jobs.RunTask.__dataclass_fields__} - {
    "run_id",
    "state",
    "status",
    "start_time",
    "end_time",
    "attempt_number",
    "run_page_url",
}


# ----- Model Serving


def _install_serving(double: Double, ws: Workspace) -> None:
    knob: Any = double

    def entity_name(entity: dict[str, Any]) -> str:
        return str(entity.get("name") or f"{entity['entity_name'].split('.')[-1]}-{entity['entity_version']}")

    def output_config(config: dict[str, Any], version: int) -> dict[str, Any]:
        """The EndpointCoreConfigOutput a workspace shows for an accepted input config."""
        entities = []
        for entity in config.get("served_entities", []):
            shown = dict(entity, name=entity_name(entity))
            shown.update(
                state={"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""},
                creator=PAT_USER,
                creation_timestamp=executor.now_ms(),
            )
            entities.append(shown)
        out: dict[str, Any] = {"served_entities": entities, "config_version": version}
        if "traffic_config" in config:
            out["traffic_config"] = config["traffic_config"]
        elif len(entities) == 1:
            out["traffic_config"] = {
                "routes": [
                    {
                        "served_model_name": entities[0]["name"],
                        "served_entity_name": entities[0]["name"],
                        "traffic_percentage": 100,
                    }
                ]
            }
        if "auto_capture_config" in config:
            out["auto_capture_config"] = config["auto_capture_config"]
        return out

    def check_config(config: dict[str, Any]) -> None:
        entities = config.get("served_entities", [])
        if config.get("served_models"):
            raise Invalid("served_models is deprecated; the double takes served_entities")
        if not entities:
            raise Invalid("config.served_entities: at least one served entity is required")
        bad = []
        names = [entity_name(e) for e in entities]
        for e in entities:
            for key in ("entity_name", "entity_version"):
                if key not in e:
                    bad.append(f"served entity {entity_name(e) if key != 'entity_name' else '?'}: {key} is required")
            sized = (
                "workload_size",
                "min_provisioned_concurrency",
                "min_provisioned_throughput",
                "provisioned_model_units",
            )
            if not any(k in e for k in sized):
                bad.append(f"served entity {e.get('entity_name')}: workload_size is required")
            if e.get("workload_size") not in (None, "Small", "Medium", "Large"):
                bad.append(
                    f"served entity {e.get('entity_name')}: workload_size {e['workload_size']!r} "
                    "is not Small, Medium or Large"
                )
        if len(set(names)) != len(names):
            bad.append(f"served entity names are not unique: {names}")
        routes = config.get("traffic_config", {}).get("routes")
        if routes is None and len(entities) > 1:
            bad.append("traffic_config is required when more than one entity is served")
        for route in routes or []:
            target = route.get("served_entity_name") or route.get("served_model_name")
            if target not in names:
                bad.append(f"traffic route to {target!r}: no served entity has that name (served: {names})")
        if routes is not None and sum(r["traffic_percentage"] for r in routes) != 100:
            bad.append(f"traffic percentages sum to {sum(r['traffic_percentage'] for r in routes)}, not 100")
        if bad:
            raise Invalid("; ".join(bad))
        if knob.uc is not None:
            for e in entities:
                if "entity_name" in e and "entity_version" in e:
                    folder = _version_dir(knob.uc, e["entity_name"], e["entity_version"])
                    if folder is None:
                        raise NotFound(f"Model version {e['entity_version']} of {e['entity_name']} does not exist.")

    def endpoint_or_404(name: str) -> dict[str, Any]:
        if name not in ws.endpoints:
            raise NotFound(f"Endpoint with name '{name}' does not exist.")
        return ws.endpoints[name]

    def begin_update(endpoint: dict[str, Any], config: dict[str, Any]) -> None:
        if endpoint["state"]["config_update"] == "IN_PROGRESS":
            raise Invalid(f"Endpoint {endpoint['name']} is currently updating; wait for the update to finish")
        endpoint["version"] += 1
        endpoint["pending"] = dict(output_config(config, endpoint["version"]), start_time=executor.now_ms())
        endpoint["polls_left"] = knob.ready_after_polls
        endpoint["state"]["config_update"] = "IN_PROGRESS"
        endpoint["last_updated_timestamp"] = executor.now_ms()

    def advance(endpoint: dict[str, Any]) -> None:
        """One GET of an updating endpoint; after `ready_after_polls` of them the update is over."""
        if endpoint["pending"] is None:
            return
        if endpoint["polls_left"] > 0:
            endpoint["polls_left"] -= 1
            return
        pending = endpoint.pop("pending")
        endpoint["pending"] = None
        served = {(e["entity_name"], str(e["entity_version"])) for e in pending["served_entities"]}
        if served & set(knob.failing_versions):
            endpoint["state"]["config_update"] = "UPDATE_FAILED"
            return
        pending.pop("start_time", None)
        endpoint["config"] = pending
        endpoint["state"] = {"config_update": "NOT_UPDATING", "ready": "READY"}

    def endpoint_view(endpoint: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in endpoint.items() if k in _ENDPOINT_FIELDS and v is not None}
        view["state"] = dict(endpoint["state"])
        if endpoint["pending"] is not None:
            view["pending_config"] = endpoint["pending"]
        view["endpoint_url"] = f"{double.url}/serving-endpoints/{endpoint['name']}/invocations"
        return view

    @double.route("POST", r"/api/2\.0/serving-endpoints")
    def create(request: Request) -> Response:
        body = require_valid(serving.ServingEndpointsAPI.create, request.json())
        name = body["name"]
        if "config" in body:
            check_config(body["config"])
        with double.lock:
            if name in ws.endpoints:
                return error(400, "RESOURCE_ALREADY_EXISTS", f"Endpoint with name '{name}' already exists.")
            endpoint: dict[str, Any] = {
                "name": name,
                "id": secrets.token_hex(16),
                "creator": _principal(double, request),
                "creation_timestamp": executor.now_ms(),
                "last_updated_timestamp": executor.now_ms(),
                "permission_level": "CAN_MANAGE",
                "route_optimized": body.get("route_optimized", False),
                "tags": body.get("tags"),
                "ai_gateway": body.get("ai_gateway"),
                "description": body.get("description"),
                "config": None,
                "pending": None,
                "version": 0,
                "polls_left": 0,
                "state": {"config_update": "NOT_UPDATING", "ready": "NOT_READY"},
            }
            ws.endpoints[name] = endpoint
            if "config" in body:
                begin_update(endpoint, body["config"])
            return Response(200, endpoint_view(endpoint))

    @double.route("GET", r"/api/2\.0/serving-endpoints")
    def list_endpoints(request: Request) -> Response:
        _query(request, serving.ServingEndpointsAPI.list, {})
        with double.lock:
            return Response(200, {"endpoints": [endpoint_view(e) for e in ws.endpoints.values()]})

    @double.route("GET", r"/api/2\.0/serving-endpoints/(?P<name>[^/]+)")
    def get(request: Request) -> Response:
        _query(request, serving.ServingEndpointsAPI.get, {})
        assert request.match is not None
        with double.lock:
            endpoint = endpoint_or_404(request.match["name"])
            advance(endpoint)
            return Response(200, endpoint_view(endpoint))

    @double.route("PUT", r"/api/2\.0/serving-endpoints/(?P<name>[^/]+)/config")
    def update_config(request: Request) -> Response:
        body = require_valid(serving.ServingEndpointsAPI.update_config, request.json(), path_params=["name"])
        assert request.match is not None
        check_config(body)
        with double.lock:
            endpoint = endpoint_or_404(request.match["name"])
            begin_update(endpoint, body)
            return Response(200, endpoint_view(endpoint))

    @double.route("PUT", r"/api/2\.0/serving-endpoints/(?P<name>[^/]+)/ai-gateway")
    def put_ai_gateway(request: Request) -> Response:
        body = require_valid(serving.ServingEndpointsAPI.put_ai_gateway, request.json(), path_params=["name"])
        assert request.match is not None
        table = body.get("inference_table_config")
        if table is not None and table.get("enabled") and not (table.get("catalog_name") and table.get("schema_name")):
            raise Invalid("inference_table_config: catalog_name and schema_name are required when enabled")
        with double.lock:
            endpoint = endpoint_or_404(request.match["name"])
            endpoint["ai_gateway"] = body
            return Response(200, body)

    @double.route("DELETE", r"/api/2\.0/serving-endpoints/(?P<name>[^/]+)")
    def delete(request: Request) -> Response:
        assert request.match is not None
        with double.lock:
            endpoint_or_404(request.match["name"])
            del ws.endpoints[request.match["name"]]
        return Response(200, {})

    def invoke(request: Request, served_name: str | None) -> Response:
        assert request.match is not None
        body = require_valid(serving.ServingEndpointsAPI.query, request.json(), path_params=["name"])
        inputs = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in body]
        if len(inputs) != 1:
            raise Invalid(
                f"a query takes exactly one of dataframe_split, dataframe_records, instances, inputs; got {inputs}"
            )
        with double.lock:
            endpoint = endpoint_or_404(request.match["name"])
            config = endpoint["config"]
            if config is None:
                raise Invalid(f"Endpoint {endpoint['name']} is not ready: it has no config serving yet")
            entities = {e["name"]: e for e in config["served_entities"]}
            if served_name is None:
                routes = config.get("traffic_config", {}).get("routes", [])
                best = max(routes, key=lambda r: r["traffic_percentage"]) if routes else None  # ties: the first
                served_name = (best.get("served_entity_name") or best.get("served_model_name")) if best else None
            if served_name not in entities:
                raise NotFound(f"Served entity {served_name!r} does not exist on endpoint {endpoint['name']}.")
            entity = entities[served_name]
        key = (entity["entity_name"], str(entity["entity_version"]))
        if key in knob.broken_query_versions:
            return error(500, "INTERNAL_ERROR", f"Model {key[0]} version {key[1]} failed to score the request")
        if knob.uc is None:
            raise Invalid("the double has no Unity Catalog registry (double.uc) to load served models from")
        folder = _version_dir(knob.uc, *key)
        if folder is None:
            raise NotFound(f"Model version {key[1]} of {key[0]} does not exist.")
        status, text = ws.score(folder, request.raw)
        try:
            answer: Any = json.loads(text)
        except ValueError:
            answer = {"error_code": "BAD_REQUEST", "message": text}
        return Response(status, answer, {"served-model-name": served_name})

    @double.route("POST", r"/serving-endpoints/(?P<name>[^/]+)/invocations")
    def query(request: Request) -> Response:
        return invoke(request, None)

    @double.route("POST", r"/serving-endpoints/(?P<name>[^/]+)/served-models/(?P<served>[^/]+)/invocations")
    def query_served(request: Request) -> Response:
        assert request.match is not None
        return invoke(request, request.match["served"])


_ENDPOINT_FIELDS = set(serving.ServingEndpointDetailed.__dataclass_fields__)


def _version_dir(uc: Any, name: str, version: str) -> Path | None:
    try:
        folder = Path(uc.version_dir(name, str(version)))
    except (KeyError, LookupError, NotFound):
        return None
    return folder if folder.is_dir() else None


__all__ = ["PAT_USER", "Workspace", "install", "problems"]
