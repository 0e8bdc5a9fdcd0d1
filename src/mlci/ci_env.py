"""What CI system we run on, and how to hand it outputs, summaries and annotations."""

from __future__ import annotations

import os
from collections.abc import Mapping


def provider() -> str | None:
    """'github', 'azure', 'jenkins' or None on a laptop."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return "github"
    if os.environ.get("TF_BUILD", "").lower() == "true":
        return "azure"
    if os.environ.get("JENKINS_URL"):
        return "jenkins"
    return None


def run_url() -> str | None:
    """A link to the CI run, recorded on MLflow runs for lineage."""
    env = os.environ
    kind = provider()
    if kind == "github" and env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env.get('GITHUB_REPOSITORY', '')}/actions/runs/{env['GITHUB_RUN_ID']}"
    if kind == "azure" and env.get("BUILD_BUILDID"):
        base = env.get("SYSTEM_COLLECTIONURI", "")
        return f"{base}{env.get('SYSTEM_TEAMPROJECT', '')}/_build/results?buildId={env['BUILD_BUILDID']}"
    if kind == "jenkins":
        return env.get("BUILD_URL")
    return None


def _escape_workflow_command(value: str) -> str:
    # GitHub's documented escaping for workflow command data.
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def annotation(
    level: str,
    message: str,
    file: str | None = None,
    line: int | None = None,
    col: int | None = None,
    title: str | None = None,
) -> str | None:
    """The provider's annotation line for one finding, or None off CI."""
    kind = provider()
    if kind == "github":
        props = [f"{k}={v}" for k, v in (("file", file), ("line", line), ("col", col), ("title", title)) if v]
        head = f"::{level} " + ",".join(p.replace(",", "%2C").replace(":", "%3A") for p in props)
        return f"{head.rstrip()}::{_escape_workflow_command(message)}"
    if kind == "azure":
        fields = ";".join(
            f"{k}={v}"
            for k, v in (("type", level), ("sourcepath", file), ("linenumber", line), ("columnnumber", col))
            if v
        )
        return f"##vso[task.logissue {fields}]{message.splitlines()[0] if message else ''}"
    return None


def set_outputs(values: Mapping[str, object]) -> None:
    """Expose step outputs: $GITHUB_OUTPUT on GitHub, output variables on Azure DevOps."""
    kind = provider()
    if kind == "github" and os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
            for key, value in values.items():
                text = "" if value is None else str(value)
                if "\n" in text:
                    out.write(f"{key}<<MLCI_EOF\n{text}\nMLCI_EOF\n")
                else:
                    out.write(f"{key}={text}\n")
    elif kind == "azure":
        for key, value in values.items():
            print(f"##vso[task.setvariable variable={key};isOutput=true]{'' if value is None else value}")


def add_summary(markdown: str) -> None:
    """Append Markdown to the job summary where the CI system has one."""
    path = os.environ.get("GITHUB_STEP_SUMMARY") if provider() == "github" else None
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(markdown.rstrip("\n") + "\n\n")
