"""Where a stage's work happens: local (embedded default) or databricks."""
