"""`mlci doctor` on Databricks: the workspaces, the sign-in and who the workspace says we are.

Without an environment every check is offline: each environment's workspace resolves (its
host, else databricks.host, else DATABRICKS_HOST), no long-lived secret sits in a developer's
shell (or in a CI job that signs in by federation), the ~/.databrickscfg profile named by
databricks.profile exists, the SDK is installed. With one it builds the SDK config exactly as
every stage does (workspace.sdk_config: the project's short timeouts), reports which sign-in
the SDK resolved (Config.auth_type: github-oidc, azure-cli, oauth-m2m, pat, databricks-cli, ...),
the host and the client id, and asks the workspace who we are (SCIM Me): a workspace that
does not answer, or refuses us, is one FAIL line and exit 3.

No check prints a secret: only variable names. Every detail also passes `redact`, which
replaces the value of each secret the process or the SDK config holds, so an SDK error that
quoted one could not leak it. The SDK's own log lines are held back while it works.

databricks-sdk is imported inside functions only.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mlci.config import ENVIRONMENTS, Project
from mlci.errors import InfraError, MlciError, first_line
from mlci.targets.base import FAIL, OK, WARN, Check
from mlci.targets.databricks import workspace

# Config attributes that hold a secret once the SDK resolved them (from the environment or a profile).
_CONFIG_SECRETS = ("token", "client_secret", "password", "azure_client_secret")
# CI systems whose jobs sign in by federation (OIDC, workload identity): a secret there is a leftover.
_FEDERATED = ("github", "azure")
DOCS = "docs/databricks.md"
# Doctor answers in seconds: it waits and retries at most this long per request (the project's
# databricks.http_timeout / retry_timeout when shorter), where a stage would wait its full timeouts.
QUICK_TIMEOUT = 10


def checks(project: Project, env: str | None, ci: str | None) -> tuple[Check, ...]:
    found = [_sdk_installed(), *_workspaces(project), _secrets_here(ci), *_profile(project), *_compute(project)]
    if env is not None:
        found.extend(_sign_in(project, env))
    secrets = _secret_values()
    return tuple(Check(c.status, c.what, redact(c.detail, secrets), c.infra) for c in found)


# ---------------------------------------------------------------- offline


def _sdk_installed() -> Check:
    if importlib.util.find_spec("databricks.sdk") is None:
        return Check(FAIL, "databricks-sdk", "not installed; pip install databricks-sdk (mlflow installs it too)")
    return Check(OK, "databricks-sdk", importlib.metadata.version("databricks-sdk"))


def _host_source(project: Project, env: str) -> str:
    cfg = project.config.databricks
    if getattr(cfg.environments, env).host:
        return f"databricks.environments.{env}.host"
    return "databricks.host" if cfg.host else "the DATABRICKS_HOST variable"


def _workspaces(project: Project) -> Iterator[Check]:
    for env in ENVIRONMENTS:
        try:
            where = workspace.workspace(project, env)
        except MlciError as exc:
            yield Check(FAIL, f"workspace {env}", exc.message)
            continue
        tables = f"{where.settings.catalog}.{where.settings.schema}"
        yield Check(
            OK,
            f"workspace {env}",
            f"{where.host} (from {_host_source(project, env)}); endpoint {where.endpoint}, tables in {tables}",
        )


def _secrets_here(ci: str | None) -> Check:
    present = [name for name in workspace.SECRET_VARIABLES if os.environ.get(name)]
    if not present:
        return Check(OK, "secrets", "no Databricks secret in the environment")
    names = ", ".join(present)
    if ci is None:
        return Check(
            WARN,
            "secrets",
            f"{names} set in this shell: a long-lived secret on a developer machine; unset it and sign in "
            "with 'databricks auth login' and databricks.profile in mlci.yaml",
        )
    if ci in _FEDERATED:
        return Check(
            WARN,
            "secrets",
            f"{names} set on {ci}, whose jobs sign in by federation with no secret; remove it from the "
            f"pipeline's variables ({DOCS})",
        )
    return Check(OK, "secrets", f"{names} set on {ci} (OAuth M2M)")


def _profile(project: Project) -> Iterator[Check]:
    profile = project.config.databricks.profile
    if not profile:
        return
    if not workspace.use_profile(project):
        yield Check(
            OK, "profile", f"databricks.profile {profile} not used here (DATABRICKS_AUTH_TYPE chooses the sign-in)"
        )
        return
    path = Path(os.environ.get("DATABRICKS_CONFIG_FILE") or Path.home() / ".databrickscfg")
    login = f"databricks auth login --profile {profile}"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        yield Check(WARN, "profile", f"databricks.profile {profile}: {path} does not exist; run '{login}'")
        return
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        yield Check(WARN, "profile", f"databricks.profile {profile}: {path} cannot be read ({type(exc).__name__})")
        return
    if not parser.has_section(profile):
        yield Check(WARN, "profile", f"databricks.profile {profile} is not in {path}; run '{login}'")
        return
    yield Check(OK, "profile", f"{profile} in {path}")


def _compute(project: Project) -> Iterator[Check]:
    train = project.config.databricks.train
    if train.compute == "cluster" and not train.node_type_id:
        line = project.line_of("databricks.train.compute")
        where = f"{project.config_path}:{line}" if line else str(project.config_path)
        yield Check(
            FAIL,
            "training compute",
            f"{where}: compute: cluster needs databricks.train.node_type_id (e.g. i3.xlarge), or use serverless",
        )
        return
    yield Check(OK, "training compute", train.compute)


# ---------------------------------------------------------------- online (--env)


@contextlib.contextmanager
def _sdk_logs_held() -> Iterator[None]:
    """The SDK (and urllib3 under it) log warnings such as 'Failed to automatically resolve
    config from host metadata' while they work: doctor reports the outcome as its own line."""
    loggers = [logging.getLogger(name) for name in ("databricks", "urllib3")]
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _sign_in(project: Project, env: str) -> list[Check]:
    what = f"sign-in {env}"
    cfg = project.config.databricks
    quick = dataclasses.replace(
        cfg, http_timeout=min(cfg.http_timeout, QUICK_TIMEOUT), retry_timeout=min(cfg.retry_timeout, QUICK_TIMEOUT)
    )
    project = dataclasses.replace(project, config=dataclasses.replace(project.config, databricks=quick))
    with _sdk_logs_held():
        try:
            config = workspace.sdk_config(project, env)
        except MlciError as exc:
            chosen = os.environ.get("DATABRICKS_AUTH_TYPE")
            why = f" (DATABRICKS_AUTH_TYPE={chosen} chose the sign-in)" if chosen else ""
            message = without_debug(exc.message).removesuffix(workspace.SIGN_IN_HINT)
            detail = f"{message}{why}; {DOCS} says what each CI system needs"
            return [Check(FAIL, what, detail, infra=isinstance(exc, InfraError))]
        secrets = _secret_values(config)
        said = [f"{config.auth_type} on {config.host}"]
        if config.profile:
            said.append(f"profile {config.profile}")
        if config.client_id:
            said.append(f"client id {config.client_id}")
        signed_in = Check(OK, what, ", ".join(said))
        try:
            from databricks.sdk import WorkspaceClient

            me = WorkspaceClient(config=config).current_user.me()
        except Exception as exc:
            detail = f"{config.host} {_why(exc)} ({DOCS})"
            return [signed_in, Check(FAIL, f"workspace answers {env}", redact(detail, secrets), infra=True)]
    who = me.user_name or me.display_name or me.id or "an unnamed principal"
    also = f" ({me.display_name})" if me.display_name and me.display_name != who else ""
    return [signed_in, Check(OK, f"workspace answers {env}", f"signed in as {who}{also}")]


