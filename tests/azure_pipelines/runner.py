"""A host runner for expanded Azure pipelines ("act for Azure"): every step runs for real, here.

Models: stages in `dependsOn` order (default: the previous stage) and jobs within a stage in
`dependsOn` order (default: none), one at a time; `condition:` (default succeeded()) with
succeeded/failed/always/succeededOrFailed/canceled, `variables['...']`, `dependencies.<job>`
(`.result`, `.outputs['step.var']`, deployment jobs as `outputs['<job>.step.var']`),
`dependencies.<stage>.outputs['job.step.var']` in stage conditions and
`stageDependencies.<stage>.<job>.outputs[...]` from the stages a stage depends on; variables at
pipeline, stage and job level (`$[ ]` runtime expressions included); Azure's predefined variables
as env (TF_BUILD=True, BUILD_SOURCESDIRECTORY ...) plus step `env:`; `$(macro)` substitution in
script bodies and task inputs before the step runs (an undefined macro stays literal); the
`##vso[task.setvariable|logissue|uploadsummary|complete|prependpath]` lines steps print,
unescaped as the agent does (%3B %0D %0A %5D, then %AZP25); a fresh working copy per job
(checkout copies the project; a job's own changes never reach another job); stand-ins for the
tasks mlci uses (see TASKS); PublishTestResults and PublishCodeCoverageResults are stricter
than Azure: a missing or unparsable file fails the step. A relative `workingDirectory` is rooted
at the default working directory, as the agent roots it. `kept_folders` stand for what a
self-hosted agent keeps in its reused build directory (a warm uv cache). Each job's log ends with
its duration, and each `$[ ]` job variable (a hand-over) is logged with the value it took.

Does not model: the Azure service (approvals and checks on environments, service connections,
workload identity federation token exchange, System.AccessToken, agent pools and demands,
parallel job limits and real parallelism, exclusive locks, retries, variable groups, secret
masking beyond the log, matrix/parallel strategies, triggers and schedules).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .expander import expand
from .expressions import AzurePipelineError, Function, evaluate, lookup, to_bool, to_str

RESULTS = {
    "succeeded": "Succeeded",
    "succeededWithIssues": "SucceededWithIssues",
    "failed": "Failed",
    "skipped": "Skipped",
}
OK = ("succeeded", "succeededWithIssues")
VSO = re.compile(r"##vso\[(?P<command>[\w.]+)(?P<props>[^\]]*)\](?P<data>.*)")
MACRO = re.compile(r"\$\(([A-Za-z0-9_.\-]+)\)")
RUNTIME = re.compile(r"^\s*\$\[(.*)\]\s*$", re.DOTALL)
DEFAULTS = {
    "Build.SourceBranch": "refs/heads/main",
    "Build.Reason": "IndividualCI",
    "Build.BuildId": "1",
    "Build.BuildNumber": "1",
    "Build.Repository.Name": "project",
    "System.CollectionUri": "https://dev.azure.com/offline/",
    "System.TeamProject": "offline",
    "System.JobAttempt": "1",
    "Agent.OS": "Linux",
}


def unescape(text: str) -> str:
    for escaped, plain in (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%AZP25", "%")):
        text = text.replace(escaped, plain)
    return text


def env_name(variable: str) -> str:
    return variable.upper().replace(".", "_").replace(" ", "_")


@dataclass
class Issue:
    job: str
    type: str
    message: str
    properties: dict[str, str]


@dataclass
class RunResult:
    """One run: each job's and stage's result ("Stage.Job" -> succeeded / succeededWithIssues /
    failed / skipped), the jobs in the order they ran, their output variables, the issues and
    summaries steps reported, and the whole log kept in a file."""

    jobs: dict[str, str]
    stages: dict[str, str]
    order: list[str]
    outputs: dict[str, dict[str, str]]
    issues: list[Issue]
    summaries: list[str]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def explain(self, *jobs: str) -> str:
        shown = jobs or tuple(j for j, r in self.jobs.items() if r == "failed")
        parts = [f"results: {self.jobs}", f"whole log: {self.log_path}"]
        for job in shown:
            lines = [line for line in self.log.splitlines() if line.startswith(f"[{job}]")]
            parts += [f"--- {job} (last 40 lines)", *lines[-40:]]
        return "\n".join(parts)


@dataclass
class Job:
    key: str  # Stage.Job
    name: str
    deployment: bool
    variables: dict[str, Any]
    workspace: Path
    result: str = "succeeded"
    outputs: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    path_prefix: list[str] = field(default_factory=list)
    # (the key input unresolved, the key it resolved to at restore, the path) per Cache step run
    cache_saves: list[tuple[str, str, Path]] = field(default_factory=list)


def dependencies_of(item: dict[str, Any], default: list[str]) -> list[str]:
    if "dependsOn" not in item:
        return default
    value = item["dependsOn"]
    return [] if value in (None, "") else [value] if isinstance(value, str) else [str(v) for v in value]


def ordered(
    items: list[dict[str, Any]], kind: str, defaults: Callable[[int], list[str]]
) -> list[tuple[str, dict[str, Any], list[str]]]:
    """Items in an order that honours dependsOn (list order among the ready ones)."""
    named = [
        (str(item.get(kind) or item.get("deployment")), item, dependencies_of(item, defaults(i)))
        for i, item in enumerate(items)
    ]
    names = {name for name, _, _ in named}
    for name, _, needs in named:
        for need in needs:
            if need not in names:
                raise AzurePipelineError(f"{kind} '{name}' dependsOn '{need}', which does not exist; fix dependsOn")
    done: list[str] = []
    result: list[tuple[str, dict[str, Any], list[str]]] = []
    while len(result) < len(named):
        ready = [entry for entry in named if entry[0] not in done and all(n in done for n in entry[2])]
        if not ready:
            raise AzurePipelineError(f"the {kind}s' dependsOn form a cycle; break it")
        result.append(ready[0])
        done.append(ready[0][0])
    return result


def lay_out_kept(source: Path, target: Path) -> None:
    """A folder a self-hosted agent kept in its build directory from earlier runs: a folder of
    symlinks to source's entries (a warm uv cache serves installs without being copied)."""
    target.mkdir(parents=True)
    for entry in sorted(source.iterdir()):
        (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())


