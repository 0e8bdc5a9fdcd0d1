"""The contract type family of a column's engine type: one mapping for DuckDB's and Spark's names.

Data contracts (contracts/engines) and the monitor (monitoring/sql.py) both read a table's
schema as DuckDB's `DESCRIBE` names (BIGINT, DECIMAL(18,3), TIMESTAMP WITH TIME ZONE) or
Spark's `simpleString()` names (bigint, decimal(18,3), timestamp_ntz), and both judge a
column's declared type against the family. Parameters in parentheses are ignored; nested
types (lists, structs, maps) have no family.
"""

from __future__ import annotations

import re

_FAMILIES = (
    (re.compile(r"^(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|INT\d*|LONG|SHORT|BYTE)$"), "integer"),
    (re.compile(r"^(FLOAT|REAL|DOUBLE|DECIMAL|NUMERIC)$"), "float"),
    (re.compile(r"^(VARCHAR|TEXT|STRING|CHAR)$"), "string"),
    (re.compile(r"^(BOOLEAN|BOOL)$"), "boolean"),
    (re.compile(r"^DATE$"), "date"),
    (re.compile(r"^TIMESTAMP.*$"), "timestamp"),
)


def family(engine_type: str) -> str | None:
    """integer, float, string, boolean, date or timestamp; None for any other type."""
    base = engine_type.upper().split("(")[0].strip()
    return next((fam for pattern, fam in _FAMILIES if pattern.match(base)), None)
