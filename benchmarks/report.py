"""benchmarks/README.md's tables, rendered from benchmarks/results/*.json.

The README's prose is written by hand; every table sits between two markers and is written
here, so a figure in the README is always one a committed results file holds::

    <!-- report: cases file=startup vs="mlci --version" -->
    ...rendered, do not edit...
    <!-- /report -->

    python benchmarks/report.py           # rewrite the tables in benchmarks/README.md
    python benchmarks/report.py --check   # exit 1 naming each table that differs (CI, tests)

A marker names a view and its arguments (key=value, quoted when it holds spaces):
- ``cases file=F [group=G] [vs=CASE] [extra=K,...]``: any harness results document (harness.py):
  one row per case: runs, wall median (range), CPU, peak RSS, 1-min load, ratio to ``vs``,
  the case's note; ``extra`` adds medians of figures the children reported themselves,
  ``params`` columns of the cases' labels.
- ``machine file=F``: the machine, commit, date, mode and load a document was measured with,
  and the document's ``remarks`` (sentences the benchmark adds, e.g. what it could not measure).
- ``stages file=pipeline``: `mlci run`'s per-stage medians (from .mlci/out/<stage>.json).
- ``imports file=startup``: the modules each start-up path imports.
- ``install file=install``: per-extra install time, packages and MB.
- ``upgrade file=upgrade``: the upgrade outcomes (markers, exit codes, processes spawned).
- ``serve file=serve_logging``: latency and throughput, logging off vs on.
- ``profile file=pipeline``: where `mlci train`'s time goes (a full run only).
- ``monitor file=monitor_vs_evidently rows=N``: mlci monitor vs Evidently at N rows, recomputed
  from the recorded runs (interleaved by that script), with the date and the load around them.

Exit codes: 0 ok; 1 --check found a difference; 2 a marker or results file is unusable.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
RESULTS = HERE / "results"
MARKER = re.compile(r"^<!-- report: (?P<spec>.+?) -->\n(?P<body>.*?)^<!-- /report -->$", re.M | re.S)


# results file -> the command that writes it (default: benchmarks/<name>.py)
PRODUCERS = {name: f"run.py --only {name}" for name in ("startup", "scaffold", "pipeline")}
PRODUCERS["data_checks"] = "data_checks.py --rows 10000000 30000000 --tools mlci-duckdb pandera --runs 5"
PRODUCERS["data_checks_100m"] = "data_checks.py --rows 100000000 --tools mlci-duckdb --runs 5 --out data_checks_100m"
PRODUCERS["data_checks_spark"] = (
    "data_checks.py --rows 10000000 30000000 --tools mlci-spark mlci-duckdb --runs 1 --warmup 0 --out data_checks_spark"
)


class ReportError(Exception):
    """A marker or results file that cannot be rendered: one line naming it and the fix."""


def load(name: str, results: Path) -> dict[str, Any]:
    path = results / f"{name}.json"
    if not path.is_file():
        raise ReportError(f"{shown(path)} not found: run python benchmarks/{PRODUCERS.get(name, name + '.py')}")
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ReportError(f"{path.name}: not a JSON object")
    return document


def shown(path: Path) -> str:
    """A path as the report prints it: relative to the repository when inside it."""
    return path.relative_to(HERE.parent).as_posix() if path.is_relative_to(HERE.parent) else str(path)


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def seconds_spread(spread: Mapping[str, Any]) -> str:
    """'420 ms (270-530 ms)': one unit, chosen by the median."""
    median, low, high = spread["median"], spread["min"], spread["max"]
    if median < 1:
        return f"{median * 1000:.0f} ms ({low * 1000:.0f}-{high * 1000:.0f} ms)"
    return f"{median:.2f} s ({low:.2f}-{high:.2f} s)"


def spread_cell(spread: Mapping[str, Any] | None, fmt: Callable[[float | None], str] | None = None) -> str:
    if not spread or spread.get("median") is None:
        return "-"
    if fmt is None:
        return seconds_spread(spread)
    return f"{fmt(spread['median'])} ({fmt(spread['min'])}-{fmt(spread['max'])})"


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def selected(document: Mapping[str, Any], group: str | None) -> dict[str, Any]:
    cases: dict[str, Any] = document.get("cases", {})
    return {k: v for k, v in cases.items() if group is None or v.get("group") == group}


def load_cell(case: Mapping[str, Any]) -> str:
    load1 = case["load1_before"]
    return "-" if load1["median"] is None else f"{load1['min']:.1f}-{load1['max']:.1f}"


def view_cases(document: Mapping[str, Any], args: Mapping[str, str]) -> str:
    cases = selected(document, args.get("group"))
    if not cases:
        raise ReportError(f"no cases in group {args.get('group')!r}")
    base_name = args.get("vs")
    if base_name is not None and base_name not in cases:
        raise ReportError(f"vs={base_name!r} is not a case of this table ({', '.join(cases)})")
    base = cases[base_name]["wall_s"]["median"] if base_name else None
    extras = [k for k in args.get("extra", "").split(",") if k]
    labels = [k for k in args.get("params", "").split(",") if k]
    header = ["case", *labels, "runs", "wall, median (range)", "CPU (user+sys)", "peak RSS MB", "load (1 min)"]
    header += [f"{k}, median (range)" for k in extras]
    if base_name:
        header.append(f"vs {base_name}")
    header.append("note")
    rows = []
    for name, case in cases.items():
        row = [
            f"`{name}`" if args.get("code") == "yes" else name,
            *[str(case.get("params", {}).get(k, "-")) for k in labels],
            str(case["n"]),
            spread_cell(case["wall_s"]),
            seconds(case["cpu_s"]["median"]),
            spread_cell(case["peak_rss_mb"], mb),
            load_cell(case),
        ]
        row += [spread_cell(case.get("extra", {}).get(k)) for k in extras]
        if base_name:
            median = case["wall_s"]["median"]
            row.append("-" if median is None or not base else f"{median / base:.2f}x")
        row.append(case.get("note") or "")
        rows.append(row)
    return table(header, rows)


def view_machine(document: Mapping[str, Any], _args: Mapping[str, str]) -> str:
    m = document["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
    start, end = document.get("load_at_start"), document.get("load_at_end")
    loads = [f"{x:.2f}" for x in (start or [])[:1] + (end or [])[:1]]
    memory = f", {m['memory_mb'] / 1024:.0f} GiB RAM" if m.get("memory_mb") else ""
    started = m.get("commit_at_start")
    moved = f" (`{started}` when the run started)" if started and started != m["commit"] else ""
    return (
        f"Measured {document['date'][:10]} ({document['mode']} mode, {document['runs']} "
        f"{'run' if document['runs'] == 1 else 'runs'} a case, interleaved), "
        f"mlci at `{m['commit']}`{moved}; {m['nproc']} CPUs ({m['cpu'] or 'unknown model'}){memory}, {m['system']}, "
        f"Python {m['python']}{', PYTHONDONTWRITEBYTECODE=1' if m.get('pythondontwritebytecode') else ''}; "
        f"{versions}. Load average (1 min) at start and end: {' / '.join(loads) or '-'}."
        + "".join(f" {remark}" for remark in document.get("remarks", []))
    )


def view_stages(document: Mapping[str, Any], _args: Mapping[str, str]) -> str:
    cases = selected(document, None)
    names = list(cases)
    stages = document.get("stages", [])
    header = ["stage", *[f"{n} (n={cases[n]['n']})" for n in names]]
    rows = [[st, *[seconds(cases[n]["extra"].get(st, {}).get("median")) for n in names]] for st in stages]
    rows.append(
        ["outside stages (start-up, glue, exit)"]
        + [seconds(cases[n]["extra"].get("outside", {}).get("median")) for n in names]
    )
    rows.append(["**`mlci run` wall**"] + [f"**{seconds(cases[n]['wall_s']['median'])}**" for n in names])
    return table(header, rows)


def view_imports(document: Mapping[str, Any], _args: Mapping[str, str]) -> str:
    imports = document["imports"]
    return table(
        ["import path", "modules beyond the bare interpreter", "heavy modules imported"],
        [
            [f"`{k}`", str(v["modules_beyond_interpreter"]), ", ".join(v["heavy_modules"]) or "none"]
            for k, v in imports.items()
        ],
    )


def view_install(document: Mapping[str, Any], _args: Mapping[str, str]) -> str:
    rows = []
    for name, case in document["cases"].items():
        info = document["installs"].get(case["params"]["extra"], {})
        rows.append(
            [
                name,
                str(case["n"]),
                spread_cell(case["wall_s"]),
                seconds(case["cpu_s"]["median"]),
                str(info.get("packages", "-")),
                mb(info.get("site_packages_mb")),
                info.get("resolved_as", ""),
                load_cell(case),
                case.get("note") or "",
            ]
        )
    header = ["install", "runs", "wall, median (range)", "CPU", "packages", "MB installed", "what it installs"]
    return table([*header, "load (1 min)", "note"], rows)


def view_upgrade(document: Mapping[str, Any], _args: Mapping[str, str]) -> str:
    rows = []
    for name, case in document["cases"].items():
        out = document["outcomes"][name]
        spawned = out.get("spawned")
        rows.append(
            [
                name,
                str(case["n"]),
                spread_cell(case["wall_s"]),
                str(out["exit_code"]),
                "yes" if out["markers"] else "no",
                "yes" if out["user_line_kept"] else "NO",
                "yes" if out["new_pin_applied"] else "NO",
                f"{spawned['processes']} ({spawned['git']})" if spawned else "n/a",
            ]
        )
    header = ["case", "runs", "wall, median (range)", "exit", "conflict markers", "user line kept", "new pin"]
    fleet = document["fleet"]
    return (
        table([*header, "processes spawned (git)"], rows)
        + f"\n\nFleet: {fleet['repos']} repositories, `--jobs {fleet['jobs']}`: {seconds(fleet['wall_s'])} wall, "
        f"{seconds(fleet['cpu_s'])} CPU, {fleet['peak_rss_mb']:.0f} MB peak RSS, exit {fleet['exit_code']} "
        f"({', '.join(f'{k} {v}' for k, v in fleet['summary'].items())})."
    )


def view_serve(document: Mapping[str, Any], _args: Mapping[str, str]) -> str:
    rows = []
    for name, side in document["sides"].items():
        rows.append(
            [
                name,
                str(side["runs"]),
                spread_cell(side["p50_ms"], lambda v: "-" if v is None else f"{v:.1f}"),
                spread_cell(side["p95_ms"], lambda v: "-" if v is None else f"{v:.1f}"),
                spread_cell(side["throughput_rps"], lambda v: "-" if v is None else f"{v:.0f}"),
                spread_cell(side["server_cpu_s"]),
                spread_cell(side["server_peak_rss_mb"], mb),
                str(side["failures"]),
                side["rows"],
                f"{side['load_min']:.1f}-{side['load_max']:.1f}",
            ]
        )
    header = ["logging", "runs", "p50 ms", "p95 ms", "requests/s", "server CPU", "server peak RSS MB"]
    return table([*header, "failures", "rows written / dropped", "load (1 min)"], rows)


def view_profile(document: Mapping[str, Any], _args: Mapping[str, str]) -> str:
    """Where `mlci train`'s time goes (full mode only: the profile is not run with --quick)."""
    if "importtime_train" not in document:
        return f"(not measured: a {document['mode']} run has no profile)"
    imp, prof, store = document["importtime_train"], document["cprofile_train"], document["store_open"]
    return "\n\n".join(
        [
            f"`python -X importtime -m mlci train` on a fresh project: {imp['wall_s']:.2f} s wall, "
            f"{imp['all_imports_s']:.2f} s in imports; MLflow's first call on a new sqlite store "
            f"{store['new_store_s']:.2f} s, on an existing one {store['existing_store_s']:.2f} s "
            f"(median of {store['n']}).",
            table(
                ["package", "self", "cumulative"],
                [[k, seconds(v["self_s"]), seconds(v["cumulative_s"])] for k, v in imp["packages"].items()],
            ),
            f"cProfile of `mlci train` ({prof['wall_s_under_profiler']:.2f} s under the profiler), cumulative:",
            table(["where", "cumulative"], [[k, seconds(v)] for k, v in prof["cumulative_s"].items()]),
        ]
    )


