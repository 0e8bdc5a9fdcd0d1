"""Azure Pipelines: the runtime adapter only, until its renderer ships (see providers.RUNTIME_ONLY)."""
