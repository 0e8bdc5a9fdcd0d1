"""Render the project template (scaffold/) and the CI files (mlci/providers/<provider>/templates/).

Conventions, shared by both trees:
- a file whose name ends in `.j2` is rendered with Jinja2 and loses the suffix; any other
  file is copied byte for byte (data files are never templated by accident);
- a path segment may hold `[[answer]]`, replaced by that answer (portable on every OS);
- a rendered file that comes out empty is not written (how a template makes a file optional);
- delimiters are ERB-like (`<%= x %>`, `<% if %>`, `<%# %>`) so they never clash with
  `${{ }}` (GitHub, Azure), `$( )` (Azure, shell) or `${}` (Groovy), and StrictUndefined
  turns a missing answer into an error instead of an empty string.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlci
from mlci import pipeline, providers, targets
from mlci.errors import InfraError, UsageError
from mlci.project import project_from_text
from mlci.providers.base import Provider, RenderContext
from mlci.targets.base import Target

# The Jinja environment and the value emitters live in a leaf module (template_env) that the
# providers import too; re-exported here, where scripts and tests have always found them.
from mlci.template_env import VERSION_TEXT as VERSION_TEXT
from mlci.template_env import compiled as compiled
from mlci.template_env import environment as environment
from mlci.template_env import toml_str as toml_str
from mlci.template_env import version_text as version_text
from mlci.template_env import yaml_scalar as yaml_scalar
from mlci.template_env import yaml_str as yaml_str

_PATH_VAR = re.compile(r"\[\[(\w+)\]\]")
# Files under these folders (a trailing '/'), and these exact files, are owned by mlci and
# upgraded; everything else is seeded once and belongs to the team (their model code, tests,
# data, README). Exact, not prefixes: `databricks.yml.bak` stays the team's. These are the
# scaffold's own; each CI provider adds its `managed` (providers/<name>/).
SCAFFOLD_MANAGED = (
    ".pre-commit-config.yaml",
    ".mlci/mlci.schema.json",
    ".mlci/contract.schema.json",
)
# Where a test (or a tool) points mlci at a copy of its templates: a folder holding scaffold/
# and providers/<name>/ (TemplateSource.from_env).
TEMPLATE_ROOT_ENV = "MLCI_TEMPLATE_ROOT"


def shipped_dir(name: str) -> Path:
    """A template tree shipped with mlci: inside the wheel, or at the repository root in a checkout."""
    package_dir = Path(mlci.__file__).resolve().parent
    for candidate in (package_dir / name, package_dir.parents[1] / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"mlci's {name}/ templates are missing from {package_dir}; reinstall mlci")


def render_path(relative: str, answers: Mapping[str, Any]) -> str:
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in answers:
            raise KeyError(f"template path {relative!r} uses unknown answer [[{key}]]")
        return str(answers[key])

    rendered = _PATH_VAR.sub(substitute, relative)
    return rendered[: -len(".j2")] if rendered.endswith(".j2") else rendered


def render_tree(
    root: Path, answers: Mapping[str, Any], prefix: str = "", keep: Callable[[str], bool] | None = None
) -> dict[str, bytes]:
    """Every file of a template tree (or those whose output path `keep` accepts), rendered."""
    files: dict[str, bytes] = {}
    for source in sorted(root.rglob("*")):
        if not source.is_file() or "__pycache__" in source.parts:
            continue
        relative = source.relative_to(root).as_posix()
        target = prefix + render_path(relative, answers)
        if keep is not None and not keep(target):
            continue
        if source.name.endswith(".j2"):
            text = compiled(source.read_text(encoding="utf-8")).render(**answers)
            if not text.strip():
                continue
            files[target] = text.encode("utf-8")
        else:
            files[target] = source.read_bytes()
    return files


@dataclass(frozen=True)
class TemplateSource:
    """Where templates are read from: mlci's shipped trees (root None), or a copy at `root`
    holding scaffold/ and providers/<name>/ (a test's edited templates standing for a newer mlci)."""

    root: Path | None = None

    @classmethod
    def from_env(cls) -> TemplateSource:
        root = os.environ.get(TEMPLATE_ROOT_ENV)
        if root and not (Path(root) / "scaffold").is_dir():
            raise UsageError(
                f"{TEMPLATE_ROOT_ENV}={root}: no scaffold/ there; unset {TEMPLATE_ROOT_ENV} "
                "(it points mlci at a copy of its templates, for tests)"
            )
        return cls(Path(root) if root else None)

    def scaffold(self) -> Path:
        return self.root / "scaffold" if self.root else shipped_dir("scaffold")

    def provider(self, provider: Provider) -> Path:
        return self.root / "providers" / provider.name if self.root else provider.shipped_templates()

    def target(self, target: Target) -> Path:
        """The copy's targets/<name>/ when it holds one, else the shipped templates of `target`."""
        copied = self.root / "targets" / target.name if self.root else None
        return copied if copied is not None and copied.is_dir() else target.shipped_templates()


# What the project's README says about its CI system comes from the provider's templates, so
# the scaffold names no provider: its lines in the layout tree, and the body of "## CI/CD".
README_SECTIONS = {"ci_readme_layout": "README.layout.md", "ci_readme": "README.ci.md"}


def readme_sections(provider: Provider, source: TemplateSource) -> dict[str, str]:
    folder = source.provider(provider)
    try:
        return {key: (folder / name).read_text(encoding="utf-8") for key, name in README_SECTIONS.items()}
    except FileNotFoundError as exc:
        raise InfraError(
            f"the {provider.name} provider's templates lack {Path(str(exc.filename)).name}; this is a bug in mlci"
        ) from None


def render_project(
    answers: Mapping[str, Any],
    config_text: str | None = None,
    root: Path | None = None,
    keep: Callable[[str], bool] | None = None,
    source: TemplateSource | None = None,
) -> dict[str, bytes]:
    """The whole project: scaffold files plus the CI files of the chosen provider.

    The CI files are rendered from mlci.yaml (`config_text`, or the freshly rendered one), so
    `mlci new` and `mlci render` produce them the same way. `keep`, when given, selects the
    output paths to render (`mlci upgrade` renders only the managed files).
    """
    source = source or TemplateSource.from_env()
    scaffold_answers = {**answers, **readme_sections(providers.get(str(answers["provider"])), source)}
    files = render_tree(source.scaffold(), scaffold_answers, keep=keep)
    if config_text is None:
        config_file = (
            files.get("mlci.yaml")
            or render_tree(source.scaffold(), scaffold_answers, keep=lambda path: path == "mlci.yaml")["mlci.yaml"]
        )
        config_text = config_file.decode("utf-8")
    ci_files = render_ci(config_text, answers, root or Path("."), source)
    ci_files.update(render_target(config_text, answers, root or Path("."), source))
    files.update({path: data for path, data in ci_files.items() if keep is None or keep(path)})
    return files


def render_ci(
    config_text: str, answers: Mapping[str, Any], root: Path, source: TemplateSource | None = None
) -> dict[str, bytes]:
    """The provider's CI files; a mlci.yaml that does not validate is refused with its line.

    Of the answers only `mlci_version` reaches the provider (RenderContext): every other setting
    comes from the validated mlci.yaml, so a stale manifest answer cannot change a CI file.
    """
    config = project_from_text(config_text, root).config
    provider = providers.get(config.ci.provider)
    ctx = RenderContext.of(config, str(answers["mlci_version"]))
    return provider.render(pipeline.build(config), ctx, (source or TemplateSource.from_env()).provider(provider))


def render_target(
    config_text: str, answers: Mapping[str, Any], root: Path, source: TemplateSource | None = None
) -> dict[str, bytes]:
    """The target's own files (Databricks: its bundle, databricks.yml and resources/), from the
    validated mlci.yaml and, of the answers, only `mlci_version` (as render_ci)."""
    config = project_from_text(config_text, root).config
    target = targets.get(config.target)
    return target.render(config, str(answers["mlci_version"]), (source or TemplateSource.from_env()).target(target))


def managed_paths(provider: str | None = None, target: str | None = None) -> tuple[str, ...]:
    """The paths mlci owns and upgrades in a project on `provider` and `target`: the scaffold's
    own, the provider's CI files, the target's (Databricks: its bundle). None stands for any
    provider or target (what a manifest may list, whichever it was made for)."""
    ci = providers.get(provider).managed if provider else providers.managed()
    where = targets.get(target).managed if target else tuple(p for n in targets.NAMES for p in targets.get(n).managed)
    return SCAFFOLD_MANAGED + ci + where


def is_managed(path: str, provider: str | None = None, target: str | None = None) -> bool:
    return any(
        path.startswith(entry) if entry.endswith("/") else path == entry for entry in managed_paths(provider, target)
    )
