"""Render every GitHub file of one project (workflows and vendored actions) in-process.

Goal (issue 4): under 50 ms after start-up. Start-up itself is measured in run.py. Each
sample is a fresh process (benchmarks/harness.py: wall, CPU, peak RSS, load) that renders
the files ``--renders`` times and reports the first render (cold: templates parsed), the
median and the minimum of the rest, timed inside it.

    python benchmarks/render.py [--runs 5] [--renders 50] [--quick]

Writes benchmarks/results/render.json; benchmarks/report.py renders its table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from harness import Case, interleave, loadavg, results_document, write_results


def child(renders: int) -> None:
    from mlci import providers
    from mlci.commands.new import collect_answers
    from mlci.templates import TemplateSource, readme_sections, render_ci, render_tree

    answers = collect_answers("bench-model", None, None, {"author": "bench"}, interactive=False)
    source = TemplateSource.from_env()
    # mlci.yaml as `mlci new` writes it, untimed, without touching the CI templates (the first
    # timed render below is the one that parses them).
    sections = readme_sections(providers.get(str(answers["provider"])), source)
    scaffold = render_tree(source.scaffold(), {**answers, **sections}, keep=lambda path: path == "mlci.yaml")
    config_text = scaffold["mlci.yaml"].decode()
    timings = []
    files: dict[str, bytes] = {}
    for _ in range(renders):
        started = time.perf_counter()
        files = render_ci(config_text, answers, Path("."))
        timings.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "first_s": timings[0],
                "median_s": statistics.median(timings[1:] or timings),
                "min_s": min(timings),
                "files": len(files),
                "kib": sum(map(len, files.values())) // 1024,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes")
    parser.add_argument("--renders", type=int, default=50, help="renders per process")
    parser.add_argument("--quick", action="store_true", help="3 processes of 20 renders")
    parser.add_argument("--child", type=int, metavar="RENDERS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    if args.quick:
        args.runs, args.renders = 3, 20
    load_at_start = loadavg()
    case = Case(
        f"render_ci, GitHub ({args.renders} renders a process)",
        [sys.executable, __file__, "--child", str(args.renders)],
        extract=lambda sample: sample.last_json(),
        group="render",
    )
    measured = interleave([case], args.runs)
    document = results_document(
        "render",
        measured,
        mode="quick" if args.quick else "full",
        runs=args.runs,
        load_at_start=load_at_start,
        extra={"renders_per_process": args.renders},
    )
    write_results("render", document)
    extra = document["cases"][case.name]["extra"]
    print(
        f"{extra['files']['median']:.0f} GitHub files: first render {extra['first_s']['median'] * 1000:.1f} ms, "
        f"then median {extra['median_s']['median'] * 1000:.1f} ms (medians over {args.runs} processes)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
