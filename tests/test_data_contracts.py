"""Data contracts on DuckDB: every check type passes on good data and fails on a crafted violation;
drift; bad contracts and missing files; the CLI stage, its JSON, JUnit and exit codes."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from contract_cases import CASES, CONTRACT, EMPTY_CSV_CASES, EMPTY_CSV_CONTRACT, NOW, N, good_rows, write

from mlci.cli import main as cli_main
from mlci.contracts import drift
from mlci.contracts.engines import ENGINES, engine_class
from mlci.contracts.format import json_schema, load_contract, parse_contract
from mlci.contracts.profile import build_profile
from mlci.contracts.runner import Report, run_contract
from mlci.contracts.sql import double_literal
from mlci.errors import ConfigError
from mlci.typed_yaml import NON_FINITE_FIX

REPO = Path(__file__).resolve().parents[1]
SCAFFOLD = REPO / "scaffold"

MINIMAL_MLCI_YAML = """\
schema: 1
project: {name: demo, package: demo}
data: {train: data.parquet, holdout: data.parquet, target: label}
train: {entrypoint: "demo.train:train"}
"""


def make_case(tmp_path: Path, case: str | None, contract: str = CONTRACT) -> Path:
    """A directory with the good data (mutated by `case`), its profile and the contract."""
    rows = good_rows()
    write(rows, tmp_path / "data.parquet")
    (tmp_path / "contract.yml").write_text(contract)
    c = load_contract(tmp_path / "contract.yml", tmp_path)
    drift.write_profile(build_profile(c, "duckdb"), tmp_path / "profile.json")
    if case is not None:
        bad = copy.deepcopy(rows)
        CASES[case][0](bad)
        write(bad, tmp_path / "data.parquet")
    return tmp_path


def check(tmp_path: Path, engine: str = "duckdb") -> Report:
    return run_contract(load_contract(tmp_path / "contract.yml", tmp_path), engine, now=NOW)


def failing(report: Report) -> dict[str, object]:
    return {r.name: r.observed for r in report.results if r.status != "pass"}


def test_good_data_passes_every_check(tmp_path: Path) -> None:
    report = check(make_case(tmp_path, None))
    assert failing(report) == {}
    checks = {r.check for r in report.results}
    assert checks == {
        "type",
        "not_null",
        "max_null_fraction",
        "min",
        "max",
        "allowed",
        "regex",
        "unique",
        "row_count",
        "unique_key",
        "freshness",
        "expectation",
        "psi",
        "ks",
    }
    by_name = {r.name: r for r in report.results}
    assert by_name["psi[score]"].observed == 0.0
    assert by_name["max_null_fraction[note]"].observed == 0.2
    assert by_name["min[score]"].expected == ">= 0"
    assert by_name["freshness[ts]"].observed == "2024-06-01 10:00:00"
    assert by_name["freshness[ts]"].expected == ">= 2024-05-31 12:00:00 UTC (24h)"
    assert by_name["type[label]"].observed == "integer"


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_check_fails_on_its_violation(tmp_path: Path, case: str) -> None:
    report = check(make_case(tmp_path, case))
    assert failing(report) == CASES[case][1]


def test_nan_breaks_min_and_max_but_not_nullable(tmp_path: Path) -> None:
    by_name = {r.name: r for r in check(make_case(tmp_path, "nan_and_below_min")).results}
    assert by_name["not_null[score]"].status == "pass"
    low, high = by_name["min[score]"], by_name["max[score]"]
    assert (low.status, low.observed, low.violations) == ("fail", "NaN", 2)
    assert low.message == "2 values out of range (1 NaN)"
    assert (high.status, high.observed, high.violations) == ("fail", "NaN", 1)
    assert high.message == "1 value out of range (1 NaN)"


def test_one_query_reads_only_the_contract_columns(tmp_path: Path) -> None:
    rows = good_rows()
    for row in rows:
        row["extra"] = "x"
    import pyarrow as pa
    from contract_cases import SCHEMA

    make_case(tmp_path, None)
    write(rows, tmp_path / "data.parquet", SCHEMA.append(pa.field("extra", pa.string())))
    report = check(tmp_path)
    assert failing(report) == {}
    # One scan for every check; each unique key is then counted by a query of its own that
    # stays in bounded memory (a bitmap or a spilling DISTINCT, never count(DISTINCT)).
    main, *keys = report.sql.split(";\n")
    assert main.count("SELECT") == 1
    assert keys and all("bitstring_agg" in k or "SELECT DISTINCT" in k for k in keys)
    assert "count(DISTINCT" not in report.sql
    assert "extra" not in report.sql


def test_schema_change_fails_type_check_and_skips_value_checks(tmp_path: Path) -> None:
    make_case(tmp_path, None)
    rows = good_rows()
    for row in rows:
        row["score"] = str(row["score"])
    import pyarrow as pa
    from contract_cases import SCHEMA

    write(rows, tmp_path / "data.parquet", SCHEMA.set(1, pa.field("score", pa.string())))
    report = check(tmp_path)
    assert failing(report) == {
        "type[score]": "string",
        "not_null[score]": None,
        "min[score]": None,
        "max[score]": None,
        "psi[score]": None,
        "expectation[flagged_rows_score_high]": None,
    }
    assert {r.name: r.status for r in report.results if r.column == "score"}["min[score]"] == "skip"


def test_missing_column_is_a_failed_type_check(tmp_path: Path) -> None:
    make_case(tmp_path, None)
    rows = good_rows()
    for row in rows:
        row["Seq"] = row.pop("seq")
    import pyarrow as pa
    from contract_cases import SCHEMA

    write(rows, tmp_path / "data.parquet", SCHEMA.set(6, pa.field("Seq", pa.int64())))
    report = check(tmp_path)
    result = next(r for r in report.results if r.name == "type[seq]")
    assert (result.observed, result.status, result.message) == (
        "missing",
        "fail",
        "column is missing; the data has 'Seq'",
    )
    assert next(r for r in report.results if r.check == "unique_key").status == "skip"


def test_csv_and_delta_sources(tmp_path: Path) -> None:
    import duckdb
    from deltalake import write_deltalake

    make_case(tmp_path, None)
    duckdb.sql(f"COPY (SELECT * FROM '{tmp_path / 'data.parquet'}') TO '{tmp_path / 'data.csv'}' (HEADER)")
    table = duckdb.sql(f"SELECT * FROM '{tmp_path / 'data.parquet'}'").to_arrow_table()
    write_deltalake(str(tmp_path / "delta"), table)
    contract = load_contract(tmp_path / "contract.yml", tmp_path)
    parquet = run_contract(contract, "duckdb", now=NOW)
    for source in ("data.csv", "delta"):
        other = run_contract(contract, "duckdb", source, now=NOW)
        assert failing(other) == {}
        assert [r.to_json() for r in other.results] == [r.to_json() for r in parquet.results]


@pytest.mark.parametrize("text", sorted(EMPTY_CSV_CASES))
def test_csv_column_without_values_has_the_declared_type(tmp_path: Path, text: str) -> None:
    (tmp_path / "contract.yml").write_text(EMPTY_CSV_CONTRACT)
    (tmp_path / "data.csv").write_text(text)
    report = check(tmp_path)
    failing, empty = EMPTY_CSV_CASES[text]
    assert {r.name: (r.status, r.observed) for r in report.results if r.status != "pass"} == failing
    read_as_declared = [r for r in report.results if r.message == "no non-null values: read as declared"]
    assert all(r.check == "type" and r.status == "pass" and r.observed == r.expected for r in read_as_declared)
    assert {r.column for r in read_as_declared} == empty


def test_typed_empty_column_keeps_its_type(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "contract.yml").write_text(
        "contract: 1\ndataset: {path: data.parquet}\ncolumns:\n  - {name: d, type: date}\n  - {name: s, type: float}\n"
    )
    pq.write_table(
        pa.table({"d": pa.array([None], pa.int64()), "s": pa.array([None], pa.string())}), tmp_path / "data.parquet"
    )
    by_name = {r.name: r for r in check(tmp_path).results}
    assert (by_name["type[d]"].status, by_name["type[d]"].observed) == ("fail", "integer")
    assert (by_name["type[s]"].status, by_name["type[s]"].observed) == ("pass", "float")


# ---------------------------------------------------------------- drift on the demo data


def demo_contract(tmp_path: Path, train: Path) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "train.csv").write_bytes(train.read_bytes())
    (tmp_path / "data" / "contract.yml").write_bytes((SCAFFOLD / "data" / "contract.yml").read_bytes())
    (tmp_path / "data" / "reference_profile.json").write_bytes(
        (SCAFFOLD / "data" / "reference_profile.json").read_bytes()
    )
    return tmp_path / "data" / "contract.yml"


def test_scaffold_profile_is_what_mlci_data_profile_writes(tmp_path: Path) -> None:
    contract = load_contract(demo_contract(tmp_path, SCAFFOLD / "data" / "train.csv"), tmp_path)
    assert build_profile(contract).to_text() == (SCAFFOLD / "data" / "reference_profile.json").read_text()


def test_demo_train_and_holdout_pass_and_shifted_copy_trips_psi(tmp_path: Path) -> None:
    import duckdb

    contract = load_contract(demo_contract(tmp_path, SCAFFOLD / "data" / "train.csv"), tmp_path)
    assert failing(run_contract(contract)) == {}
    holdout = run_contract(contract, source_override=str(SCAFFOLD / "data" / "holdout.csv"))
    assert failing(holdout) == {}
    assert max(r.observed for r in holdout.results if r.check == "psi") < 0.2
    sample = tmp_path / "sample.csv"
    duckdb.sql(
        f"COPY (SELECT * FROM '{SCAFFOLD / 'data' / 'train.csv'}' USING SAMPLE 50% (reservoir, 1)) "
        f"TO '{sample}' (HEADER)"
    )
    assert failing(run_contract(contract, source_override=str(sample))) == {}
    shifted = tmp_path / "shifted.csv"
    duckdb.sql(
        f"COPY (SELECT * REPLACE (mean_radius * 1.2 AS mean_radius, mean_texture + 4 AS mean_texture) "
        f"FROM '{SCAFFOLD / 'data' / 'train.csv'}') TO '{shifted}' (HEADER)"
    )
    report = run_contract(contract, source_override=str(shifted))
    assert {name for name in failing(report)} == {
        "psi[mean_radius]",
        "ks[mean_radius]",
        "psi[mean_texture]",
        "ks[mean_texture]",
        "expectation[worst_at_least_mean]",
    }
    assert [r.column for r in report.worst_drift(2)] == ["mean_texture", "mean_radius"]


def test_psi_and_ks_math() -> None:
    assert drift.psi([50, 50], [50, 50]) == 0.0
    # (0.8-0.5)ln(0.8/0.5) + (0.2-0.5)ln(0.2/0.5)
    assert drift.psi([50, 50], [80, 20]) == 0.415888
    assert drift.psi([100, 0], [100, 0]) == 0.0  # empty bins are floored, not divided by
    assert drift.ks_binned([25, 25, 50], [50, 25, 25]) == 0.25


def test_literals_are_escaped_per_dialect() -> None:
    duck, spark = engine_class("duckdb").dialect, engine_class("spark").dialect
    assert duck.string("o'south \\d") == "'o''south \\d'"
    assert spark.string("o'south \\d") == "'o\\'south \\\\d'"
    assert duck.ident('we"ird') == '"we""ird"'
    assert spark.ident("we`ird") == "`we``ird`"
    assert double_literal(0.1) == "0.1E0"
    assert double_literal(1e-05) == "1e-05"


# ---------------------------------------------------------------- bad contracts


def contract_error(tmp_path: Path, text: str) -> str:
    make_case(tmp_path, None)
    with pytest.raises(ConfigError) as info:
        parse_contract(text, tmp_path / "contract.yml", tmp_path)
    return info.value.message.replace(str(tmp_path), "<tmp>")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "    type: float\n",
            "    type: flaot\n",
            "<tmp>/contract.yml:10: 'columns[1].type' is 'flaot'; use one of integer, float, string, boolean, date, "
            "timestamp; did you mean 'float'?",
        ),
        (
            "columns: [score, label, region]",
            "columns: [score, lable, region]",
            "<tmp>/contract.yml:37: drift.columns[1]: unknown column 'lable'; did you mean 'label'?",
        ),
        (
            "unique_keys: [[region, seq]]",
            "unique_keys: [[region, sequence]]",
            "<tmp>/contract.yml:30: table.unique_keys[0]: unknown column 'sequence'; declare it under 'columns' first",
        ),
        (
            "    max: 100\n",
            "    max: 100\n    maximum: 3\n",
            "<tmp>/contract.yml:14: unknown key 'columns[1].maximum'; did you mean 'max'?",
        ),
        (
            "    regex: '^[A-Z]{2}-\\d{3}$'\n",
            "    regex: '^[A-Z'\n",
            "<tmp>/contract.yml:19: columns[3]: invalid regex '^[A-Z': unterminated character set at position 1",
        ),
        (
            "  - {name: seq, type: integer}",
            "  - {name: seq, type: integer, regex: x}",
            "<tmp>/contract.yml:24: columns[6]: 'regex' needs a string column, not integer column 'seq'",
        ),
        (
            "    allowed: [0, 1]\n",
            "    allowed: [0, yes]\n",
            "<tmp>/contract.yml:16: columns[2]: allowed value True is not an integer like column 'label'",
        ),
        ("    min: 0\n", "    min: 1000\n", "<tmp>/contract.yml:13: columns[1]: max 100 is below min 1000"),
        (
            "  freshness: {column: ts, max_age_hours: 24}",
            "  freshness: {column: seq, max_age_hours: 24}",
            "<tmp>/contract.yml:31: table.freshness.column: 'seq' must be a date or timestamp column, not integer",
        ),
        ("contract: 1\n", "contract: 2\n", "<tmp>/contract.yml:1: 'contract' is 2; it must be at most 1"),
        (
            "  path: data.parquet\n",
            "  table: main.sales\n  path: data.parquet\n",
            "<tmp>/contract.yml:2: dataset needs exactly one of 'path' or 'table'",
        ),
    ],
)
def test_bad_contract_names_file_line_and_fix(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in CONTRACT
    assert contract_error(tmp_path, CONTRACT.replace(old, new)) == message


def test_missing_files_and_bad_sql_are_config_errors(tmp_path: Path) -> None:
    make_case(tmp_path, None)
    contract = load_contract(tmp_path / "contract.yml", tmp_path)
    (tmp_path / "data.parquet").rename(tmp_path / "gone.parquet")
    with pytest.raises(ConfigError, match=r"contract.yml:3: dataset.path: data file 'data.parquet' not found"):
        run_contract(contract)
    (tmp_path / "gone.parquet").rename(tmp_path / "data.parquet")
    (tmp_path / "profile.json").unlink()
    with pytest.raises(
        ConfigError,
        match=r"contract.yml:36: reference profile .*profile.json not found; "
        r"create it with 'mlci data profile'",
    ):
        run_contract(contract)
    bad_sql = CONTRACT.replace("NOT flag OR score >= 50", "NOT flag OR scor >= 50")
    (tmp_path / "contract.yml").write_text(bad_sql)
    make_case(tmp_path, None, bad_sql)
    with pytest.raises(ConfigError) as info:
        check(tmp_path)
    assert info.value.line == 34
    assert "expectation 'flagged_rows_score_high': invalid SQL on duckdb: Binder Error" in info.value.message


def test_contract_json_schema_is_committed() -> None:
    committed = json.loads((REPO / "schema" / "contract.schema.json").read_text())
    assert committed == json_schema()


# ---------------------------------------------------------------- the stage and the CLI


# The CLI checks against the real clock: no freshness check on the 2024 test data.
CLI_CONTRACT = CONTRACT.replace("  freshness: {column: ts, max_age_hours: 24}\n", "")


def project(tmp_path: Path, case: str | None) -> Path:
    make_case(tmp_path, case, CLI_CONTRACT)
    (tmp_path / "mlci.yaml").write_text(MINIMAL_MLCI_YAML + "data_test: {contract: contract.yml}\n")
    return tmp_path


def test_a_passing_data_test_writes_only_the_outputs_its_action_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It wrote `checks` and `failed` too, which the data-test action never declared (so no
    # workflow could read them); a stage's outputs are now checked against its spec.
    root = project(tmp_path, None)
    outputs = tmp_path / "github-output"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    assert cli_main(["data-test", "-C", str(root)]) == 0
    assert outputs.read_text(encoding="utf-8").splitlines() == ["result=passed"]


def test_cli_passes_writes_json_and_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path, None)
    n = len(check(root).results)  # the contract's checks, counted by the runner itself
    assert n > 1  # one failing and at least one passing below
    assert cli_main(["data-test", "-C", str(root)]) == 0
    out = capsys.readouterr().out
    # Passing checks are summarised in the one final line; --verbose lists every check.
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"train: passed, {n} passed, 0 failed on data.parquet (")
    assert lines[1].startswith(f"data contract passed on train: {n} checks (duckdb, ")
    assert cli_main(["data-test", "--verbose", "-C", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["check", "column", "observed", "expected", "result"]
    assert len(out.splitlines()) == 1 + n + 2
    # data.train and data.holdout are the contract's dataset: one file, checked once.
    assert f"\ntrain: passed, {n} passed, 0 failed on data.parquet (" in out
    assert f"data contract passed on train: {n} checks (duckdb, " in out
    record = json.loads((root / ".mlci" / "out" / "data-test.json").read_text())
    assert record["status"] == "passed"
    assert record["details"]["pass"] == n
    assert [(d["name"], d["path"], d["pass"]) for d in record["details"]["datasets"]] == [("train", "data.parquet", n)]
    suite = ET.parse(root / ".mlci" / "out" / "data-test.xml").getroot()
    assert suite.get("tests") == str(n)
    assert suite.get("failures") == "0"


def test_cli_failure_exits_1_with_junit_failures_and_annotations(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    root = project(tmp_path, "max")
    n = len(check(root).results)
    assert cli_main(["data-test", "-C", str(root)]) == 1
    captured = capsys.readouterr()
    assert (
        "::error file=contract.yml,line=13,title=data-test train/max[score]::train: observed 100.25, expected <= 100"
        in captured.out
    )
    # Failures first: only the failed check in the table, the passing ones in one line.
    lines = captured.out.splitlines()
    assert lines[0].split() == ["check", "column", "observed", "expected", "result"]
    assert lines[1].split() == ["max", "score", "100.25", "<=", "100", "FAIL"]
    assert lines[2] == f"{n - 1} other checks passed (--verbose lists them)"
    failed = f"mlci: error: data contract failed: train: 1 of {n} checks on data.parquet (duckdb, "
    assert captured.err.startswith(failed)
    assert captured.err.rstrip().endswith("s): max[score] (observed 100.25, expected <= 100)")
    record = json.loads((root / ".mlci" / "out" / "data-test.json").read_text())
    assert (record["status"], record["exit_code"], record["details"]["fail"]) == ("failed", 1, 1)
    failures = ET.parse(root / ".mlci" / "out" / "data-test.xml").getroot().findall("testcase/failure")
    assert [f.get("message") for f in failures] == ["observed 100.25, expected <= 100"]
    assert "| max | score | 100.25 | <= 100 | ❌ |" in summary.read_text()


def test_junit_is_well_formed_xml_with_control_characters_in_the_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path, None)
    text = CLI_CONTRACT.replace("    regex: '^[A-Z]{2}-\\d{3}$'\n", '    regex: "^\\x01\\x1b\\uFFFE$"\n')
    assert text != CLI_CONTRACT
    (root / "contract.yml").write_text(text)
    assert cli_main(["data-test", "-C", str(root)]) == 1
    capsys.readouterr()
    suite = ET.parse(root / ".mlci" / "out" / "data-test.xml").getroot()
    failure = suite.find("testcase[@name='train/regex[code]']/failure")
    assert failure is not None
    assert failure.get("message") == f"observed {N}, expected matches ^\\x01\\x1b\\ufffe$: {N} values do not match"
    assert failure.text == failure.get("message")


def test_cli_bad_contract_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path, None)
    (root / "contract.yml").write_text(CONTRACT.replace("type: float", "type: double"))
    assert cli_main(["data-test", "-C", str(root)]) == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {root}/contract.yml:10: 'columns[1].type' is 'double'; use one of integer, float, string, "
        "boolean, date, timestamp\n"
    )
    assert cli_main(["data-test", "-C", str(root), "--contract", str(root / "nope.yml")]) == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {root}/nope.yml: data contract not found; write one (see docs/data-contracts.md) "
        "or pass --contract\n"
    )


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("    min: 0\n", "    min: .nan\n", "<tmp>/contract.yml:12: columns[1].min is nan"),
        ("    max: 100\n", "    max: .inf\n", "<tmp>/contract.yml:13: columns[1].max is inf"),
        ("    max: 100\n", "    max: -.inf\n", "<tmp>/contract.yml:13: columns[1].max is -inf"),
        (
            "    min: 0\n",
            "    min: 0\n    allowed: [1.0, .inf]\n",
            "<tmp>/contract.yml:13: columns[1].allowed[1] is inf",
        ),
        (
            "    max_null_fraction: 0.25\n",
            "    max_null_fraction: .nan\n",
            "<tmp>/contract.yml:22: columns[4].max_null_fraction is nan",
        ),
        ("  threshold: 0.2\n", "  threshold: .nan\n", "<tmp>/contract.yml:39: drift.threshold is nan"),
        ("max_age_hours: 24}", "max_age_hours: .inf}", "<tmp>/contract.yml:31: table.freshness.max_age_hours is inf"),
    ],
)
def test_non_finite_numbers_are_contract_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, key: str
) -> None:
    assert old in CONTRACT
    text = CONTRACT.replace(old, new, 1)
    fix = "; write a finite number (NaN and infinities cannot be checked against; to leave a bound open, omit it)"
    assert contract_error(tmp_path, text) == key + fix
    (tmp_path / "cli").mkdir()
    root = project(tmp_path / "cli", None)
    (root / "contract.yml").write_text(text)
    assert cli_main(["data-test", "-C", str(root)]) == 2
    assert capsys.readouterr().err == "mlci: error: " + (key + fix).replace("<tmp>/", f"{root}/") + "\n"


def test_cli_missing_configured_contract_exits_2_and_absent_one_is_skipped(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "mlci.yaml").write_text(MINIMAL_MLCI_YAML)
    assert cli_main(["data-test", "-C", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "skipped: no data contract at data/contract.yml (see docs/data-contracts.md)\n"
    (tmp_path / "mlci.yaml").write_text(MINIMAL_MLCI_YAML + "data_test:\n  contract: data/c.yml\n")
    assert cli_main(["data-test", "-C", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {tmp_path}/mlci.yaml:6: data contract 'data/c.yml' not found; write it "
        "(see docs/data-contracts.md) or fix data_test.contract\n"
    )


def test_cli_profile_writes_atomically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path, None)
    (root / "profile.json").unlink()
    assert cli_main(["data", "profile", "-C", str(root)]) == 0
    assert capsys.readouterr().out == (
        f"wrote {root}/profile.json: 200 rows, 3 numeric and 5 categorical columns profiled on duckdb\n"
    )
    assert not list(root.glob(".profile.json.*"))
    assert cli_main(["data-test", "-C", str(root)]) == 0


def test_help_does_not_import_engines_or_pandas() -> None:
    code = (
        "import sys, contextlib, io\nfrom mlci.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
        "print(sorted(m for m in ('duckdb', 'pyspark', 'pandas', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_data_test_runs_between_test_and_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What `mlci run` executes, in the order it says so: the stages asked for out of order run
    in the pipeline's. train stops at once (demo.train does not exist): it only has to start."""
    root = project(tmp_path, None)
    (root / "tests").mkdir()
    # The test stage needs one test of the project's to run and pass: its mlci.yaml is there.
    (root / "tests" / "test_project.py").write_text(
        "from pathlib import Path\n\n\ndef test_the_project_has_its_mlci_yaml() -> None:\n"
        '    assert (Path(__file__).parents[1] / "mlci.yaml").is_file()\n'
    )
    assert cli_main(["run", "train", "data-test", "test", "lint", "-C", str(root)]) == 2
    err = capsys.readouterr().err
    started = [line for line in err.splitlines() if line.startswith("==> ")]
    assert started == ["==> [1/4] lint", "==> [2/4] test", "==> [3/4] data-test", "==> [4/4] train"], err
    assert "<== data-test: passed" in err and "module 'demo.train' not found" in err


