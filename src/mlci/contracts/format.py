"""The data contract format (`data/contract.yml`): typed dataclasses and their loader.

The dataclasses are the schema, exactly as for mlci.yaml: the loader walks their type hints
(recording the line of every key), the JSON Schema for editors is generated from them
(`schema/contract.schema.json`), and every error names the file, the line and the fix.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlci.contracts.expression import FIX as EXPRESSION_FIX
from mlci.contracts.expression import lexical_problem
from mlci.errors import ConfigError
from mlci.typed_yaml import field, json_schema_of, parse_yaml, read_text_file

CONTRACT_VERSION = 1
ColumnType = Literal["integer", "float", "string", "boolean", "date", "timestamp"]
NUMERIC_TYPES = ("integer", "float")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Dataset:
    path: str | None = field(
        "CSV or Parquet file (or a directory of Parquet files) or a Delta table directory, relative to the "
        "project root.",
        None,
    )
    format: Literal["auto", "csv", "parquet", "delta"] = field(
        "How to read `path`; auto: by suffix (.csv, .parquet), a directory with _delta_log is Delta.", "auto"
    )
    table: str | None = field("A table name such as catalog.schema.table (Spark engine only), instead of `path`.", None)


# mlci.yaml's data.train and data.holdout are always checked under these names.
CONFIG_DATASETS = ("train", "holdout")


@dataclass(frozen=True)
class NamedDataset:
    name: str = field(
        "Name of the dataset in reports and JUnit; not train or holdout (mlci.yaml's data.train and "
        "data.holdout, which are always checked).",
        pattern=_NAME_RE.pattern,
    )
    path: str | None = field("CSV or Parquet file (or directory) or Delta table directory, relative to the root.", None)
    format: Literal["auto", "csv", "parquet", "delta"] = field("How to read `path` (as dataset.format).", "auto")
    table: str | None = field("A table name (Spark engine only), instead of `path`.", None)

    def as_dataset(self) -> Dataset:
        return Dataset(path=self.path, format=self.format, table=self.table)


@dataclass(frozen=True)
class Column:
    name: str = field("Column name, exactly as in the data.")
    type: ColumnType = field("Type family: integer, float (integers accepted), string, boolean, date or timestamp.")
    nullable: bool = field("Whether the column may hold nulls; false makes any null a failure.", True)
    description: str = field("What the column means (documentation only).", "")
    min: float | None = field("Smallest allowed value, inclusive (integer and float columns).", None)
    max: float | None = field("Largest allowed value, inclusive (integer and float columns).", None)
    allowed: list[Any] | None = field("The only values allowed (nulls are governed by `nullable`).", None)
    regex: str | None = field(
        "Every non-null value must contain a match (string columns; anchor with ^ and $ for a full match; "
        "use the syntax shared by RE2 and Java).",
        None,
    )
    unique: bool = field("No non-null value may appear twice.", False)
    max_null_fraction: float | None = field("Largest allowed fraction of nulls, 0 to 1.", None, minimum=0, maximum=1)


@dataclass(frozen=True)
class RowCount:
    min: int | None = field("Fewest rows allowed.", None, minimum=0)
    max: int | None = field("Most rows allowed.", None, minimum=0)


@dataclass(frozen=True)
class Freshness:
    column: str = field("A date or timestamp column (timestamps without a zone are read as UTC).")
    max_age_hours: float = field("The newest value must be at most this many hours old.", minimum=0)


@dataclass(frozen=True)
class Expectation:
    name: str = field("Name of the check, shown in reports and JUnit.", pattern=_NAME_RE.pattern)
    sql: str = field(
        "A SQL boolean expression over the declared columns that must be TRUE on every row "
        "(a row where it is FALSE or NULL is a violation), e.g. 'worst_radius >= mean_radius'."
    )
    max_failures: int = field("How many violating rows are tolerated.", 0, minimum=0)


@dataclass(frozen=True)
class TableChecks:
    row_count: RowCount | None = field("Bounds on the number of rows.", None)
    unique_keys: list[list[str]] = field(
        "Column sets whose combined values must be unique (rows with a null key part are ignored).", []
    )
    freshness: Freshness | None = field("How recent the newest row must be.", None)
    expectations: list[Expectation] = field("Named SQL expectations, each a row-level boolean expression.", [])


@dataclass(frozen=True)
class Drift:
    reference: str = field(
        "Reference profile written by 'mlci data profile', relative to the project root.", "data/reference_profile.json"
    )
    columns: list[str] = field("Columns compared with the reference profile.", [])
    method: Literal["psi", "psi+ks"] = field(
        "psi, or psi+ks to also compute the binned KS statistic on numeric columns.", "psi"
    )
    threshold: float = field(
        "Largest allowed PSI per column (0.1 small, 0.2 moderate, 0.25+ large shift).", 0.2, minimum=0
    )
    ks_threshold: float = field(
        "Largest allowed KS statistic per numeric column (with method psi+ks).", 0.2, minimum=0, maximum=1
    )
    bins: int = field("Quantile bins per numeric column when profiling.", 10, minimum=2, maximum=100)
    datasets: list[str] | None = field(
        "Names of the datasets drift is measured on (train, holdout, dataset or a `datasets` entry); "
        "default: every dataset checked, all against the one reference profile. Drift checks of the "
        "others are reported as skipped.",
        None,
    )
    max_categories: int = field(
        "Most frequent categories kept per categorical column when profiling; the rest pool in 'other'.",
        50,
        minimum=1,
        maximum=1000,
    )


@dataclass(frozen=True)
class ContractSpec:
    contract: int = field("Version of the contract format.", minimum=1, maximum=CONTRACT_VERSION)
    dataset: Dataset = field(
        "The data the contract is checked against (mlci.yaml's data.train and data.holdout are checked too)."
    )
    columns: list[Column] = field(
        "The columns and their checks; other columns in the data are ignored unless `strict` is true."
    )
    strict: bool = field(
        "Fail a dataset that has columns not declared under `columns` (the failure lists them).", False
    )
    datasets: list[NamedDataset] = field(
        "More datasets checked against the same columns and table checks, each reported on its own.", []
    )
    table: TableChecks = field("Checks on the whole table.", TableChecks())
    drift: Drift | None = field("Distribution drift against a reference profile.", None)


@dataclass(frozen=True)
class Contract:
    """A loaded contract: the spec, its file and the line of every key (for errors and annotations)."""

    spec: ContractSpec
    path: Path
    lines: dict[str, int]
    root: Path  # paths in the contract are relative to this directory (the project root)

    def line_of(self, dotted: str) -> int | None:
        return self.lines.get(dotted)

    def error(self, dotted: str, problem: str) -> ConfigError:
        return ConfigError(str(self.path), self.line_of(dotted), problem)

    def column(self, name: str) -> Column:
        return next(c for c in self.spec.columns if c.name == name)

    @property
    def display_path(self) -> str:
        try:
            return self.path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(self.path)

    def resolve(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.root / path


def json_schema() -> dict[str, Any]:
    return json_schema_of(
        ContractSpec,
        "mlci data contract",
        "A data contract checked by 'mlci data-test': schema, value checks, table checks and drift.",
    )


def load_contract(path: Path, root: Path) -> Contract:
    """Read and validate a contract file; paths inside it are relative to `root`."""
    if not path.is_file():
        raise ConfigError(
            str(path), None, "data contract not found; write one (see docs/data-contracts.md) or pass --contract"
        )
    return parse_contract(read_text_file(path), path, root)


def parse_contract(text: str, path: Path, root: Path) -> Contract:
    spec, lines = parse_yaml(
        text, str(path), ContractSpec, empty_hint="start it with 'contract: 1' (see docs/data-contracts.md)"
    )
    contract = Contract(spec=spec, path=path, lines=lines, root=root)
    _check_semantics(contract)
    return contract


def _unknown_column(contract: Contract, key: str, name: str) -> ConfigError:
    names = [c.name for c in contract.spec.columns]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "declare it under 'columns' first"
    return contract.error(key, f"{key}: unknown column '{name}'; {hint}")


def _check_semantics(contract: Contract) -> None:
    spec = contract.spec
    # NaN and infinities, deep nesting and aliases are refused by the loader (parse_yaml) for
    # contracts and mlci.yaml alike.
    ds = spec.dataset
    if (ds.path is None) == (ds.table is None):
        raise contract.error("dataset", "dataset needs exactly one of 'path' or 'table'")
    if ds.table is not None and ds.format != "auto":
        raise contract.error("dataset.format", "dataset.format applies to 'path' only; remove it for a table")
    if not spec.columns:
        raise contract.error("columns", "'columns' is empty; declare at least one column")
    _check_datasets(contract)
    seen: set[str] = set()
    for index, col in enumerate(spec.columns):
        key = f"columns[{index}]"
        if col.name in seen:
            raise contract.error(f"{key}.name", f"{key}: column '{col.name}' is declared twice; keep one")
        seen.add(col.name)
        numeric = col.type in NUMERIC_TYPES
        for bound in ("min", "max"):
            if getattr(col, bound) is not None and not numeric:
                raise contract.error(
                    f"{key}.{bound}",
                    f"{key}: '{bound}' needs an integer or float column, not {col.type} column '{col.name}'",
                )
        if col.min is not None and col.max is not None and col.min > col.max:
            raise contract.error(f"{key}.max", f"{key}: max {col.max:g} is below min {col.min:g}")
        if col.regex is not None:
            if col.type != "string":
                raise contract.error(
                    f"{key}.regex", f"{key}: 'regex' needs a string column, not {col.type} column '{col.name}'"
                )
            try:
                re.compile(col.regex)
            except re.error as exc:
                raise contract.error(f"{key}.regex", f"{key}: invalid regex {col.regex!r}: {exc}") from None
        if col.allowed is not None:
            if not col.allowed:
                raise contract.error(f"{key}.allowed", f"{key}: 'allowed' is empty; list the allowed values")
            for j, value in enumerate(col.allowed):
                if not _fits(col.type, value):
                    raise contract.error(
                        f"{key}.allowed[{j}]",
                        f"{key}: allowed value {value!r} is not "
                        f"{'an' if col.type[0] in 'aeiou' else 'a'} {col.type} like column '{col.name}'",
                    )
    rc = spec.table.row_count
    if rc is not None and rc.min is not None and rc.max is not None and rc.min > rc.max:
        raise contract.error("table.row_count.max", f"table.row_count: max {rc.max} is below min {rc.min}")
    for index, key_columns in enumerate(spec.table.unique_keys):
        key = f"table.unique_keys[{index}]"
        if not key_columns:
            raise contract.error(key, f"{key} is empty; list the key's columns")
        for name in key_columns:
            if name not in seen:
                raise _unknown_column(contract, key, name)
    fresh = spec.table.freshness
    if fresh is not None:
        if fresh.column not in seen:
            raise _unknown_column(contract, "table.freshness.column", fresh.column)
        if contract.column(fresh.column).type not in ("date", "timestamp"):
            raise contract.error(
                "table.freshness.column",
                f"table.freshness.column: '{fresh.column}' must be a date "
                f"or timestamp column, not {contract.column(fresh.column).type}",
            )
    names: set[str] = set()
    for index, exp in enumerate(spec.table.expectations):
        key = f"table.expectations[{index}]"
        if exp.name in names:
            raise contract.error(
                f"{key}.name", f"{key}: expectation name '{exp.name}' is used twice; names must be unique"
            )
        names.add(exp.name)
        if not exp.sql.strip():
            raise contract.error(f"{key}.sql", f"{key}: 'sql' is empty; write a boolean expression")
        problem = lexical_problem(exp.sql)
        if problem:
            raise contract.error(f"{key}.sql", f"{key}.sql: {problem}; {EXPRESSION_FIX}")
    if spec.drift is not None:
        seen_drift: set[str] = set()
        for index, name in enumerate(spec.drift.columns):
            key = f"drift.columns[{index}]"
            if name not in seen:
                raise _unknown_column(contract, key, name)
            if name in seen_drift:
                raise contract.error(key, f"{key}: column '{name}' is listed twice")
            seen_drift.add(name)
            if contract.column(name).type in ("date", "timestamp"):
                raise contract.error(
                    key,
                    f"{key}: drift is computed on numeric, string or boolean columns, "
                    f"not {contract.column(name).type} column '{name}'",
                )


def dataset_names(spec: ContractSpec) -> tuple[str, ...]:
    """Every name a dataset can be checked under (what `drift.datasets` may list)."""
    return (*CONFIG_DATASETS, "dataset", *(d.name for d in spec.datasets))


def _check_datasets(contract: Contract) -> None:
    seen: set[str] = set()
    for index, named in enumerate(contract.spec.datasets):
        key = f"datasets[{index}]"
        if named.name in (*CONFIG_DATASETS, "dataset"):
            raise contract.error(
                f"{key}.name",
                f"{key}: the name '{named.name}' is taken (train and holdout are mlci.yaml's data.train and "
                "data.holdout, always checked; dataset is the contract's own); choose another name",
            )
        if named.name in seen:
            raise contract.error(f"{key}.name", f"{key}: dataset name '{named.name}' is used twice; keep one")
        seen.add(named.name)
        if (named.path is None) == (named.table is None):
            raise contract.error(key, f"{key} needs exactly one of 'path' or 'table'")
        if named.table is not None and named.format != "auto":
            raise contract.error(f"{key}.format", f"{key}.format applies to 'path' only; remove it for a table")
    drift_settings = contract.spec.drift
    if drift_settings is not None and drift_settings.datasets is not None:
        names = dataset_names(contract.spec)
        for index, name in enumerate(drift_settings.datasets):
            if name not in names:
                key = f"drift.datasets[{index}]"
                hint = _did_you_mean_name(name, list(names))
                raise contract.error(key, f"{key}: unknown dataset '{name}'; {hint}")


def _did_you_mean_name(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"datasets: {', '.join(names)}"


def _fits(column_type: str, value: Any) -> bool:
    if column_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if column_type == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if column_type == "boolean":
        return isinstance(value, bool)
    return isinstance(value, str)  # string, date ('2024-01-31') and timestamp literals
