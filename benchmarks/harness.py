"""The benchmarks' shared harness: tools interleaved run by run, each sample a fresh process.

Why: timing each tool in a block lets a load swing on a shared machine land on one tool and
move the ratios (issue 15). Here every round runs every case once (A B A B ...), after one
untimed warm-up per case, and each sample records what the machine was doing around it.

Per sample (one fresh process, its whole tree):
- wall: perf_counter around the child;
- CPU: user + sys of the child and every descendant it waited for (``os.wait4``'s rusage; a
  daemon it left running is not counted, and is killed with the child's session after it);
- peak RSS of the tree: /proc polled every ``poll_s`` (sum of the tree's VmRSS), raised to the
  largest single process's VmHWM (the kernel's own high-water mark since exec), so a peak
  between two polls is not missed (a process that exits before the first poll, well under
  10 ms, reports 0). A sum of RSS counts shared pages once per process: an
  upper bound of the tree's real footprint for forked workers. Not ``ru_maxrss``: on Linux a
  child's carries the parent's peak over fork+exec (measured: 511 MB for ``true`` under a
  500 MB parent);
- load average (1, 5, 15 min) before and after.

Use::

    from harness import Case, interleave, results_document, write_results

    cases = [Case("mlci", ["mlci", "--version"]), Case("copier", ["copier", "--version"])]
    measured = interleave(cases, runs=10)
    write_results("startup", results_document("startup", measured, mode="full"))

A child that times its own work (after its imports, say) prints one JSON line last and the
case keeps it: ``Case("pandera", [sys.executable, __file__, "--child", "pandera"],
extract=Sample.last_json, timeout=600)``; the figures land in the case's ``extra``.

``benchmarks/report.py`` renders the README's tables from the files written here.
Linux (procfs) for the memory figures; elsewhere peak RSS falls back to ru_maxrss, which
may include this process's own peak (see above).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
SCHEMA = 1  # bump when the results document changes shape (report.py reads it)
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


class SampleFailed(Exception):
    """A sample exited non-zero or timed out; ``note`` is the one line the report shows."""

    def __init__(self, note: str, sample: Sample | None = None) -> None:
        super().__init__(note)
        self.note = note
        self.sample = sample


@dataclass(frozen=True)
class Sample:
    """One fresh process's figures."""

    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    returncode: int
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def last_json(self) -> dict[str, Any]:
        """The child's last stdout line as JSON (how a child reports figures timed inside it)."""
        for line in reversed(self.stdout.strip().splitlines()):
            if line.startswith("{"):
                value = json.loads(line)
                if isinstance(value, dict):
                    return value
        raise SampleFailed("the child printed no JSON line", self)

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "user_s": round(self.user_s, 4),
            "sys_s": round(self.sys_s, 4),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "load_before": list(self.load_before),
            "load_after": list(self.load_after),
        }


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def _proc_status_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB of one process; (0, 0) once it is gone or is a zombie."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                found += [int(c) for c in handle.read().split()]
    except OSError:
        pass
    return found


def tree_memory_kb(pid: int) -> tuple[int, int]:
    """(sum of VmRSS, largest VmHWM) in kB over ``pid`` and its descendants, now (0, 0 without procfs).
    For a long-running process (a server) that ``measure`` cannot wrap: poll it from a thread."""
    figures = [_proc_status_kb(p) for p in _tree(pid)]
    return sum(rss for rss, _ in figures), max((hwm for _, hwm in figures), default=0)


def _tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue += _children(current)
    return pids


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own session: its whole tree


