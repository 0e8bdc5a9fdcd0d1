"""The same contracts on Spark (local mode, Java 17): same verdicts and the same observed figures
as DuckDB. Marked `spark`: skip locally with -m 'not spark'; CI runs them."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from contract_cases import CASES, CONTRACT, EMPTY_CSV_CASES, EMPTY_CSV_CONTRACT, NOW, good_rows, write, write_keys

from mlci.contracts import drift
from mlci.contracts.format import load_contract
from mlci.contracts.profile import build_profile
from mlci.contracts.runner import run_contract

pytestmark = pytest.mark.spark
SCAFFOLD = Path(__file__).resolve().parents[1] / "scaffold"


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    pyspark_sql = pytest.importorskip("pyspark.sql")
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)  # type: ignore[attr-defined]
    session = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .appName("mlci-tests")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def results(report: Any) -> list[dict[str, Any]]:
    return [r.to_json() for r in report.results]


def test_every_case_gives_the_same_results_on_spark_and_duckdb(spark: Any, tmp_path: Path) -> None:
    rows = good_rows()
    (tmp_path / "contract.yml").write_text(CONTRACT)
    write(rows, tmp_path / "data.parquet")
    contract = load_contract(tmp_path / "contract.yml", tmp_path)
    drift.write_profile(build_profile(contract, "duckdb"), tmp_path / "profile.json")
    good = run_contract(contract, "spark", now=NOW)
    assert [r.name for r in good.results if r.status != "pass"] == []
    assert results(good) == results(run_contract(contract, "duckdb", now=NOW))
    for case, (mutate, expected) in sorted(CASES.items()):
        bad = copy.deepcopy(rows)
        mutate(bad)
        write(bad, tmp_path / "data.parquet")
        on_spark = run_contract(contract, "spark", now=NOW)
        assert {r.name: r.observed for r in on_spark.results if r.status != "pass"} == expected, case
        assert results(on_spark) == results(run_contract(contract, "duckdb", now=NOW)), case


def engine_neutral(report: Any) -> list[dict[str, Any]]:
    """Results without the message of a failed type check, which names the engine's own type."""
    return [r | {"message": "-"} if r["check"] == "type" and r["status"] == "fail" else r for r in results(report)]


def test_csv_columns_without_values_agree_with_duckdb(spark: Any, tmp_path: Path) -> None:
    (tmp_path / "contract.yml").write_text(EMPTY_CSV_CONTRACT)
    contract = load_contract(tmp_path / "contract.yml", tmp_path)
    for text, (expected, _) in sorted(EMPTY_CSV_CASES.items()):
        (tmp_path / "data.csv").write_text(text)
        on_spark = run_contract(contract, "spark", now=NOW)
        assert {r.name: (r.status, r.observed) for r in on_spark.results if r.status != "pass"} == expected, text
        assert engine_neutral(on_spark) == engine_neutral(run_contract(contract, "duckdb", now=NOW)), text
    # A typed source keeps its types: an empty bigint column declared date fails on both.
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "typed.yml").write_text(
        "contract: 1\ndataset: {path: data.parquet}\ncolumns:\n  - {name: d, type: date}\n  - {name: s, type: float}\n"
    )
    table = pa.table({"d": pa.array([None], pa.int64()), "s": pa.array([None], pa.string())})
    pq.write_table(table, tmp_path / "data.parquet")
    typed = load_contract(tmp_path / "typed.yml", tmp_path)
    on_spark = run_contract(typed, "spark", now=NOW)
    assert [(r.name, r.status) for r in on_spark.results] == [("type[d]", "fail"), ("type[s]", "pass")]
    assert engine_neutral(on_spark) == engine_neutral(run_contract(typed, "duckdb", now=NOW))


def test_profile_and_demo_csv_agree_with_duckdb(spark: Any) -> None:
    contract = load_contract(SCAFFOLD / "data" / "contract.yml", SCAFFOLD)
    assert build_profile(contract, "spark").to_text() == (SCAFFOLD / "data" / "reference_profile.json").read_text()
    for source in (None, str(SCAFFOLD / "data" / "holdout.csv")):
        on_spark = run_contract(contract, "spark", source)
        assert on_spark.failed == []
        assert results(on_spark) == results(run_contract(contract, "duckdb", source))


