"""`mlci monitor run` against Evidently's data drift preset on the same logged rows: time and peak memory.

Builds, once per row count, under --work:
- a scaffolded project, trained and registered (`mlci train`, `mlci register`: register stores the
  version's monitor baseline, the reference mlci monitors against);
- a synthetic inference table in SPEC14's layout, `.mlci/inference/date=YYYY-MM-DD/part-...parquet`
  (request_id, timestamp, model_id, the 30 features, prediction, probability_0/1), `--rows` rows
  over `--days` daily windows ending yesterday (UTC). Rows are training rows drawn with replacement
  plus Gaussian jitter (5 % of each column's spread); from the middle day on, 3 columns are shifted
  by one standard deviation (covariate drift). Predictions and probabilities come from the
  registered model itself. `--labelled` of the requests (default 30 %) get a label in
  `data/labels/labels-<day>.parquet` (the prediction, flipped for 10 % of them), so mlci's
  realised quality (the label join, the confusion counts, ROC AUC) runs at scale too;
- Evidently's reference: the same training rows the baseline profiles, with the model's predictions.

Then `--runs` rounds, interleaved (mlci, evidently, mlci, evidently, ...), each a fresh process
timed as a whole (imports included) with its CPU time (user + system of the process tree) and
peak RSS (the child's ru_maxrss), via a wrapper, and the load average before and after:
- mlci: `mlci monitor run --now <after the last day>` in the project (the CLI; its output folder
  is removed before each run, so nothing is skipped as already computed);
- evidently: per daily window, `Report([DataDriftPreset()]).run(window, reference)` in its own venv
  (evidently==0.7.23 with pandas<3, created under --cache on first use; DO_NOT_TRACK=1). Evidently
  has no windows of its own: one report per window is what mlci's per-window drift is compared with.

    python benchmarks/monitor_vs_evidently.py [--rows 10000000] [--days 10] [--runs 3] [--tools mlci evidently]

(benchmarks/harness.py, which interleaves other benchmarks, was not on main when this one was
bounded; its interleaving is written here.)

Prints a Markdown table and writes benchmarks/results/monitor_vs_evidently.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

EVIDENTLY = "evidently==0.7.23"
RESULTS = Path(__file__).resolve().parent / "results" / "monitor_vs_evidently.json"
SHIFTED = ["mean_radius", "mean_texture", "worst_area"]  # covariate drift from the middle day on
PROJECT = "bench-monitor"

# Runs a command, then prints its wall time, CPU time and the peak RSS of the command's process
# tree (the waited-for children's rusage; Linux reports ru_maxrss in KiB).
MEASURE = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time
    started = time.perf_counter()
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"code": done.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "peak_rss_mb": usage.ru_maxrss / 1024,
                      "stdout": done.stdout[-4000:], "stderr": done.stderr[-2000:]}))
    """
)

EVIDENTLY_RUN = textwrap.dedent(
    """
    import json, sys, time
    started = time.perf_counter()
    import pandas as pd
    import pyarrow.dataset as ds
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset
    imported = time.perf_counter()
    folder, reference_path, features = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    definition = DataDefinition(numerical_columns=features, categorical_columns=["prediction"])
    reference = Dataset.from_pandas(pd.read_parquet(reference_path), data_definition=definition)
    table = ds.dataset(folder, format="parquet", partitioning="hive")
    days = sorted({str(d) for d in table.to_table(columns=["date"]).column("date").to_pylist()})
    windows = []
    for day in days:
        read_started = time.perf_counter()
        window = table.to_table(columns=features + ["prediction"], filter=ds.field("date") == day).to_pandas()
        read = time.perf_counter() - read_started
        snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(window, data_definition=definition), reference)
        drifted = [
            m["metric_name"].split("column=")[1].split(",")[0]
            for m in snapshot.dict()["metrics"]
            if m["metric_name"].startswith("ValueDrift") and m["value"] < 0.05
        ]
        windows.append({"day": day, "rows": len(window), "read_s": read, "drifted": drifted})
        del window, snapshot
    print(json.dumps({"import_s": imported - started, "compute_s": time.perf_counter() - imported,
                      "windows": windows}))
    """
)


def cache_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlci-bench"


