"""benchmarks/README.md's tables are exactly what benchmarks/report.py renders from the committed results."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import report  # noqa: E402


def test_the_readme_tables_are_the_committed_results(capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main(["--check"]) == 0, capsys.readouterr().err
    assert len(report.MARKER.findall(report.README.read_text(encoding="utf-8"))) >= 8


def test_a_changed_figure_is_caught_and_rewritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    shutil.copytree(BENCHMARKS / "results", results)
    readme = tmp_path / "README.md"
    shutil.copy(report.README, readme)
    startup = json.loads((results / "startup.json").read_text())
    case = next(iter(startup["cases"].values()))
    case["wall_s"]["median"] = 98.76
    (results / "startup.json").write_text(json.dumps(startup))
    args = ["--readme", str(readme), "--results", str(results)]

    assert report.main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert "file=startup" in err and "differs from the results" in err
    assert report.main(args) == 0
    assert "98.76 s" in readme.read_text()
    assert report.main([*args, "--check"]) == 0


def test_a_missing_results_file_names_the_readme_line_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("prose\n\n<!-- report: cases file=nowhere -->\n<!-- /report -->\n")
    assert report.main(["--readme", str(readme), "--results", str(tmp_path), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"report: {readme}:3: <!-- report: cases file=nowhere -->:")
    assert "run python benchmarks/nowhere.py" in err


def test_an_unknown_view_is_one_line() -> None:
    with pytest.raises(report.ReportError, match="unknown view 'tabel'"):
        report.render_marker("tabel file=startup", BENCHMARKS / "results")


def test_the_monitor_table_is_recomputed_from_its_runs(tmp_path: Path) -> None:
    def run(tool: str, wall: float, ok: bool = True) -> dict[str, object]:
        return {
            "tool": tool,
            "ok": ok,
            "wall_s": wall,
            "cpu_s": wall,
            "peak_rss_mb": 500.0,
            "load_before": 1.0,
            "load": 2.5,
        }

    runs = [run("mlci", 10.0), run("evidently", 70.0), run("mlci", 12.0), run("evidently", 90.0, ok=False)]
    (tmp_path / "monitor_vs_evidently.json").write_text(
        json.dumps({"1000": {"when": "2026-12-02T13:00:00+00:00", "runs": runs}})
    )
    table = report.render_marker("monitor file=monitor_vs_evidently rows=1000", tmp_path)
    assert table.startswith("Measured 2026-12-02, 4 runs interleaved; load average (1 min) 1.0-2.5.")
    assert "| 1,000 | mlci | 2/2 | 11.00 (10.00-12.00) |" in table
    assert "| 1,000 | evidently | 1/2 | 70.00 (70.00-70.00) |" in table and "| 6.4x |" in table
    with pytest.raises(report.ReportError, match="needs rows=<rows of the run, a whole number>"):
        report.render_marker("monitor file=monitor_vs_evidently", tmp_path)
    with pytest.raises(report.ReportError, match="a whole number"):
        report.render_marker("monitor file=monitor_vs_evidently rows=1e3", tmp_path)


def test_the_machine_line_says_when_the_code_moved_during_the_run() -> None:
    base = {"date": "2026-12-02T14:00:00", "mode": "full", "runs": 5, "load_at_start": [1.0], "load_at_end": [2.0]}
    machine = {"nproc": 2, "cpu": "x", "system": "Linux", "python": "3.11.7", "versions": {}, "commit": "bbb"}
    same = report.view_machine({**base, "machine": {**machine, "commit_at_start": "bbb"}}, {})
    moved = report.view_machine({**base, "machine": {**machine, "commit_at_start": "aaa"}}, {})
    older = report.view_machine({**base, "machine": machine}, {})  # results written before the field
    assert "mlci at `bbb`;" in same and "mlci at `bbb`;" in older
    assert "mlci at `bbb` (`aaa` when the run started);" in moved


def test_install_measures_a_missing_extra_as_the_core_install_and_says_so(tmp_path: Path) -> None:
    import zipfile

    import install

    wheel = tmp_path / "mlci-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(
            "mlci-0.1.0.dist-info/METADATA",
            "Metadata-Version: 2.3\nName: mlci\nVersion: 0.1.0\nProvides-Extra: data\nProvides-Extra: train\n",
        )
    declared = install.declared_extras(wheel)
    assert declared == {"data", "train"}
    assert install.requirement(wheel, "data", declared) == (f"mlci[data] @ {wheel.as_uri()}", "mlci[data]")
    assert install.requirement(wheel, "all", declared) == (str(wheel), "mlci (core): this wheel has no [all] extra")
    assert install.requirement(wheel, None, declared) == (str(wheel), "mlci (core)")
