"""What a target is to the rest of mlci: the `Target` Protocol and the data it hands out.

A target is where a stage's work happens (the embedded local store, Databricks). Stages and
commands reach it only through `mlci.targets.get(name)`, never by importing one. The data
types here (`Credential` and its values) are what a CI provider renders into a job without
knowing which target asked for it: `Secret("X")` is `${{ secrets.X }}` on GitHub and `$(X)`
on Azure, so credentials grow as providers + targets, not providers x targets.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlci.config import Config, Project
from mlci.errors import UsageError

if TYPE_CHECKING:
    from mlci.monitoring.inference_log import InferenceLogger


@dataclass(frozen=True)
class Secret:
    """A value the CI system keeps secret, by its name there (GitHub `secrets.X`)."""

    name: str


@dataclass(frozen=True)
class Variable:
    """A value the CI system keeps as a plain setting, by its name there (GitHub `vars.X`)."""

    name: str


@dataclass(frozen=True)
class Literal:
    """A fixed value written into the pipeline file as is: never a secret."""

    value: str


@dataclass(frozen=True)
class ByProvider:
    """A fixed value that depends on the CI system, e.g. the name Databricks' SDK gives each
    system's OIDC tokens (`github-oidc`). The target knows its own vocabulary; the provider
    picks its entry by its own name, through `value_for` only."""

    values: tuple[tuple[str, str], ...]
    target: str = ""  # the target giving the values, named when a CI provider has none

    def value_for(self, provider: str) -> str:
        """The entry of `provider`; a provider without one cannot run this target's jobs, and
        the user is told so (exit 2) before anything is rendered or written."""
        found = dict(self.values).get(provider)
        if found is None:
            known = " or ".join(sorted(name for name, _ in self.values))
            raise UsageError(
                f"the {self.target or 'configured'} target cannot federate from CI provider {provider!r}: "
                f"use ci.provider {known} (mlci new --provider), or another target"
            )
        return found


EnvValue = Secret | Variable | Literal | ByProvider


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: EnvValue


@dataclass(frozen=True)
class Credential:
    """What a job that talks to the target needs: environment variables and, when `oidc`,
    the CI system's OIDC token (federation instead of a long-lived secret)."""

    name: str
    oidc: bool
    env: tuple[EnvVar, ...]
    reason: str = ""  # one line a provider may show next to the permission it grants


@dataclass(frozen=True)
class Problem:
    """A target's objection to a valid mlci.yaml: the dotted key it is about and what is wrong.
    The caller turns it into its own error (a ConfigError at that key's line, a --data answer)."""

    key: str
    message: str


@dataclass
class Deployment:
    """A model the target made live and checked. `facts` go into deploy.json (`smoke_test`);
    `rollback` undoes what the target did, called when moving the registry's aliases
    afterwards fails (the local target serves nothing that outlives the check: a no-op)."""

    url: str
    facts: dict[str, Any]
    rollback: Callable[[], None] = field(default=lambda: None)


# What `mlci doctor` prints for a check, by how it went.
OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    """One line of `mlci doctor`: `status` (OK, WARN or FAIL), what was checked and one line
    saying what was found and, unless ok, the fix. `infra`: a FAIL because something outside the
    project did not answer (a workspace, a store): the command exits 3 instead of 1. A detail
    never holds a secret's value, only its name."""

    status: str
    what: str
    detail: str
    infra: bool = False


