"""The stages' code, one module per stage; each writes .mlci/out/<stage>.json.

What a stage is (its names, options, CI inputs and outputs) is in `mlci.stage_specs`, the
registry the CLI, `mlci run`, the pipeline model and the providers read without importing
any stage's code.
"""
