"""The contract of a CI provider: what `mlci/providers/<name>/` must offer.

A provider renders the pipeline model into its CI system's files (`render`) and reads them
back (`parse_back`, for the conformance kit), names the paths those files live under
(`managed`: mlci upgrades them, and only them), and carries the runtime adapter of its CI
system (`runtime`: how a stage running there is detected, links to its run, and hands the
runner annotations, outputs and a summary).

A CI system can ship its runtime adapter before its renderer (`providers.RUNTIME_ONLY`):
stages then behave well on it, while `ci.provider` does not offer it yet.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from mlci.config import Config
    from mlci.pipeline import Pipeline


@dataclass(frozen=True)
class RenderContext:
    """The settings a provider's templates may read, one name each (mlci.yaml's `ci:` names).

    Built from the validated mlci.yaml and the mlci version rendering, never from the raw
    answers: a stale or unknown manifest answer cannot reach a provider's templates.
    """

    mlci_version: str  # the mlci rendering the files (pins, comments, `mlci==` of vendored actions)
    python: str
    runs_on: str
    actions: str  # "vendored" or "remote"
    mlci_repository: str | None
    mlci_ref: str | None
    mlci_install: str | None
    target: str
    # ci.jenkins: the agent label expression ('any' or a label), the production approvers (the
    # input step's submitter), and whether the Jenkinsfile calls the shared library's mlciPipeline.
    jenkins_agent: str
    jenkins_approvers: str
    jenkins_library: bool

    @classmethod
    def of(cls, config: Config, mlci_version: str) -> RenderContext:
        ci = config.ci
        return cls(
            mlci_version=mlci_version,
            python=ci.python,
            runs_on=ci.runs_on,
            actions=ci.actions,
            mlci_repository=ci.mlci_repository,
            mlci_ref=ci.mlci_ref,
            mlci_install=ci.mlci_install,
            target=config.target,
            jenkins_agent=ci.jenkins.agent,
            jenkins_approvers=ci.jenkins.approvers,
            jenkins_library=ci.jenkins.library,
        )


class CIRuntime(Protocol):
    """One CI system as a running stage sees it. Every method takes the environment it reads,
    so an adapter is a pure function of it (tests pass a dict, stages pass os.environ)."""

    name: str
    # Log commands the runner reads anywhere in a line (`##vso[`), lower case, and the one it
    # reads at the start of a line (after spaces; GitHub's `::`), or "": what LogGuard breaks.
    markers: tuple[str, ...]
    line_start_marker: str
    # An environment the CI system sets in every job, as its documentation gives it: what
    # `detected` reads (the conformance kit detects the adapter on it).
    documented_env: Mapping[str, str]

    def job_env(self, tmp: Path) -> dict[str, str]:
        """A job's environment as the CI system gives it (`documented_env` and more), with every
        file or folder it names for outputs and the summary created under `tmp`: what the
        conformance kit runs `set_outputs` and `add_summary` on, and reads back."""
        ...

    def detected(self, env: Mapping[str, str]) -> bool:
        """Whether this process runs on this CI system."""
        ...

    def run_url(self, env: Mapping[str, str]) -> str | None:
        """A link to the CI run, recorded on MLflow runs for lineage."""
        ...

    def annotation(
        self,
        level: str,
        message: str,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        title: str | None = None,
    ) -> str | None:
        """The line that annotates one finding (every value escaped), or None if there is none."""
        ...

    def set_outputs(self, values: Mapping[str, object], env: Mapping[str, str]) -> list[str]:
        """Hand the step's outputs over: written to the runner's own file, or returned as the
        command lines the caller prints (console.ci_command)."""
        ...

    def add_summary(self, markdown: str, env: Mapping[str, str]) -> list[str]:
        """Append Markdown to the job summary where the CI system has one: written to the
        runner's own file, or to a file named by the returned command lines the caller prints."""
        ...

    def stop_commands(self, token: str) -> tuple[str, str] | None:
        """The lines that turn the runner's command reading off and on again around a tool's
        output (with a token the tool cannot know), or None when the runner has none."""
        ...


class Provider(Protocol):
    name: str
    # Paths the provider renders and mlci upgrades: a prefix when it ends in '/', else exact.
    managed: tuple[str, ...]
    runtime: CIRuntime

    def shipped_templates(self) -> Path:
        """The provider's template folder inside the installed mlci (importlib.resources)."""
        ...

    def render(self, pipelines: tuple[Pipeline, ...], ctx: RenderContext, templates: Path) -> dict[str, bytes]:
        """Every CI file of the project for this provider, {relative path: content}, rendered
        from the template folder `templates` (shipped_templates(), or a copy a test passes)."""
        ...

    def parse_back(self, files: Mapping[str, bytes]) -> tuple[Pipeline, ...]:
        """The pipelines rendered into `files` (what `render` returned), read back from the
        files alone: `pipeline.as_rendered(p, name)` for each rendered pipeline `p`. A
        ValueError names a file that holds what the model has no word for."""
        ...


class PackagedProvider:
    """What every provider package of mlci shares (`mlci/providers/<name>/`): its templates
    beside it, its renderer in `render.py` (`render`) and its parse-back in `parse.py`
    (`parse_back`). They are imported when files are rendered or read, not with the package:
    providers.detect() imports a package for its runtime alone, so start-up loads no Jinja or
    YAML (no import cycle needs this: a submodule never imports its package, tests/test_layering.py).
    A subclass names its `name`, `managed`, `runtime` and `package` (its `__name__`)."""

    package: str

    def shipped_templates(self) -> Path:
        # mlci is installed as files (a wheel or a checkout), never zipped: templates are read by path.
        return Path(str(resources.files(self.package) / "templates"))

    def render(self, pipelines: tuple[Pipeline, ...], ctx: RenderContext, templates: Path) -> dict[str, bytes]:
        module = importlib.import_module(f"{self.package}.render")
        return cast("dict[str, bytes]", module.render(pipelines, ctx, templates))

    def parse_back(self, files: Mapping[str, bytes]) -> tuple[Pipeline, ...]:
        module = importlib.import_module(f"{self.package}.parse")
        return cast("tuple[Pipeline, ...]", module.parse_back(files))