@pytest.mark.parametrize(
    ("column_type", "values", "data"),
    [
        ("integer", [0, 1, 2, 3], [0, 3, 4, -1, None, 2]),  # a range: one BETWEEN
        ("integer", [3, 1, 2, 2], [1, 2, 3, 0, 4, None]),  # a range given out of order, repeated
        ("integer", [0, 2, 5], [0, 1, 2, 5, 6, None]),  # gaps: NOT IN
        ("string", ["a", "o'b", "a", ""], ["a", "o'b", "", "b", "A", None, "a "]),  # ENUM cast on DuckDB
    ],
)
def test_allowed_rewrites_count_like_not_in(column_type: str, values: list[object], data: list[object]) -> None:
    import duckdb

    sql_type = "BIGINT" if column_type == "integer" else "VARCHAR"
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t (c {sql_type})")
    con.executemany("INSERT INTO t VALUES (?)", [[v] for v in data])
    naive = engine_class("duckdb").dialect.literal
    listed = ", ".join(naive(v, column_type) for v in values)
    expected = con.execute(f"SELECT count_if(c IS NOT NULL AND c NOT IN ({listed})) FROM t").fetchone()
    # Spark's integer form is plain SQL that DuckDB also runs (its string quoting is not).
    every = [engine_class(name).dialect for name in ENGINES]
    for dialect in every if column_type == "integer" else [engine_class("duckdb").dialect]:
        condition = dialect.outside('"c"', values, column_type)
        assert con.execute(f"SELECT count_if({condition}) FROM t").fetchone() == expected, condition
    assert "BETWEEN" in engine_class("spark").dialect.outside("c", [1, 0], "integer")
    assert "ENUM" in engine_class("duckdb").dialect.outside("c", ["x"], "string")