def view_monitor(document: Mapping[str, Any], args: Mapping[str, str]) -> str:
    from monitor_vs_evidently import table as monitor_table  # one table, the script's own

    if not args.get("rows", "").isdigit():
        raise ReportError("view 'monitor' needs rows=<rows of the run, a whole number>")
    entry = document[args["rows"]]
    runs = entry["runs"]
    loads = [r[k] for r in runs for k in ("load_before", "load")]
    when = entry["when"][:10]
    line = f"Measured {when}, {len(runs)} runs interleaved; load average (1 min) {min(loads):.1f}-{max(loads):.1f}."
    return f"{line}\n\n{monitor_table(int(args['rows']), runs)}"


VIEWS: dict[str, Callable[[Mapping[str, Any], Mapping[str, str]], str]] = {
    "cases": view_cases,
    "machine": view_machine,
    "stages": view_stages,
    "imports": view_imports,
    "install": view_install,
    "upgrade": view_upgrade,
    "serve": view_serve,
    "profile": view_profile,
    "monitor": view_monitor,
}


def render_marker(spec: str, results: Path) -> str:
    view, *pairs = shlex.split(spec)
    if view not in VIEWS:
        raise ReportError(f"unknown view {view!r} (one of {', '.join(VIEWS)})")
    args = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    if "file" not in args:
        raise ReportError(f"view {view!r} needs file=<results name>")
    try:
        return VIEWS[view](load(args["file"], results), args)
    except KeyError as missing:
        raise ReportError(f"results/{args['file']}.json has no {missing} for view {view!r}") from None


def render(text: str, results: Path = RESULTS, name: str = "benchmarks/README.md") -> tuple[str, list[str]]:
    """(README text with every table re-rendered, the specs of the tables that changed)."""
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        spec = match.group("spec")
        try:
            body = render_marker(spec, results) + "\n"
        except ReportError as error:
            line = text[: match.start()].count("\n") + 1
            raise ReportError(f"{name}:{line}: <!-- report: {spec} -->: {error}") from None
        if body != match.group("body"):
            changed.append(spec)
        return f"<!-- report: {spec} -->\n{body}<!-- /report -->"

    return MARKER.sub(replace, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    try:
        new, changed = render(text, args.results, shown(args.readme.resolve()))
    except ReportError as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    if args.check:
        for spec in changed:
            print(
                f"report: {args.readme.name}: table <!-- report: {spec} --> differs from the results; "
                "run python benchmarks/report.py",
                file=sys.stderr,
            )
        return 1 if changed else 0
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
    print(f"report: {len(MARKER.findall(text))} tables, {len(changed)} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
