"""Where a generated project's CI should install mlci from: a source CI can actually reach.

Read from how the running mlci was installed (PEP 610 `direct_url.json`):
- from a VCS URL: `mlci @ git+URL@<commit_id>`, pinned by commit;
- from an https archive URL: `mlci @ URL`;
- from an index (no direct_url.json): `mlci==<version>`;
- from a local directory (editable or not), which CI cannot reach: when it is a git checkout
  whose `origin` is an https URL, `mlci @ git+<origin>@<HEAD>`; otherwise `mlci==<version>`
  with a warning.
Never a URL with credentials in it: the requirement is written into mlci.yaml and CI logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mlci import __version__, git

# What ci.mlci_install accepts (and the config pattern): nothing a shell or ${{ }} interprets.
_SAFE = re.compile(r"^[\w.\-\[\],=<>!~@:/+ ]+$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_SCP_LIKE = re.compile(r"^[\w.-]+@([\w.-]+):([\w./-]+)$")  # git@github.com:owner/repo.git


@dataclass(frozen=True)
class InstallSource:
    requirement: str
    origin: str  # how it was found, for the line `mlci new` prints
    warning: str | None = None


def index_source(version: str, warning: str | None = None) -> InstallSource:
    origin = "the package index, as a fallback" if warning else "the package index mlci was installed from"
    return InstallSource(f"mlci=={version}", origin, warning)


def _https(url: str) -> str | None:
    """`url` if it is a credential-free https URL safe to write into mlci.yaml, else None."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc or parts.query or parts.fragment:
        return None
    return url if _SAFE.match(url) else None


def git_checkout(path: Path) -> tuple[str | None, str | None]:
    """The `origin` remote URL and HEAD commit of a git checkout (None where there is none)."""

    return git.output(path, "remote", "get-url", "origin"), git.output(path, "rev-parse", "HEAD")


def _remote_as_https(remote: str) -> str | None:
    scp = _SCP_LIKE.match(remote)
    if scp:  # the ssh form of a public host: CI has no key, but the https URL works
        remote = f"https://{scp.group(1)}/{scp.group(2)}"
    return _https(remote)


def detect(
    direct_url: str | None,
    version: str = __version__,
    checkout: Callable[[Path], tuple[str | None, str | None]] = git_checkout,
) -> InstallSource:
    """The install source for the mlci described by `direct_url` (the text of direct_url.json)."""
    if direct_url is None:
        return index_source(version)
    try:
        info = json.loads(direct_url)
        url = str(info["url"])
    except (ValueError, KeyError, TypeError):
        return index_source(version, "mlci's install record (direct_url.json) is unreadable")
    vcs = info.get("vcs_info")
    if isinstance(vcs, dict):
        commit = str(vcs.get("commit_id", ""))
        safe = _https(url)
        if vcs.get("vcs") == "git" and safe and _SHA.match(commit) and not info.get("subdirectory"):
            return InstallSource(f"mlci @ git+{safe}@{commit}", f"the git commit mlci was installed from ({safe})")
        return index_source(version, f"mlci was installed from {vcs.get('vcs', 'a VCS')} URL CI cannot use as is")
    if "archive_info" in info:
        safe = _https(url)
        if safe:
            return InstallSource(f"mlci @ {safe}", "the archive mlci was installed from")
        return index_source(version, "mlci was installed from a local archive, which CI cannot reach")
    if url.startswith("file://"):
        path = Path(unquote(urlsplit(url).path))
        remote, head = checkout(path)
        https = _remote_as_https(remote) if remote else None
        if https and head and _SHA.match(head):
            return InstallSource(
                f"mlci @ git+{https}@{head}",
                f"the commit of the mlci checkout at {path} (push it to {https} before CI runs)",
            )
        return index_source(
            version,
            f"mlci runs from the local directory {path}, which CI cannot reach (no https 'origin' remote); "
            f"mlci=={version} must be on your package index",
        )
    return index_source(version, f"mlci was installed from {url}, which CI may not reach")


def installed_from_index() -> bool:
    """Whether the running mlci came from a package index (PEP 610: no direct_url.json)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        return distribution("mlci").read_text("direct_url.json") is None
    except PackageNotFoundError:  # imported from a source tree without being installed
        return False


def installed_source() -> InstallSource:
    """The install source for the mlci running now."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        text = distribution("mlci").read_text("direct_url.json")
    except PackageNotFoundError:  # imported from a source tree without being installed
        text = None
    return detect(text)


def unpinned(requirement: str) -> str:
    """The same source without its pin, for the job that looks for a newer mlci."""
    if re.fullmatch(r"mlci\s*==\s*[\w.+!-]+", requirement):
        return "mlci"
    pinned = re.fullmatch(r"(mlci\s*@\s*git\+https://[^@\s]+)@[0-9a-f]{40}", requirement)
    return pinned.group(1) if pinned else requirement


def with_extras(requirement: str, extras: tuple[str, ...]) -> str:
    """`requirement` (an mlci requirement: `mlci==X`, `mlci>=X`, `mlci @ URL`, `mlci[a]...`)
    with `extras` added to the ones it names; any other text is returned as it is."""
    if not extras:
        return requirement
    named = re.match(r"^mlci\s*(?:\[([^\]]*)\])?", requirement)
    if not named:
        return requirement
    have = [e.strip() for e in (named.group(1) or "").split(",") if e.strip()]
    every = ",".join(dict.fromkeys((*have, *extras)))
    rest = requirement[named.end() :]
    return f"mlci[{every}]" + (" " + rest.lstrip() if rest.lstrip().startswith("@") else rest.lstrip())


# The project's `dev` extra: what `mlci run` on a laptop needs (pyproject.toml's `all`).
DEV_EXTRAS = ("all",)


def dev_requirement(mlci_install: str, mlci_repository: str, mlci_ref: str, version: str) -> str:
    """The project's `dev` extra: the same source CI installs, with every stage's extras
    (`mlci[all]`), as a PEP 508 requirement."""
    if re.match(r"^mlci(\s*[@=<>!~\[]|$)", mlci_install):
        return with_extras(mlci_install, DEV_EXTRAS)
    if mlci_install and Path(mlci_install).is_absolute():  # a local checkout (mlci's own tests, a monorepo)
        return f"mlci[all] @ {Path(mlci_install).as_uri()}"
    if not mlci_install and mlci_repository and mlci_ref:  # remote actions: install their commit
        return f"mlci[all] @ git+https://github.com/{mlci_repository}@{mlci_ref}"
    return f"mlci[all]>={version}"