# ---------------------------------------------------------------- every dataset, strict columns


def demo_project(tmp_path: Path) -> Path:
    """A project with the scaffold's mlci.yaml data section, contract, data and profile."""
    demo_contract(tmp_path, SCAFFOLD / "data" / "train.csv")
    (tmp_path / "data" / "holdout.csv").write_bytes((SCAFFOLD / "data" / "holdout.csv").read_bytes())
    (tmp_path / "mlci.yaml").write_text(
        "schema: 1\nproject: {name: demo, package: demo}\n"
        "data: {train: data/train.csv, holdout: data/holdout.csv, target: malignant}\n"
        'train: {entrypoint: "demo.train:train"}\n'
    )
    return tmp_path


def corrupt_first_row(path: Path, **values: str) -> None:
    """Replace columns of the first data row of a CSV (the user report's broken holdout)."""
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].strip().split(",")
    cells = lines[1].strip().split(",")
    for name, value in values.items():
        cells[header.index(name)] = value
    lines[1] = ",".join(cells) + "\n"
    path.write_text("".join(lines))


def test_corrupted_holdout_fails_on_its_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = demo_project(tmp_path)
    assert cli_main(["data-test", "-C", str(root)]) == 0
    out = capsys.readouterr().out
    assert "\ntrain: passed, 133 passed, 0 failed on data/train.csv (" in out
    assert "\nholdout: passed, 133 passed, 0 failed on data/holdout.csv (" in out
    corrupt_first_row(root / "data" / "holdout.csv", mean_radius="999", malignant="7")
    assert cli_main(["data-test", "-C", str(root)]) == 1
    captured = capsys.readouterr()
    assert "\ntrain: passed, 133 passed, 0 failed on data/train.csv (" in captured.out
    assert "\nholdout: FAILED, 129 passed, 4 failed on data/holdout.csv (" in captured.out
    assert captured.err.startswith("mlci: error: data contract failed: holdout: 4 of 133 checks on data/holdout.csv")
    assert "max[mean_radius] (observed 999, expected <= 35)" in captured.err
    assert "allowed[malignant] (observed 1, expected in {0, 1})" in captured.err
    record = json.loads((root / ".mlci" / "out" / "data-test.json").read_text())
    assert (record["status"], record["exit_code"]) == ("failed", 1)
    by_name = {d["name"]: d for d in record["details"]["datasets"]}
    assert (by_name["train"]["fail"], by_name["holdout"]["fail"]) == (0, 4)
    assert by_name["holdout"]["source"] == str((root / "data" / "holdout.csv").resolve())
    suite = ET.parse(root / ".mlci" / "out" / "data-test.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("266", "4")
    failed = [case.get("name") for case in suite.findall("testcase") if case.find("failure") is not None]
    assert failed == [
        "holdout/max[mean_radius]",
        "holdout/allowed[malignant]",
        "holdout/expectation[worst_at_least_mean]",
        "holdout/expectation[perimeter_fits_radius]",
    ]
    # --source still checks that one file.
    assert cli_main(["data-test", "-C", str(root), "--source", "data/train.csv"]) == 0
    assert "data contract passed on source: 133 checks (duckdb, " in capsys.readouterr().out


def test_holdout_missing_or_unreadable_names_its_mlci_yaml_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = demo_project(tmp_path)
    (root / "data" / "holdout.csv").unlink()
    assert cli_main(["data-test", "-C", str(root)]) == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {root}/mlci.yaml:3: data.holdout: data file 'data/holdout.csv' not found; "
        "create it or fix the path\n"
    )


