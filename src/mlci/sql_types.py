"""The contract type family of a column's engine type: one mapping for DuckDB's and Spark's names.

Data contracts (contracts/engines) and the monitor (monitoring/sql.py) both read a table's
schema as DuckDB's `DESCRIBE` names (BIGINT, DECIMAL(18,3), TIMESTAMP WITH TIME ZONE) or
Spark's `simpleString()` names (bigint, decimal(18,3), timestamp_ntz), and both judge a
column's declared type against the family. A name matches whole, with at most its numeric
parameters (`DECIMAL(10,2)`, `varchar(8)`): nested types (`DECIMAL(10,2)[]`, `VARCHAR[]`,
`array<int>`, structs, maps) have no family, on either engine.
"""

from __future__ import annotations

import re

_PARAMETERS = r"(\(\s*\d+\s*(,\s*\d+\s*)?\))?"
_FAMILIES = (
    (re.compile(r"U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|INT\d*|LONG|SHORT|BYTE"), "integer"),
    (re.compile(rf"(FLOAT|REAL|DOUBLE|DECIMAL|NUMERIC){_PARAMETERS}"), "float"),
    (re.compile(rf"(VARCHAR|TEXT|STRING|CHAR){_PARAMETERS}"), "string"),
    (re.compile(r"BOOLEAN|BOOL"), "boolean"),
    (re.compile(r"DATE"), "date"),
    (re.compile(r"TIMESTAMP(_S|_MS|_NS|_NTZ|_LTZ|TZ| WITH TIME ZONE)?"), "timestamp"),
)


def family(engine_type: str) -> str | None:
    """integer, float, string, boolean, date or timestamp; None for any other type."""
    name = engine_type.upper().strip()
    return next((fam for pattern, fam in _FAMILIES if pattern.fullmatch(name)), None)
