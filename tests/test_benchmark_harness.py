"""benchmarks/harness.py measures what it says: real child processes, no mocks (about 2 s)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import harness

PY = sys.executable
# Touches every page of a 120 MB buffer, then burns about 0.2 s of CPU.
ALLOCATE = "b = bytearray(120 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nx = sum(range(4_000_000))"


def test_a_sample_counts_the_childs_memory_cpu_and_wall() -> None:
    sample = harness.measure([PY, "-c", ALLOCATE])
    assert sample.peak_rss_mb >= 120
    assert sample.cpu_s > 0.05
    assert sample.wall_s >= sample.cpu_s * 0.5
    assert sample.returncode == 0
    assert len(sample.load_before) == 3


def test_the_tree_counts_a_grandchild() -> None:
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {ALLOCATE!r}], check=True)"
    sample = harness.measure([PY, "-c", parent])
    assert sample.peak_rss_mb >= 120  # the grandchild's memory, not only the small parent's
    assert sample.cpu_s > 0.05  # the reaped grandchild's CPU is in the child's rusage


def test_a_failing_child_raises_with_its_last_stderr_line() -> None:
    with pytest.raises(harness.SampleFailed, match=r"exit 3: boom"):
        harness.measure([PY, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"])


def test_a_timeout_kills_the_tree() -> None:
    with pytest.raises(harness.SampleFailed, match=r"timed out after 0\.3 s"):
        harness.measure([PY, "-c", "import time; time.sleep(30)"], timeout=0.3)


def test_cases_interleave_after_a_warmup_and_a_failure_drops_only_its_case(tmp_path: Path) -> None:
    log = tmp_path / "order"
    append = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n'); print('{\"inner\": 0.5}')"
    cases = [
        harness.Case("A", [PY, "-c", append, str(log), "A"], extract=lambda s: s.last_json()),
        harness.Case("B", [PY, "-c", append, str(log), "B"]),
        harness.Case("bad", [PY, "-c", "raise SystemExit('no room')"]),
    ]
    measured = harness.interleave(cases, runs=2, progress=lambda _line: None)
    assert log.read_text().split() == ["A", "B", "A", "B", "A", "B"]  # warm-up round, then A B A B
    a, b, bad = measured
    assert (len(a.samples), len(b.samples), len(bad.samples)) == (2, 2, 0)
    assert bad.note == "exit 1: no room"
    document = harness.results_document("unit", measured, mode="quick")
    assert document["schema"] == harness.SCHEMA and document["runs"] == 2
    assert document["cases"]["A"]["extra"]["inner"]["median"] == 0.5
    assert document["cases"]["bad"]["n"] == 0 and document["cases"]["bad"]["wall_s"]["median"] is None
    wall = document["cases"]["B"]["wall_s"]
    assert wall["min"] <= wall["median"] <= wall["max"] and len(wall["samples"]) == 2
    assert document["machine"]["commit"]
    path = harness.write_results("unit", document, tmp_path)
    assert path.read_text().endswith("}\n")
