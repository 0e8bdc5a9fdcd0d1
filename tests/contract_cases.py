"""Shared data for the data-contract tests: a good dataset, a contract covering every check
type, and one crafted violation per check (used on DuckDB and, in the Spark tests, on Spark)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
N = 200

CONTRACT = """\
contract: 1
dataset:
  path: data.parquet
columns:
  - name: id
    type: integer
    nullable: false
    unique: true
  - name: score
    type: float
    nullable: false
    min: 0
    max: 100
  - name: label
    type: integer
    allowed: [0, 1]
  - name: code
    type: string
    regex: '^[A-Z]{2}-\\d{3}$'
  - name: note
    type: string
    max_null_fraction: 0.25
  - {name: region, type: string, allowed: [north, "o'south"]}
  - {name: seq, type: integer}
  - {name: flag, type: boolean}
  - {name: ts, type: timestamp}
  - {name: day, type: date, allowed: ['2024-05-30', '2024-05-31']}
table:
  row_count: {min: 100, max: 1000}
  unique_keys: [[region, seq]]
  freshness: {column: ts, max_age_hours: 24}
  expectations:
    - name: flagged_rows_score_high
      sql: NOT flag OR score >= 50
drift:
  reference: profile.json
  columns: [score, label, region]
  method: psi+ks
  threshold: 0.2
  ks_threshold: 0.2
"""


def good_rows() -> list[dict[str, Any]]:
    rng = random.Random(7)
    rows = []
    for i in range(N):
        score = round(rng.uniform(0, 100), 3)
        rows.append(
            {
                "id": i,
                "score": score,
                "label": i % 2,
                "code": f"{'AB' if i % 3 else 'CD'}-{i % 1000:03d}",
                "note": None if i % 5 == 0 else f"note {i}",
                "region": "north" if i % 2 else "o'south",
                "seq": i // 2,
                "flag": score >= 50 and i % 4 == 0,
                "ts": datetime(2024, 6, 1, 10, 0) - timedelta(minutes=i),
                "day": date(2024, 5, 31) - timedelta(days=i % 2),
            }
        )
    return rows


SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("score", pa.float64()),
        ("label", pa.int32()),
        ("code", pa.string()),
        ("note", pa.string()),
        ("region", pa.string()),
        ("seq", pa.int64()),
        ("flag", pa.bool_()),
        ("ts", pa.timestamp("us")),
        ("day", pa.date32()),
    ]
)


def write(rows: list[dict[str, Any]], path: Path, schema: pa.Schema = SCHEMA) -> Path:
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path)
    return path


def _set(index: int, **values: Any) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(rows: list[dict[str, Any]]) -> None:
        rows[index].update(values)

    return mutate


def _shift(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row["score"] = min(100.0, row["score"] * 0.5 + 50)
        row["flag"] = False


def _drop(rows: list[dict[str, Any]]) -> None:
    del rows[90:]


def _stale(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row["ts"] = row["ts"] - timedelta(days=3)


def _nulls(rows: list[dict[str, Any]]) -> None:
    for row in rows[:80]:
        row["note"] = None


def _nan_and_below_min(rows: list[dict[str, Any]]) -> None:
    rows[4]["score"] = float("nan")
    rows[1]["score"] = -0.5


def _no_rows(rows: list[dict[str, Any]]) -> None:
    del rows[:]


def _no_scores(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row["score"] = None


# name -> (mutation, {failing check name: observed figure})
CASES: dict[str, tuple[Callable[[list[dict[str, Any]]], None], dict[str, Any]]] = {
    "not_null": (_set(3, score=None), {"not_null[score]": 1}),
    "min": (_set(1, score=-0.5), {"min[score]": -0.5}),
    "max": (_set(5, score=100.25), {"max[score]": 100.25}),
    # A NaN breaks both bounds (it is not null: not_null passes) and the observed extremes are NaN.
    "nan": (_set(4, score=float("nan")), {"min[score]": "NaN", "max[score]": "NaN"}),
    "nan_and_below_min": (_nan_and_below_min, {"min[score]": "NaN", "max[score]": "NaN"}),
    "allowed": (_set(6, label=2), {"allowed[label]": 1}),
    "allowed_quoted_string": (_set(6, region="o'north"), {"allowed[region]": 1}),
    "regex": (_set(7, code="ab-123"), {"regex[code]": 1}),
    "unique": (_set(8, id=9), {"unique[id]": 1}),
    "max_null_fraction": (_nulls, {"max_null_fraction[note]": 0.52}),
    "row_count": (_drop, {"row_count": 90}),
    "unique_key": (_set(9, seq=5), {"unique_key[region+seq]": 1}),
    "freshness": (_stale, {"freshness[ts]": "2024-05-29 10:00:00"}),
    "expectation": (_set(12, flag=True, score=10.0), {"expectation[flagged_rows_score_high]": 1}),
    "date_allowed": (_set(13, day=date(2024, 1, 1)), {"allowed[day]": 1}),
    "drift": (_shift, {"psi[score]": 3.893468, "ks[score]": 0.5}),
    # No rows, or a column of nulls: every count is 0 (DuckDB's count_if alone would give NULL).
    "no_rows": (
        _no_rows,
        {
            "row_count": 0,
            "freshness[ts]": None,
            "psi[score]": None,
            "ks[score]": None,
            "psi[label]": None,
            "psi[region]": None,
        },
    ),
    "no_scores": (
        _no_scores,
        {"not_null[score]": 200, "expectation[flagged_rows_score_high]": 20, "psi[score]": None, "ks[score]": None},
    ),
}


# CSV files whose columns hold no value: readers infer text for them, which any declared type accepts.
EMPTY_CSV_CONTRACT = """\
contract: 1
dataset:
  path: data.csv