def test_drift_datasets_skips_drift_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = demo_project(tmp_path)
    contract = root / "data" / "contract.yml"
    contract.write_text(contract.read_text().replace("  method: psi+ks\n", "  method: psi+ks\n  datasets: [train]\n"))
    assert cli_main(["data-test", "-C", str(root)]) == 0
    capsys.readouterr()
    record = json.loads((root / ".mlci" / "out" / "data-test.json").read_text())
    holdout = next(d for d in record["details"]["datasets"] if d["name"] == "holdout")
    skipped = [(c["check"], c["column"], c["message"]) for c in holdout["checks"] if c["status"] == "skip"]
    reason = "not run: drift is not measured on holdout (drift.datasets)"
    assert skipped == [
        (check, column, reason)
        for column in ("mean_radius", "mean_texture", "worst_concave_points")
        for check in ("psi", "ks")
    ]


def test_contract_datasets_entries_are_checked_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = demo_project(tmp_path)
    scoring = root / "data" / "scoring.csv"
    scoring.write_bytes((root / "data" / "holdout.csv").read_bytes())
    corrupt_first_row(scoring, mean_texture="-1")
    contract = root / "data" / "contract.yml"
    entry = "\ndatasets:\n  - {name: scoring, path: data/scoring.csv}\n\ncolumns:\n"
    contract.write_text(contract.read_text().replace("\ncolumns:\n", entry))
    assert cli_main(["data-test", "-C", str(root)]) == 1
    captured = capsys.readouterr()
    assert "\nscoring: FAILED, 132 passed, 1 failed on data/scoring.csv (" in captured.out
    assert captured.err.startswith("mlci: error: data contract failed: scoring: 1 of 133 checks on data/scoring.csv")


