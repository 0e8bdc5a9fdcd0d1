"""data-test benchmark: mlci (DuckDB, Spark local) vs pandera (pandas) vs great-expectations.

The same checks everywhere on generated data (10 columns): schema (types), no nulls, ranges on 5
float columns, allowed values on 3 columns, uniqueness of the id, PSI on 3 columns against a
reference profile. Tools are interleaved run by run (benchmarks/harness.py: A B A B ..., one
untimed warm-up each), every sample a fresh process; each records wall and CPU time (user + sys
of its tree), peak RSS of the tree and the load average around it. The child also reports its
own seconds, timed from after its imports with the Parquet read included.

pandera (and great-expectations) load the whole table into pandas: past --pandas-max-rows
(30M by default; ~9 GB at 30M) they are not run, and the results say so.

    python benchmarks/data_checks.py --rows 10000000 30000000 100000000 --runs 3 [--tools ...]
    python benchmarks/data_checks.py --rows 10000000 30000000 --tools mlci-spark mlci-duckdb --runs 1 --warmup 0 \
        --out data_checks_spark
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, Measured, interleave, loadavg, results_document, write_results

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


def generate(rows: int, chunk: int = 1_000_000) -> Path:
    """data.parquet of `rows` rows, written one row group at a time (memory bounded by `chunk`),
    its contract and its reference profile (built by mlci on DuckDB)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = WORK / str(rows)
    path = folder / "data.parquet"
    if path.is_file() and (folder / "profile.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    codes = pa.array(CODES)
    partial = path.with_suffix(".partial")
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        table = pa.table(
            {
                "id": np.arange(start, start + n, dtype=np.int64),
                **{name: rng.normal(0, 1 + i * 0.2, n).clip(-9.9, 9.9) for i, name in enumerate(FLOATS)},
                "cat": rng.integers(0, 10, n).astype(np.int64),
                "label": rng.integers(0, 2, n).astype(np.int64),
                "code": codes.take(pa.array(rng.integers(0, 20, n))),
                "amount": rng.gamma(2.0, 100.0, n),
            }
        )
        writer = writer or pq.ParquetWriter(partial, table.schema)
        writer.write_table(table, row_group_size=chunk)
    assert writer is not None
    writer.close()
    partial.replace(path)
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


PANDAS_TOOLS = ("pandera", "great-expectations")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 30_000_000, 100_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup", type=int, default=1, choices=range(0, 4), help="untimed rounds first (0 for a slow Spark run)"
    )
    parser.add_argument("--tools", nargs="+", default=["mlci-duckdb", "pandera", "mlci-spark"])
    parser.add_argument("--pandas-max-rows", type=int, default=30_000_000)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", default="data_checks", help="results/<OUT>.json")
    parser.add_argument("--child", nargs=2, metavar=("TOOL", "ROWS"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    load_at_start = loadavg()
    measured: list[Measured] = []
    skipped: list[dict[str, object]] = []
    for rows in args.rows:
        generate(rows)
        cases = []
        for tool in args.tools:
            if tool in PANDAS_TOOLS and rows > args.pandas_max_rows:
                why = f"not run past {args.pandas_max_rows:,} rows: it loads the table into pandas"
                skipped.append({"rows": rows, "tool": tool, "note": why})
                print(f"{tool} at {rows:,} rows: {why}", file=sys.stderr)
                continue
            cases.append(
                Case(
                    f"{tool} {rows:,}",
                    [sys.executable, __file__, "--child", tool, str(rows)],
                    extract=lambda sample: {"child_s": sample.last_json()["seconds"]},
                    timeout=args.timeout,
                    group=f"{rows:,} rows",
                    params={"rows": rows, "tool": tool},
                )
            )
        print(f"{rows:,} rows: {', '.join(c.name for c in cases)}", file=sys.stderr)
        measured += interleave(cases, args.runs, warmup=args.warmup)
    document = results_document(
        "data_checks",
        measured,
        mode="full",
        runs=args.runs,
        distributions=("mlci", "duckdb", "pandas", "pandera", "pyspark"),
        load_at_start=load_at_start,
        extra={"not_run": skipped, "warmup_rounds": args.warmup},
    )
    path = write_results(args.out, document)
    print(f"wrote {path}", file=sys.stderr)
    print("\n| rows | tool | wall s (median, range) | CPU s | peak RSS MB | vs mlci-duckdb | note |")
    print("|---:|---|---:|---:|---:|---:|---|")
    cases_out = document["cases"]
    for entry in cases_out.values():
        rows, tool = entry["params"]["rows"], entry["params"]["tool"]
        base = cases_out.get(f"mlci-duckdb {rows:,}", {}).get("wall_s", {}).get("median")
        wall = entry["wall_s"]
        ratio = f"{wall['median'] / base:.1f}x" if wall["median"] and base else "-"
        print(
            f"| {rows:,} | {tool} | {wall['median']} ({wall['min']}-{wall['max']}) | {entry['cpu_s']['median']} "
            f"| {entry['peak_rss_mb']['median']} | {ratio} | {entry['note']} |"
        )


if __name__ == "__main__":
    main()