def evidently_python(cache: Path) -> Path:
    """The interpreter of a venv with Evidently, made on first use (about 1 GB, minutes)."""
    venv = cache / EVIDENTLY.replace("==", "-")
    python = venv / "bin" / "python"
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    probe = [str(python), "-c", "import evidently, pandas; assert pandas.__version__ < '3'"]
    if python.is_file() and subprocess.run(probe, env=env, capture_output=True, check=False).returncode == 0:
        return python
    print(f"creating {venv} ({EVIDENTLY}, pandas<3; about 1 GB) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # pandas<3: Evidently 0.7.23 fails to import on pandas 3 (infer_dtype_from_object is gone).
    install = [str(python), "-m", "pip", "install", "-q", EVIDENTLY, "pandas<3", "pyarrow"]
    subprocess.run(install, env=env, check=True)
    subprocess.run(probe, env=env, check=True)
    return python


def mlci(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "mlci", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"mlci {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return done.stdout


def make_project(work: Path) -> Path:
    project = work / PROJECT
    if (project / ".mlci" / "mlflow.db").is_file():
        return project
    shutil.rmtree(project, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    mlci("new", PROJECT, "--defaults", "--no-git", "--output-dir", str(work), cwd=work)
    for stage in ("train", "register"):
        mlci(stage, cwd=project)
    return project


def registered(project: Path) -> tuple[Any, str, str, bool]:
    """(the sklearn model, its model_id, the model name, whether the version carries a baseline)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from mlci.config import load_project

    store = f"sqlite:///{project / '.mlci' / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    name = load_project(project).config.model_name
    version = MlflowClient().get_model_version(name, "1")
    model = mlflow.sklearn.load_model(f"models:/{name}/1")
    return model, f"{name}@1", name, "mlci.monitor.baseline" in (version.tags or {})


def generate(project: Path, rows: int, days: int, file_rows: int, labelled: float) -> dict[str, Any]:
    """The inference table and Evidently's reference; what was made (kept across runs)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = project / ".mlci" / "inference"
    labels = project / "data" / "labels"
    facts_path = project / "bench-data.json"
    if facts_path.is_file():
        facts: dict[str, Any] = json.loads(facts_path.read_text())
        if facts["rows"] == rows and facts["days"] == days and facts.get("labelled") == labelled:
            return facts
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(labels, ignore_errors=True)
    labels.mkdir(parents=True)
    label_count = 0
    model, model_id, _, _ = registered(project)
    train = pd.read_csv(project / "data" / "train.csv")
    features = [c for c in train.columns if c != "malignant"]
    x = train[features].to_numpy(dtype="float64")
    spread = x.std(axis=0)
    reference = train[features].assign(prediction=model.predict(train[features]))
    reference.to_parquet(project / "bench-reference.parquet", index=False)
    rng = np.random.default_rng(14)
    first = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
    shifted = [features.index(c) for c in SHIFTED]
    sequence = 0
    for day in range(days):
        start = first + timedelta(days=day)
        n = rows // days + (1 if day < rows % days else 0)
        values = x[rng.integers(0, len(x), n)] + rng.normal(0, 0.05, (n, len(features))) * spread
        if day >= days // 2:
            values[:, shifted] += spread[shifted]
        frame = pd.DataFrame(values, columns=features)
        probabilities = model.predict_proba(frame)
        prediction = model.classes_[probabilities.argmax(axis=1)]
        offsets = np.sort(rng.integers(0, 86_400_000_000, n))
        stamps = pa.array(
            np.datetime64(start.replace(tzinfo=None), "us") + offsets.astype("timedelta64[us]"),
            pa.timestamp("us", tz="UTC"),
        )
        ids = pa.array([f"{day:04d}{i:028x}" for i in range(n)], pa.string())
        columns: dict[str, Any] = {
            "request_id": ids,
            "timestamp": stamps,
            "model_id": pa.array([model_id] * n, pa.string()),
        }
        columns.update({name: pa.array(values[:, i]) for i, name in enumerate(features)})
        columns["prediction"] = pa.array(prediction)
        for index, label in enumerate(model.classes_):
            columns[f"probability_{label}"] = pa.array(probabilities[:, index])
        table = pa.table(columns)
        chosen = np.flatnonzero(rng.random(n) < labelled)
        flipped = rng.random(len(chosen)) < 0.1
        truth = np.where(flipped, model.classes_[1] - prediction[chosen] + model.classes_[0], prediction[chosen])
        label_stamps = np.datetime64(start.replace(tzinfo=None) + timedelta(days=1), "us")
        pq.write_table(
            pa.table(
                {
                    "request_id": ids.take(pa.array(chosen)),
                    "label": pa.array(truth),
                    "label_timestamp": pa.array(np.full(len(chosen), label_stamps), pa.timestamp("us", tz="UTC")),
                }
            ),
            labels / f"labels-{start:%Y-%m-%d}.parquet",
        )
        label_count += len(chosen)
        partition = folder / f"date={start:%Y-%m-%d}"
        partition.mkdir(parents=True, exist_ok=True)
        for offset in range(0, n, file_rows):
            sequence += 1
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            path = partition / f"part-{stamp}-{os.getpid()}-{sequence:06d}.parquet"
            temp = partition / f".{path.name}.tmp"
            pq.write_table(table.slice(offset, file_rows), temp)
            temp.rename(path)
        print(f"  {start:%Y-%m-%d}: {n:,} rows", flush=True)
    facts = {
        "rows": rows,
        "days": days,
        "labelled": labelled,
        "labels": label_count,
        "features": features,
        "shifted": SHIFTED,
        "shifted_from": (first + timedelta(days=days // 2)).strftime("%Y-%m-%d"),
        "now": (first + timedelta(days=days, hours=1)).isoformat(),
        "model_id": model_id,
        "files": sequence,
        "bytes": sum(p.stat().st_size for p in folder.rglob("*.parquet")),
        "label_bytes": sum(p.stat().st_size for p in labels.glob("*.parquet")),
    }
    facts_path.write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_mlci(project: Path, facts: dict[str, Any]) -> dict[str, Any]:
    from mlci.config import load_project

    output = project / load_project(project).config.monitor.output
    shutil.rmtree(output, ignore_errors=True)  # a full computation every run, not an incremental skip
    result = measure([sys.executable, "-m", "mlci", "monitor", "run", "--now", facts["now"]], project, dict(os.environ))
    result["ok"] = result["code"] == 0
    return result


def run_evidently(python: Path, project: Path, facts: dict[str, Any]) -> dict[str, Any]:
    script = project / "bench-evidently.py"
    script.write_text(EVIDENTLY_RUN)
    command = [
        str(python),
        str(script),
        str(project / ".mlci" / "inference"),
        str(project / "bench-reference.parquet"),
        json.dumps(facts["features"]),
    ]
    result = measure(command, project, {**os.environ, "DO_NOT_TRACK": "1"})
    result["ok"] = result["code"] == 0
    if result["ok"]:
        result["inner"] = json.loads(result["stdout"].strip().splitlines()[-1])
        result["stdout"] = ""
    return result


def table(rows: int, runs: list[dict[str, Any]]) -> str:
    def cell(values: list[float], digits: int) -> str:
        if not values:
            return "-"
        return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    done = {tool: [r for r in runs if r["tool"] == tool and r["ok"]] for tool in ("mlci", "evidently")}
    base = statistics.median([r["wall_s"] for r in done["mlci"]]) if done["mlci"] else None
    lines = [
        "| rows | tool | runs ok | wall s, median (range) | CPU s, median (range) "
        "| peak RSS MB, median (range) | vs mlci |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for tool, ok in done.items():
        failed = sum(1 for r in runs if r["tool"] == tool and not r["ok"])
        if not ok and not failed:
            continue
        wall = [r["wall_s"] for r in ok]
        ratio = f"{statistics.median(wall) / base:.1f}x" if base and wall else "-"
        lines.append(
            f"| {rows:,} | {tool} | {len(ok)}/{len(ok) + failed} | {cell(wall, 2)} | "
            f"{cell([r['cpu_s'] for r in ok], 1)} | {cell([r['peak_rss_mb'] for r in ok], 0)} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=10, help="daily windows the rows spread over")
    parser.add_argument("--runs", type=int, default=3, help="runs per tool, interleaved")
    parser.add_argument("--tools", nargs="+", choices=["mlci", "evidently"], default=["mlci", "evidently"])
    parser.add_argument("--file-rows", type=int, default=100_000, help="rows per generated Parquet file")
    parser.add_argument("--labelled", type=float, default=0.3, help="share of the requests given a label")
    parser.add_argument("--work", default=None, help="project and data folder (default /tmp/mlci-bench-monitor)")
    parser.add_argument("--cache", default=None, help="where the Evidently venv lives (default ~/.cache/mlci-bench)")
    args = parser.parse_args()
    work = Path(args.work or "/tmp/mlci-bench-monitor") / str(args.rows)
    python = evidently_python(cache_dir(args.cache)) if "evidently" in args.tools else None
    print(f"project and {args.rows:,} logged rows under {work} ...", flush=True)
    project = make_project(work)
    facts = generate(project, args.rows, args.days, args.file_rows, args.labelled)
    tools = list(args.tools)
    if "mlci" in tools and not registered(project)[3]:
        print(
            "mlci: skipped: the registered version carries no monitor baseline (tag mlci.monitor.baseline); "
            f"this mlci's register does not write one, or {work} was made by one that did not (delete it)",
            flush=True,
        )
        tools.remove("mlci")
    runs: list[dict[str, Any]] = []
    for index in range(args.runs):
        for tool in tools:
            load_before = os.getloadavg()[0]
            if tool == "mlci":
                result = run_mlci(project, facts)
            else:
                assert python is not None
                result = run_evidently(python, project, facts)
            result.update(tool=tool, run=index + 1, load_before=load_before, load=os.getloadavg()[0])
            runs.append(result)
            state = "ok" if result["ok"] else f"FAILED ({result['code']}): {result['stderr'].strip()[-300:]}"
            print(
                f"run {index + 1} {tool}: {result['wall_s']:.2f} s, CPU {result['cpu_s']:.1f} s, "
                f"peak {result['peak_rss_mb']:.0f} MB, load {load_before:.1f} -> {result['load']:.1f}, {state}",
                flush=True,
            )
    summary = table(args.rows, runs)
    print()
    print(summary)
    evidently_drift = next((r["inner"]["windows"] for r in runs if r["tool"] == "evidently" and r["ok"]), None)
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    previous[str(args.rows)] = {
        "args": {k: v for k, v in vars(args).items() if k not in ("work", "cache")},  # no machine paths
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
        "data": facts,
        "runs": [{k: v for k, v in r.items() if k != "stdout"} for r in runs],
        "evidently_drifted_columns": evidently_drift,
        "table": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")


if __name__ == "__main__":
    main()