columns:
  - {name: id, type: integer, unique: true}
  - {name: x, type: float, min: 0, max: 3, max_null_fraction: 0.1}
  - {name: day, type: date, nullable: false}
  - {name: word, type: string, regex: '^a', allowed: [a, ab]}
table:
  row_count: {min: 0}
"""

# file content -> ({check name: (status, observed)} for the checks that do not pass, empty columns)
EMPTY_CSV_CASES: dict[str, tuple[dict[str, tuple[str, Any]], set[str]]] = {
    "id,x,day,word\n1,,,\n2,,,\n": (
        {"max_null_fraction[x]": ("fail", 1.0), "not_null[day]": ("fail", 2)},
        {"x", "day"},  # word: text is a string already
    ),
    "id,x,day,word\n": ({}, {"id", "x", "day"}),
    # A value that is not a number still fails the type check.
    "id,x,day,word\n1,,2024-01-01,\n2,oops,,b\n": (
        {
            "type[x]": ("fail", "string"),
            "not_null[day]": ("fail", 1),
            "regex[word]": ("fail", 1),
            "allowed[word]": ("fail", 1),
            "max_null_fraction[x]": ("skip", None),
            "min[x]": ("skip", None),
            "max[x]": ("skip", None),
        },
        set(),
    ),
}


# ---------------------------------------------------------------- keys past 2^24

KEYS_CONTRACT = """\
contract: 1
dataset: {path: keys.parquet}
columns:
  - {name: k, type: KIND, unique: true}
  - {name: part, type: string}
table:
  unique_keys: [[part, k]]
"""


def key_table(kind: str, rows: int) -> tuple[Any, dict[str, int]]:
    """A table whose `k` (and `part`+`k`) hold known duplicates and nulls, and the duplicate
    counts every engine must report: {check name: duplicates}.

    Kinds: `sparse` (integers spread over more than 2^40, negative ones among them),
    `dense` (integers 0..rows with no gap), `string`. Built with Arrow compute, no Python
    loop over the rows, so millions of keys take well under a second.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = np.arange(rows, dtype=np.int64)
    if kind == "sparse":
        ids = ids * 4_398_046_513 - (1 << 40)  # a prime stride: the span is rows * 2^42
    # Duplicates: rows 10..16 repeat rows 0..6 (7 keys), and rows 20..22 repeat row 1 (3 more).
    ids[10:17] = ids[0:7]
    ids[20:23] = ids[1]
    keys: pa.Array = pa.array(ids)
    if kind == "string":
        keys = pc.binary_join_element_wise("key-", pc.cast(keys, pa.string()), "")
    nulls = np.zeros(rows, dtype=bool)
    nulls[30:35] = True  # five null keys: not duplicates of each other
    keys = pc.if_else(pa.array(nulls), pa.nulls(rows, keys.type), keys)
    # part is "a" except rows 20..22 ("b"): (part, k) repeats 0..6 as k does, and (b, k1) twice.
    is_b = np.zeros(rows, dtype=bool)
    is_b[20:23] = True
    no_part = np.zeros(rows, dtype=bool)
    no_part[40] = True  # one incomplete tuple
    part = pc.if_else(pa.array(is_b), pa.scalar("b"), pa.scalar("a"))
    part = pc.if_else(pa.array(no_part), pa.scalar(None, pa.string()), part)
    table = pa.table({"k": keys, "part": part})
    return table, {"unique[k]": 10, "unique_key[part+k]": 7 + 2}


def write_keys(folder: Path, kind: str, rows: int, pairs: bool = True) -> dict[str, int]:
    """keys.parquet and contract.yml in `folder`; without `pairs`, only the `k` column and its check."""
    table, expected = key_table(kind, rows)
    contract = KEYS_CONTRACT.replace("KIND", "string" if kind == "string" else "integer")
    if not pairs:
        table = table.select(["k"])
        contract = contract.split("  - {name: part")[0]
        expected = {"unique[k]": expected["unique[k]"]}
    (folder / "contract.yml").write_text(contract)
    pq.write_table(table, folder / "keys.parquet", row_group_size=1 << 20)
    return expected
