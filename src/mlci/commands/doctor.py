"""`mlci doctor [--env E] [--json]`: can this project's stages run here, and are its files current?

One line per check, `ok|warn|fail <what>: <detail>`, the fix in every one that is not ok:
- mlci.yaml loads and validates, its target's rules too (a failure is the loader's file:line
  error, exit 2, and nothing else is checked: every other check reads mlci.yaml);
- the tools the project's stages need, in the interpreter and on the PATH they run with;
- the generated files against a fresh render from mlci.yaml: what `mlci render` would change
  (planned by the one planner render and upgrade share, nothing written) and which files were
  edited by hand since mlci rendered them;
- the target's own checks (Target.doctor): the local store is writable; the Databricks
  workspaces resolve and, with --env, the SDK signs in and the workspace answers.

Exit codes: 0 every check ok or warn, 1 a check failed, 2 mlci.yaml is invalid (or bad
usage), 3 a store or workspace did not answer. No detail holds a secret's value.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from mlci import __version__, console, providers, targets
from mlci.config import CONFIG_FILE, ENVIRONMENTS, Project, find_project
from mlci.errors import EXIT_CHECK_FAILED, EXIT_INFRA, EXIT_OK, EXIT_USAGE, MlciError, UsageError
from mlci.log_guard import json_document
from mlci.targets.base import FAIL, OK, WARN, Check

# Environment variables whose value is a secret by its name: never printed, whatever quoted it.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|_KEY$|CREDENTIAL", re.IGNORECASE)


def main(args: argparse.Namespace) -> int:
    env = args.env
    if env is not None and env not in ENVIRONMENTS:
        raise UsageError(f"--env {env}: unknown environment; environments: {', '.join(ENVIRONMENTS)}")
    checks, code = diagnose(getattr(args, "project_dir", None), env)
    checks = [Check(c.status, c.what, redact(c.detail), c.infra) for c in checks]
    summary = _summary(checks)
    if getattr(args, "json", False):
        payload = {
            "command": "doctor",
            "env": env,
            "exit_code": code,
            "checks": [{"status": c.status, "what": c.what, "detail": c.detail} for c in checks],
            "summary": summary,
        }
        print(json_document(payload))
        return code
    for check in checks:
        if check.status != OK or not console.quiet():
            print(f"{check.status:<4} {check.what}: {check.detail}")
    console.final(summary)
    return code


def diagnose(project_dir: str | None, env: str | None) -> tuple[list[Check], int]:
    """Every check, in order, and the exit code they add up to."""
    from mlci.project import load_project

    try:
        project = load_project(find_project(Path(project_dir) if project_dir else Path.cwd()))
    except MlciError as exc:
        return [Check(FAIL, CONFIG_FILE, exc.message)], EXIT_USAGE
    cfg = project.config
    checks = [
        Check(OK, CONFIG_FILE, f"valid (target {cfg.target}, ci.provider {cfg.ci.provider}, model {cfg.model_name})"),
        *tools(project),
        *generated(project),
        *targets.get(cfg.target).doctor(project, env, _ci()),
    ]
    if any(c.status == FAIL and c.infra for c in checks):
        return checks, EXIT_INFRA
    return checks, EXIT_CHECK_FAILED if any(c.status == FAIL for c in checks) else EXIT_OK


def _ci() -> str | None:
    runtime = providers.detect()
    return runtime.name if runtime is not None else None


def _summary(checks: list[Check]) -> str:
    counts = {status: sum(1 for c in checks if c.status == status) for status in (OK, WARN, FAIL)}
    if counts[WARN] == counts[FAIL] == 0:
        return f"doctor: all {counts[OK]} checks ok"
    warned = f"{counts[WARN]} warning{'s' * (counts[WARN] != 1)}"
    return f"doctor: {counts[OK]} ok, {warned}, {counts[FAIL]} failed"


def redact(text: str) -> str:
    """`text` with the value of every secret-named environment variable replaced by ***."""
    values = {v for name, v in os.environ.items() if _SECRET_NAME.search(name) and len(v) >= 8}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


# ---------------------------------------------------------------- tools


def tools(project: Project) -> Iterator[Check]:
    """What the project's stages run: this interpreter's modules (`python -m ruff`, pytest with
    pytest-cov, pre-commit), and git, uv and java from PATH."""
    cfg = project.config
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running == cfg.ci.python:
        yield Check(OK, "python", f"{running}, as ci.python")
    else:
        yield Check(
            WARN,
            "python",
            f"{running} runs mlci here but CI uses {cfg.ci.python} (ci.python): results may differ; "
            f"work in a {cfg.ci.python} environment (uv venv --python {cfg.ci.python})",
        )
    yield _on_path(
        "git",
        FAIL if cfg.lint.pre_commit else WARN,
        "lint.pre_commit runs the hooks on git's tracked files"
        if cfg.lint.pre_commit
        else "train records no git commit as lineage",
        "install git (e.g. apt-get install git)",
    )
    yield _on_path(
        "uv", WARN, "CI installs the project with it", "install it: pip install uv, or https://docs.astral.sh/uv/"
    )
    yield _module("ruff", "ruff", "the lint stage")
    # What is not in mlci's core install is named by its extra (pyproject.toml), which installs it.
    yield _module("pytest", "pytest", "the test stage", "mlci[unit-test]")
    yield _module("pytest_cov", "pytest-cov", "the test stage's coverage", "mlci[unit-test]")
    if cfg.lint.pre_commit:
        yield _module("pre_commit", "pre-commit", "lint.pre_commit", "mlci[pre-commit]")
    if cfg.data_test.engine == "spark":
        yield _module("pyspark", "mlci[spark]", "data_test.engine spark")
        yield _java()


def _on_path(tool: str, missing: str, why: str, fix: str) -> Check:
    # PATH, then the folder of mlci's interpreter: a virtual environment used without activating it.
    search = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])
    found = shutil.which(tool, path=search)
    if found:
        return Check(OK, tool, found)
    return Check(missing, tool, f"not on PATH ({why}); {fix}")


def _module(module: str, requirement: str, needed_by: str, install: str | None = None) -> Check:
    """`install`: what installs it, when not `requirement` itself (an extra of mlci)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return Check(OK, requirement, f"importable by {sys.executable}")
    return Check(
        FAIL,
        requirement,
        f"not installed in {sys.executable} ({needed_by} runs it); "
        f"{sys.executable} -m pip install '{install or requirement}'",
    )