class Target(Protocol):
    """One place a stage's work happens. The conformance kit (tests/test_target_contract.py)
    runs over every name in `mlci.targets.NAMES`."""

    name: str
    # Project paths the target renders and owns (kept current by `mlci upgrade`).
    managed: tuple[str, ...]
    # What `mlci new` tells the user about a project made for this target (lines), if anything.
    scaffold_note: tuple[str, ...]

    def validate(self, config: Config) -> tuple[Problem, ...]:
        """What the target refuses in an otherwise valid mlci.yaml."""
        ...

    def model_name_problem(self, model_name: str) -> str | None:
        """The target's rule for a registered model's name: what is wrong, or None. The one
        rule, used by `validate` and by `mlci new`'s answers."""
        ...

    def default_model_name(self, package: str) -> str:
        """The registered model's name `mlci new` offers for a package."""
        ...

    def require(self, project: Project, stage: str) -> None:
        """Raise (a ConfigError at `target:`) when `stage` cannot run on this target."""
        ...

    def credentials(self, config: Config) -> tuple[Credential, ...]:
        """What a CI job that trains, registers or deploys needs to reach the target."""
        ...

    def shipped_templates(self) -> Path:
        """The folder of the templates `render` reads, inside the installed mlci."""
        ...

    def render(self, config: Config, mlci_version: str, templates: Path) -> dict[str, bytes]:
        """The files under `managed`, {relative path: content}, from the validated mlci.yaml and
        the template folder `templates` (shipped_templates(), or a copy a test passes)."""
        ...

    def carries_state(self, config: Config) -> bool:
        """Whether the project's store travels between CI jobs as state (no shared server)."""
        ...

    def monitors_in_workspace(self, config: Config) -> bool:
        """Whether the target monitors the served model on its own platform (Databricks:
        Lakehouse Monitoring and a scheduled check job, made by the production deploy). Then
        monitor.schedule is that job's schedule, no CI monitor pipeline is rendered, and
        `require(project, "monitor")` refuses the local monitor stage."""
        ...

    def doctor(self, project: Project, env: str | None, ci: str | None) -> tuple[Check, ...]:
        """`mlci doctor`'s checks of this target: what it needs on this machine and, with `env`
        (an environment of ENVIRONMENTS), whether that environment's store or workspace answers
        and as whom. `ci`: the CI system this runs on (a provider's name), None on a developer's
        machine. Writes nothing; a fault is a FAIL check, never an exception."""
        ...

    def train_remotely(self, project: Project, tags: dict[str, str]) -> dict[str, Any] | None:
        """Train on the target's own compute (Databricks: a job run from the project's wheel)
        with the lineage `tags`, and return that run's train record (summary, details,
        outputs, markdown); None: the stage trains in this process on the target's store."""
        ...

    # ----- tracking and registry set-up

    def tracking_uri(self, project: Project, override: str | None = None) -> str: ...

    def registry_label(self, project: Project, override: str | None = None) -> str:
        """Which registry a stage used, safe to print."""
        ...

    def configure_mlflow(
        self, project: Project, override: str | None = None, *, writes: bool = True, verbose: bool
    ) -> Any:
        """Check the store, point MLflow at it and return the mlflow module; `verbose` (the
        caller's --verbose: a target never reads the console) keeps MLflow's own log lines."""
        ...

    def ensure_experiment(self, mlflow: Any, project: Project, uri: str) -> str: ...

    def store_faults(self, project: Project, override: str | None = None) -> AbstractContextManager[None]:
        """Run a command's work on the target's store: a store fault ends it as one line, exit 3."""
        ...

    def model_dir(self, model_uri: str, dst_path: str | None = None) -> Path:
        """A registered model's artifacts as a local folder."""
        ...

    # ----- serving and deploy

    def serve(
        self,
        project: Project,
        model_dir: Path,
        port: int,
        announce: Callable[[str], None],
        *,
        probabilities: bool,
        verbose: bool,
        inference_log: InferenceLogger | None = None,
    ) -> None:
        """Serve a model in the foreground (`mlci serve`): `announce(url)` once it answers,
        then until Ctrl-C or SIGTERM; `verbose` shows the server's request log. With
        `inference_log`, every prediction is logged to it (the caller starts nothing and closes it
        after this returns)."""
        ...

    def deploy(self, project: Project, model_uri: str, env: str) -> Deployment:
        """Serve `model_uri` in environment `env` and smoke-test it; SmokeTestFailed when it does
        not answer right, with what the target changed already put back."""
        ...