def test_strict_contract_rejects_undeclared_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = demo_project(tmp_path)
    holdout = root / "data" / "holdout.csv"
    lines = holdout.read_text().splitlines()
    holdout.write_text("\n".join([lines[0] + ",patient_age,site"] + [line + ",50,a" for line in lines[1:]]) + "\n")
    assert cli_main(["data-test", "-C", str(root)]) == 1  # the scaffold's contract opts in
    captured = capsys.readouterr()
    assert "\ntrain: passed, 133 passed, 0 failed on data/train.csv (" in captured.out
    assert captured.err.startswith(
        "mlci: error: data contract failed: holdout: 1 of 133 checks on data/holdout.csv (duckdb, "
    )
    assert captured.err.rstrip().endswith("strict (observed patient_age, site, expected no undeclared columns)")
    record = json.loads((root / ".mlci" / "out" / "data-test.json").read_text())
    holdout_checks = next(d for d in record["details"]["datasets"] if d["name"] == "holdout")["checks"]
    strict = next(c for c in holdout_checks if c["check"] == "strict")
    assert strict == {
        "check": "strict",
        "column": None,
        "observed": "patient_age, site",
        "expected": "no undeclared columns",
        "status": "fail",
        "violations": 2,
        "line": 8,
        "message": "undeclared columns patient_age, site: declare under 'columns' or set strict: false",
    }
    # strict is off by default (and with strict: false): extra columns are ignored, as before.
    contract = root / "data" / "contract.yml"
    for text in ("strict: false\n", ""):
        contract.write_text(contract.read_text().replace("strict: true\n", text).replace("strict: false\n", text))
        assert cli_main(["data-test", "-C", str(root)]) == 0
        assert "\nholdout: passed, 132 passed, 0 failed on data/holdout.csv (" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "\ncolumns:\n",
            "\ndatasets:\n  - {name: holdout, path: data/holdout.csv}\ncolumns:\n",
            "datasets[0]: the name 'holdout' is taken (train and holdout are mlci.yaml's data.train and "
            "data.holdout, always checked; dataset is the contract's own); choose another name",
        ),
        (
            "\ncolumns:\n",
            "\ndatasets:\n  - {name: scoring}\ncolumns:\n",
            "datasets[0] needs exactly one of 'path' or 'table'",
        ),
        (
            "  method: psi+ks\n",
            "  method: psi+ks\n  datasets: [train, holdot]\n",
            "drift.datasets[1]: unknown dataset 'holdot'; did you mean 'holdout'?",
        ),
        ("strict: true\n", "strict: yes please\n", "'strict' must be true or false"),
    ],
)
def test_bad_dataset_settings_name_the_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = (SCAFFOLD / "data" / "contract.yml").read_text()
    assert old in text
    with pytest.raises(ConfigError) as caught:
        parse_contract(text.replace(old, new), tmp_path / "contract.yml", tmp_path)
    assert message in str(caught.value)


