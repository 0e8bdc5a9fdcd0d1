"""mlci benchmarks: CLI start-up, scaffolding and the full local pipeline, side by side with peers.

Run from the repository root with the Python of the environment mlci is installed in:

    python benchmarks/run.py            # full run (about 3 minutes on 2 cores)
    python benchmarks/run.py --quick    # fewer repetitions, no warm re-runs, no profile
    python benchmarks/run.py --only startup scaffold

Prints Markdown tables and writes benchmarks/results/latest.json. Needs no network and
nothing beyond mlci's own environment plus cookiecutter and copier (the peers).
Every generated template and project lives in a temporary directory that is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from mlci.stage_specs import NAMES as STAGES  # the stages `mlci run` runs, in its order: one list, not a copy

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"
# Tools come from the environment of the interpreter running this script (not from PATH),
# so `.venv/bin/python benchmarks/run.py` measures that venv's mlci and peers.
BIN = Path(sys.executable).parent
PY = sys.executable
NAME, PACKAGE = "acme-churn", "acme_churn"
HEAVY = ("mlflow", "pandas", "sklearn", "databricks", "numpy", "scipy", "sqlalchemy", "alembic")


def tool(name: str) -> str:
    candidate = BIN / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        sys.exit(f"benchmarks: '{name}' is not installed next to {PY} nor on PATH")
    return found


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PYTHONPROFILEIMPORTTIME"):
        env.pop(var, None)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    return env


def run(cmd: list[str], cwd: Path | None = None, capture: bool = False) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cmd,
        cwd=cwd,
        env=bench_env(),
        text=True,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"benchmarks: {' '.join(cmd)} exited {done.returncode}\n{done.stderr[-3000:]}")
    return done


def wall(cmd: list[str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    run(cmd, cwd)
    return time.perf_counter() - started


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "n": len(samples),
        "samples_s": [round(s, 4) for s in samples],
    }


def repeat(cmd: list[str], n: int, cwd: Path | None = None) -> dict[str, Any]:
    wall(cmd, cwd)  # warm-up: page cache, not counted
    return summary([wall(cmd, cwd) for _ in range(n)])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- 1. start-up


def imported_modules(code: str) -> tuple[list[str], dict[str, int]]:
    """Modules imported by `python -X importtime -c code`, and their cumulative microseconds."""
    done = subprocess.run(
        [PY, "-X", "importtime", "-c", code], env=bench_env(), text=True, capture_output=True, check=False
    )
    names: list[str] = []
    cumulative: dict[str, int] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            names.append(match.group(4))
            cumulative[match.group(4)] = int(match.group(2))
    return names, cumulative


def heavy_in(names: list[str]) -> list[str]:
    return sorted({n for n in names if n.split(".")[0] in HEAVY})


def bench_startup(n: int) -> dict[str, Any]:
    commands = {
        "python -c pass": [PY, "-c", "pass"],
        "mlci --version": [tool("mlci"), "--version"],
        "mlci --help": [tool("mlci"), "--help"],
        "cookiecutter --version": [tool("cookiecutter"), "--version"],
        "copier --version": [tool("copier"), "--version"],
    }
    timings = {label: repeat(cmd, n) for label, cmd in commands.items()}
    base = timings["mlci --version"]["median_s"]
    for result in timings.values():
        result["ratio_vs_mlci"] = result["median_s"] / base

    baseline, _ = imported_modules("pass")
    checks = {}
    # What the `mlci` console script does (from mlci.cli import main; main()), under -X importtime.
    as_script = "import sys; sys.argv = ['mlci', {!r}]\nfrom mlci.cli import main\ntry: main()\nexcept SystemExit: pass"
    for label, code in {
        "import mlci.cli": "import mlci.cli",
        "mlci --version": as_script.format("--version"),
        "mlci --help": as_script.format("--help"),
    }.items():
        names, _ = imported_modules(code)
        extra = [m for m in names if m not in set(baseline)]
        checks[label] = {"modules_beyond_interpreter": len(extra), "heavy_modules": heavy_in(names)}
    cli_us = [imported_modules("import mlci.cli")[1].get("mlci.cli", 0) for _ in range(n)]
    checks["import mlci.cli"]["cumulative_import_ms_median"] = statistics.median(cli_us) / 1000
    return {"commands": timings, "imports": checks}


def report_startup(result: dict[str, Any]) -> str:
    rows = [
        [
            f"`{label}`",
            ms(r["median_s"]),
            f"{r['min_s'] * 1000:.0f}-{r['max_s'] * 1000:.0f} ms",
            f"{r['ratio_vs_mlci']:.1f}x",
        ]
        for label, r in result["commands"].items()
    ]
    out = ["## Start-up", "", table(["command", "median", "range", "vs mlci --version"], rows), ""]
    cc = result["commands"]["cookiecutter --version"]["ratio_vs_mlci"]
    out.append(
        f"mlci --version is {cc:.1f}x faster than cookiecutter --version (goal: >= 4x: "
        f"{'met' if cc >= 4 else 'NOT met'})."
    )
    out += [
        "",
        table(
            ["import path", "modules beyond the bare interpreter", "heavy modules imported"],
            [
                [f"`{k}`", str(v["modules_beyond_interpreter"]), ", ".join(v["heavy_modules"]) or "none"]
                for k, v in result["imports"].items()
            ],
        ),
    ]
    out.append(
        f"\n`import mlci.cli`: {result['imports']['import mlci.cli']['cumulative_import_ms_median']:.1f} ms "
        f"cumulative (-X importtime, median). Heavy = {', '.join(HEAVY)}."
    )
    return "\n".join(out)


# --------------------------------------------------------------------------- 2. scaffolding


def jinja_source(text: str, variables: dict[str, str]) -> str:
    """`text` as a Jinja template that renders back to `text`: names become variables, and any
    literal Jinja syntax (GitHub's ${{ ... }}) is protected with {% raw %}, as a hand-written
    template would do."""
    pattern = re.compile("|".join(re.escape(k) for k in sorted(variables, key=len, reverse=True)))
    parts: list[str] = []
    position = 0

    def literal(chunk: str) -> str:
        if re.search(r"\{[{%#]", chunk):
            return "{% raw %}" + chunk + "{% endraw %}"
        return chunk

    for match in pattern.finditer(text):
        parts.append(literal(text[position : match.start()]))
        parts.append(variables[match.group(0)])
        position = match.end()
    parts.append(literal(text[position:]))
    return "".join(parts)


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def build_templates(work: Path) -> tuple[Path, Path, Path, dict[str, bytes]]:
    """Render mlci's project once, then turn it into an equivalent cookiecutter and copier template."""
    run([tool("mlci"), "new", NAME, "--defaults", "--no-git", "--output-dir", str(work / "ref")])
    reference = work / "ref" / NAME
    files = tree(reference)

    cookiecutter = work / "tpl-cookiecutter"
    cc_vars = {NAME: "{{ cookiecutter.project_name }}", PACKAGE: "{{ cookiecutter.package }}"}
    cc_root = cookiecutter / "{{cookiecutter.project_name}}"
    copier = work / "tpl-copier"
    cp_vars = {NAME: "{{ project_name }}", PACKAGE: "{{ package }}"}
    verbatim = [rel for rel in files if rel.endswith(".csv")]
    for rel, data in files.items():
        cc_path = cc_root / rel.replace(PACKAGE, "{{cookiecutter.package}}")
        cp_path = copier / rel.replace(PACKAGE, "{{ package }}")
        cc_path.parent.mkdir(parents=True, exist_ok=True)
        cp_path.parent.mkdir(parents=True, exist_ok=True)
        if rel in verbatim:
            cc_path.write_bytes(data)
            cp_path.write_bytes(data)
            continue
        text = data.decode("utf-8")
        cc_path.write_text(jinja_source(text, cc_vars), encoding="utf-8", newline="")
        cp_path.with_name(cp_path.name + ".jinja").write_text(jinja_source(text, cp_vars), encoding="utf-8", newline="")
    (cookiecutter / "cookiecutter.json").write_text(
        json.dumps(
            {
                "project_name": NAME,
                "package": "{{ cookiecutter.project_name.replace('-', '_') }}",
                "_copy_without_render": ["data/*.csv"],
            },
            indent=2,
        )
    )
    (copier / "copier.yml").write_text(
        "# Every file but the CSV data is a template (.jinja); the CSVs are copied verbatim,\n"
        "# like cookiecutter's _copy_without_render.\n"
        "_templates_suffix: .jinja\n"
        "project_name:\n  type: str\n  default: " + NAME + "\n"
        "package:\n  type: str\n  default: \"{{ project_name | replace('-', '_') }}\"\n"
    )
    config = work / "cookiecutter-config.yaml"
    config.write_text(f"cookiecutters_dir: {work / 'cc-cache'}\nreplay_dir: {work / 'cc-replay'}\n")
    return cookiecutter, copier, config, files


def bench_scaffold(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mlci-bench-scaffold-") as tmp:
        work = Path(tmp)
        cookiecutter, copier, config, reference = build_templates(work)
        counter = iter(range(10**6))

        def fresh() -> Path:
            path = work / f"out{next(counter)}"
            path.mkdir()
            return path

        cases = {
            "mlci new --defaults (with git init + commit)": lambda out: [
                tool("mlci"),
                "new",
                NAME,
                "--defaults",
                "--output-dir",
                str(out),
            ],
            "mlci new --defaults --no-git": lambda out: [
                tool("mlci"),
                "new",
                NAME,
                "--defaults",
                "--no-git",
                "--output-dir",
                str(out),
            ],
            "cookiecutter --no-input (equivalent template)": lambda out: [
                tool("cookiecutter"),
                "--no-input",
                "--config-file",
                str(config),
                "-o",
                str(out),
                str(cookiecutter),
            ],
            "copier copy --defaults (equivalent template)": lambda out: [
                tool("copier"),
                "copy",
                "--defaults",
                "--quiet",
                str(copier),
                str(out / NAME),
            ],
        }
        results: dict[str, Any] = {}
        for label, make in cases.items():
            check = fresh()
            run(make(check))  # also the warm-up
            produced = tree(check / NAME)
            identical = produced == reference
            results[label] = summary([wall(make(fresh())) for _ in range(n)])
            results[label]["output_identical_to_mlci"] = identical
            results[label]["files"] = len(produced)
            results[label]["has_git_repo"] = (check / NAME / ".git").is_dir()
        base = results["mlci new --defaults --no-git"]["median_s"]
        for result in results.values():
            result["ratio_vs_mlci_no_git"] = result["median_s"] / base
        return {
            "project_files": len(reference),
            "project_bytes": sum(len(b) for b in reference.values()),
            "cases": results,
        }


def report_scaffold(result: dict[str, Any]) -> str:
    rows = [
        [
            label,
            ms(r["median_s"]),
            f"{r['min_s'] * 1000:.0f}-{r['max_s'] * 1000:.0f} ms",
            f"{r['ratio_vs_mlci_no_git']:.2f}x",
            "yes" if r["output_identical_to_mlci"] else "NO",
        ]
        for label, r in result["cases"].items()
    ]
    with_git = result["cases"]["mlci new --defaults (with git init + commit)"]["median_s"]
    return "\n".join(
        [
            "## Scaffolding",
            "",
            f"Project: {result['project_files']} files, {result['project_bytes'] / 1024:.0f} KiB "
            "(of which the two CSVs are copied without rendering).",
            "",
            table(["command", "median", "range", "vs mlci --no-git", "same files as mlci"], rows),
            "",
            f"mlci new (with git) median {with_git:.3f} s (goal: <= 0.5 s: {'met' if with_git <= 0.5 else 'NOT met'}).",
        ]
    )


# --------------------------------------------------------------------------- 3. pipeline


def stage_seconds(project: Path) -> dict[str, float]:
    out = project / ".mlci" / "out"
    return {stage: json.loads((out / f"{stage}.json").read_text())["duration_s"] for stage in STAGES}


def pipeline_once(project: Path) -> dict[str, Any]:
    seconds = wall([tool("mlci"), "run"], cwd=project)
    return {"wall_s": seconds, "stages_s": stage_seconds(project)}


def import_profile(project: Path) -> dict[str, Any]:
    """`python -X importtime -m mlci train` on a fresh project: where the import time goes, per package."""
    started = time.perf_counter()
    done = subprocess.run(
        [PY, "-X", "importtime", "-m", "mlci", "train"],
        cwd=project,
        env=bench_env(),
        text=True,
        capture_output=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"benchmarks: mlci train failed under -X importtime\n{done.stderr[-3000:]}")
    self_us: dict[str, int] = {}
    cumulative_us: dict[str, int] = {}
    top_level_us = 0
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        own, cumulative, depth, name = int(match.group(1)), int(match.group(2)), len(match.group(3)), match.group(4)
        if depth == 1:
            top_level_us += cumulative
        root = name.split(".")[0]
        self_us[root] = self_us.get(root, 0) + own
        if name == root:
            cumulative_us[root] = cumulative
    top = sorted(self_us, key=self_us.get, reverse=True)[:10]
    return {
        "wall_s": seconds,
        "all_imports_s": top_level_us / 1e6,
        "packages": {k: {"self_s": self_us[k] / 1e6, "cumulative_s": cumulative_us.get(k, 0) / 1e6} for k in top},
    }


# (label, file suffix, function name): cumulative time of each in a cProfile of `mlci train`.
HOTSPOTS = [
    ("run_train (whole stage body)", "mlci/stages/train.py", "run_train"),
    ("read the CSVs (incl. pandas import)", "mlci/splits.py", "read_split"),
    ("import mlflow (configure_mlflow)", "mlci/targets/local/tracking.py", "configure_mlflow"),
    ("get/create experiment (opens the store)", "mlci/targets/local/tracking.py", "ensure_experiment"),
    ("  of which: new sqlite store, create tables + migrate", "mlflow/store/db/utils.py", "_initialize_tables"),
    ("    of which: alembic migrations", "mlflow/store/db/utils.py", "_upgrade_db"),
    ("mlflow.start_run", "mlflow/tracking/fluent.py", "start_run"),
    ("git lineage tags", "mlci/stages/train.py", "lineage_tags"),
    ("fit (the project's entrypoint)", f"src/{PACKAGE}/train.py", "train"),
    ("holdout metrics", "mlci/metrics.py", "evaluate"),
    ("infer_signature", "mlflow/models/signature.py", "infer_signature"),
    ("pip requirements", "mlci/stages/train.py", "pip_requirements"),
    ("mlflow.sklearn.log_model", "mlflow/sklearn/__init__.py", "log_model"),
]


def cprofile(project: Path, dump: Path) -> dict[str, Any]:
    started = time.perf_counter()
    run([PY, "-m", "cProfile", "-o", str(dump), "-m", "mlci", "train"], cwd=project)
    seconds = time.perf_counter() - started
    stats = pstats.Stats(str(dump)).stats  # type: ignore[attr-defined]
    found: dict[str, float] = {}
    for label, suffix, function in HOTSPOTS:
        total = 0.0
        for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.items():
            if name == function and filename.replace(os.sep, "/").endswith(suffix):
                total = max(total, ct)
        if total:
            found[label] = total
    return {"wall_s_under_profiler": seconds, "cumulative_s": found}


STORE_OPEN = """
import sys, time
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
started = time.perf_counter()
mlflow.get_experiment_by_name("bench")
print(time.perf_counter() - started)
"""


def store_open(work: Path, n: int) -> dict[str, Any]:
    """Seconds for MLflow's first call on a new sqlite store (create tables + migrations) vs an existing one."""
    cold, warm = [], []
    for i in range(n):
        uri = f"sqlite:///{(work / f'store{i}.db').as_posix()}"
        for samples in (cold, warm):
            samples.append(float(run([PY, "-c", STORE_OPEN, uri], capture=True).stdout.strip()))
    return {"new_store": summary(cold), "existing_store": summary(warm)}


def bench_pipeline(runs: int, warm: bool, profile: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mlci-bench-pipeline-") as tmp:
        work = Path(tmp)

        def fresh(tag: str) -> Path:
            run([tool("mlci"), "new", NAME, "--defaults", "--output-dir", str(work / tag)])
            return work / tag / NAME

        cold, rerun = [], []
        for i in range(runs):
            project = fresh(f"run{i}")
            cold.append(pipeline_once(project))
            if warm:
                rerun.append(pipeline_once(project))
        result: dict[str, Any] = {"cold": aggregate(cold)}
        if rerun:
            result["warm"] = aggregate(rerun)
        if profile:
            result["store_open"] = store_open(work, 3)
            result["importtime_train"] = import_profile(fresh("imports"))
            result["cprofile_train"] = cprofile(fresh("profile"), work / "train.prof")
        return result


def aggregate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "wall_s": summary([s["wall_s"] for s in samples]),
        "stages_median_s": {st: statistics.median(s["stages_s"][st] for s in samples) for st in STAGES},
        # Process start-up, stage-to-stage glue and interpreter exit (atexit handlers, teardown).
        "outside_stages_median_s": statistics.median(s["wall_s"] - sum(s["stages_s"].values()) for s in samples),
        "samples": samples,
    }


def report_pipeline(result: dict[str, Any]) -> str:
    kinds = [k for k in ("cold", "warm") if k in result]
    header = ["stage"] + [f"{k} median (n={result[k]['n']})" for k in kinds]
    rows = [[st] + [f"{result[k]['stages_median_s'][st]:.2f} s" for k in kinds] for st in STAGES]
    rows.append(["outside stages (start-up, exit)"] + [f"{result[k]['outside_stages_median_s']:.2f} s" for k in kinds])
    rows.append(["sum of stages"] + [f"{sum(result[k]['stages_median_s'].values()):.2f} s" for k in kinds])
    rows.append(["**`mlci run` wall**"] + [f"**{result[k]['wall_s']['median_s']:.2f} s**" for k in kinds])
    total = result["cold"]["wall_s"]["median_s"]
    out = [
        "## Pipeline (`mlci run`)",
        "",
        "cold = first `mlci run` on a fresh project (new sqlite store: tables + migrations); "
        "warm = a second `mlci run` on the same project (store exists, a champion to beat).",
        "",
        table(header, rows),
        "",
        f"Cold pipeline median {total:.1f} s (goal: <= 60 s: {'met' if total <= 60 else 'NOT met'}).",
    ]
    if "store_open" in result:
        store = result["store_open"]
        out += [
            "",
            "MLflow's first call on a sqlite store, no profiler (median of 3): new store (create tables + "
            f"migrations) {store['new_store']['median_s']:.2f} s, existing store "
            f"{store['existing_store']['median_s']:.2f} s.",
        ]
    if "importtime_train" in result:
        imp = result["importtime_train"]
        out += [
            "",
            f"`python -X importtime -m mlci train` (fresh project, {imp['wall_s']:.2f} s wall): "
            f"{imp['all_imports_s']:.2f} s in imports. Top packages by time spent in their own modules "
            "(self) and the cumulative time of importing the package itself (includes what it pulls in):",
            "",
            table(
                ["package", "self", "cumulative"],
                [[k, f"{v['self_s']:.2f} s", f"{v['cumulative_s']:.2f} s"] for k, v in imp["packages"].items()],
            ),
        ]
    if "cprofile_train" in result:
        prof = result["cprofile_train"]
        out += [
            "",
            f"cProfile of `mlci train` (fresh project; {prof['wall_s_under_profiler']:.2f} s wall under the "
            "profiler, which inflates Python-heavy parts), cumulative:",
            "",
            table(["where", "cumulative"], [[k, f"{v:.2f} s"] for k, v in prof["cumulative_s"].items()]),
        ]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    lscpu = (
        subprocess.run(["lscpu"], text=True, capture_output=True, check=False).stdout if shutil.which("lscpu") else ""
    )
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "")
    versions = {}
    for dist in ("mlci", "cookiecutter", "copier", "mlflow", "scikit-learn", "pandas", "ruff", "pytest"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=HERE.parent, text=True, capture_output=True, check=False)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", "src"))
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "uname": " ".join(platform.uname()),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "mlci_commit": commit + ("+uncommitted src changes" if dirty else ""),
        "versions": versions,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="7/7/3 repetitions, no warm re-runs, no profile")
    parser.add_argument(
        "--only", nargs="+", choices=["startup", "scaffold", "pipeline"], default=["startup", "scaffold", "pipeline"]
    )
    args = parser.parse_args()
    n_startup, n_scaffold = (7, 7) if args.quick else (20, 10)
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
    }
    sections = []
    if "startup" in args.only:
        results["startup"] = bench_startup(n_startup)
        sections.append(report_startup(results["startup"]))
    if "scaffold" in args.only:
        results["scaffold"] = bench_scaffold(n_scaffold)
        sections.append(report_scaffold(results["scaffold"]))
    if "pipeline" in args.only:
        results["pipeline"] = bench_pipeline(3, warm=not args.quick, profile=not args.quick)
        sections.append(report_pipeline(results["pipeline"]))
    m = results["machine"]
    print(
        f"# mlci benchmarks ({results['mode']})\n\n{m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + "\n"
    )
    print("\n\n".join(sections))
    # Other jobs on a 2-core machine move every number here: record the load to judge a run by.
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
