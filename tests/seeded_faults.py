"""The faults the executed-pipeline tests seed into a fresh project (test_act.py for GitHub
Actions, test_azure_run.py for Azure Pipelines): each is found by exactly one check job."""

from __future__ import annotations

from pathlib import Path

FAULTS = ("lint", "unit-test", "data-test")


def seed_fault(project: Path, package: str, fault: str) -> None:
    """Seed `fault` (one of FAULTS) into the project at `project`, whose package is `package`."""
    if fault == "lint":
        (project / "src" / package / "helpers.py").write_text('"""Helpers."""\n\nimport os\n')  # F401: unused import
    elif fault == "unit-test":
        (project / "tests" / "test_fault.py").write_text(
            '"""A test that fails."""\n\n\ndef test_fails() -> None:\n    assert sum([1, 1]) == 3\n'
        )
    elif fault == "data-test":
        # One training row whose radius is far outside the contract's range.
        train = project / "data" / "train.csv"
        lines = train.read_text().splitlines(keepends=True)
        header = lines[0].rstrip("\n").split(",")
        row = lines[1].rstrip("\n").split(",")
        row[header.index("mean_radius")] = "999"
        train.write_text("".join(lines) + ",".join(row) + "\n")
    else:
        raise ValueError(f"unknown fault {fault!r}; use one of {FAULTS}")