# ---------------------------------------------------------------- expectations are one expression


def _score_count_alias(root: Path) -> str:
    """The alias of count("score") in the contract's one query: what a smuggled item redefines."""
    import re

    from mlci.contracts.compiler import compile_contract

    contract = load_contract(root / "contract.yml", root)
    usable = {col.name: col.type for col in contract.spec.columns}
    found = re.search(
        r'count\("score"\) AS (a\d+)', compile_contract(contract, usable, engine_class("duckdb").dialect).sql
    )
    assert found
    return found.group(1)


def test_smuggled_expectation_cannot_let_nulls_pass_exits_2_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The example: 3 nulls in the `nullable: false` column score, and an expectation that
    # closes its own parentheses to redefine score's non-null count as count(*). On main the
    # not_null check then passed (observed 0) and data-test exited 0.
    root = project(tmp_path, None)
    rows = good_rows()
    for row in rows[:3]:
        row["score"] = None
    write(rows, root / "data.parquet")
    alias = _score_count_alias(root)
    hostile = f"TRUE), FALSE)), 0) AS smuggled, count(*) AS {alias}, coalesce(count_if(NOT coalesce((TRUE"
    (root / "contract.yml").write_text(CLI_CONTRACT.replace("NOT flag OR score >= 50", hostile))
    assert cli_main(["data-test", "-C", str(root)]) == 2
    assert capsys.readouterr().err == (
        f"mlci: error: {root}/contract.yml:33: table.expectations[0].sql: the ')' at character 5 closes a "
        "parenthesis the expression did not open; write one boolean expression over the columns, "
        "e.g. 'worst_radius >= mean_radius'\n"
    )
    # The same nulls with an honest expectation: not_null fails (exit 1), as it must.
    (root / "contract.yml").write_text(CLI_CONTRACT)
    assert cli_main(["data-test", "-C", str(root)]) == 1
    capsys.readouterr()
    failures = ET.parse(root / ".mlci" / "out" / "data-test.xml").getroot().findall("testcase[failure]")
    assert [case.get("name") for case in failures] == ["train/not_null[score]"]


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("score >= 50 -- the rest of the line", "a comment ('--' at character 13) is not allowed"),
        ("score >= 50 /* x */", "a comment ('/*' at character 13) is not allowed"),
        ("score >= 50; SELECT 1", "';' at character 12 would end the statement"),
        ("(score >= 50", "1 '(' never closed"),
        ("score >= 50)", "the ')' at character 12 closes a parenthesis the expression did not open"),
        ("code = 'AB", "the quote ' at character 8 is never closed"),
        # Safe with doubled quotes, but Spark reads \' as an escaped quote: refused on both.
        ("code = 'AB\\' OR TRUE", "the quote ' at character 8 is never closed"),
    ],
)
def test_expectation_text_that_is_not_one_expression_is_refused_at_load(tmp_path: Path, sql: str, problem: str) -> None:
    text = CONTRACT.replace("sql: NOT flag OR score >= 50", "sql: " + json.dumps(sql))
    with pytest.raises(ConfigError) as info:
        parse_contract(text, tmp_path / "contract.yml", tmp_path)
    assert info.value.message.replace(str(tmp_path), "<tmp>") == (
        f"<tmp>/contract.yml:34: table.expectations[0].sql: {problem}; write one boolean expression over the "
        "columns, e.g. 'worst_radius >= mean_radius'"
    )


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("score >= 50 AS ok", "it names its result ('AS ok')"),
        ("score >= 50, flag", "it is 2 expressions, not one"),
        ("*", "'*' is not an expression"),
        ("flag FROM __mlci_source WHERE score > 0", "it is more than an expression (a FROM, WHERE or other clause"),
        ("DISTINCT flag", "it is more than an expression"),
        ("score >= AND", 'syntax error at or near "AND"'),
    ],
)
def test_duckdb_parser_accepts_only_one_expression(tmp_path: Path, sql: str, problem: str) -> None:
    make_case(tmp_path, None, CONTRACT.replace("sql: NOT flag OR score >= 50", "sql: " + json.dumps(sql)))
    with pytest.raises(ConfigError) as info:
        check(tmp_path)
    assert info.value.line == 34
    assert info.value.message.startswith(
        f"{tmp_path}/contract.yml:34: table.expectations[0].sql: expectation 'flagged_rows_score_high' is not one "
        f"SQL expression on duckdb: {problem}"
    )
    assert info.value.message.endswith(
        "; write one boolean expression over the columns, e.g. 'worst_radius >= mean_radius'"
    )