def _java() -> Check:
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        if java.is_file() and os.access(java, os.X_OK):
            return Check(OK, "java", f"{java} (JAVA_HOME)")
        return Check(FAIL, "java", f"JAVA_HOME is {home}, which has no bin/java; point it at a Java 17 install")
    found = shutil.which("java")
    if found:
        return Check(OK, "java", found)
    return Check(
        FAIL,
        "java",
        "not on PATH (data_test.engine spark runs PySpark, which needs Java 17); install one "
        "(e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME",
    )


# ---------------------------------------------------------------- generated files


def generated(project: Project) -> list[Check]:
    """The managed files against a fresh render of mlci.yaml, through the planner `mlci render`
    uses (planned only: nothing is written, the manifest neither), plus the files edited by
    hand since they were rendered (their edits survive render and upgrade, but are edits)."""
    from mlci.manifest import load_manifest
    from mlci.upgrade import engine
    from mlci.upgrade.merge import normalise

    try:
        manifest = load_manifest(project.root)
        plan = engine.plan_render(project, manifest)
    except MlciError as exc:
        return [Check(FAIL, "generated files", exc.message)]
    older = manifest.mlci_version != __version__
    fix = (
        f"rendered by mlci {manifest.mlci_version}: run 'mlci upgrade' to move to {__version__}"
        if older
        else "run 'mlci render'"
    )
    said = {
        engine.UPDATED: "differs from what mlci.yaml renders now",
        engine.MERGED: "edited by hand and differs from what mlci.yaml renders now (your edits are kept)",
        engine.ADDED: "missing: mlci.yaml renders it",
        engine.REMOVED: "no longer rendered from mlci.yaml",
        engine.RELEASED: "no longer rendered from mlci.yaml (edited by you: it becomes yours)",
    }
    checks: list[Check] = []
    changed = set()
    for change in plan.changes:
        changed.add(change.path)
        what = f"generated {change.path}"
        if change.action == engine.OPTED_OUT:
            checks.append(Check(OK, what, "deleted by you: stays deleted"))
        elif change.action == engine.CONFLICT:
            checks.append(Check(FAIL, what, f"{change.detail}; resolve it, then run 'mlci render'"))
        else:
            checks.append(Check(WARN if older else FAIL, what, f"{said[change.action]}; {fix}"))
    for path, recorded in sorted(manifest.managed.items()):
        disk = project.root / path
        if path in changed or not disk.is_file():
            continue
        base = str(manifest.pending.get(path, {}).get("theirs") or recorded["base"])
        ours = disk.read_bytes().decode("utf-8", "replace")
        if normalise(ours) != normalise(base):
            checks.append(
                Check(
                    WARN,
                    f"generated {path}",
                    "edited by hand since mlci rendered it (drift from mlci.yaml): 'mlci render' and 'mlci upgrade' "
                    "keep the edits; move them into mlci.yaml, or restore the file from git",
                )
            )
    if not checks:
        checks.append(
            Check(OK, "generated files", f"{len(manifest.managed)} current with mlci.yaml (mlci {__version__})")
        )
    return checks
