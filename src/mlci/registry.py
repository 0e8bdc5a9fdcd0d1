"""The model registry's aliases and version tags, as mlci uses them.

Aliases: `challenger` (set by register: passed the gates, not yet deployed), one alias per
environment named after it (`staging`, `production`: what that environment serves) and
`champion`, which always moves together with the last environment (what production serves).

Version tags written by deploy, promote and rollback (all timestamps UTC, ISO 8601):
- `mlci.verified.<env>`: when the version was smoke-tested and went live in <env>; the next
  environment only takes a version verified in the one before it.
- `mlci.deployed_at.<env>` (and `mlci.deployed_at`, the latest of them).
- `mlci.previous.<env>`: the version <env> served before this one; `mlci rollback` goes back
  to it, so repeated rollbacks walk back through the environment's history.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlci.config import ENVIRONMENTS
from mlci.errors import UsageError

CHAMPION = "champion"
CHALLENGER = "challenger"


def require_store(uri: str, command: str) -> None:
    """A command that only reads the registry (serve, monitor) refuses a local sqlite store that
    does not exist yet, before MLflow would create (and migrate) an empty database just to look."""
    store = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if store is not None and not store.is_file():
        raise UsageError(
            f"no model to {command}: the MLflow store {store} does not exist yet; "
            "run 'mlci run' (or mlci train, register and deploy) first"
        )


def verified_tag(env: str) -> str:
    return f"mlci.verified.{env}"


def previous_tag(env: str) -> str:
    return f"mlci.previous.{env}"


def deployed_tag(env: str) -> str:
    return f"mlci.deployed_at.{env}"


def check_environment(env: str) -> int:
    """The position of `env` in the promotion chain; exit 2 naming the known ones otherwise."""
    if env not in ENVIRONMENTS:
        raise UsageError(f"unknown environment '{env}'; environments: {', '.join(ENVIRONMENTS)}")
    return ENVIRONMENTS.index(env)


def aliases_for(env: str) -> list[str]:
    """The aliases a release to `env` moves: its own, plus `champion` for the last one."""
    return [env, CHAMPION] if env == ENVIRONMENTS[-1] else [env]


def normalise_version(version: Any) -> str:
    """MLflow returns an int on sqlite and a string over HTTP; mlci always says a string."""
    return str(int(version))


def alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version an alias points to, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return normalise_version(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def get_version(client: Any, name: str, version: str) -> Any:
    """The model version, or exit 2 when it does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException:
        raise UsageError(f"model '{name}' has no version {version}; 'mlci status' lists the versions") from None


def require_gated(client: Any, name: str, version: str) -> dict[str, str]:
    """The version's tags, or exit 1 when it never passed register's gates: a version made by
    hand (or rejected) must not reach an environment by naming its number."""
    from mlci.errors import CheckFailed

    tags = dict(get_version(client, name, version).tags or {})
    if tags.get("mlci.gates") != "passed":
        raise CheckFailed(
            f"{name} v{version} did not pass the gates (no mlci.gates=passed tag); only a version 'mlci register' "
            "admitted can be deployed"
        )
    return tags


def set_aliases(client: Any, name: str, wanted: dict[str, str | None]) -> None:
    """Point each alias at its version (None: remove it)."""
    for alias, version in wanted.items():
        if version is None:
            if alias_version(client, name, alias) is not None:
                client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, version)


def promote(
    client: Any, name: str, env: str, version: str, *, consume_challenger: bool, record_previous: bool = True
) -> str:
    """Point `env`'s aliases (and `champion` for the last environment) at `version` and tag it
    verified and deployed there; the timestamp. The caller has made the version live and
    checked it first, so an alias never points at a model that has not answered.

    If moving the aliases fails half-way (a registry error, Ctrl-C, SIGTERM as CI systems send
    on cancel and timeout), every alias touched is put back before the error goes on.
    """
    moved = aliases_for(env)
    restore: dict[str, str | None] = {alias: alias_version(client, name, alias) for alias in moved}
    previous = restore[env]
    challenger = alias_version(client, name, CHALLENGER)
    if consume_challenger and challenger == version:
        restore[CHALLENGER] = challenger
    was_verified = verified_tag(env) in (get_version(client, name, version).tags or {})
    try:
        set_aliases(client, name, {alias: version for alias in moved})
        if CHALLENGER in restore:
            client.delete_registered_model_alias(name, CHALLENGER)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for key in (verified_tag(env), deployed_tag(env), "mlci.deployed_at"):
            client.set_model_version_tag(name, version, key, now)
        if record_previous and previous is not None:
            client.set_model_version_tag(name, version, previous_tag(env), previous)
    except BaseException:  # half-done: put back every alias this release touched
        set_aliases(client, name, restore)
        if not was_verified:  # and the verification it had not finished recording
            with contextlib.suppress(Exception):
                client.delete_model_version_tag(name, version, verified_tag(env))
        raise
    return now


def rollback(client: Any, name: str, env: str) -> tuple[str, str]:
    """(current, previous): the version `env` serves and the one it served before it (tag
    mlci.previous.<env>), which a rollback releases; exit 2 when there is nothing to go back to."""
    current = alias_version(client, name, env)
    if current is None:
        raise UsageError(f"nothing to roll back: no version of '{name}' is in {env}")
    previous = (get_version(client, name, current).tags or {}).get(previous_tag(env))
    if not previous:
        raise UsageError(
            f"{env} has no earlier version recorded before v{current}; use 'mlci promote --env {env} --version N'"
        )
    return current, previous


def unverify(client: Any, name: str, version: str, env: str) -> None:
    """A version rolled back from no longer counts as verified in `env`: the next environment
    can never take it (a later deploy to `env` verifies it afresh)."""
    with contextlib.suppress(Exception):
        client.delete_model_version_tag(name, version, verified_tag(env))