def test_valid_expectations_with_quotes_parens_and_comment_characters_in_literals_still_run(tmp_path: Path) -> None:
    tricky = "(code <> ')' AND coalesce(note, '') <> '-- /* ; (') OR region = 'o''south'"
    make_case(tmp_path, "not_null", CONTRACT.replace("sql: NOT flag OR score >= 50", "sql: " + json.dumps(tricky)))
    report = check(tmp_path)
    results = {r.name: r for r in report.results}
    assert results["expectation[flagged_rows_score_high]"].status == "pass"
    # The crafted nulls still fail their own check: the expectation changed nothing else.
    assert {name for name, r in results.items() if r.status == "fail"} == {"not_null[score]"}


def test_compiler_keeps_an_expectation_away_from_the_other_checks(tmp_path: Path) -> None:
    # Even text the loader would refuse (a trailing comment), compiled directly, cannot comment
    # out the SQL that follows it: each expectation stands on lines of its own.
    import dataclasses

    from mlci.contracts.compiler import compile_contract
    from mlci.contracts.engines import Source
    from mlci.contracts.engines.duckdb import DuckDBEngine
    from mlci.contracts.runner import count_keys

    make_case(tmp_path, "not_null")
    contract = load_contract(tmp_path / "contract.yml", tmp_path)
    table = contract.spec.table
    expectation = dataclasses.replace(table.expectations[0], sql="id >= 0 -- a comment")
    spec = dataclasses.replace(contract.spec, table=dataclasses.replace(table, expectations=[expectation]))
    contract = dataclasses.replace(contract, spec=spec)
    usable = {col.name: col.type for col in contract.spec.columns}
    compiled = compile_contract(contract, usable, engine_class("duckdb").dialect, now=NOW)
    engine = DuckDBEngine()
    engine.open(Source("parquet", str(tmp_path / "data.parquet")))
    row = engine.fetch_one(compiled.sql)
    count_keys(engine, compiled, row)
    verdicts = {v.name: v for v in (verdict(row) for verdict in compiled.verdicts)}
    assert verdicts["not_null[score]"].status == "fail"
    assert verdicts["expectation[flagged_rows_score_high]"].status == "pass"


def errored_suite(path: Path) -> tuple[str | None, str | None, str | None]:
    """(tests, errors, the error's message) of a JUnit file mlci wrote for a stage that errored."""
    suite = ET.parse(path).getroot()
    error = suite.find("testcase/error")
    return suite.get("tests"), suite.get("errors"), None if error is None else error.get("message")


def test_a_broken_contract_or_mlci_yaml_never_leaves_the_green_junit_of_an_earlier_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlci.config import load_project
    from mlci.stages._result import mark

    root = project(tmp_path, None)
    junit, record = root / ".mlci" / "out" / "data-test.xml", root / ".mlci" / "out" / "data-test.json"
    assert cli_main(["data-test", "-C", str(root)]) == 0
    assert ET.parse(junit).getroot().get("failures") == "0"
    contract = (root / "contract.yml").read_text()
    (root / "contract.yml").write_text(contract.replace("type: float", "type: double"))
    assert cli_main(["data-test", "-C", str(root)]) == 2
    message = capsys.readouterr().err.removeprefix("mlci: error: ").rstrip("\n")
    assert "contract.yml:10: 'columns[1].type' is 'double'" in message
    # CI publishes an errored suite now, not the passing one of the run before.
    assert errored_suite(junit) == ("1", "1", message)
    assert json.loads(record.read_text())["status"] == "error"

    (root / "contract.yml").write_text(contract)
    assert cli_main(["data-test", "-C", str(root)]) == 0
    config = (root / "mlci.yaml").read_text()
    (root / "mlci.yaml").write_text(config + "test: {coverage_min: .nan}\n")  # fails before the stage starts
    assert cli_main(["data-test", "-C", str(root)]) == 2
    message = capsys.readouterr().err.removeprefix("mlci: error: ").rstrip("\n")
    assert message.endswith("mlci.yaml:6: test.coverage_min is nan; " + NON_FINITE_FIX)
    assert errored_suite(junit) == ("1", "1", message)
    assert (json.loads(record.read_text())["status"], json.loads(record.read_text())["exit_code"]) == ("error", 2)

    # `mlci run` clears them the same way before it reads mlci.yaml.
    (root / "mlci.yaml").write_text(config)
    assert cli_main(["data-test", "-C", str(root)]) == 0
    (root / "mlci.yaml").write_text(config + "test: {coverage_min: .nan}\n")
    assert cli_main(["run", "data-test", "-C", str(root)]) == 2
    message = capsys.readouterr().err.removeprefix("mlci: error: ").rstrip("\n")
    assert errored_suite(junit) == ("1", "1", message)

    # A stage `mlci run` skips (or has not reached yet) has no report of an earlier run either.
    (root / "mlci.yaml").write_text(config)
    assert cli_main(["data-test", "-C", str(root)]) == 0 and junit.is_file()
    mark(load_project(root), "data-test", "skipped", "not run: lint failed")
    assert not junit.exists()


