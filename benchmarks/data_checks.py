"""data-test benchmark: mlci (DuckDB, Spark local) vs pandera (pandas) vs great-expectations.

The same checks everywhere on generated data (10 columns): schema (types), no nulls, ranges on 5
float columns, allowed values on 3 columns, uniqueness of the id, PSI on 3 columns against a
reference profile. Every measurement runs in a fresh subprocess, timed from after the imports
with the Parquet read included; peak RSS is the child's ru_maxrss.

    python benchmarks/data_checks.py --rows 1000000 10000000 --runs 3 [--skip spark] [--timeout 600]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORK = Path("/tmp/mlci-bench-data")
FLOATS = ["f1", "f2", "f3", "f4", "f5"]
CODES = [f"C{i:02d}" for i in range(20)]
CONTRACT = """\
contract: 1
dataset: {path: data.parquet}
columns:
  - {name: id, type: integer, nullable: false, unique: true}
  - {name: f1, type: float, nullable: false, min: -10, max: 10}
  - {name: f2, type: float, nullable: false, min: -10, max: 10}
  - {name: f3, type: float, nullable: false, min: -10, max: 10}
  - {name: f4, type: float, nullable: false, min: -10, max: 10}
  - {name: f5, type: float, nullable: false, min: -10, max: 10}
  - {name: cat, type: integer, nullable: false, allowed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
  - {name: label, type: integer, nullable: false, allowed: [0, 1]}
  - {name: code, type: string, nullable: false, allowed: [CODES]}
  - {name: amount, type: float, nullable: false, min: 0, max: 1000000}
drift:
  reference: profile.json
  columns: [f1, f2, cat]
""".replace("CODES", ", ".join(CODES))


def generate(rows: int) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = WORK / str(rows)
    path = folder / "data.parquet"
    if path.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            **{name: rng.normal(0, 1 + i * 0.2, rows).clip(-9.9, 9.9) for i, name in enumerate(FLOATS)},
            "cat": rng.integers(0, 10, rows).astype(np.int64),
            "label": rng.integers(0, 2, rows).astype(np.int64),
            "code": pa.array(np.array(CODES)[rng.integers(0, 20, rows)]).dictionary_encode().cast(pa.string()),
            "amount": rng.gamma(2.0, 100.0, rows),
        }
    )
    pq.write_table(table, path, row_group_size=1_000_000)
    (folder / "contract.yml").write_text(CONTRACT)
    from mlci.contracts import drift
    from mlci.contracts.format import load_contract
    from mlci.contracts.profile import build_profile

    drift.write_profile(build_profile(load_contract(folder / "contract.yml", folder)), folder / "profile.json")
    return folder


def psi_numpy(values, column: dict) -> float:  # type: ignore[no-untyped-def]
    """PSI in numpy with the reference profile's bins (what a pandas user would write)."""
    import numpy as np

    from mlci.contracts import drift

    if column["kind"] == "numeric":
        counts = np.bincount(
            np.searchsorted(np.asarray(column["edges"]), values, side="right"), minlength=len(column["edges"]) + 1
        )
    else:
        known = [int((values == v).sum()) for v in column["values"]]
        counts = np.asarray([*known, len(values) - sum(known)])
    return drift.psi(column["counts"], counts.tolist())


def run_mlci(folder: Path, engine: str) -> dict[str, object]:
    from mlci.contracts.format import load_contract
    from mlci.contracts.runner import run_contract

    contract = load_contract(folder / "contract.yml", folder)
    if engine == "spark":
        from mlci.contracts.engines.spark import session

        session().sparkContext.setLogLevel("ERROR")  # start-up is not timed
    clock = time.perf_counter()
    report = run_contract(contract, engine)
    return {"seconds": time.perf_counter() - clock, "checks": len(report.results), "failed": len(report.failed)}


def run_pandera(folder: Path) -> dict[str, object]:
    import pandas as pd
    import pandera.pandas as pa

    profile = json.loads((folder / "profile.json").read_text())["columns"]
    clock = time.perf_counter()
    df = pd.read_parquet(folder / "data.parquet")
    rng = pa.Check.in_range(-10, 10)
    schema = pa.DataFrameSchema(
        {
            "id": pa.Column("int64", nullable=False, unique=True),
            **{name: pa.Column("float64", rng, nullable=False) for name in FLOATS},
            "cat": pa.Column("int64", pa.Check.isin(list(range(10))), nullable=False),
            "label": pa.Column("int64", pa.Check.isin([0, 1]), nullable=False),
            "code": pa.Column(str, pa.Check.isin(CODES), nullable=False),
            "amount": pa.Column("float64", pa.Check.in_range(0, 1_000_000), nullable=False),
        }
    )
    schema.validate(df, lazy=True)
    psis = [psi_numpy(df[c].to_numpy(), profile[c]) for c in ("f1", "f2", "cat")]
    return {"seconds": time.perf_counter() - clock, "max_psi": max(psis)}


def run_gx(folder: Path) -> dict[str, object]:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd

    profile = json.loads((folder / "profile.json").read_text())["columns"]
    context = gx.get_context(mode="ephemeral")
    batch_def = context.data_sources.add_pandas("p").add_dataframe_asset("a").add_batch_definition_whole_dataframe("b")
    suite = gx.ExpectationSuite("s")
    types = {
        "id": "int64",
        "cat": "int64",
        "label": "int64",
        "code": "object",
        "amount": "float64",
        **dict.fromkeys(FLOATS, "float64"),
    }
    for name, dtype in types.items():
        suite.add_expectation(gxe.ExpectColumnValuesToBeOfType(column=name, type_=dtype))
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=name))
    for name in FLOATS:
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=name, min_value=-10, max_value=10))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0, max_value=1_000_000))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="cat", value_set=list(range(10))))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="code", value_set=CODES))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="id"))
    clock = time.perf_counter()
    df = pd.read_parquet(folder / "data.parquet")
    result = batch_def.get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format="BOOLEAN_ONLY")
    psis = [psi_numpy(df[c].to_numpy(), profile[c]) for c in ("f1", "f2", "cat")]  # GX has no PSI expectation
    return {"seconds": time.perf_counter() - clock, "success": bool(result.success), "max_psi": max(psis)}


