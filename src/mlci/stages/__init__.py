"""The stages: each does real work and writes .mlci/out/<stage>.json."""
