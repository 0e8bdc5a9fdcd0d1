"""What inference logging costs `mlci serve`: request latency (p50, p95) and throughput, logging off vs on.

One scaffolded project (train, register, deploy once), then `--runs` pairs of server runs,
interleaved off, on, off, on, ... so drift in the machine's load hits both sides alike. Each run
is a fresh `mlci serve` process (monitor.log.enabled false or true in mlci.yaml); after an
uncounted warm-up, `--threads` client threads each send `--requests` POSTs of `--rows` holdout
rows over one keep-alive connection. Latency is per request, client side (time.perf_counter);
throughput is requests / wall time of the run. The load average before and after each run is
recorded, the server's CPU time (user+sys, from os.wait4) and its tree's peak RSS (polled with
benchmarks/harness.py's tree_memory_kb), and with logging on the server's own shutdown line
(rows written, dropped).

    python benchmarks/serve_logging.py [--runs 5] [--threads 4] [--requests 250] [--rows 1] [--quick]

Writes benchmarks/results/serve_logging.json with every run and each side's medians with
ranges; benchmarks/report.py renders its table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness import loadavg, machine, spread, tree_memory_kb, write_results


def mlci(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mlci", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"mlci {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def make_project(root: Path) -> Path:
    mlci("new", "bench-serve", "--defaults", "--no-git", "--output-dir", str(root), cwd=root)
    project = root / "bench-serve"
    for stage in ("train", "register", "deploy"):
        mlci(stage, cwd=project)
    return project


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bodies(project: Path, rows: int, count: int) -> list[bytes]:
    import pandas as pd

    holdout = pd.read_csv(project / "data" / "holdout.csv").drop(columns=["malignant"])
    out = []
    for index in range(count):
        chunk = holdout.iloc[[(index * rows + k) % len(holdout) for k in range(rows)]]
        split = json.loads(chunk.to_json(orient="split", index=False))
        out.append(json.dumps({"dataframe_split": split}).encode())
    return out


def client(port: int, payloads: list[bytes], latencies: list[float], failures: list[str]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    for body in payloads:
        started = time.perf_counter()
        try:
            connection.request("POST", "/invocations", body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                failures.append(f"HTTP {answer.status}")
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        latencies.append(time.perf_counter() - started)
    connection.close()


def load(port: int, payloads: list[bytes], threads: int) -> tuple[list[float], list[str], float]:
    per_thread = [payloads[i::threads] for i in range(threads)]
    latencies: list[list[float]] = [[] for _ in range(threads)]
    failures: list[str] = []
    workers = [
        threading.Thread(target=client, args=(port, per_thread[i], latencies[i], failures)) for i in range(threads)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    return [x for part in latencies for x in part], failures, wall


def set_logging(project: Path, enabled: bool, original: str) -> None:
    # A fresh inference folder per run, so a run's count is its own.
    folder = f".mlci/bench-inference-{time.time_ns()}"
    (project / "mlci.yaml").write_text(
        original + f"\nmonitor:\n  inference: {folder}\n  log:\n    enabled: {'true' if enabled else 'false'}\n"
    )


class TreeWatch(threading.Thread):
    """Polls a process tree's memory until stopped: (sum of VmRSS, largest VmHWM) peaks in kB."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.stop, self.peak_kb = pid, threading.Event(), 0

    def run(self) -> None:
        while not self.stop.wait(0.05):
            rss, hwm = tree_memory_kb(self.pid)
            self.peak_kb = max(self.peak_kb, rss, hwm)


def one_run(project: Path, enabled: bool, payloads: list[bytes], warmup: list[bytes], threads: int) -> dict[str, Any]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlci", "serve", "--port", str(port)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watch = TreeWatch(process.pid)
    watch.start()
    # Stop after the load by SIGINT; reaped with os.wait4 for the server's CPU time, so the
    # pipes are drained by threads (communicate() would reap it first).
    drained: dict[str, str] = {}
    try:
        assert process.stdout is not None and process.stderr is not None
        while True:
            line = process.stdout.readline()
            if not line:
                raise SystemExit(f"mlci serve ended: {process.wait()} {process.stderr.read()}")
            if line.startswith("serving "):
                break
        readers = [
            threading.Thread(target=lambda k=k, f=f: drained.__setitem__(k, f.read()), daemon=True)
            for k, f in (("out", process.stdout), ("err", process.stderr))
        ]
        for reader in readers:
            reader.start()
        load(port, warmup, threads)  # uncounted: first requests pay lazy imports and caches
        before = loadavg()[0]
        latencies, failures, wall = load(port, payloads, threads)
        after = loadavg()[0]
        process.send_signal(signal.SIGINT)
        killer = threading.Timer(120, process.kill)
        killer.start()
        _, status, usage = os.wait4(process.pid, 0)
        killer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        for reader in readers:
            reader.join(timeout=10)
    finally:
        watch.stop.set()
        if process.returncode is None:
            process.kill()
            process.wait()
    out, err = drained.get("out", ""), drained.get("err", "")
    shutdown = re.search(r"inference log: (\d+) row\(s\) written .* (\d+) dropped", out)
    latencies.sort()
    return {
        "logging": enabled,
        "requests": len(latencies),
        "failures": len(failures),
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        "throughput_rps": len(latencies) / wall,
        "wall_s": wall,
        "server_cpu_s": usage.ru_utime + usage.ru_stime,
        "server_peak_rss_mb": watch.peak_kb / 1024,
        "load_before": before,
        "load_after": after,
        "rows_written": int(shutdown.group(1)) if shutdown else None,
        "rows_dropped": int(shutdown.group(2)) if shutdown else None,
        # Anything the server printed besides its "interrupted" line (a traceback at shutdown).
        "server_stderr": "" if err.strip() == "mlci: interrupted" else err.strip()[-3000:],
    }


