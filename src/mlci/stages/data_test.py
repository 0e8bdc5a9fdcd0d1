"""data-test: the data contract (and drift) on every dataset, on DuckDB or Spark; table, JSON, JUnit, CI outputs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from mlci import console, providers
from mlci.config import Project
from mlci.contracts.compiler import CheckResult, show
from mlci.contracts.format import CONFIG_DATASETS, Contract, Dataset, load_contract
from mlci.contracts.runner import Report, guess_format, run_contract
from mlci.errors import CheckFailed
from mlci.stages._result import JUNIT_REPORTS, StageOptions, StageResult, write_report, xml_text

JUNIT_FILE = JUNIT_REPORTS["data-test"]


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


@dataclass(frozen=True)
class Target:
    """One dataset to check: its name in reports, where it is and where it is declared."""

    name: str
    label: str  # the path or table as the user wrote it
    dataset: Dataset | None = None  # None with `override`: the --source path
    key: str = "dataset"  # the contract key errors about it point at
    override: str | None = None


def datasets_to_check(project: Project, contract: Contract, source: str | None) -> list[Target]:
    """Every dataset the pipeline consumes, once each: data.train, data.holdout, the contract's
    own `dataset` (when it is another location) and the contract's `datasets` entries.

    `--source` checks that one file instead.
    """
    if source is not None:
        return [Target("source", source, override=source)]
    own = contract.spec.dataset
    own_location = contract.resolve(own.path).resolve() if own.path is not None else None
    targets: list[Target] = []
    seen: set[Path] = set()
    for name in CONFIG_DATASETS:
        relative: str = getattr(project.config.data, name)
        path = (project.root / relative).resolve()
        if path in seen:
            continue  # holdout and train are one file: checked once
        seen.add(path)
        if path == own_location:  # the contract's dataset: read it as the contract says
            targets.append(Target(name, relative, own))
            continue
        if not path.exists():
            raise project.error(
                f"data.{name}", f"data.{name}: data file '{relative}' not found; create it or fix the path"
            )
        fmt = guess_format(path)
        if fmt is None:
            raise project.error(
                f"data.{name}", f"data.{name}: cannot tell the format of '{relative}'; use a .csv or .parquet file"
            )
        targets.append(Target(name, relative, Dataset(path=str(path), format=fmt)))  # type: ignore[arg-type]
    if own_location is None or own_location not in seen:
        targets.append(Target("dataset", own.path or own.table or "", own))
    for index, named in enumerate(contract.spec.datasets):
        location = contract.resolve(named.path).resolve() if named.path is not None else None
        if location is not None and location in seen:
            continue
        if location is not None:
            seen.add(location)
        targets.append(Target(named.name, named.path or named.table or "", named.as_dataset(), f"datasets[{index}]"))
    return targets


def _drift_skip_reason(contract: Contract, name: str) -> str | None:
    settings = contract.spec.drift
    if settings is None or settings.datasets is None or name in settings.datasets:
        return None
    return f"not run: drift is not measured on {name} (drift.datasets)"


def run_data_test(
    project: Project, engine: str | None = None, contract_path: str | None = None, source: str | None = None
) -> StageResult:
    contract, relative = contract_for(project, contract_path)
    if contract is None:
        return StageResult(
            f"skipped: no data contract at {relative} (see docs/data-contracts.md)",
            {"skipped": True, "contract": relative},
        )
    engine_name = engine or project.config.data_test.engine
    targets = datasets_to_check(project, contract, source)
    runs: list[tuple[Target, Report]] = []
    for target in targets:  # all resolved first: a bad path fails before any data is read
        report = run_contract(
            contract,
            engine_name,
            target.override,
            dataset=target.dataset,
            dataset_key=target.key,
            drift_skip_reason=None if target.override else _drift_skip_reason(contract, target.name),
            # A line every few seconds on a long scan (none under --quiet), in this stage's
            # block under `mlci run` though written from the watcher's thread.
            progress=console.bound(console.progress),
            on_stop=console.on_stop,  # Ctrl-C under `mlci run` interrupts the scan in this thread
        )
        runs.append((target, report))
    out = project.out_dir
    out.mkdir(parents=True, exist_ok=True)
    junit = out / JUNIT_FILE
    write_junit(runs, contract, junit)
    for target, report in runs:
        if len(runs) > 1:
            console.say(f"{target.name}: {target.label}")
        print_results(report.results)
    for target, report in runs:
        console.say(dataset_line(target, report))
    total = {s: sum(r.counts()[s] for _, r in runs) for s in ("pass", "fail", "skip")}
    seconds = round(sum(r.seconds for _, r in runs), 3)
    details = {
        "engine": engine_name,
        "seconds": seconds,
        **total,
        "datasets": [{"name": t.name, "path": t.label, **r.to_json()} for t, r in runs],
        "contract": contract.display_path,
        "junit_xml": str(junit.relative_to(project.root)),
    }
    markdown = markdown_report(runs)
    failed_runs = [(t, r) for t, r in runs if r.failed]
    if failed_runs:
        ci = providers.detect()
        for target, report in failed_runs:
            for r in report.failed:
                note = (
                    ci.annotation(
                        "error",
                        f"{target.name}: observed {show(r.observed)}, expected {r.expected}"
                        + (f": {r.message}" if r.message else ""),
                        contract.display_path,
                        r.line,
                        title=f"data-test {target.name}/{r.name}",
                    )
                    if ci
                    else None
                )
                console.annotation(note)
        parts = []
        for target, report in failed_runs:
            names = ", ".join(
                f"{r.name} (observed {show(r.observed)}, expected {r.expected})" for r in report.failed[:5]
            )
            more = f" and {len(report.failed) - 5} more" if len(report.failed) > 5 else ""
            parts.append(
                f"{target.name}: {len(report.failed)} of {len(report.results)} checks on {target.label} "
                f"({engine_name}, {report.seconds:.2f}s): {names}{more}"
            )
        error = CheckFailed(f"data contract failed: {'; '.join(parts)}", details)
        error.markdown = markdown
        raise error
    drift_text = ""
    worst = max(
        ((t, r) for t, report in runs for r in report.worst_drift(1)),
        key=lambda pair: float(pair[1].observed),
        default=None,
    )
    if worst is not None:
        where = f"{worst[0].name} " if len(runs) > 1 else ""
        drift_text = f"; worst drift: {where}{worst[1].column} PSI {show(worst[1].observed)}"
    skipped = f", {total['skip']} skipped" if total["skip"] else ""
    names = ", ".join(t.name for t, _ in runs)
    return StageResult(
        f"data contract passed on {names}: {total['pass']} checks{skipped} ({engine_name}, {seconds:.2f}s){drift_text}",
        details,
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


def dataset_line(target: Target, report: Report) -> str:
    """One line per dataset: its verdict and counts."""
    counts = report.counts()
    verdict = "FAILED" if report.failed else "passed"
    skipped = f", {counts['skip']} skipped" if counts["skip"] else ""
    return (
        f"{target.name}: {verdict}, {counts['pass']} passed, {counts['fail']} failed{skipped} "
        f"on {target.label} ({report.seconds:.2f}s)"
    )


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


def markdown_report(runs: list[tuple[Target, Report]]) -> str:
    sections = []
    for target, report in runs:
        heading = [f"**{target.name}** (`{_cell(target.label)}`)", ""] if len(runs) > 1 else []
        sections.append("\n".join([*heading, dataset_markdown(report)]))
    return "\n\n".join(sections)


def dataset_markdown(report: Report) -> str:
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


def _element(parent: ET.Element | None, tag: str, **attributes: str) -> ET.Element:
    safe = {key: xml_text(value) for key, value in attributes.items()}
    return ET.Element(tag, safe) if parent is None else ET.SubElement(parent, tag, safe)


def write_junit(runs: list[tuple[Target, Report]], contract: Contract, path: Path) -> None:
    """One test case per check and dataset (named `dataset/check`), so every CI lists them; atomic.

    Names and messages come from the contract and the data (a regex may hold control
    characters); every string is made XML 1.0-safe so the file always parses.
    """
    results = [(target, r) for target, report in runs for r in report.results]
    suite = _element(
        None,
        "testsuite",
        name="mlci.data-test",
        tests=str(len(results)),
        failures=str(sum(1 for _, r in results if r.status == "fail")),
        errors="0",
        skipped=str(sum(1 for _, r in results if r.status == "skip")),
        time=f"{sum(report.seconds for _, report in runs):.3f}",
    )
    for target, r in results:
        case = _element(
            suite,
            "testcase",
            classname=f"data-test.{target.name}.{r.check}",
            name=f"{target.name}/{r.name}",
            file=contract.display_path,
            line=str(r.line or 0),
            time="0",
        )
        text = f"observed {show(r.observed)}, expected {r.expected}" + (f": {r.message}" if r.message else "")
        if r.status == "fail":
            _element(case, "failure", message=text, type="contract").text = xml_text(text)
        elif r.status == "skip":
            _element(case, "skipped", message=r.message or "not run")
    write_report(path, ET.tostring(suite, encoding="utf-8", xml_declaration=True))


def run(project: Project, options: StageOptions) -> StageResult:
    """The stage as `mlci data-test` and `mlci run` call it (mlci.stage_specs.STAGES names it)."""
    return run_data_test(project, options["engine"], options["contract"], options["source"])
