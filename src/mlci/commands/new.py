"""`mlci new NAME`: scaffold a new ML project.

Everything is rendered in memory and validated first, then written into a temporary
directory beside the target and moved into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlci import __version__, git, providers, targets
from mlci.answers import CI_ANSWERS, check_project_name, validate_answers
from mlci.config import CONFIG_FILE
from mlci.errors import InfraError, UsageError
from mlci.generate import plan_existing, render_files, write_tree
from mlci.install_source import InstallSource, installed_source
from mlci.upgrade.pin import DETECTED_KEY

ANSWER_KEYS = (
    "description",
    "author",
    "python_version",
    "package",
    "model_name",
    "actions",
    "mlci_repository",
    "mlci_ref",
    "mlci_install",
    "retrain_cron",
)


def parse_data(pairs: list[str]) -> dict[str, str]:
    answers: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--data {pair!r} is not KEY=VALUE; e.g. --data description='Churn model'")
        if key not in ANSWER_KEYS:
            close = difflib.get_close_matches(key, ANSWER_KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(ANSWER_KEYS)}"
            raise UsageError(f"--data {key}: unknown key; {hint}")
        answers[key] = value
    return answers


def collect_answers(
    name: str,
    provider: str | None,
    target: str | None,
    data: Mapping[str, str],
    interactive: bool,
    ask: Callable[[str, str], str] = lambda q, d: input(f"{q} [{d}]: ").strip() or d,
    install: InstallSource | None = None,
) -> dict[str, Any]:
    """Answers from flags, --data, prompts (only on a TTY without --defaults), then defaults.

    `install` is the default of ci.mlci_install (default: how the running mlci was installed).
    """
    package = data.get("package", name.replace("-", "_"))
    git_user = None if "author" in data else git.user_name()
    # Where each answer came from, for the one line that refuses a bad one.
    sources = {key: f"--data {key}" for key in data}
    sources.setdefault("package", f"project name {name!r}")
    sources.setdefault("author", "git config user.name (answer with --data author=...)")
    sources.update(provider="--provider", target="--target")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    defaults: dict[str, Any] = {
        "description": f"{name}: a machine-learning project with CI/CD by mlci.",
        "author": data.get("author") or git_user or "ML team",
        "python_version": running if sys.version_info >= (3, 10) else "3.10",
        "provider": provider or providers.DEFAULT,
        "target": target or targets.DEFAULT,
    }
    answers: dict[str, Any] = {**defaults, **{k: v for k, v in data.items() if k in defaults}}
    if interactive:
        for key in ("description", "author", "python_version"):
            if key not in data:
                answers[key] = ask(key.replace("_", " "), str(answers[key]))
                sources[key] = f"the answer to {key.replace('_', ' ')!r}"
        if provider is None:
            answers["provider"] = _ask_choice(ask, "CI provider", tuple(providers.NAMES), providers.DEFAULT)
        if target is None:
            answers["target"] = _ask_choice(ask, "target", tuple(targets.NAMES), targets.DEFAULT)
    ci_answers = {key: data[key] for key in CI_ANSWERS if key in data}
    # Recorded in the manifest: a detected default moves with the vendored actions on `mlci upgrade`,
    # an explicit answer is the user's and is never touched (upgrade/pin.py).
    detected = False
    if "mlci_install" not in data and data.get("actions") != "remote":  # remote: the actions' own checkout
        source = install or installed_source()
        ci_answers["mlci_install"] = (
            ask("mlci install source for CI (ci.mlci_install)", source.requirement)
            if interactive
            else source.requirement
        )
        detected = ci_answers["mlci_install"] == source.requirement  # the default, accepted as is
        sources["mlci_install"] = "the mlci install source (answer with --data mlci_install=...)"
    target = answers["target"]  # an unknown one is refused with its source by validate_answers below
    default_model = targets.get(target).default_model_name(package) if target in targets.NAMES else package
    collected = {
        **ci_answers,
        "name": name,
        "package": package,
        "description": answers["description"],
        "author": answers["author"],
        "python_version": answers["python_version"],
        "provider": answers["provider"],
        "target": answers["target"],
        "model_name": data.get("model_name", default_model),
        "mlci_version": __version__,
        DETECTED_KEY: detected,
    }
    validate_answers(collected, sources)
    return collected


def _ask_choice(ask: Callable[[str, str], str], question: str, choices: tuple[str, ...], default: str) -> str:
    while True:
        value = ask(f"{question} ({'/'.join(choices)})", default)
        if value in choices:
            return value
        print(f"  choose one of {', '.join(choices)}", file=sys.stderr)


def git_init(target: Path) -> str:
    """git init + initial commit; returns what happened (never fails the scaffold)."""
    if not git.available():
        return "git not found: skipped git init"
    if (target / ".git").exists():
        return "already a git repository: left as is"
    try:
        git.init_and_commit(target, f"Scaffold with mlci {__version__}")
    except InfraError as exc:
        return f"git init failed ({exc.message}); the files are in place, initialise git yourself"
    return "git repository initialised with an initial commit"


def install_note(answers: Mapping[str, Any], detected: InstallSource) -> str:
    """Which mlci CI installs, and where to change it."""
    change = f"change ci.mlci_install in {CONFIG_FILE}, then run 'mlci render'"
    if "mlci_install" not in answers:
        return f"CI installs mlci from the remote actions' checkout ({answers.get('mlci_repository')}); {change}"
    requirement = answers["mlci_install"]
    origin = f" ({detected.origin})" if requirement == detected.requirement else ""
    return f"CI installs {requirement!r}{origin}; {change}"


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    check_project_name(args.name)  # before --data, whose errors would otherwise hide a bad name
    data = parse_data(args.data)
    interactive = not args.defaults and sys.stdin.isatty() and not os.environ.get("CI")
    install = installed_source()
    answers = collect_answers(args.name, args.provider, args.target, data, interactive, install=install)
    target = Path(args.output_dir) / args.name
    overwrite = frozenset(Path(path).as_posix() for path in getattr(args, "overwrite", None) or [])
    force = args.force or bool(overwrite)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a directory; choose another name or --output-dir")
    existing = target.is_dir() and any(target.iterdir())
    if existing and not force:
        raise UsageError(f"{target} is not empty; choose another name or --output-dir, or pass --force")
    files = render_files(answers, root=target)
    to_write = plan_existing(target, files, overwrite) if existing else dict(files)
    write_tree(target, to_write, force)
    git_note = "git init skipped (--no-git)" if args.no_git else git_init(target)
    elapsed = time.perf_counter() - started
    print(
        f"Created {target} ({len(files)} files, {answers['provider']} CI, target {answers['target']}) in {elapsed:.2f}s"
    )
    print(f"  {git_note}")
    if existing:
        replaced = sorted(set(to_write) & overwrite)
        print(
            f"  into the existing directory: {len(to_write) - len(replaced)} new, {len(replaced)} replaced "
            f"(--overwrite), {len(files) - len(to_write)} unchanged"
        )
    for index, line in enumerate(targets.get(str(answers["target"])).scaffold_note):
        print(f"  {'note: ' if index == 0 else '  '}{line}")
    print(f"  {install_note(answers, install)}")
    if "mlci_install" not in data and answers.get("mlci_install") == install.requirement and install.warning:
        print(f"  warning: {install.warning}", file=sys.stderr)
    print("Next:")
    print(f"  cd {target}")
    print("  pip install -e '.[dev]'   # the project and the same mlci CI installs")
    print("  mlci run                  # lint, test, data-test, train, register, deploy to staging")
    print("  mlci deploy --env production   # release what staging verified; settings in " + CONFIG_FILE)
    return 0
