"""Offline stand-ins for Azure DevOps: a template expander (expander.expand) and a host runner
(runner.run_pipeline), used to prove rendered Azure pipelines without the Azure service."""