# RFC 6749's token-endpoint errors: the SDK raises them as plain errors, not DatabricksError.
_OAUTH_REFUSALS = ("invalid_grant", "invalid_client", "unauthorized_client", "access_denied")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')\]]+)")


def _why(exc: BaseException) -> str:
    """One line for the SDK's failure: refused (HTTP 401/403) or not answering (the socket's reason)."""
    from databricks.sdk.errors.base import DatabricksError

    if isinstance(exc, DatabricksError):
        code = getattr(exc, "error_code", None) or type(exc).__name__
        return (
            f"refused the sign-in ({code}: {_first_line(exc)}); check the service principal, its federation "
            "policy or secret, and its workspace access"
        )
    reasons = [str(e) for e in _chain(exc)]
    if any(code in r for r in reasons for code in _OAUTH_REFUSALS):
        return (
            f"refused the sign-in ({_first_line(exc)}); check the service principal, its federation policy or "
            "secret, and its workspace access"
        )
    socket = next((m.group(1).strip() for r in reasons for m in [_ERRNO.search(r)] if m), None)
    said = _first_line(exc) + (f": {socket}" if socket else "")
    return f"does not answer ({said}); check the host and the network (doctor waits {QUICK_TIMEOUT} s at most)"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(exc: BaseException) -> str:
    return without_debug(first_line(exc))[:300]


def without_debug(text: str) -> str:
    """An SDK message without the '. Config: host=..., auth_type=... Env: ...' the SDK appends
    (secrets masked there, but it buries the reason): doctor prints the host and auth itself."""
    return text.split(". Config: ", 1)[0]


# ---------------------------------------------------------------- never a secret


def _secret_values(config: Any = None) -> list[str]:
    values = [os.environ.get(name, "") for name in workspace.SECRET_VARIABLES]
    if config is not None:
        values += [str(getattr(config, name, None) or "") for name in _CONFIG_SECRETS]
    return sorted({v for v in values if len(v) >= 8}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with the value of every secret in reach replaced by ***."""
    for value in _secret_values() if secrets is None else secrets:
        text = text.replace(value, "***")
    return text