def overlay(source: Path, target: Path) -> None:
    """Copy source over target as the Cache task's archive extraction does: an entry already
    there is replaced (symlinks are copied as symlinks)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        dest = target / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if dest.is_symlink() or dest.is_file():
                dest.unlink()
            overlay(entry, dest)
            continue
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.is_dir():
            shutil.rmtree(dest)
        if entry.is_symlink():
            dest.symlink_to(os.readlink(entry))
        else:
            shutil.copy2(entry, dest)


def overall(results: list[str]) -> str:
    """A stage's result from its jobs' results."""
    if "failed" in results:
        return "failed"
    if all(r == "skipped" for r in results):
        return "skipped"
    return "succeededWithIssues" if "succeededWithIssues" in results else "succeeded"


def status_functions(results: dict[str, str], needs: list[str]) -> dict[str, tuple[int, int, Function]]:
    def pick(args: list[Any]) -> list[str]:
        return [results.get(to_str(a), "skipped") for a in args] if args else [results[n] for n in needs]

    return {
        "succeeded": (0, 99, lambda a: all(r in OK for r in pick(a))),
        "failed": (0, 99, lambda a: any(r == "failed" for r in pick(a))),
        "succeededorfailed": (0, 99, lambda a: all(r != "skipped" for r in pick(a))),
        "always": (0, 0, lambda a: True),
        "canceled": (0, 0, lambda a: False),
    }


class Runner:
    def __init__(
        self,
        project: Path,
        work: Path,
        variables: dict[str, str],
        python_dir: Path,
        kept_folders: dict[str, Path] | None = None,
    ) -> None:
        self.project, self.work, self.python_dir = project, work, python_dir
        self.kept_folders = kept_folders or {}
        self.store = work / "store"
        self.variables = {**DEFAULTS, **variables}
        branch = self.variables["Build.SourceBranch"]
        self.variables.setdefault("Build.SourceBranchName", branch.rsplit("/", 1)[-1])
        self.jobs: dict[str, str] = {}
        self.stages: dict[str, str] = {}
        self.order: list[str] = []
        self.outputs: dict[str, dict[str, str]] = {}
        self.issues: list[Issue] = []
        self.summaries: list[str] = []
        self.secrets: list[str] = []
        self.log_path = work / "run.log"
        work.mkdir(parents=True, exist_ok=True)
        self.log_file: TextIO = self.log_path.open("w", encoding="utf-8")

    def say(self, where: str, text: str) -> None:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        for line in text.splitlines() or [""]:
            self.log_file.write(f"[{where}] {line}\n")
        self.log_file.flush()

    # -- variables -------------------------------------------------------------------------
    def define(
        self, block: Any, scope: dict[str, Any], names: dict[str, Any], where: str | None = None
    ) -> dict[str, Any]:
        entries = block.items() if isinstance(block, dict) else [(v.get("name"), v.get("value")) for v in block or []]
        if isinstance(block, list) and any("group" in v for v in block):
            raise AzurePipelineError("variable groups need the Azure service; define the variables inline for the run")
        result = dict(scope)
        for name, value in entries:
            text = to_str(value)
            runtime = RUNTIME.match(text)
            result[str(name)] = to_str(evaluate(runtime.group(1), {**names, "variables": result})) if runtime else text
            if runtime and where:  # what a hand-over became: the log shows each one
                self.say(where, f"variable {name} = {result[str(name)]!r} (from $[{runtime.group(1)}])")
        return result

    @staticmethod
    def macro(value: Any, variables: dict[str, Any]) -> Any:
        if isinstance(value, str):
            return MACRO.sub(
                lambda m: (
                    m.group(0) if lookup(variables, m.group(1)) is None else to_str(lookup(variables, m.group(1)))
                ),
                value,
            )
        if isinstance(value, dict):
            return {k: Runner.macro(v, variables) for k, v in value.items()}
        if isinstance(value, list):
            return [Runner.macro(v, variables) for v in value]
        return value

    # -- the walk --------------------------------------------------------------------------
    def run(self, pipeline: dict[str, Any]) -> RunResult:
        if "stages" in pipeline:
            stages = pipeline["stages"]
        elif "jobs" in pipeline:
            stages = [{"stage": "__default", "jobs": pipeline["jobs"]}]
        else:
            stages = [{"stage": "__default", "jobs": [{"job": "__default", "steps": pipeline.get("steps", [])}]}]
        top = self.define(pipeline.get("variables"), self.variables, {})
        stage_outputs: dict[str, dict[str, str]] = {}
        stage_jobs: dict[str, dict[str, dict[str, Any]]] = {}
        try:
            for name, stage, needs in ordered(stages, "stage", lambda i: [str(stages[i - 1]["stage"])] if i else []):
                deps = {n: {"result": RESULTS[self.stages[n]], "outputs": stage_outputs[n]} for n in needs}
                upstream = {n: stage_jobs[n] for n in needs}
                names = {"dependencies": deps, "stageDependencies": upstream}
                scope = self.define(stage.get("variables"), {**top, "System.StageName": name}, names)
                condition = to_str(stage.get("condition") or "succeeded()")
                run = to_bool(evaluate(condition, {**names, "variables": scope}, status_functions(self.stages, needs)))
                stage_outputs[name], stage_jobs[name] = {}, {}
                self.say(name, f"Stage {name}: condition {condition} -> {'run' if run else 'skip'}")
                for job, outputs in self.run_stage(name, stage, scope, upstream, run).items():
                    stage_jobs[name][job] = {"result": RESULTS[self.jobs[f"{name}.{job}"]], "outputs": outputs}
                    stage_outputs[name].update({f"{job}.{k}": v for k, v in outputs.items()})
                results = [self.jobs[f"{name}.{job}"] for job in stage_jobs[name]]
                self.stages[name] = overall(results)
        finally:
            self.log_file.close()
        return RunResult(self.jobs, self.stages, self.order, self.outputs, self.issues, self.summaries, self.log_path)

    def run_stage(
        self, stage: str, spec: dict[str, Any], scope: dict[str, Any], upstream: dict[str, Any], run: bool
    ) -> dict[str, dict[str, str]]:
        jobs: dict[str, dict[str, str]] = {}
        results: dict[str, str] = {}
        for name, job, needs in ordered(spec.get("jobs") or [], "job", lambda i: []):
            key = f"{stage}.{name}"
            deps = {n: {"result": RESULTS[results[n]], "outputs": jobs[n]} for n in needs}
            names = {"dependencies": deps, "stageDependencies": upstream, "variables": scope}
            condition = to_str(job.get("condition") or "succeeded()")
            go = run and to_bool(evaluate(condition, names, status_functions(results, needs)))
            self.say(key, f"Job {name}: condition {condition} -> {'run' if go else 'skip'}")
            outputs: dict[str, str] = {}
            started = time.monotonic()
            if go:
                self.order.append(key)
                result, outputs = self.run_job(key, name, job, self.define(job.get("variables"), scope, names, key))
            else:
                result = "skipped"
            results[name] = self.jobs[key] = result
            jobs[name], self.outputs[key] = outputs, outputs
            self.say(key, f"Job {result} ({time.monotonic() - started:.1f} s)")
        return jobs

    def run_job(self, key: str, name: str, spec: dict[str, Any], scope: dict[str, Any]) -> tuple[str, dict[str, str]]:
        workspace = self.work / "agent" / "_work" / str(len(self.order))
        temp = self.work / "agent" / "_work" / f"_temp{len(self.order)}"
        for folder in ("s", "a", "b", "TestResults"):
            (workspace / folder).mkdir(parents=True)
        temp.mkdir(parents=True)
        for folder, source in self.kept_folders.items():
            lay_out_kept(source, workspace / folder)
        deployment = "deployment" in spec
        sources = str(workspace / "s")
        predefined = {
            "Pipeline.Workspace": str(workspace),
            "Agent.BuildDirectory": str(workspace),
            "Build.SourcesDirectory": sources,
            "System.DefaultWorkingDirectory": sources,
            "Build.Repository.LocalPath": sources,
            "Build.ArtifactStagingDirectory": str(workspace / "a"),
            "Build.StagingDirectory": str(workspace / "a"),
            "Build.BinariesDirectory": str(workspace / "b"),
            "Common.TestResultsDirectory": str(workspace / "TestResults"),
            "Agent.TempDirectory": str(temp),
            "Agent.WorkFolder": str(workspace.parent),
            "Agent.JobName": name,
            "System.JobName": name,
            "System.PhaseName": name,
            "Environment.Name": to_str(spec.get("environment")),
        }
        job = Job(key, name, deployment, {**predefined, **scope}, workspace)
        if deployment:
            strategy = spec.get("strategy") or {}
            if set(strategy) != {"runOnce"}:
                raise AzurePipelineError(f"{key}: only the runOnce deployment strategy is modelled; use runOnce")
            steps = list(((strategy["runOnce"] or {}).get("deploy") or {}).get("steps") or [])
            if not any("download" in s for s in steps):  # a deploy hook downloads the run's artifacts
                steps.insert(0, {"download": "current", "displayName": "Download artifacts (implicit)"})
        else:
            if "strategy" in spec:
                raise AzurePipelineError(f"{key}: matrix/parallel strategies are not modelled; remove strategy:")
            steps = list(spec.get("steps") or [])
            if not any("checkout" in s for s in steps):
                steps.insert(0, {"checkout": "self", "displayName": "Checkout (implicit)"})
        timeout = float(to_str(spec.get("timeoutInMinutes") or 60)) * 60
        for index, step in enumerate(steps):
            self.run_step(job, index, step, timeout)
        # The agent's post-job steps run in reverse step order (JobExtension stacks them), and
        # SavePipelineCache saves only when the job status is exactly Succeeded.
        if job.result == "succeeded":
            for key_input, restored_key, path in reversed(job.cache_saves):
                self.save_cache(job, key_input, restored_key, path)
        return job.result, job.outputs

    # -- steps -----------------------------------------------------------------------------
    def run_step(self, job: Job, index: int, step: dict[str, Any], timeout: float) -> None:
        kind = next((k for k in ("script", "bash", "task", "checkout", "download", "publish") if k in step), None)
        if kind is None:
            raise AzurePipelineError(
                f"{job.key}: step {index + 1} has none of script/bash/task/checkout/"
                f"download/publish: {sorted(step)}; fix the step"
            )
        title = to_str(step.get("displayName") or f"{kind} {(to_str(step[kind]).splitlines() or [''])[0][:40]}")
        failed = job.result == "failed"
        functions = {
            "succeeded": (0, 0, lambda a: not failed),
            "failed": (0, 0, lambda a: failed),
            "succeededorfailed": (0, 0, lambda a: True),
            "always": (0, 0, lambda a: True),
            "canceled": (0, 0, lambda a: False),
        }
        condition = to_str(step.get("condition") or "succeeded()")
        if str(step.get("enabled", "true")).lower() == "false" or not to_bool(
            evaluate(condition, {"variables": job.variables}, functions)
        ):
            self.say(job.key, f"##[section]Skipping: {title}")
            return
        self.say(job.key, f"##[section]Starting: {title}")
        step = self.macro(step, job.variables)
        minutes = step.get("timeoutInMinutes")
        ok = getattr(self, f"do_{kind}")(job, step, float(to_str(minutes)) * 60 if minutes else timeout)
        if not ok and to_bool(str(step.get("continueOnError", "false")).lower() == "true"):
            job.result = "succeededWithIssues" if job.result != "failed" else job.result
        elif not ok:
            job.result = "failed"
        self.say(job.key, f"##[section]Finishing: {title} ({'ok' if ok else 'failed'})")

    def shell(self, job: Job, step: dict[str, Any], script: str, timeout: float, cwd: str | None = None) -> bool:
        temp = Path(job.variables["Agent.TempDirectory"])
        file = temp / f"step{len(list(temp.iterdir()))}.sh"
        file.write_text(script, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))}
        env.update({env_name(k): to_str(v) for k, v in job.variables.items() if to_str(v) not in self.secrets})
        env.update(job.env)
        env["TF_BUILD"] = "True"
        env["PATH"] = os.pathsep.join([*job.path_prefix, env.get("PATH", "")])
        env.update({str(k): to_str(v) for k, v in (step.get("env") or {}).items()})
        # The agent roots a relative working directory (a step's or a task's input) at the
        # default working directory, never at wherever the agent itself was started.
        default = job.variables["System.DefaultWorkingDirectory"]
        folder = os.path.join(default, cwd or to_str(step.get("workingDirectory") or default))
        try:
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", str(file)],
                cwd=folder,
                env=env,
                timeout=timeout,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self.say(job.key, f"##[error]The step timed out after {timeout / 60:g} minutes")
            return False
        ok = done.returncode == 0
        for line in done.stdout.splitlines():
            self.say(job.key, line)
            command = VSO.search(line)
            if command:
                ok = self.vso(job, step, command) and ok
        if done.returncode:
            self.say(job.key, f"##[error]Bash exited with code '{done.returncode}'.")
        return ok

    def vso(self, job: Job, step: dict[str, Any], command: re.Match[str]) -> bool:
        pairs = [p.partition("=") for p in command.group("props").strip().split(";") if p.strip()]
        props = {k.strip().lower(): unescape(v) for k, _, v in pairs}
        data = unescape(command.group("data"))
        name = command.group("command")
        if name == "task.setvariable":
            variable, step_name = props.get("variable", ""), to_str(step.get("name"))
            if props.get("issecret", "").lower() == "true" and data:
                self.secrets.append(data)
            if props.get("isoutput", "").lower() == "true":
                job.variables[f"{step_name}.{variable}"] = data
                job.outputs[f"{job.name}.{step_name}.{variable}" if job.deployment else f"{step_name}.{variable}"] = (
                    data
                )
            else:
                job.variables[variable] = data
        elif name == "task.logissue":
            self.issues.append(Issue(job.key, props.get("type", ""), data, props))
        elif name == "task.uploadsummary":
            summary = Path(data.strip())
            if not summary.is_file():
                self.say(job.key, f"##[warning]summary file {summary} does not exist")
                return True
            self.summaries.append(summary.read_text(encoding="utf-8"))
        elif name == "task.prependpath":
            job.path_prefix.insert(0, data.strip())
        elif name == "task.complete":
            result = props.get("result", "Succeeded")  # the agent reads it ignoring case; mlci writes it so
            if result == "SucceededWithIssues" and job.result == "succeeded":
                job.result = "succeededWithIssues"
            return result != "Failed"
        else:
            self.say(job.key, f"##[warning]##vso command '{name}' is not modelled by the runner")
        return True

    def do_script(self, job: Job, step: dict[str, Any], timeout: float) -> bool:
        return self.shell(job, step, to_str(step["script"]), timeout)

    def do_bash(self, job: Job, step: dict[str, Any], timeout: float) -> bool:
        return self.shell(job, step, to_str(step["bash"]), timeout)

    def do_checkout(self, job: Job, step: dict[str, Any], timeout: float) -> bool:
        if step["checkout"] == "none":
            return True
        if step["checkout"] != "self":
            raise AzurePipelineError(f"{job.key}: checkout of '{step['checkout']}' is not modelled; check out self")
        target = job.workspace / to_str(step.get("path") or "s")
        shutil.copytree(self.project, target, symlinks=True, dirs_exist_ok=True)
        self.say(job.key, f"copied {self.project} to {target}")
        return True

    def artifact_dir(self, name: str) -> Path:
        return self.store / "artifacts" / name

    def publish(self, job: Job, source: str, artifact: str) -> bool:
        path = Path(job.variables["System.DefaultWorkingDirectory"]) / source
        if not artifact or not path.exists() or self.artifact_dir(artifact).exists():
            self.say(
                job.key,
                f"##[error]cannot publish '{source}' as '{artifact}' (missing path, name, or a "
                "second artifact of that name)",
            )
            return False
        if path.is_dir():
            shutil.copytree(path, self.artifact_dir(artifact), symlinks=True)
        else:
            self.artifact_dir(artifact).mkdir(parents=True)
            shutil.copy2(path, self.artifact_dir(artifact))
        return True

    def download(self, job: Job, artifact: str, target: Path, per_name: bool) -> bool:
        names = [artifact] if artifact else sorted(p.name for p in (self.store / "artifacts").glob("*"))
        for name in names:
            if not self.artifact_dir(name).is_dir():
                self.say(job.key, f"##[error]artifact '{name}' was not published by this run")
                return False
            shutil.copytree(self.artifact_dir(name), target / name if per_name else target, dirs_exist_ok=True)
        return True

    def do_publish(self, job: Job, step: dict[str, Any], timeout: float) -> bool:
        return self.publish(job, to_str(step["publish"]), to_str(step.get("artifact")))

    def do_download(self, job: Job, step: dict[str, Any], timeout: float) -> bool:
        if step["download"] == "none":
            return True
        artifact = to_str(step.get("artifact"))
        base = Path(job.variables["Pipeline.Workspace"])
        if step.get("path"):
            return self.download(job, artifact, base / to_str(step["path"]), per_name=False)
        return self.download(job, artifact, base, per_name=True)

    def do_task(self, job: Job, step: dict[str, Any], timeout: float) -> bool:
        task = to_str(step["task"])
        if task not in TASKS:
            raise AzurePipelineError(f"{job.key}: task '{task}' has no stand-in in runner.py; add one to TASKS")
        inputs = {str(k): to_str(v) for k, v in (step.get("inputs") or {}).items()}
        return TASKS[task](self, job, step, inputs, timeout)

    # -- task stand-ins --------------------------------------------------------------------
    def files(self, job: Job, patterns: str, folder: str | None = None) -> list[Path]:
        base = folder or job.variables["System.DefaultWorkingDirectory"]
        found: list[Path] = []
        for pattern in (p.strip() for p in patterns.splitlines() if p.strip()):
            found += [Path(f) for f in sorted(glob.glob(os.path.join(base, pattern), recursive=True))]
        return [f for f in found if f.is_file()]

    def use_python(self, job: Job, step: dict[str, Any], inputs: dict[str, str], timeout: float) -> bool:
        job.path_prefix.insert(0, str(self.python_dir))
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        self.say(job.key, f"using the host's Python {version} from {self.python_dir} for {inputs.get('versionSpec')}")
        job.variables["pythonLocation"] = str(self.python_dir.parent)
        return True

    def publish_tests(self, job: Job, step: dict[str, Any], inputs: dict[str, str], timeout: float) -> bool:
        if inputs.get("testResultsFormat", "JUnit") != "JUnit":
            raise AzurePipelineError(f"{job.key}: only JUnit test results are modelled; use testResultsFormat: JUnit")
        files = self.files(job, inputs.get("testResultsFiles", "**/TEST-*.xml"), inputs.get("searchFolder"))
        if not files:
            self.say(job.key, f"##[error]no test result files match {inputs.get('testResultsFiles')!r}")
            return False
        failures = 0
        for file in files:
            try:
                root = ET.parse(file).getroot()
            except ET.ParseError as error:
                self.say(job.key, f"##[error]{file} is not XML: {error}")
                return False
            suites = [root] if root.tag == "testsuite" else list(root) if root.tag == "testsuites" else None
            if suites is None or any(s.tag != "testsuite" for s in suites):
                self.say(job.key, f"##[error]{file} is not JUnit XML (root <{root.tag}>)")
                return False
            failures += sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
            self.say(job.key, f"published test results {file} ({failures} failed)")
        return not (failures and inputs.get("failTaskOnFailedTests", "false").lower() == "true")

    def publish_coverage(self, job: Job, step: dict[str, Any], inputs: dict[str, str], timeout: float) -> bool:
        files = self.files(job, inputs.get("summaryFileLocation", ""))
        self.say(job.key, f"coverage files: {[str(f) for f in files] or 'none'}")
        return bool(files)

    def publish_artifact(self, job: Job, step: dict[str, Any], inputs: dict[str, str], timeout: float) -> bool:
        source = inputs.get("targetPath") or inputs.get("path") or job.variables["Pipeline.Workspace"]
        return self.publish(job, source, inputs.get("artifact") or inputs.get("artifactName", ""))

    def download_artifact(self, job: Job, step: dict[str, Any], inputs: dict[str, str], timeout: float) -> bool:
        target = inputs.get("targetPath") or inputs.get("path") or inputs.get("downloadPath") or ""
        base = Path(job.variables["System.DefaultWorkingDirectory"]) / (target or job.variables["Pipeline.Workspace"])
        artifact = inputs.get("artifact") or inputs.get("artifactName", "")
        return self.download(job, artifact, base, per_name=not artifact)

    def cache_key(self, job: Job, key: str) -> str:
        """Azure's key: `|`-separated segments; a segment naming files stands for their contents."""
        parts = []
        for segment in (s.strip() for s in key.split("|")):
            quoted = len(segment) > 1 and segment[0] == segment[-1] == '"'
            files = [] if quoted else self.files(job, segment)
            segment = segment[1:-1] if quoted else segment
            digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
            parts.append(digest if files else segment)
        return "|".join(parts)

    def cache(self, job: Job, step: dict[str, Any], inputs: dict[str, str], timeout: float) -> bool:
        key = self.cache_key(job, inputs["key"])
        path = Path(job.variables["System.DefaultWorkingDirectory"]) / inputs["path"]
        index = self.store / "caches"
        saved = sorted(index.glob("*"), key=lambda p: p.stat().st_mtime) if index.is_dir() else []
        keys = {(p / "key").read_text(): p for p in saved}
        hit = "true" if key in keys else "false"
        source = keys.get(key)
        for prefix in (self.cache_key(job, r) for r in inputs.get("restoreKeys", "").splitlines() if r.strip()):
            if source is None:
                matches = [p for k, p in keys.items() if k.startswith(prefix)]
                source, hit = (matches[-1], "inexact") if matches else (None, "false")
        if source is not None:
            overlay(source / "data", path)
        job.cache_saves.append((inputs["key"], key, path))  # an exact hit is skipped at save: it exists
        if inputs.get("cacheHitVar"):
            job.variables[inputs["cacheHitVar"]] = hit
        self.say(job.key, f"cache key {key}: {hit}")
        return True

    def save_cache(self, job: Job, key_input: str, restored_key: str, path: Path) -> None:
        """The Cache task's post-job save: it resolves the key again (files may have changed
        since the restore) and saves under the new key; a cache under that key is immutable."""
        key = self.cache_key(job, key_input)
        if key != restored_key:
            self.say(
                job.key,
                "##[warning]The given cache key has changed in its resolved value between restore and save steps;"
                f" original key: {restored_key}; modified key: {key}",
            )
        target = self.store / "caches" / hashlib.sha256(key.encode()).hexdigest()[:16]
        if target.exists():
            self.say(job.key, f"Cache with fingerprint {key} already exists.")
        elif not path.exists():  # azure-pipelines-tasks#12268: the save cannot archive a missing path
            self.say(job.key, f"##[warning]cache {key} not saved: its path {path} does not exist")
        else:
            shutil.copytree(path, target / "data", symlinks=True)
            (target / "key").write_text(key)
            self.say(job.key, f"saved cache {key}")

    def azure_cli(self, job: Job, step: dict[str, Any], inputs: dict[str, str], timeout: float) -> bool:
        self.say(job.key, f"service connection '{inputs.get('azureSubscription')}' is not exercised (no Azure here)")
        if inputs.get("scriptLocation", "scriptPath") == "inlineScript":
            script = inputs.get("inlineScript", "")
        else:
            script = f'bash "{inputs.get("scriptPath", "")}" {inputs.get("arguments", "")}'
        return self.shell(job, step, script, timeout, inputs.get("workingDirectory"))

    def bash_task(self, job: Job, step: dict[str, Any], inputs: dict[str, str], timeout: float) -> bool:
        inline = inputs.get("targetType", "filePath") == "inline" or "filePath" not in inputs
        script = inputs.get("script", "") if inline else f'bash "{inputs["filePath"]}" {inputs.get("arguments", "")}'
        return self.shell(job, step, script, timeout, inputs.get("workingDirectory"))


