"""The Python side of the offline Jenkins stand-in, tests/jenkins/declarative.groovy.

No Jenkins controller is installable here, so the tests load a Jenkinsfile with Debian's groovy
(2.4, the Groovy line Jenkins runs) through a Declarative DSL stub that checks Jenkins' rules
(`validate`) and runs the pipeline on this host (`execute`): sh steps for real, a fresh
workspace per stage agent, stash/unstash, junit, archiveArtifacts, copyArtifacts, input answered,
withCredentials bound to dummy values. The stub's docstring lists what it models.

Each call is one JVM (about 2-3 s): validate many files in one call. The stub is compiled once
per content (groovyc, into the temp dir) and then run with plain `java`, which starts faster
than the groovy launcher compiling the script every time.

Not proved by this stand-in: a real controller, its plugins, agents, containers or credential
store.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STUB = Path(__file__).parent / "jenkins" / "declarative.groovy"
INSTALL_HINT = "install Debian's groovy 2.4: `apt-get install -y groovy` (.ci/run and scripts/test.sh do it as root)"

# The stub's exit codes.
OK, RULE_ERRORS, SYNTAX_ERROR, CRASH = 0, 1, 2, 3

CAUSES = ("BranchEventCause", "BranchIndexingCause", "SCMTrigger", "TimerTrigger", "UpstreamCause", "UserIdCause")


class GroovyMissing(RuntimeError):
    """groovy (or a JDK 17 for it) is not installed: the Jenkins tests cannot run."""


class StubCrash(RuntimeError):
    """The stub itself failed (a usage error or a bug), not the Jenkinsfile it was given."""


@dataclass(frozen=True)
class _Toolchain:
    java: Path
    classpath: str
    env: dict[str, str]


def java_home() -> Path:
    """JAVA_HOME when it holds bin/java, else the first JDK 17 under /usr/lib/jvm (groovy 2.4 needs one)."""
    given = os.environ.get("JAVA_HOME")
    if given and (Path(given) / "bin" / "java").is_file():
        return Path(given)
    for home in sorted(Path("/usr/lib/jvm").glob("*17*")):
        if (home / "bin" / "java").is_file():
            return home
    raise GroovyMissing(f"no JDK 17 found (JAVA_HOME unset or invalid, nothing in /usr/lib/jvm/*17*): {INSTALL_HINT}")


@functools.cache
def _toolchain() -> _Toolchain:
    groovy = shutil.which("groovy")
    if groovy is None:
        raise GroovyMissing(f"groovy is not on PATH: {INSTALL_HINT}")
    home = java_home()
    env = {**os.environ, "JAVA_HOME": str(home)}
    # /usr/bin/groovy -> /usr/share/groovy/bin/groovy; its jars are in ../lib.
    lib = Path(os.path.realpath(groovy)).parent.parent / "lib"
    groovyc = Path(os.path.realpath(groovy)).parent / "groovyc"
    if not lib.is_dir() or not groovyc.is_file():
        raise GroovyMissing(f"groovy at {groovy} has no lib/ or groovyc next to it: {INSTALL_HINT}")
    digest = hashlib.sha256(STUB.read_bytes()).hexdigest()[:16]
    classes = Path(tempfile.gettempdir()) / f"mlci-jenkins-stub-{digest}"
    if not (classes / "declarative.class").is_file():
        # Compile into a private folder and rename it into place: pytest workers may race here.
        scratch = Path(tempfile.mkdtemp(prefix="mlci-jenkins-stub-"))
        done = subprocess.run(
            [str(groovyc), "-d", str(scratch), str(STUB)], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise StubCrash(f"groovyc could not compile {STUB}:\n{done.stdout}{done.stderr}")
        try:
            scratch.rename(classes)
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)
    return _Toolchain(java=home / "bin" / "java", classpath=f"{lib}/*{os.pathsep}{classes}", env=env)


def _run(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    tc = _toolchain()
    # C1 only and one GC thread: these JVMs live a few seconds, start-up is what costs.
    cmd = [str(tc.java), "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", tc.classpath, "declarative", *args]
    return subprocess.run(cmd, env=tc.env, capture_output=True, text=True, timeout=timeout, check=False)


def _library_args(libraries: Mapping[str, Path] | None) -> list[str]:
    out: list[str] = []
    for name, folder in (libraries or {}).items():
        out += ["--library", f"{name}={folder}"]
    return out


def validate(files: Sequence[Path], libraries: Mapping[str, Path] | None = None) -> list[dict[str, Any]]:
    """Check every file against the Declarative rules in one JVM; one result dict per file, in order.

    Each dict: file, ok, syntax_error (`NAME:LINE: message` or None), errors (`NAME:LINE: ...`),
    stages (name, path, line, kind, agent, when, input, steps) and tree (the recorded DSL).
    `libraries` maps a library name to a folder holding vars/*.groovy (for `@Library('name') _`).
    """
    if not files:
        return []
    done = _run(["validate", *_library_args(libraries), *(str(f) for f in files)], timeout=300)
    if done.returncode not in (OK, RULE_ERRORS, SYNTAX_ERROR):
        raise StubCrash(f"declarative.groovy validate exited {done.returncode}:\n{done.stderr}")
    results = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if len(results) != len(files):
        raise StubCrash(f"declarative.groovy gave {len(results)} results for {len(files)} files:\n{done.stderr}")
    return results


def execute(
    jenkinsfile: Path,
    source: Path,
    tmp: Path,
    *,
    env: Mapping[str, str],
    cause: str,
    credentials: Mapping[str, object] | None = None,
    answer: str = "approve",
    store: Path | None = None,
    libraries: Mapping[str, Path] | None = None,
    approver: str | None = None,
    params: Mapping[str, str] | None = None,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Run the Jenkinsfile on this host as Jenkins would and return the build's JSON.

    source: a git repository (checkout scm fetches its HEAD). tmp: a scratch folder of this call
    (workspaces, the credentials file, the store unless given). store: the "controller's" build
    store (builds/N/{archive,stashes,log.txt,result.json}); pass the same one to later calls so
    copyArtifacts sees earlier builds. cause: one of CAUSES, optionally `UserIdCause:user`.
    params: the build's parameter values by name (the pipeline's defaults for the rest).
    credentials: {"ID": "secret"} or {"ID": {"username": ..., "password": ...}}.

    The dict: result (SUCCESS|FAILURE|UNSTABLE|ABORTED, None when the file broke the rules),
    build_number, stages [{name, path, status, skipped_by, workspace, node, steps, post}],
    post, junit, archived, triggers, inputs, errors, log, and exit_code (0 ran, 1 rule errors,
    2 syntax error).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    store = store if store is not None else tmp / "store"
    creds = tmp / "credentials.json"
    creds.write_text(json.dumps(dict(credentials or {})), encoding="utf-8")
    args = [
        "execute",
        str(jenkinsfile),
        "--workspace-root",
        str(tmp / "workspaces"),
        "--source",
        str(source),
        "--store",
        str(store),
        "--cause",
        cause,
        "--credentials",
        str(creds),
        "--answer",
        answer,
        *_library_args(libraries),
    ]
    if approver is not None:
        args += ["--approver", approver]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    for key, value in (params or {}).items():
        args += ["--param", f"{key}={value}"]
    done = _run(args, timeout=timeout)
    if done.returncode not in (OK, RULE_ERRORS, SYNTAX_ERROR):
        raise StubCrash(f"declarative.groovy execute exited {done.returncode}:\n{done.stderr}")
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise StubCrash(f"declarative.groovy execute printed no JSON ({exc}):\n{done.stdout}\n{done.stderr}") from exc
    result["exit_code"] = done.returncode
    return result


def stage(result: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The stage record of an execute() result by its path ("Checks/Lint")."""
    for record in result["stages"]:
        if record["path"] == path:
            return dict(record)
    raise KeyError(f"no stage {path!r} in {[r['path'] for r in result['stages']]}")
