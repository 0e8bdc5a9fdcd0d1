"""The Databricks bundle of a `target: databricks` project: `databricks.yml` and `resources/`.

Rendered from the validated mlci.yaml (never from raw answers) with the templates beside this
module, so `mlci new`, `mlci render` and `mlci upgrade` write the same files, and every value
goes through the YAML emitters (template_env). What the bundle declares and what mlci itself
moves (the endpoint's served version): docs/databricks-bundle.md.

`check(files)` is mlci's own offline check of a rendered bundle (the Databricks CLI is not
needed): the YAML parses, the top-level keys are the bundle's, and every `${var.x}` names a
declared variable. The resources' fields are checked by databricks-bundles' typed classes in
the tests (tests/test_databricks_bundle.py), not here: mlci does not depend on that package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlci.config import Config

# The keys databricks.yml may hold at the top level (the bundle JSON schema's), and the ones a
# file under resources/ may hold (the CLI merges `include`d files into databricks.yml).
TOP_LEVEL = frozenset(
    {
        "artifacts",
        "bundle",
        "environments",
        "experimental",
        "include",
        "permissions",
        "presets",
        "python",
        "resources",
        "run_as",
        "scripts",
        "sync",
        "targets",
        "variables",
        "workspace",
    }
)
RESOURCE_FILE_KEYS = frozenset({"resources", "targets", "variables"})
_VAR_REF = re.compile(r"\$\{var\.([A-Za-z_][A-Za-z0-9_-]*)")
BUNDLE_FILE = "databricks.yml"
# resources/<project>.<kind>.yml, one template each (templates/resources/<kind>.yml.j2).
RESOURCE_KINDS = ("job", "model", "serving", "monitor")


def endpoint_name(config: Config, env: str) -> str:
    """The serving endpoint of environment `env`: databricks.environments.<env>.endpoint, by default <project>-<env>."""
    return getattr(config.databricks.environments, env).endpoint or f"{config.project.name}-{env}"


def batch_output_table(input_table: str, output_table: str | None) -> str:
    return output_table or f"{input_table}_predictions"


@dataclass(frozen=True)
class BundleEnvironment:
    name: str
    host: str | None
    catalog: str
    schema: str
    endpoint: str
    workload_size: str
    scale_to_zero: bool


def context(config: Config, mlci_version: str) -> dict[str, Any]:
    """What the bundle's templates read: names from mlci.yaml, one entry per environment."""
    db = config.databricks
    environments = [
        BundleEnvironment(
            name=env,
            host=getattr(db.environments, env).host or db.host,
            catalog=getattr(db.environments, env).catalog,
            schema=getattr(db.environments, env).schema,
            endpoint=endpoint_name(config, env),
            workload_size=getattr(db.environments, env).workload_size,
            scale_to_zero=getattr(db.environments, env).scale_to_zero,
        )
        for env in ("staging", "production")
    ]
    catalog, schema, model = config.model_name.split(".")
    batch = config.deploy.batch
    return {
        "name": config.project.name,
        "model_name": config.model_name,
        "model": {"catalog": catalog, "schema": schema, "name": model},
        "environments": environments,
        "train": db.train,
        "batch": (
            {
                "input_table": batch.input_table,
                "output_table": batch_output_table(batch.input_table, batch.output_table),
                "schedule": batch.schedule,
            }
            if batch.input_table
            else None
        ),
        # What the jobs' environment installs, as jobs.mlci_requirement (mlci train's run) says.
        "mlci_requirement": config.ci.mlci_install or f"mlci=={mlci_version}",
        # Where mlci train uploads its submissions (jobs.volume_path): the training job's source.
        "volume_folder": "/Volumes/{}/{}/{}/{}".format(*db.volume.split("."), config.project.name),
        # The served entity's name before its version, as serving.served_name names it.
        "served_prefix": model.replace("_", "-"),
        "monitor": _monitor(config) if config.monitor.schedule else None,
    }


def _monitor(config: Config) -> dict[str, Any]:
    """The monitor and its check job as mlci deploy --env production keeps them
    (monitoring.py), on each target's own tables; the retrain starts the bundle's train job."""
    from mlci.config import Project
    from mlci.targets.databricks import monitoring

    project = Project(root=Path("."), config=config, lines={})
    names = monitoring.BUNDLE_NAMES
    settings = monitoring.monitor_settings(project, names)
    job = monitoring.job_settings(project, names, "${resources.jobs.train.id}", monitoring.config_path(project))
    return {
        "table": names.inference,
        "output_schema": names.output_schema,
        "inference_log": settings["inference_log"].as_dict(),
        "slices": settings["slicing_exprs"] or [],
        "schedule": settings["schedule"].quartz_cron_expression,
        "job": job.as_dict(),
        "assets_dir": f"/Workspace/Users/${{workspace.current_user.userName}}/mlci/{config.project.name}/monitoring",
    }


def render(config: Config, mlci_version: str, templates: Path) -> dict[str, bytes]:
    """databricks.yml and resources/<project>.<kind>.yml, {relative path: UTF-8 bytes}, rendered
    from the folder `templates` (shipped_templates(), or a copy a test passes); a template that
    renders nothing (the batch job unset, say) writes no file."""
    from mlci.template_env import compiled

    values = context(config, mlci_version)
    outputs = {BUNDLE_FILE: BUNDLE_FILE}
    outputs.update({f"resources/{kind}.yml": f"resources/{config.project.name}.{kind}.yml" for kind in RESOURCE_KINDS})
    files: dict[str, bytes] = {}
    for source, path in outputs.items():
        text = compiled((templates / f"{source}.j2").read_text(encoding="utf-8")).render(**values)
        if text.strip():  # one final newline, whether or not a block closes the template
            files[path] = (text.rstrip("\n") + "\n").encode("utf-8")
    return files


def check(files: Mapping[str, bytes]) -> list[str]:
    """What is wrong with a rendered bundle (databricks.yml plus resources/*.yml), one line each."""
    import yaml

    problems: list[str] = []
    documents: dict[str, dict[str, Any]] = {}
    for path, data in sorted(files.items()):
        try:
            loaded = yaml.safe_load(data.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(f"{path}: not YAML: {str(exc).splitlines()[0]}")
            continue
        if not isinstance(loaded, dict):
            problems.append(f"{path}: not a mapping")
            continue
        allowed = TOP_LEVEL if path == BUNDLE_FILE else RESOURCE_FILE_KEYS
        problems += [f"{path}: unknown top-level key {key!r}" for key in loaded if key not in allowed]
        documents[path] = loaded
    if BUNDLE_FILE not in files:
        problems.append(f"{BUNDLE_FILE} is missing")
    declared = {name for doc in documents.values() for name in (doc.get("variables") or {})}
    for path, doc in documents.items():
        for name in sorted(set(_VAR_REF.findall(yaml.safe_dump(doc)))):
            if name not in declared:
                problems.append(f"{path}: ${{var.{name}}} is not declared under variables:")
    return problems
