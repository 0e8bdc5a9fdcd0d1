"""One type-family mapping for DuckDB's and Spark's schema names (contracts and the monitor)."""

from __future__ import annotations

import pytest

from mlci.sql_types import family


@pytest.mark.parametrize(
    ("engine_type", "expected"),
    [
        # DuckDB DESCRIBE names
        ("BIGINT", "integer"),
        ("UTINYINT", "integer"),
        ("HUGEINT", "integer"),
        ("DOUBLE", "float"),
        ("DECIMAL(18,3)", "float"),
        ("VARCHAR", "string"),
        ("BOOLEAN", "boolean"),
        ("DATE", "date"),
        ("TIMESTAMP WITH TIME ZONE", "timestamp"),
        ("TIMESTAMP_NS", "timestamp"),
        ("TIMESTAMP", "timestamp"),
        ("INTEGER[]", None),
        ("VARCHAR[]", None),
        ("VARCHAR[3]", None),
        ("DECIMAL(10,2)[]", None),
        ("DECIMAL(10,2)[3]", None),
        ("TIMESTAMP[]", None),
        ("TIMESTAMP WITH TIME ZONE[]", None),
        ("STRUCT(a INTEGER)", None),
        ("MAP(VARCHAR, INTEGER)", None),
        ("BLOB", None),
        # Spark simpleString names
        ("int", "integer"),
        ("bigint", "integer"),
        ("decimal(10,2)", "float"),
        ("varchar(8)", "string"),
        ("char(2)", "string"),
        ("timestamp_ntz", "timestamp"),
        ("timestamp_ltz", "timestamp"),
        ("array<int>", None),
        ("array<decimal(10,2)>", None),
        ("struct<a:int>", None),
        ("binary", None),
    ],
)
def test_engine_types_map_to_their_family(engine_type: str, expected: str | None) -> None:
    assert family(engine_type) == expected
