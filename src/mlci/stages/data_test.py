"""data-test: check the data contract (and drift) on DuckDB or Spark; table, JSON, JUnit, CI outputs."""

from __future__ import annotations

import argparse
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from mlci import ci_env, console
from mlci.config import Project
from mlci.contracts.compiler import CheckResult, show
from mlci.contracts.format import Contract, load_contract
from mlci.contracts.runner import Report, run_contract
from mlci.errors import CheckFailed
from mlci.stages._result import StageResult, execute, load_project_for

JUNIT_FILE = "data-test.xml"
# Characters XML 1.0 forbids (C0 controls but tab/newline/return, surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def contract_for(project: Project, cli_path: str | None) -> tuple[Contract | None, str]:
    """The contract to check, or None when the project has none and never asked for one."""
    if cli_path is not None:
        return load_contract(Path(cli_path).resolve(), project.root), cli_path
    relative = project.config.data_test.contract
    path = project.root / relative
    if not path.is_file() and project.line_of("data_test.contract") is None:
        return None, relative  # a project from before data-test: nothing to check yet
    if not path.is_file():
        raise project.error(
            "data_test.contract",
            f"data contract '{relative}' not found; write it (see docs/data-contracts.md) or fix data_test.contract",
        )
    return load_contract(path, project.root), relative


def run_data_test(
    project: Project, engine: str | None = None, contract_path: str | None = None, source: str | None = None
) -> StageResult:
    contract, relative = contract_for(project, contract_path)
    if contract is None:
        return StageResult(
            "data-test",
            f"skipped: no data contract at {relative} (see docs/data-contracts.md)",
            {"skipped": True, "contract": relative},
        )
    engine_name = engine or project.config.data_test.engine
    report = run_contract(contract, engine_name, source)
    out = project.out_dir
    out.mkdir(parents=True, exist_ok=True)
    junit = out / JUNIT_FILE
    write_junit(report, contract, junit)
    print_results(report.results)
    counts = report.counts()
    details = {**report.to_json(), "contract": contract.display_path, "junit_xml": str(junit.relative_to(project.root))}
    markdown = markdown_report(report)
    drift_text = ""
    worst = report.worst_drift(1)
    if worst:
        drift_text = f"; worst drift: {worst[0].column} PSI {show(worst[0].observed)}"
    data = report.source if source else contract.spec.dataset.path or contract.spec.dataset.table
    where = f"{data} ({engine_name}, {report.seconds:.2f}s)"
    if report.failed:
        for r in report.failed:
            note = ci_env.annotation(
                "error",
                f"observed {show(r.observed)}, expected {r.expected}" + (f": {r.message}" if r.message else ""),
                contract.display_path,
                r.line,
                title=f"data-test {r.name}",
            )
            console.annotation(note)
        names = ", ".join(f"{r.name} (observed {show(r.observed)}, expected {r.expected})" for r in report.failed[:5])
        more = f" and {len(report.failed) - 5} more" if len(report.failed) > 5 else ""
        error = CheckFailed(
            f"data contract failed: {counts['fail']} of {len(report.results)} checks on {where}: {names}{more}", details
        )
        error.markdown = markdown
        raise error
    skipped = f", {counts['skip']} skipped" if counts["skip"] else ""
    return StageResult(
        "data-test",
        f"data contract passed: {counts['pass']} checks{skipped} on {where}{drift_text}",
        details,
        outputs={"checks": len(report.results), "failed": 0},
        markdown=markdown,
    )


def print_results(results: list[CheckResult]) -> None:
    """Failures first: the checks that failed or were skipped as a table, the passing ones in
    one line (--verbose lists every check)."""
    if console.verbose():
        console.say(result_table(results))
        return
    shown = [r for r in results if r.status != "pass"]
    if shown:
        console.say(result_table(shown))
        passed = len(results) - len(shown)
        console.say(f"{passed} other check{'s' * (passed != 1)} passed (--verbose lists them)")


def result_table(results: list[CheckResult]) -> str:
    rows = [("check", "column", "observed", "expected", "result")]
    rows += [
        (r.check, r.column or "-", show(r.observed), r.expected, r.status.upper() if r.status != "pass" else "pass")
        for r in results
    ]
    widths = [min(max(len(row[i]) for row in rows), 40) for i in range(4)]
    lines = []
    for row in rows:
        cells = [cell if len(cell) <= widths[i] else cell[: widths[i] - 3] + "..." for i, cell in enumerate(row[:4])]
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)) + "  " + row[4])
    return "\n".join(lines)


def markdown_report(report: Report) -> str:
    def table(results: list[CheckResult]) -> list[str]:
        out = ["| check | column | observed | expected | result |", "|---|---|---:|---|---|"]
        out += [
            f"| {r.check} | {r.column or '-'} | {show(r.observed)} | {_cell(r.expected)} | "
            f"{'✅' if r.status == 'pass' else '❌' if r.status == 'fail' else 'skipped'} |"
            for r in results
        ]
        return out

    counts = report.counts()
    lines = [f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped on `{report.engine}`."]
    if report.failed:
        lines += ["", "**Failed checks**", "", *table(report.failed)]
    drift_rows = sorted(
        (r for r in report.results if r.check in ("psi", "ks")),
        key=lambda r: -(r.observed if isinstance(r.observed, float) else 0.0),
    )
    if drift_rows:
        lines += ["", "**Drift (worst first)**", "", *table(drift_rows)]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def xml_text(text: str) -> str:
    """`text` with each character XML 1.0 forbids written as a visible escape (\\x01, \\ufffe)."""
    return _NOT_XML.sub(lambda m: ascii(m.group())[1:-1], text)


def _element(parent: ET.Element | None, tag: str, **attributes: str) -> ET.Element:
    safe = {key: xml_text(value) for key, value in attributes.items()}
    return ET.Element(tag, safe) if parent is None else ET.SubElement(parent, tag, safe)


def write_junit(report: Report, contract: Contract, path: Path) -> None:
    """One test case per check, so every CI lists them; written atomically.

    Names and messages come from the contract and the data (a regex may hold control
    characters); every string is made XML 1.0-safe so the file always parses.
    """
    counts = report.counts()
    suite = _element(
        None,
        "testsuite",
        name="mlci.data-test",
        tests=str(len(report.results)),
        failures=str(counts["fail"]),
        errors="0",
        skipped=str(counts["skip"]),
        time=f"{report.seconds:.3f}",
    )
    for r in report.results:
        case = _element(
            suite,
            "testcase",
            classname=f"data-test.{r.check}",
            name=r.name,
            file=contract.display_path,
            line=str(r.line or 0),
            time="0",
        )
        text = f"observed {show(r.observed)}, expected {r.expected}" + (f": {r.message}" if r.message else "")
        if r.status == "fail":
            _element(case, "failure", message=text, type="contract").text = xml_text(text)
        elif r.status == "skip":
            _element(case, "skipped", message=r.message or "not run")
    tmp = path.with_suffix(".xml.tmp")
    ET.ElementTree(suite).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)


def main(args: argparse.Namespace) -> int:
    project = load_project_for(args)
    result = execute(
        "data-test", project, lambda: run_data_test(project, args.engine, args.contract, getattr(args, "source", None))
    )
    print(result.summary)
    return 0
