"""Data contracts: one format, one SQL compiler, two engines (DuckDB embedded, Spark at scale).

Nothing here imports duckdb, pyspark or pandas at import time; engines load lazily.
"""