def measure(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    poll_s: float = 0.01,
    check: bool = True,
    ok_codes: Collection[int] = (0,),
) -> Sample:
    """Run ``command`` once as a fresh process (its own session) and measure its tree.

    stdout and stderr are captured to temporary files (no pipe can fill and stall the child).
    ``check``: an exit code not in ``ok_codes`` raises SampleFailed with the last line of stderr.
    """
    procfs = Path("/proc/self/status").exists()
    load_before = loadavg()
    with _capture() as (out, err):
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,
        )
        peak_sum_kb = peak_one_kb = 0
        status = 0
        usage: Any = None
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if procfs:
                    tree_sum_kb, tree_hwm_kb = tree_memory_kb(proc.pid)
                    peak_sum_kb, peak_one_kb = max(peak_sum_kb, tree_sum_kb), max(peak_one_kb, tree_hwm_kb)
                if timeout is not None and time.perf_counter() - started > timeout:
                    _kill_tree(proc)
                    os.wait4(proc.pid, 0)
                    proc.returncode = -signal.SIGKILL
                    raise SampleFailed(f"timed out after {timeout:g} s")
                time.sleep(poll_s)
        except BaseException:
            if proc.returncode is None:  # Ctrl-C or an error here: leave no orphaned tree behind
                _kill_tree(proc)
                os.wait4(proc.pid, 0)
                proc.returncode = -signal.SIGKILL
            raise
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        _kill_tree(proc)  # descendants that outlived the child (daemons) would skew the next sample
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    # Without procfs only ru_maxrss is left: kB on Linux, bytes on macOS.
    maxrss_kb = usage.ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    peak_kb = max(peak_sum_kb, peak_one_kb) if procfs else maxrss_kb
    sample = Sample(
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_mb=peak_kb / 1024,
        load_before=load_before,
        load_after=loadavg(),
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
    )
    if check and proc.returncode not in ok_codes:
        last = (stderr.strip().splitlines() or stdout.strip().splitlines() or ["no output"])[-1]
        raise SampleFailed(f"exit {proc.returncode}: {last[:300]}", sample)
    return sample


class _capture:
    """Two anonymous temporary files for a child's stdout and stderr."""

    def __enter__(self) -> tuple[Any, Any]:
        import tempfile

        self.files = (tempfile.TemporaryFile("w+", errors="replace"), tempfile.TemporaryFile("w+", errors="replace"))
        return self.files

    def __exit__(self, *_exc: object) -> None:
        for handle in self.files:
            handle.close()


Command = Sequence[str] | Callable[[], Sequence[str]]
Directory = Path | Callable[[], Path] | None


@dataclass
class Case:
    """One tool (or variant) to measure.

    ``command`` is an argv, or a function returning one per sample (e.g. a fresh output
    directory each time); ``cwd`` likewise (a fresh project per sample). ``setup`` runs
    before every sample, untimed (e.g. reset a project).
    ``extract`` turns a sample into extra figures kept with it (e.g. the child's own timing,
    ``Sample.last_json``). ``params`` are labels the report can show (rows, engine ...).
    """

    name: str
    command: Command
    cwd: Directory = None
    env: Mapping[str, str] | None = None
    setup: Callable[[], None] | None = None
    extract: Callable[[Sample], Mapping[str, Any]] | None = None
    timeout: float | None = None
    ok_codes: Collection[int] = (0,)  # e.g. (0, 1) for `mlci upgrade`, which exits 1 on a conflict
    group: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    def argv(self) -> list[str]:
        return list(self.command() if callable(self.command) else self.command)

    def directory(self) -> Path | None:
        return self.cwd() if callable(self.cwd) else self.cwd


@dataclass
class Measured:
    """A case's samples (warm-up excluded), extracted figures, and why it stopped early if it did."""

    case: Case
    samples: list[Sample] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def run_once(self, *, timed: bool) -> None:
        if self.case.setup is not None:
            self.case.setup()
        sample = measure(
            self.case.argv(),
            cwd=self.case.directory(),
            env=self.case.env,
            timeout=self.case.timeout,
            ok_codes=self.case.ok_codes,
        )
        figures = dict(self.case.extract(sample)) if self.case.extract else {}
        if timed:
            self.samples.append(sample)
            self.extra.append(figures)