Task = Callable[[Runner, Job, dict[str, Any], dict[str, str], float], bool]
TASKS: dict[str, Task] = {
    "UsePythonVersion@0": Runner.use_python,
    "PublishTestResults@2": Runner.publish_tests,
    "PublishCodeCoverageResults@2": Runner.publish_coverage,
    "PublishPipelineArtifact@1": Runner.publish_artifact,
    "DownloadPipelineArtifact@2": Runner.download_artifact,
    "Cache@2": Runner.cache,
    "AzureCLI@2": Runner.azure_cli,
    "Bash@3": Runner.bash_task,
    "CmdLine@2": Runner.bash_task,
}


def run_expanded(
    pipeline: dict[str, Any],
    project_dir: Path,
    work_dir: Path,
    variables: dict[str, str] | None = None,
    python_dir: Path | None = None,
    kept_folders: dict[str, Path] | None = None,
) -> RunResult:
    """Run an already expanded pipeline on a copy of project_dir; work_dir holds the agent
    folders, the artifact and cache store, and run.log. `kept_folders` ({name: folder}) are
    what a self-hosted agent keeps in Pipeline.Workspace between runs (its build directory is
    reused): each job finds Pipeline.Workspace/<name> holding symlinks to folder's entries."""
    python = python_dir or Path(sys.executable).parent
    runner = Runner(project_dir, work_dir, variables or {}, python, kept_folders)
    return runner.run(pipeline)


def run_pipeline(
    project_dir: Path,
    pipeline_file: str | Path,
    work_dir: Path,
    variables: dict[str, str] | None = None,
    repositories: dict[str, Path] | None = None,
    parameters: dict[str, Any] | None = None,
    python_dir: Path | None = None,
    kept_folders: dict[str, Path] | None = None,
) -> RunResult:
    """Expand project_dir/pipeline_file (templates from `repositories` aliases) with the run's
    variables (Build.Reason, Build.SourceBranch ...) at compile time, then run it."""
    pipeline = expand(Path(project_dir) / pipeline_file, repositories, {**DEFAULTS, **(variables or {})}, parameters)
    return run_expanded(pipeline, Path(project_dir), work_dir, variables, python_dir, kept_folders)
