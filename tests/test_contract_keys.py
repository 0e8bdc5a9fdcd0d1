"""Uniqueness past 2^24 keys on DuckDB: exact duplicate counts in bounded memory, whatever the
key's type and span (a bitmap over an integer key's span, else a DISTINCT that spills to a
temporary directory under DuckDB's memory_limit). The same cases run on Spark in
test_data_contracts_spark.py."""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path

import pytest
from contract_cases import write_keys

from mlci.contracts.engines.duckdb import DuckDBEngine, _bytes
from mlci.contracts.format import load_contract
from mlci.contracts.runner import Report, run_contract
from mlci.errors import UsageError


def duplicates(report: Report) -> dict[str, int | None]:
    return {r.name: r.violations for r in report.results if r.check in ("unique", "unique_key")}


def key_queries(report: Report) -> list[str]:
    return report.sql.split(";\n")[1:]


def check_keys(folder: Path, kind: str, rows: int, pairs: bool = True) -> tuple[Report, dict[str, int]]:
    expected = write_keys(folder, kind, rows, pairs)
    return run_contract(load_contract(folder / "contract.yml", folder), "duckdb"), expected


def test_integer_keys_sparse_over_2_40_are_counted_exactly(tmp_path: Path) -> None:
    report, expected = check_keys(tmp_path, "sparse", 300_000)
    assert duplicates(report) == expected
    assert {r.name: r.status for r in report.results if r.check.startswith("unique")} == dict.fromkeys(expected, "fail")
    # No bitmap spans 2^58: the key is counted by the spilling DISTINCT.
    assert all("SELECT DISTINCT" in q for q in key_queries(report))


def test_string_keys_are_counted_exactly(tmp_path: Path) -> None:
    report, expected = check_keys(tmp_path, "string", 300_000)
    assert duplicates(report) == expected


@pytest.mark.slow  # 16.8M rows written and read: a few seconds
def test_dense_integer_keys_past_2_24_use_a_bitmap(tmp_path: Path) -> None:
    # Past 2^24 ids DuckDB's perfect hash table ends and count(DISTINCT) grew to GBs; the bitmap
    # over [min, max] is span / 8 bytes per thread (2 MB here) whatever the rows.
    report, expected = check_keys(tmp_path, "dense", (1 << 24) + 1_000, pairs=False)
    assert duplicates(report) == expected == {"unique[k]": 10}
    assert ["bitstring_agg" in q for q in key_queries(report)] == [True]


def test_unique_keys_pass_when_there_is_no_duplicate(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_keys(tmp_path, "dense", 100)
    ks = pa.array([-5, 3, None, 7, -(1 << 62), (1 << 62)], pa.int64())  # a span past any bitmap
    pq.write_table(pa.table({"k": ks, "part": pa.array(["a"] * 6)}), tmp_path / "keys.parquet")
    report = run_contract(load_contract(tmp_path / "contract.yml", tmp_path), "duckdb")
    assert duplicates(report) == {"unique[k]": 0, "unique_key[part+k]": 0}
    pq.write_table(
        pa.table({"k": pa.array([-3, -1, -3], pa.int32()), "part": pa.array(["a"] * 3)}), tmp_path / "keys.parquet"
    )
    report = run_contract(load_contract(tmp_path / "contract.yml", tmp_path), "duckdb")
    assert duplicates(report) == {"unique[k]": 1, "unique_key[part+k]": 1}
    assert "bitstring_agg" in key_queries(report)[0]  # negative bounds: a 3-bit bitmap
    pq.write_table(
        pa.table({"k": pa.array([None, None], pa.int64()), "part": pa.array(["a", "a"])}), tmp_path / "keys.parquet"
    )
    report = run_contract(load_contract(tmp_path / "contract.yml", tmp_path), "duckdb")
    assert duplicates(report) == {"unique[k]": 0, "unique_key[part+k]": 0}


@pytest.mark.parametrize("source", ["parquet", "csv"])
def test_a_span_past_what_bitstring_agg_takes_is_counted_by_distinct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    # With 4GB the memory budget alone would allow a bitmap over 10^9 + 2 values, which DuckDB's
    # bitstring_agg refuses ("too large"): a valid int32 id column failed the check.
    import pyarrow as pa
    import pyarrow.csv as pc
    import pyarrow.parquet as pq

    monkeypatch.setenv("MLCI_DUCKDB_MEMORY_LIMIT", "4GB")
    write_keys(tmp_path, "dense", 100, pairs=False)
    table = pa.table({"k": pa.array([0, 1_000_000_001, 1_000_000_001, 7], pa.int32())})
    if source == "csv":
        pc.write_csv(table, tmp_path / "keys.csv")
        contract = (tmp_path / "contract.yml").read_text().replace("keys.parquet", "keys.csv")
        (tmp_path / "contract.yml").write_text(contract)
    else:
        pq.write_table(table, tmp_path / "keys.parquet")
    report = run_contract(load_contract(tmp_path / "contract.yml", tmp_path), "duckdb")
    assert duplicates(report) == {"unique[k]": 1}
    assert all("SELECT DISTINCT" in q for q in key_queries(report))


@pytest.mark.slow  # 3M string keys spilled: a few seconds
def test_keys_spill_under_a_small_memory_limit_and_the_spill_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3M string keys and their pairs need more than 128 MB of hash table: DuckDB spills and
    # still counts exactly (far below ~100 MB DuckDB itself runs out of room on 2 threads).
    monkeypatch.setenv("MLCI_DUCKDB_MEMORY_LIMIT", "128MB")
    # A temp folder of this test's own: another worker's engine may have one open at the
    # same moment in the shared one.
    spills = tmp_path / "tmp"
    spills.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spills))
    report, expected = check_keys(tmp_path, "string", 3_000_000)
    assert duplicates(report) == expected
    assert not glob.glob(os.path.join(spills, "mlci-duckdb-*"))