def interleave(
    cases: Iterable[Case],
    runs: int,
    *,
    warmup: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[Measured]:
    """Measure every case ``runs`` times, round by round (A B A B ...), after ``warmup`` untimed
    rounds. A case that fails or times out is recorded with its note and left out of the
    later rounds (e.g. pandera that cannot fit in memory); the others go on."""
    measured = [Measured(case) for case in cases]
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    for round_no in range(-warmup, runs):
        for item in measured:
            if item.note:
                continue
            try:
                item.run_once(timed=round_no >= 0)
            except SampleFailed as failure:
                item.note = failure.note
                say(f"  {item.case.name}: {failure.note}")
                continue
            if round_no >= 0:
                last = item.samples[-1]
                say(
                    f"  [{round_no + 1}/{runs}] {item.case.name}: {last.wall_s:.3f} s wall, "
                    f"{last.cpu_s:.3f} s CPU, {last.peak_rss_mb:.0f} MB, load {last.load_before[0]}"
                )
    return measured


def spread(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """Median with its range; ``samples`` keeps every value in run order."""
    if not values:
        return {"median": None, "min": None, "max": None, "samples": []}
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "samples": [round(v, digits) for v in values],
    }


def summarize(item: Measured) -> dict[str, Any]:
    """A case's entry in the results document."""
    samples = item.samples
    keys = sorted({k for figures in item.extra for k, v in figures.items() if isinstance(v, (int, float))})
    return {
        "group": item.case.group,
        "params": dict(item.case.params),
        "n": len(samples),
        "note": item.note,
        "wall_s": spread([s.wall_s for s in samples]),
        "cpu_s": spread([s.cpu_s for s in samples]),
        "peak_rss_mb": spread([s.peak_rss_mb for s in samples], 1),
        "load1_before": spread([s.load_before[0] for s in samples], 2),
        # Figures the child reported itself (e.g. seconds timed after its imports).
        "extra": {k: spread([float(f[k]) for f in item.extra if isinstance(f.get(k), (int, float))]) for k in keys},
    }


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=HERE.parent, text=True, capture_output=True, check=False)
    return done.stdout.strip()


def _commit() -> str:
    dirty = bool(_git("status", "--porcelain", "--", "src", "benchmarks"))
    return _git("rev-parse", "--short", "HEAD") + ("+uncommitted" if dirty else "")


# When the benchmark started (this module is imported first): machine() runs when the results
# are written, and a commit in between means the samples did not all run the same code.
COMMIT_AT_START = _commit()


def machine(distributions: Iterable[str] = ("mlci",)) -> dict[str, Any]:
    """The machine, interpreter, versions and commit a results document was measured on."""
    model = ""
    if shutil.which("lscpu"):
        lscpu = subprocess.run(["lscpu"], text=True, capture_output=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "")
    versions: dict[str, str | None] = {}
    for dist in distributions:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    memory_mb = None
    if Path("/proc/meminfo").exists():
        first = Path("/proc/meminfo").read_text().splitlines()[0]  # MemTotal: N kB
        memory_mb = int(first.split()[1]) // 1024
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_mb": memory_mb,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "commit": _commit(),
        "commit_at_start": COMMIT_AT_START,
        "versions": versions,
        # Start-up figures depend on it: without byte-compiled sources every import compiles.
        "pythondontwritebytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
    }


def results_document(
    benchmark: str,
    measured: Iterable[Measured],
    *,
    mode: str,
    runs: int | None = None,
    distributions: Iterable[str] = ("mlci",),
    load_at_start: tuple[float, float, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON a benchmark writes: machine, versions, commit, load, and each case's summary."""
    items = list(measured)
    return {
        "schema": SCHEMA,
        "benchmark": benchmark,
        "mode": mode,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": runs if runs is not None else max((len(i.samples) for i in items), default=0),
        "machine": machine(distributions),
        "load_at_start": list(load_at_start) if load_at_start else None,
        "load_at_end": list(loadavg()),
        "cases": {item.case.name: summarize(item) for item in items},
        **(dict(extra) if extra else {}),
    }


def write_results(name: str, document: Mapping[str, Any], directory: Path = RESULTS_DIR) -> Path:
    """benchmarks/results/<name>.json (no machine paths in it: the document carries none)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def python_child(code: str, *args: str) -> list[str]:
    """argv running ``code`` in a fresh interpreter of this environment."""
    return [sys.executable, "-c", code, *args]
