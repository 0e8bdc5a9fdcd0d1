"""Jenkins as a running stage sees it: detected by its build variables, it reads no commands
from the log, so a stage hands its outputs over in a Java properties file and its summary in
a Markdown file, both under the workspace's `.mlci/out/jenkins/`, named after the job id the
Jenkinsfile sets per stage (`environment { MLCI_JOB = 'train' }`).

The next stage reads the outputs after `unstash` (`readProperties` of pipeline-utility-steps,
`java.util.Properties`, or `sed` for a plain value such as a run id); the summary is archived
with `.mlci/out/**` by `archiveArtifacts`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from mlci import fs
from mlci.errors import UsageError

OUT_DIR = ".mlci/out/jenkins"  # relative to WORKSPACE: where the Jenkinsfile stashes and archives
DEFAULT_JOB = "stage"  # the file name when the stage sets no MLCI_JOB
_JOB_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a file name of its own: no '/', no '..'
# java.util.Properties.saveConvert's escapes; '=', ':', '#' and '!' get a backslash as they are.
_CONTROL = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}


def escape_property(text: str, *, key: bool) -> str:
    """`text` as java.util.Properties.store writes it: read back exactly by Properties.load
    (from bytes, ISO 8859-1, or a Reader of any charset: the result is ASCII).

    Backslash, tab, newline, return and form feed as their escapes; `=`, `:`, `#`, `!` behind
    a backslash (a separator or a comment marker otherwise); a space behind one in a key, and
    at the start of a value (load skips leading white space); everything outside printable
    ASCII as \\uXXXX, a character beyond the BMP as its two UTF-16 surrogates.
    """
    out: list[str] = []
    for index, char in enumerate(text):
        if char in _CONTROL:
            out.append(_CONTROL[char])
        elif char == " ":
            out.append("\\ " if key or index == 0 else " ")
        elif char in "=:#!":
            out.append("\\" + char)
        elif " " < char <= "~":
            out.append(char)
        else:
            units = char.encode("utf-16-be", "surrogatepass")
            out.extend(f"\\u{int.from_bytes(units[i : i + 2], 'big'):04X}" for i in range(0, len(units), 2))
    return "".join(out)


class JenkinsRuntime:
    name = "jenkins"
    # Jenkins reads no commands from the log (console notes are signed by the controller).
    markers: tuple[str, ...] = ()
    line_start_marker = ""
    # What Jenkins sets in every build (JENKINS_URL, the controller): what `detected` reads.
    documented_env: Mapping[str, str] = MappingProxyType({"JENKINS_URL": "https://ci.example/"})

    def job_env(self, tmp: Path) -> dict[str, str]:
        # Jenkins' documented build variables (env-vars.html) of one stage of a Multibranch job.
        return {
            **self.documented_env,
            "BUILD_URL": "https://ci.example/job/demo/job/main/1/",
            "BUILD_NUMBER": "1",
            "BUILD_TAG": "jenkins-demo-main-1",
            "JOB_NAME": "demo/main",
            "BRANCH_NAME": "main",
            "WORKSPACE": str(tmp),
            "MLCI_JOB": "train",
        }

    def detected(self, env: Mapping[str, str]) -> bool:
        # JENKINS_URL and BUILD_URL exist only once the controller's URL is configured; BUILD_TAG
        # ("jenkins-${JOB_NAME}-${BUILD_NUMBER}") is set in every build regardless.
        return bool(env.get("JENKINS_URL") or env.get("BUILD_URL") or env.get("BUILD_TAG", "").startswith("jenkins-"))

    def run_url(self, env: Mapping[str, str]) -> str | None:
        return env.get("BUILD_URL") or None

    def annotation(
        self,
        level: str,
        message: str,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        title: str | None = None,
    ) -> str | None:
        return None

    def set_outputs(self, values: Mapping[str, object], env: Mapping[str, str]) -> list[str]:
        """The outputs in `.mlci/out/jenkins/<MLCI_JOB>.properties`: a key set again (a second
        stage of `mlci run`) replaces its line, so every key is in the file once."""
        path = _job_file(env, "properties")
        lines = _read_lines(path) or [f"# mlci outputs of Jenkins job {path.stem}: java.util.Properties format"]
        for key, value in values.items():
            head = escape_property(key, key=True) + "="
            # A line of ours holds one escaped key, whose '=' are all escaped: `head` starts only its own.
            lines = [line for line in lines if not line.startswith(head)]
            lines.append(head + escape_property("" if value is None else str(value), key=False))
        _write(path, env, "".join(line + "\n" for line in lines))
        return []

    def add_summary(self, markdown: str, env: Mapping[str, str]) -> list[str]:
        """Append to `.mlci/out/jenkins/<MLCI_JOB>.md` (archived with .mlci/out/**)."""
        path = _job_file(env, "md")
        before = path.read_text(encoding="utf-8") if path.is_file() else ""
        _write(path, env, before + markdown.rstrip("\n") + "\n\n")
        return []

    def stop_commands(self, token: str) -> tuple[str, str] | None:
        return None


def workspace(env: Mapping[str, str]) -> Path:
    """The build's workspace (WORKSPACE; the current directory outside a Jenkins build step)."""
    return Path(env.get("WORKSPACE") or Path.cwd())


def _job_file(env: Mapping[str, str], suffix: str) -> Path:
    job = env.get("MLCI_JOB") or DEFAULT_JOB
    if not _JOB_RE.fullmatch(job):
        raise UsageError(
            f"MLCI_JOB is {job!r}, not a job id; set it in the stage's environment {{ }} to letters, "
            "digits, '-', '_' or '.' (the Jenkinsfile mlci renders sets the stage's job id)"
        )
    return workspace(env) / OUT_DIR / f"{job}.{suffix}"


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


def _write(path: Path, env: Mapping[str, str], text: str) -> None:
    # Whole, never through a symlink a checkout planted under .mlci (fs.write_atomic).
    fs.write_atomic(path, text.encode("utf-8"), root=workspace(env))


RUNTIME = JenkinsRuntime()
