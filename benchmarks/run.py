"""mlci benchmarks: CLI start-up, scaffolding and the full local pipeline, side by side with peers.

Run from the repository root with the Python of the environment mlci is installed in:

    python benchmarks/run.py            # full run (about 6 minutes on 2 cores)
    python benchmarks/run.py --quick    # fewer repetitions, no --jobs 1 pipeline, no profile
    python benchmarks/run.py --only startup scaffold

Every figure comes from benchmarks/harness.py: the tools of a section interleaved run by run
after one warm-up each, every sample a fresh process (wall, CPU, peak RSS, load). Writes
benchmarks/results/{startup,scaffold,pipeline}.json; benchmarks/report.py turns them into
the README's tables. Needs no network and nothing beyond mlci's own environment plus
cookiecutter and copier (the peers). Every template and project lives in a temporary
directory that is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import Case, Measured, Sample, interleave, loadavg, results_document, write_results

from mlci.stage_specs import RUN_NAMES as STAGES  # the stages `mlci run` runs, in its order: one list, not a copy

HERE = Path(__file__).resolve().parent
DISTRIBUTIONS = ("mlci", "cookiecutter", "copier", "mlflow", "scikit-learn", "pandas", "ruff", "pytest")
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


def bench_startup(n: int, mode: str) -> dict[str, Any]:
    commands = {
        "python -c pass": [PY, "-c", "pass"],
        "mlci --version": [tool("mlci"), "--version"],
        "mlci --help": [tool("mlci"), "--help"],
        "cookiecutter --version": [tool("cookiecutter"), "--version"],
        "copier --version": [tool("copier"), "--version"],
    }
    load_at_start = loadavg()
    measured = interleave([Case(label, cmd, env=bench_env(), group="startup") for label, cmd in commands.items()], n)

    baseline, _ = imported_modules("pass")
    checks: dict[str, Any] = {}
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
    return results_document(
        "startup",
        measured,
        mode=mode,
        runs=n,
        distributions=DISTRIBUTIONS,
        load_at_start=load_at_start,
        extra={"imports": checks, "heavy": list(HEAVY)},
    )


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


def bench_scaffold(n: int, mode: str) -> dict[str, Any]:
    load_at_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="mlci-bench-scaffold-") as tmp:
        work = Path(tmp)
        cookiecutter, copier, config, reference = build_templates(work)
        counter = iter(range(10**6))

        def fresh() -> Path:
            path = work / f"out{next(counter)}"
            path.mkdir()
            return path

        makers: dict[str, Callable[[Path], list[str]]] = {
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
        outputs: dict[str, Any] = {}
        for label, make in makers.items():  # one untimed run each: is the output the same tree?
            check = fresh()
            run(make(check))
            produced = tree(check / NAME)
            outputs[label] = {
                "identical_to_mlci": produced == reference,
                "files": len(produced),
                "has_git_repo": (check / NAME / ".git").is_dir(),
            }
        cases = [
            Case(
                label,
                (lambda make=make: make(fresh())),  # type: ignore[misc]
                env=bench_env(),
                group="scaffold",
                params={"same files as mlci": "yes" if outputs[label]["identical_to_mlci"] else "NO"},
            )
            for label, make in makers.items()
        ]
        measured = interleave(cases, n)
        return results_document(
            "scaffold",
            measured,
            mode=mode,
            runs=n,
            distributions=DISTRIBUTIONS,
            load_at_start=load_at_start,
            extra={
                "project_files": len(reference),
                "project_bytes": sum(len(b) for b in reference.values()),
                "outputs": outputs,
            },
        )


# --------------------------------------------------------------------------- 3. pipeline


def stage_seconds(project: Path) -> dict[str, float]:
    out = project / ".mlci" / "out"
    return {stage: json.loads((out / f"{stage}.json").read_text())["duration_s"] for stage in STAGES}


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
    top = sorted(self_us, key=lambda k: self_us[k], reverse=True)[:10]
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
    cold: list[float] = []
    warm: list[float] = []
    for i in range(n):
        uri = f"sqlite:///{(work / f'store{i}.db').as_posix()}"
        for samples in (cold, warm):
            samples.append(float(run([PY, "-c", STORE_OPEN, uri], capture=True).stdout.strip()))
    return {"new_store_s": statistics.median(cold), "existing_store_s": statistics.median(warm), "n": n}


def run_has_jobs() -> bool:
    """Whether this mlci's `mlci run` takes --jobs (issue 15's parallel checks)."""
    return "--jobs" in run([tool("mlci"), "run", "--help"], capture=True).stdout


def bench_pipeline(runs: int, mode: str, both_jobs: bool, profile: bool) -> dict[str, Any]:
    """`mlci run` cold (a fresh project per sample) and warm (the same project again: the store
    exists, a champion to beat), each with the default --jobs and, when asked and supported,
    --jobs 1 (the checks one after another), interleaved."""
    load_at_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="mlci-bench-pipeline-") as tmp:
        work = Path(tmp)
        counter = iter(range(10**6))

        def fresh() -> Path:
            tag = f"p{next(counter)}"
            run([tool("mlci"), "new", NAME, "--defaults", "--output-dir", str(work / tag)])
            return work / tag / NAME

        variants: list[tuple[str, list[str]]] = [("default", [])]
        note = ""
        if run_has_jobs():
            if both_jobs:
                variants.append(("--jobs 1", ["--jobs", "1"]))
        else:
            note = "This mlci's `mlci run` has no --jobs: its checks run one after another."
        cases = []
        for kind in ("cold", "warm"):
            for label, flags in variants:
                project: dict[str, Path] = {}
                if kind == "warm":
                    project["dir"] = fresh()  # the harness's warm-up is its first (cold) run

                def setup(project: dict[str, Path] = project, kind: str = kind) -> None:
                    if kind == "cold":
                        project["dir"] = fresh()

                def stages(sample: Sample, project: dict[str, Path] = project) -> dict[str, float]:
                    figures = stage_seconds(project["dir"])
                    figures["outside"] = sample.wall_s - sum(figures.values())
                    return figures

                cases.append(
                    Case(
                        f"{kind}, {label}",
                        [tool("mlci"), "run", *flags],
                        cwd=lambda project=project: project["dir"],  # type: ignore[misc]
                        env=bench_env(),
                        setup=setup,
                        extract=stages,
                        group="pipeline",
                        params={"kind": kind, "jobs": label},
                    )
                )
        measured: list[Measured] = interleave(cases, runs)
        extra: dict[str, Any] = {"stages": list(STAGES), "remarks": [note] if note else []}
        if profile:
            extra["store_open"] = store_open(work, 3)
            extra["importtime_train"] = import_profile(fresh())
            extra["cprofile_train"] = cprofile(fresh(), work / "train.prof")
        return results_document(
            "pipeline",
            measured,
            mode=mode,
            runs=runs,
            distributions=DISTRIBUTIONS,
            load_at_start=load_at_start,
            extra=extra,
        )


# --------------------------------------------------------------------------- main


def summary_lines(document: dict[str, Any]) -> list[str]:
    lines = [f"{document['benchmark']}: load {document['load_at_start']} -> {document['load_at_end']}"]
    for name, case in document["cases"].items():
        wall = case["wall_s"]
        if wall["median"] is None:
            lines.append(f"  {name}: {case['note']}")
            continue
        lines.append(
            f"  {name}: {wall['median']:.3f} s ({wall['min']:.3f}-{wall['max']:.3f}), "
            f"CPU {case['cpu_s']['median']:.3f} s, {case['peak_rss_mb']['median']:.0f} MB"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="7/7/1 repetitions, no --jobs 1 pipeline, no profile")
    parser.add_argument(
        "--only", nargs="+", choices=["startup", "scaffold", "pipeline"], default=["startup", "scaffold", "pipeline"]
    )
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    n_startup, n_scaffold, n_pipeline = (7, 7, 1) if args.quick else (20, 10, 3)
    documents = []
    if "startup" in args.only:
        documents.append(bench_startup(n_startup, mode))
    if "scaffold" in args.only:
        documents.append(bench_scaffold(n_scaffold, mode))
    if "pipeline" in args.only:
        documents.append(bench_pipeline(n_pipeline, mode, both_jobs=not args.quick, profile=not args.quick))
    for document in documents:
        path = write_results(document["benchmark"], document)
        print("\n".join(summary_lines(document)))
        print(f"results: benchmarks/results/{path.name}")
    print("tables: python benchmarks/report.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