def child(tool: str, rows: int) -> None:
    folder = WORK / str(rows)
    out = {
        "mlci-duckdb": lambda: run_mlci(folder, "duckdb"),
        "mlci-spark": lambda: run_mlci(folder, "spark"),
        "pandera": lambda: run_pandera(folder),
        "great-expectations": lambda: run_gx(folder),
    }[tool]()
    print(json.dumps(out))


def measure(command: list[str], timeout: float) -> tuple[str, int]:
    """Run a child; return its stdout and the peak RSS (MB) of its whole process tree (JVM included),
    sampled every 50 ms. (ru_maxrss would carry the parent's peak over fork+exec on Linux.)"""
    import psutil

    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(proc.pid)
    peak, started = 0, time.monotonic()
    while proc.poll() is None:
        if time.monotonic() - started > timeout:
            for p in [*watched.children(recursive=True), watched]:
                p.kill()
            proc.wait()
            raise subprocess.TimeoutExpired(command, timeout)
        try:
            total = sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)])
        except psutil.Error:
            total = 0
        peak = max(peak, total)
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, command, out, err)
    return out, peak // (1024 * 1024)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tools", nargs="+", default=["mlci-duckdb", "pandera", "great-expectations", "mlci-spark"])
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--child", nargs=2, metavar=("TOOL", "ROWS"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    table = []
    for rows in args.rows:
        generate(rows)
        for tool in args.tools:
            times, rss, note = [], [], ""
            for _ in range(args.runs):
                try:
                    stdout, peak = measure([sys.executable, __file__, "--child", tool, str(rows)], args.timeout)
                except subprocess.TimeoutExpired:
                    note = f"timed out after {args.timeout:g}s"
                    break
                except subprocess.CalledProcessError as exc:
                    note = "error: " + (exc.stderr.strip().splitlines() or ["?"])[-1]
                    break
                record = json.loads(stdout.strip().splitlines()[-1])
                times.append(record["seconds"])
                rss.append(peak)
            row = {
                "rows": rows,
                "tool": tool,
                "runs": len(times),
                "median_s": round(statistics.median(times), 2) if times else None,
                "peak_rss_mb": max(rss) if rss else None,
                "note": note,
            }
            print(json.dumps(row), flush=True)
            table.append(row)
    print("\n| rows | tool | median s | peak RSS MB | vs mlci-duckdb | note |\n|---:|---|---:|---:|---:|---|")
    for row in table:
        base = next(r["median_s"] for r in table if r["rows"] == row["rows"] and r["tool"] == "mlci-duckdb")
        ratio = f"{row['median_s'] / base:.1f}x" if row["median_s"] and base else "-"
        print(
            f"| {row['rows']:,} | {row['tool']} | {row['median_s']} | {row['peak_rss_mb']} | {ratio} | {row['note']} |"
        )


if __name__ == "__main__":
    main()
