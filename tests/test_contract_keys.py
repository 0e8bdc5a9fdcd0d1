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


@pytest.mark.slow  # 3M string keys spilled: a few seconds
def test_keys_spill_under_a_small_memory_limit_and_the_spill_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3M string keys and their pairs need more than 128 MB of hash table: DuckDB spills and
    # still counts exactly (far below ~100 MB DuckDB itself runs out of room on 2 threads).
    monkeypatch.setenv("MLCI_DUCKDB_MEMORY_LIMIT", "128MB")
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "mlci-duckdb-*")))
    report, expected = check_keys(tmp_path, "string", 3_000_000)
    assert duplicates(report) == expected
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "mlci-duckdb-*"))) <= before


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