# ---------------------------------------------------------------- expectations read only the columns

SECRET = "mlci-secret-7f3a9c"


def _hostile(sql: str, secret_file: Path) -> str:
    return sql.replace("{secret_file}", str(secret_file))


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        # The reviewer's example: the host name came back in the CAST's error line.
        (
            "CAST((SELECT content FROM read_text('{secret_file}')) AS INTEGER) > 0",
            "a subquery is not allowed (an expectation reads only the dataset's columns)",
        ),
        (
            "score > (SELECT count(*) FROM read_csv('{secret_file}'))",
            "a subquery is not allowed (an expectation reads only the dataset's columns)",
        ),
        ("id IN (SELECT 1)", "a subquery is not allowed (an expectation reads only the dataset's columns)"),
        (
            "getenv('MLCI_TEST_SECRET') = ''",
            "getenv() reaches outside the dataset (files, environment, settings) and is not allowed",
        ),
        (
            "system.main.getenv('MLCI_TEST_SECRET') = ''",
            "the qualified function name 'system.main.getenv' is not allowed",
        ),
        (
            "len(glob('{secret_file}')) > 0",
            "glob() reaches outside the dataset (files, environment, settings) and is not allowed",
        ),
        (
            "read_text('{secret_file}') IS NULL",
            "read_text() reaches outside the dataset (files, environment, settings) and is not allowed",
        ),
        (
            "current_setting('home_directory') = ''",
            "current_setting() reaches outside the dataset (files, environment, settings) and is not allowed",
        ),
        ("count(*) OVER () > 0", "a window function is not allowed"),
    ],
)
def test_expectation_reaching_past_the_columns_is_refused_before_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sql: str, problem: str
) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    monkeypatch.setenv("MLCI_TEST_SECRET", SECRET)
    make_case(
        tmp_path,
        None,
        CONTRACT.replace("sql: NOT flag OR score >= 50", "sql: " + json.dumps(_hostile(sql, secret_file))),
    )
    with pytest.raises(ConfigError) as info:
        check(tmp_path)
    assert info.value.line == 34
    assert info.value.message == (
        f"{tmp_path}/contract.yml:34: table.expectations[0].sql: expectation 'flagged_rows_score_high' is not one "
        f"SQL expression on duckdb: {problem}; write one boolean expression over the columns, "
        "e.g. 'worst_radius >= mean_radius'"
    )
    assert SECRET not in info.value.message


def test_reviewers_example_exits_2_through_the_cli_and_prints_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path, None)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    hostile = _hostile("CAST((SELECT content FROM read_text('{secret_file}')) AS INTEGER) > 0", secret_file)
    (root / "contract.yml").write_text(CLI_CONTRACT.replace("NOT flag OR score >= 50", json.dumps(hostile)))
    assert cli_main(["data-test", "-C", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"mlci: error: {root}/contract.yml:33: table.expectations[0].sql: expectation ")
    assert "a subquery is not allowed" in captured.err
    written = "".join(p.read_text() for p in (root / ".mlci").rglob("*") if p.is_file() and p.suffix != ".db")
    assert SECRET not in captured.out + captured.err + written


@pytest.mark.parametrize("layout", ["file", "directory", "csv"])
def test_duckdb_reads_only_the_source_once_it_is_open(tmp_path: Path, layout: str) -> None:
    # Defence in depth: a check that got past check_expression still reads no file but the
    # source, and cannot turn the setting back on.
    from mlci.contracts.engines import QueryError, Source
    from mlci.contracts.engines.duckdb import DuckDBEngine

    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    if layout == "csv":
        (tmp_path / "data.csv").write_text("id,score\n1,2\n")
        source = Source("csv", str(tmp_path / "data.csv"))
    else:
        (tmp_path / "parts" / "day=1").mkdir(parents=True)
        write(good_rows(), tmp_path / "parts" / "day=1" / "data.parquet")
        location = tmp_path / "parts" / ("**/*.parquet" if layout == "directory" else "day=1/data.parquet")
        source = Source("parquet", str(location))
    engine = DuckDBEngine()
    try:
        engine.open(source)
        assert engine.fetch_one("SELECT count(*) AS n FROM __mlci_source")["n"] == (1 if layout == "csv" else N)
        with pytest.raises(QueryError) as info:
            engine.fetch_all(f"SELECT content FROM read_text('{secret_file}')")
        assert str(info.value) == (
            f'Permission Error: Cannot access file "{secret_file}"'
            " - file system operations are disabled by configuration"
        )
        with pytest.raises(QueryError, match="the configuration has been locked"):
            engine.fetch_all("SET enable_external_access = true")
    finally:
        engine.close()


def test_valid_expectations_with_functions_case_and_casts_still_run(tmp_path: Path) -> None:
    valid = (
        "regexp_matches(code, '^[A-Z]') AND length(upper(trim(code))) >= 1 AND lower(region) = region"
        " AND CASE WHEN flag THEN CAST(score AS DOUBLE) >= 50 ELSE coalesce(score, 0) * 2 + 1 > 0 END"
        " AND TRY_CAST(code AS INTEGER) IS NULL AND id BETWEEN 0 AND 1000000"
    )
    make_case(tmp_path, None, CONTRACT.replace("sql: NOT flag OR score >= 50", "sql: " + json.dumps(valid)))
    results = {r.name: r for r in check(tmp_path).results}
    assert results["expectation[flagged_rows_score_high]"].status == "pass"
    assert [name for name, r in results.items() if r.status != "pass"] == []