def test_bad_expectation_sql_is_a_contract_error_on_spark(spark: Any, tmp_path: Path) -> None:
    from mlci.errors import ConfigError

    (tmp_path / "contract.yml").write_text(CONTRACT.replace("NOT flag OR score >= 50", "NOT flag OR scor >= 50"))
    write(good_rows(), tmp_path / "data.parquet")
    contract = load_contract(tmp_path / "contract.yml", tmp_path)
    drift.write_profile(build_profile(contract, "duckdb"), tmp_path / "profile.json")
    with pytest.raises(ConfigError) as info:
        run_contract(contract, "spark", now=NOW)
    assert info.value.line == 34
    assert "expectation 'flagged_rows_score_high': invalid SQL on spark: [UNRESOLVED_COLUMN" in info.value.message
    # Spark's own parser reads each expectation as one expression before the query runs.
    (tmp_path / "contract.yml").write_text(CONTRACT.replace("NOT flag OR score >= 50", "NOT flag OR score >="))
    with pytest.raises(ConfigError) as info:
        run_contract(load_contract(tmp_path / "contract.yml", tmp_path), "spark", now=NOW)
    assert info.value.line == 34
    assert "expectation 'flagged_rows_score_high' is not one SQL expression on spark: [PARSE_SYNTAX_ERROR]" in (
        info.value.message
    )
    # Nor may it call JVM code (System.getenv through reflect) or read past the columns.
    for sql, problem in [
        ("reflect('java.lang.System', 'getenv', 'HOME') = ''", "reflect() reaches outside the dataset"),
        ("score > (SELECT count(*) FROM csv.`/etc/passwd`)", "a subquery is not allowed"),
    ]:
        (tmp_path / "contract.yml").write_text(CONTRACT.replace("NOT flag OR score >= 50", json.dumps(sql)))
        with pytest.raises(ConfigError) as info:
            run_contract(load_contract(tmp_path / "contract.yml", tmp_path), "spark", now=NOW)
        assert f"is not one SQL expression on spark: {problem}" in info.value.message


def test_every_dataset_and_strict_give_the_same_verdicts_on_spark(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from test_data_contracts import corrupt_first_row, demo_project

    from mlci.cli import main as cli_main

    root = demo_project(tmp_path)
    holdout = root / "data" / "holdout.csv"
    corrupt_first_row(holdout, mean_radius="999", malignant="7")
    lines = holdout.read_text().splitlines()
    holdout.write_text("\n".join([lines[0] + ",patient_age"] + [line + ",50" for line in lines[1:]]) + "\n")
    verdicts = {}
    for engine in ("duckdb", "spark"):
        assert cli_main(["data-test", "-C", str(root), "--engine", engine]) == 1
        capsys.readouterr()
        record = json.loads((root / ".mlci" / "out" / "data-test.json").read_text())
        verdicts[engine] = {d["name"]: d["checks"] for d in record["details"]["datasets"]}
    assert verdicts["spark"] == verdicts["duckdb"]
    failed = {name: [c["check"] for c in checks if c["status"] == "fail"] for name, checks in verdicts["spark"].items()}
    assert failed == {"train": [], "holdout": ["strict", "max", "allowed", "expectation", "expectation"]}


@pytest.mark.parametrize("kind", ["sparse", "string", "dense"])
def test_unique_keys_give_the_same_counts_on_spark_and_duckdb(spark: Any, tmp_path: Path, kind: str) -> None:
    # DuckDB counts keys with a bitmap or a spilling DISTINCT, Spark with count(DISTINCT) in
    # its one query: the same duplicates, verdicts and figures (keys spread over 2^40, strings).
    expected = write_keys(tmp_path, kind, 50_000)
    contract = load_contract(tmp_path / "contract.yml", tmp_path)
    on_spark = run_contract(contract, "spark", now=NOW)
    assert {r.name: r.violations for r in on_spark.results if r.check.startswith("unique")} == expected
    assert results(on_spark) == results(run_contract(contract, "duckdb", now=NOW))