def enqueue_cost(calls: int = 100_000) -> dict[str, float]:
    """What the request path pays: InferenceLogger.log() on a one-row frame, in-process, no writer."""
    from datetime import datetime, timezone

    import pandas as pd

    from mlci.monitoring.inference_log import InferenceLogger, Request

    log = InferenceLogger(
        Path(tempfile.gettempdir()) / "unused",
        "bench@1",
        queue_rows=calls,
        batch_rows=calls,
        flush_seconds=3600,
        classifier=True,
        warn=print,
    )
    frame, answer, request = pd.DataFrame({"x": [1.0]}), [0], Request("r", datetime.now(timezone.utc))
    started = time.perf_counter_ns()
    for _ in range(calls):
        log.log(frame, answer, request)
    per_call = (time.perf_counter_ns() - started) / calls
    return {"calls": calls, "ns_per_call": per_call}


def sides(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each side's medians with ranges over its runs (report.py's `serve` view)."""
    out = {}
    for enabled in (False, True):
        side = [r for r in runs if r["logging"] is enabled]
        written = sum(r["rows_written"] or 0 for r in side)
        dropped = sum(r["rows_dropped"] or 0 for r in side)
        loads = [r["load_before"] for r in side] + [r["load_after"] for r in side]
        out["on" if enabled else "off"] = {
            "runs": len(side),
            **{k: spread([r[k] for r in side], 2) for k in ("p50_ms", "p95_ms", "throughput_rps")},
            "server_cpu_s": spread([r["server_cpu_s"] for r in side]),
            "server_peak_rss_mb": spread([r["server_peak_rss_mb"] for r in side], 1),
            "failures": sum(r["failures"] for r in side),
            "rows": f"{written} / {dropped}" if enabled else "-",
            "load_min": min(loads),
            "load_max": max(loads),
        }
    return out


def main() -> None:
    # Started in the background by a non-interactive shell (nohup, `cmd &`), this process ignores
    # SIGINT, and every server it starts would inherit that and outlive its SIGINT until the
    # 120 s kill (no shutdown line, no rows written). A Python handler is reset to the default
    # on exec, so the servers get SIGINT's default again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per side (interleaved off, on, ...)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--requests", type=int, default=250, help="requests per thread per run")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 pair of runs, 2 threads, 20 requests each")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.threads, args.requests = 1, 2, 20
    load_at_start = loadavg()
    root = Path(tempfile.mkdtemp(prefix="mlci-bench-serve-"))
    try:
        print(f"scaffolding and training a project in {root} ...", flush=True)
        project = make_project(root)
        original = (project / "mlci.yaml").read_text()
        payloads = bodies(project, args.rows, args.threads * args.requests)
        warmup = payloads[: 5 * args.threads]
        runs = []
        for index in range(args.runs):
            for enabled in (False, True):
                set_logging(project, enabled, original)
                run = one_run(project, enabled, payloads, warmup, args.threads)
                runs.append(run)
                print(
                    f"run {index + 1} logging {'on ' if enabled else 'off'}: p50 {run['p50_ms']:.2f} ms, "
                    f"p95 {run['p95_ms']:.2f} ms, {run['throughput_rps']:.0f} req/s, {run['failures']} failed, "
                    f"written {run['rows_written']}, dropped {run['rows_dropped']}, load {run['load_before']:.1f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    enqueue = enqueue_cost()
    print(f"\nrequest path: InferenceLogger.log() {enqueue['ns_per_call'] / 1000:.1f} us per call (in-process)")
    write_results(
        "serve_logging",
        {
            "schema": 1,
            "benchmark": "serve_logging",
            "mode": "quick" if args.quick else "full",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runs": args.runs,
            "machine": machine(("mlci", "mlflow", "uvicorn", "pandas")),
            "load_at_start": list(load_at_start),
            "load_at_end": list(loadavg()),
            "args": vars(args),
            "sides": sides(runs),
            "samples": runs,
            "enqueue": enqueue,
        },
    )
    print("tables: python benchmarks/report.py")


if __name__ == "__main__":
    main()
