"""What an expectation's `sql` may be: exactly one SQL expression, checked before it is used.

The compiler splices each expectation into the contract's one query. Text that closes the
parenthesis it is wrapped in, or comments out what follows it, would rewrite the other checks
(a `nullable: false` column with nulls would pass). Two layers keep it to one expression:

- `lexical_problem` (at load, engine-independent): no comment, no `;`, every quote closed and
  every parenthesis balanced. It scans under both quoting conventions (standard SQL's doubled
  quote, and Spark's backslash escapes), so text that is safe under one engine's rules but not
  the other's is refused on both.
- each engine's `check_expression` (before the query): the engine's own parser must read the
  text as exactly one expression and nothing else (no alias, no FROM, no second item).
"""

from __future__ import annotations

_QUOTES = "'\"`"


def lexical_problem(sql: str) -> str | None:
    """Why `sql` cannot be spliced into a query as one expression, or None."""
    for backslash_escapes in (False, True):
        problem = _scan(sql, backslash_escapes)
        if problem:
            return problem
    return None


def _scan(sql: str, backslash_escapes: bool) -> str | None:
    depth = 0
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in _QUOTES:
            end = _closing_quote(sql, i, backslash_escapes)
            if end is None:
                return f"the quote {ch} at character {i + 1} is never closed"
            i = end + 1
            continue
        if sql.startswith(("--", "/*", "*/"), i):
            return f"a comment ({sql[i : i + 2]!r} at character {i + 1}) is not allowed"
        if ch == ";":
            return f"';' at character {i + 1} would end the statement"
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return f"the ')' at character {i + 1} closes a parenthesis the expression did not open"
        i += 1
    if depth:
        return f"{depth} '(' never closed"
    return None


def _closing_quote(sql: str, start: int, backslash_escapes: bool) -> int | None:
    quote = sql[start]
    j = start + 1
    while j < len(sql):
        c = sql[j]
        if backslash_escapes and c == "\\":
            j += 2
            continue
        if c == quote:
            if sql.startswith(quote, j + 1):  # a doubled quote stands for itself
                j += 2
                continue
            return j
        j += 1
    return None


FIX = "write one boolean expression over the columns, e.g. 'worst_radius >= mean_radius'"
