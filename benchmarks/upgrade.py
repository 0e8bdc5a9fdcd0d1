"""Upgrade benchmark: `mlci upgrade` side by side with `copier update` and `cruft update`.

Run from the repository root with the Python of mlci's environment; copier and cruft may live
in another environment (they are benchmark-only tools):

    python benchmarks/upgrade.py --peers-bin /path/to/bench-venv/bin
    python benchmarks/upgrade.py --quick            # 3 repetitions, a fleet of 20

The same project is upgraded by each tool from "v1" to "v2" of its templates:
- v2 is what the installed mlci renders today for a project named `bench`;
- v1 is v2 with an older actions/checkout pin and `timeout-minutes: 10` (v2: 15) on ci.yml's lint job.
For copier and cruft, both versions are turned into a template repository with git tags v1
and v2 (GitHub's `${{ }}` kept literal with non-clashing delimiters); for mlci the manifest
records v1 as the base, exactly as an older mlci would have written it.
Scenarios: a clean user edit (`branches: [main, release]`) and a conflicting one (the user
changes the same timeout line). The three tools of a scenario are interleaved run by run
(benchmarks/harness.py: one warm-up each, every sample a fresh process on a fresh project,
made untimed; wall, CPU, peak RSS, load). Subprocesses are counted with `strace -f -e
trace=execve` (successful execve calls after the tool's own), when strace is installed.

Writes benchmarks/results/upgrade.json; benchmarks/report.py renders its tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import Case, Sample, interleave, loadavg, measure, results_document, write_results

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
NAME = "bench"
CI = ".github/workflows/ci.yml"
PIN_V2_V1 = ("3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1", "11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2")
TIMEOUT_V2_V1 = ("timeout-minutes: 15", "timeout-minutes: 10")  # the lint job's
CLEAN_EDIT = ("branches: [main]", "branches: [main, release]")
CONFLICT_EDIT = ("timeout-minutes: 10", "timeout-minutes: 45")
GIT_ID = ["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid", "-c", "init.defaultBranch=main"]


def tool_env() -> dict[str, str]:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Bench", "GIT_COMMITTER_NAME": "Bench"}
    return env | {"GIT_AUTHOR_EMAIL": "bench@example.invalid", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def run(cmd: list[str], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=tool_env(), check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return done


def git(cwd: Path, *args: str) -> None:
    run(["git", *GIT_ID, *args], cwd=cwd)


def commit_all(cwd: Path, message: str) -> None:
    if not (cwd / ".git").exists():
        git(cwd, "init", "-q")
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "--no-verify", "-m", message)


def tool(bin_dir: Path, name: str) -> str:
    for candidate in (bin_dir / name, BIN / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"benchmarks: {name} not found in {bin_dir}, {BIN} or on PATH (pass --peers-bin)")
    return found


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


# ------------------------------------------------------------------ the two versions


def render_versions(work: Path) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, Any]]:
    """(v1 files, v2 files, v2 manifest) of the project `bench`, as the installed mlci renders it."""
    run([tool(BIN, "mlci"), "new", NAME, "--defaults", "--no-git", "--output-dir", str(work)])
    root = work / NAME
    manifest = json.loads((root / ".mlci/manifest.json").read_text())
    v2 = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() != ".mlci/manifest.json"
    }
    v1 = dict(v2)
    v1[CI] = v2[CI].decode().replace(*PIN_V2_V1).replace(*TIMEOUT_V2_V1).encode()
    shutil.rmtree(root)
    return v1, v2, manifest


def write_files(root: Path, files: dict[str, bytes], transform: Callable[[str, bytes], tuple[str, bytes]]) -> None:
    for relative, data in files.items():
        target_rel, content = transform(relative, data)
        target = root / target_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def copier_template(work: Path, v1: dict[str, bytes], v2: dict[str, bytes]) -> Path:
    repo = work / "tpl-copier"
    repo.mkdir()

    def transform(relative: str, data: bytes) -> tuple[str, bytes]:
        if relative.endswith((".csv", ".json")):
            return relative.replace(NAME, "<%= name %>"), data
        return relative.replace(NAME, "<%= name %>") + ".jinja", data.replace(NAME.encode(), b"<%= name %>")

    for tag, files in (("v1", v1), ("v2", v2)):
        for child in repo.iterdir():
            if child.name != ".git":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        (repo / "copier.yml").write_text(
            "_subdirectory: project\n_templates_suffix: .jinja\n"
            "_envops:\n  variable_start_string: '<%='\n  variable_end_string: '%>'\n"
            "  block_start_string: '<%'\n  block_end_string: '%>'\n"
            "  comment_start_string: '<%#'\n  comment_end_string: '%>'\n"
            f"name:\n  type: str\n  default: {NAME}\n"
        )
        write_files(repo / "project", files, transform)
        answers_file = repo / "project" / "<%= _copier_conf.answers_file %>.jinja"
        answers_file.write_text("<%= _copier_answers|to_nice_yaml %>\n")
        commit_all(repo, tag)
        git(repo, "tag", tag)
    return repo


def cruft_template(work: Path, v1: dict[str, bytes], v2: dict[str, bytes]) -> Path:
    repo = work / "tpl-cruft"
    repo.mkdir()

    def transform(relative: str, data: bytes) -> tuple[str, bytes]:
        return "{{cookiecutter.name}}/" + relative.replace(NAME, "{{cookiecutter.name}}"), (
            data
            if relative.startswith(".github/") or relative.endswith(".csv")
            else data.replace(NAME.encode(), b"{{cookiecutter.name}}")
        )

    for tag, files in (("v1", v1), ("v2", v2)):
        for child in repo.iterdir():
            if child.name != ".git":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        (repo / "cookiecutter.json").write_text(
            json.dumps({"name": NAME, "_copy_without_render": [".github/*", ".github/workflows/*", "*.csv"]})
        )
        write_files(repo, files, transform)
        commit_all(repo, tag)
        git(repo, "tag", tag)
    return repo


# ------------------------------------------------------------------ one project per tool and scenario


def mlci_project(work: Path, v1: dict[str, bytes], manifest: dict[str, Any], scenario: str, index: int) -> Path:
    root = work / f"mlci-{scenario}-{index}"
    write_files(root, v1, lambda r, d: (r, d))
    aged = json.loads(json.dumps(manifest))
    aged["mlci_version"] = "0.0.9"
    aged["answers"]["mlci_version"] = "0.0.9"
    base = v1[CI].decode()
    aged["managed"][CI] = {"sha256": "sha256:" + hashlib.sha256(base.encode()).hexdigest(), "base": base}
    (root / ".mlci").mkdir(exist_ok=True)
    (root / ".mlci/manifest.json").write_text(json.dumps(aged, indent=2) + "\n")
    user_edit(root, scenario)
    commit_all(root, "v1 with our edit")
    return root


def user_edit(root: Path, scenario: str) -> None:
    edit(root / CI, *(CLEAN_EDIT if scenario == "clean" else CONFLICT_EDIT))


def copier_project(work: Path, peers: Path, template: Path, scenario: str, index: int) -> Path:
    root = work / f"copier-{scenario}-{index}"
    run([tool(peers, "copier"), "copy", "--trust", "--defaults", "--vcs-ref", "v1", str(template), str(root)])
    commit_all(root, "v1")
    user_edit(root, scenario)
    commit_all(root, "our edit")
    return root


def cruft_project(work: Path, peers: Path, template: Path, scenario: str, index: int) -> Path:
    out = work / f"cruft-{scenario}-{index}"
    out.mkdir()
    run([tool(peers, "cruft"), "create", template.as_uri(), "--checkout", "v1", "--no-input", "--output-dir", str(out)])
    root = out / NAME
    commit_all(root, "v1")
    user_edit(root, scenario)
    commit_all(root, "our edit")
    return root


def upgrade_command(name: str, peers: Path, root: Path) -> list[str]:
    if name == "mlci":
        return [tool(BIN, "mlci"), "upgrade", str(root)]
    if name == "copier":
        return [
            tool(peers, "copier"),
            "update",
            "--trust",
            "--defaults",
            "--vcs-ref",
            "v2",
            "--conflict",
            "inline",
            str(root),
        ]
    return [tool(peers, "cruft"), "update", "--checkout", "v2", "--skip-apply-ask", "--project-dir", str(root)]


def outcome(name: str, root: Path, code: int) -> dict[str, Any]:
    ci = (root / CI).read_text(encoding="utf-8")
    rejects = [p.relative_to(root).as_posix() for p in root.rglob("*.rej")]
    return {
        "exit_code": code,
        "markers": "<<<<<<<" in ci,
        "rej_files": rejects,
        "new_pin_applied": PIN_V2_V1[0].split()[0] in ci,
        "user_line_kept": ("release" in ci) or ("timeout-minutes: 45" in ci),
    }


def count_processes(cmd: list[str], cwd: Path) -> dict[str, int] | None:
    strace = shutil.which("strace")
    if strace is None:
        return None
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as trace:
        run([strace, "-f", "-qq", "-e", "trace=execve", "-o", trace.name, *cmd], cwd=cwd, check=False)
        lines = [line for line in Path(trace.name).read_text().splitlines() if "execve(" in line and "= 0" in line]
    programs = [m.group(1).rsplit("/", 1)[-1] for line in lines if (m := re.search(r'execve\("([^"]+)"', line))]
    spawned = programs[1:]  # the first is the tool itself
    return {"processes": len(spawned), "git": sum(1 for p in spawned if p == "git")}


def scenario_cases(
    scenario: str, peers: Path, makers: dict[str, Callable[[str, int], Path]], outcomes: dict[str, Any]
) -> list[Case]:
    cases = []
    for name, make in makers.items():
        label = f"{scenario}: {name}"
        state: dict[str, Any] = {"index": 0}

        def setup(state: dict[str, Any] = state, make: Callable[[str, int], Path] = make) -> None:
            state["root"] = make(scenario, state["index"])
            state["index"] += 1

        def check(
            sample: Sample, state: dict[str, Any] = state, name: str = name, label: str = label
        ) -> dict[str, Any]:
            outcomes[label] = outcome(name, state["root"], sample.returncode)  # the same for every sample
            return {}

        cases.append(
            Case(
                label,
                lambda state=state, name=name: upgrade_command(name, peers, state["root"]),  # type: ignore[misc]
                cwd=lambda state=state: state["root"],  # type: ignore[misc]
                env=tool_env(),
                setup=setup,
                extract=check,
                ok_codes=(0, 1),  # mlci exits 1 on a conflict (markers written)
                group=scenario,
            )
        )
    return cases


def bench_fleet(work: Path, v1: dict[str, bytes], manifest: dict[str, Any], size: int, jobs: int) -> dict[str, Any]:
    fleet = work / "fleet"
    roots = []
    for index in range(size):
        scenario = "conflict" if index % 10 == 9 else "clean"
        root = mlci_project(fleet, v1, manifest, scenario, index)
        roots.append(root)
    listing = work / "fleet.txt"
    listing.write_text("".join(f"{r}\n" for r in roots))
    report = work / "fleet-report.json"
    cmd = [tool(BIN, "mlci"), "upgrade", "--jobs", str(jobs), "--repos-file", str(listing), "--report", str(report)]
    sample = measure(cmd, env=tool_env(), ok_codes=(0, 1))
    summary = json.loads(report.read_text())["summary"]
    return {
        "repos": size,
        "jobs": jobs,
        **sample.as_dict(),
        "exit_code": sample.returncode,
        "summary": summary,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-bin", type=Path, default=BIN, help="bin directory holding copier and cruft")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fleet", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 repetitions and a fleet of 20")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.fleet = 3, 20
    peers: Path = args.peers_bin
    load_at_start = loadavg()
    peer_versions: dict[str, str] = {}
    peer_python = peers / "python" if (peers / "python").exists() else Path(sys.executable)
    for name in ("copier", "cruft", "cookiecutter"):
        code = f"from importlib.metadata import version; print(version({name!r}))"
        peer_versions[name] = run([str(peer_python), "-c", code]).stdout.strip()
    outcomes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mlci-bench-upgrade-") as temp:
        work = Path(temp)
        v1, v2, manifest = render_versions(work)
        copier_tpl = copier_template(work, v1, v2)
        cruft_tpl = cruft_template(work, v1, v2)
        makers: dict[str, Callable[[str, int], Path]] = {
            "mlci": lambda s, i: mlci_project(work, v1, manifest, s, i),
            "copier": lambda s, i: copier_project(work, peers, copier_tpl, s, i),
            "cruft": lambda s, i: cruft_project(work, peers, cruft_tpl, s, i),
        }
        measured = []
        for scenario in ("clean", "conflict"):
            print(f"{scenario} edit ...", file=sys.stderr, flush=True)
            measured += interleave(scenario_cases(scenario, peers, makers, outcomes), args.repeat)
            for name, make in makers.items():  # one more project each, traced (not timed)
                label = f"{scenario}: {name}"
                outcomes[label]["spawned"] = count_processes(upgrade_command(name, peers, make(scenario, 10**6)), work)
        print(f"fleet of {args.fleet} ...", file=sys.stderr, flush=True)
        fleet = bench_fleet(work, v1, manifest, args.fleet, args.jobs)
    document = results_document(
        "upgrade",
        measured,
        mode="quick" if args.quick else "full",
        runs=args.repeat,
        distributions=("mlci", "merge3"),
        load_at_start=load_at_start,
        extra={"peer_versions": peer_versions, "outcomes": outcomes, "fleet": fleet},
    )
    write_results("upgrade", document)
    print_table(document)
    return 0


def print_table(document: dict[str, Any]) -> None:
    for label, case in document["cases"].items():
        wall, out = case["wall_s"], document["outcomes"].get(label, {})
        print(f"{label}: {wall['median']} s ({wall['min']}-{wall['max']}) exit {out.get('exit_code')} {case['note']}")
    fleet = document["fleet"]
    print(
        f"fleet: {fleet['repos']} repositories, --jobs {fleet['jobs']}: {fleet['wall_s']} s, "
        f"exit {fleet['exit_code']}, {fleet['summary']}"
    )
    print("tables: python benchmarks/report.py")


if __name__ == "__main__":
    sys.exit(main())
