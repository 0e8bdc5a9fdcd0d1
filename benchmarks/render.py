"""Render every GitHub file of one project (workflows and vendored actions) in-process.

Goal (issue 4): under 50 ms after start-up. Start-up itself is measured in run.py. Reports the
median of N renders, the first (cold: templates parsed) and the number of files.

    python benchmarks/render.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from mlci import __version__
from mlci.commands.new import collect_answers
from mlci.templates import render_ci, render_tree, shipped_dir


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    answers = collect_answers("bench-model", None, None, {"author": "bench"}, interactive=False)
    config_text = render_tree(shipped_dir("scaffold"), answers)["mlci.yaml"].decode()
    timings = []
    files: dict[str, bytes] = {}
    for _ in range(runs):
        started = time.perf_counter()
        files = render_ci(config_text, answers, Path("."))
        timings.append((time.perf_counter() - started) * 1000)
    print(f"mlci {__version__}: {len(files)} GitHub files ({sum(map(len, files.values())) // 1024} KiB)")
    print(
        f"first render {timings[0]:.1f} ms (templates parsed), median of {runs} {statistics.median(timings):.1f} ms, "
        f"min {min(timings):.1f} ms"
    )


if __name__ == "__main__":
    main()