def test_a_bad_memory_limit_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCI_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(UsageError) as caught:
        DuckDBEngine()
    message = str(caught.value)
    assert "MLCI_DUCKDB_MEMORY_LIMIT='lots'" in message and "512MB" in message and "\n" not in message
    assert caught.value.exit_code == 2


def test_memory_settings_as_duckdb_renders_them() -> None:
    assert _bytes("488.2 MiB") == int(488.2 * 1024**2)
    assert _bytes("1.0GB") == 1000**3
    assert _bytes("unlimited") == 0  # unknown: no bitmap, never an unbounded one


def test_a_long_query_reports_progress_and_a_short_one_prints_nothing() -> None:
    import re

    from mlci.contracts.runner import watch_progress

    engine = DuckDBEngine()
    lines: list[str] = []
    try:
        with watch_progress(engine, lines.append, "data-test: reading x", every=0.02):
            engine.fetch_one("SELECT count(DISTINCT i % 1000003) AS n FROM range(4000000) t(i)")
        assert lines, "a query of more than 0.02 s printed no progress line"
        assert all(re.fullmatch(r"data-test: reading x: (\d+% of the current query, )?\d+s so far", x) for x in lines)
        quiet: list[str] = []
        with watch_progress(engine, quiet.append, "data-test: reading x", every=5.0):
            engine.fetch_one("SELECT 1 AS n")
        assert quiet == []
    finally:
        engine.close()


# ---------------------------------------------------------------- figures from Parquet footers

FOOTER_CONTRACT = """\
contract: 1
dataset: {path: data.parquet}
columns:
  - {name: n, type: integer, nullable: false, min: -5, max: 100, unique: true}
  - {name: x, type: float, max_null_fraction: 0.5, min: -1, max: 1}
  - {name: z, type: float, min: 0, max: 0}
  - {name: w, type: float, min: -2, max: 2}
"""


def footer_cases() -> dict[str, dict[str, list[object]]]:
    nan = float("nan")
    return {
        "clean": {
            "n": [1, 2, 3, 4],
            "x": [0.5, -0.25, None, 1.0],
            "z": [0.0, 0.0, 0.0, 0.0],
            "w": [1.5, 1.0, 2.0, -2.0],
        },
        "nan_hidden_from_footers": {
            "n": [1, 2, 3, 4],
            "x": [0.5, nan, None, 0.1],
            "z": [0.0, nan, 0.0, 0.0],
            "w": [nan] * 4,
        },
        "signed_zeros": {
            "n": [0, -5, 100, 7],
            "x": [-0.0, 0.0, -0.0, 0.0],
            "z": [-0.0, 0.0, -0.0, 0.0],
            "w": [0.0, -0.0, None, None],
        },
        "nulls_and_breaches": {
            "n": [None, 200, -6, 200],
            "x": [None, None, None, 3.0],
            "z": [None, -0.5, None, None],
            "w": [None] * 4,
        },
    }


@pytest.mark.parametrize("case", sorted(footer_cases()))
@pytest.mark.parametrize("row_group_size", [1, 4])
def test_footer_figures_give_the_scans_results(tmp_path: Path, case: str, row_group_size: int) -> None:
    # The same contract over the same Parquet file with the footers' figures and with the scan
    # alone: identical results, observed figures included, on NaN (which footers leave out),
    # -0.0 beside 0.0, nulls, all-null row groups and values out of range.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlci.contracts.engines.duckdb import DuckDBEngine

    columns = footer_cases()[case]
    schema = pa.schema([("n", pa.int64()), ("x", pa.float64()), ("z", pa.float64()), ("w", pa.float64())])
    pq.write_table(pa.table(columns, schema=schema), tmp_path / "data.parquet", row_group_size=row_group_size)
    (tmp_path / "contract.yml").write_text(FOOTER_CONTRACT)
    contract = load_contract(tmp_path / "contract.yml", tmp_path)
    with_footers = run_contract(contract, "duckdb")
    scan_only = DuckDBEngine()
    scan_only.footer_stats = dict  # type: ignore[method-assign]
    scanned = run_contract(contract, "duckdb", engine=scan_only)
    assert [r.to_json() for r in with_footers.results] == [r.to_json() for r in scanned.results]
    assert 'count("n")' in scanned.sql
    if case == "clean":  # the footers replaced aggregates: n is not read by the main query
        assert 'count("n")' not in with_footers.sql.split(";\n")[0]
        assert 'max("n")' not in with_footers.sql.split(";\n")[0]
