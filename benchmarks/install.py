"""Per-stage installs: how long `uv pip install mlci[<extra>]` takes into a fresh venv, cold and warm.

What a CI job's setup step pays (issue 15): a wheel of this checkout is built once, then each
sample is a fresh venv (made untimed) and one timed `uv pip install --constraints
requirements/constraints.txt <wheel>[<extra>]`, as the setup action runs it. Cold = an empty
UV_CACHE_DIR for every sample (every package downloaded from the registry uv is configured
with, and unpacked); warm = one cache that holds every package already (by default this
machine's uv cache, ``--warm-cache`` to choose another; a CI cache restored for the job holds
only the job's packages, which resolves no slower). Cases, interleaved run by run:

- lint: the core install (`mlci`, what `mlci lint` needs), data, unit-test, train: the
  per-stage extras of issue 15;
- full: `mlci[all]` once the extras exist (what `mlci run` needs on a laptop, the nearest to
  what every job installs today); on a checkout without per-stage extras the core install
  *is* the full install.

An extra the wheel does not declare is measured as the core install and says so (uv ignores
unknown extras): on main before issue 15's extras every case is the full install. The
packages and MB of each install are counted once, after the samples.

    python benchmarks/install.py                 # 3 runs, cold and warm, every extra
    python benchmarks/install.py --quick         # 1 run, warm, plus lint cold (no warm-up)
    python benchmarks/install.py --extras lint data --kinds warm
    python benchmarks/install.py --source ../main --name install-main   # the baseline

Writes benchmarks/results/install.json. ``--source``: the checkout whose wheel is installed
(default: this one) with its requirements/constraints.txt; ``--name``: the results file, e.g.
install-main for what every job installs before issue 15's extras. Needs uv (the one next to
this interpreter, or on PATH) and, for cold samples, the registry.
"""

from __future__ import annotations

import argparse
import email.parser
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from harness import Case, Sample, interleave, loadavg, results_document, write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# case name -> extra (None = the core install)
EXTRAS: dict[str, str | None] = {
    "lint": None,
    "data": "data",
    "unit-test": "unit-test",
    "train": "train",
    "full": "all",
}


def uv() -> list[str]:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found:
        return [found]
    try:
        import uv as uv_module  # noqa: F401  (the uv wheel on PyPI: python -m uv)
    except ImportError:
        sys.exit("install: uv is not installed next to this interpreter nor on PATH: pip install uv")
    return [sys.executable, "-m", "uv"]


def build_wheel(source: Path, out: Path) -> Path:
    done = subprocess.run(
        [*uv(), "build", "--wheel", "--quiet", "--out-dir", str(out), str(source)], capture_output=True, text=True
    )
    wheels = sorted(out.glob("mlci-*.whl"))
    if done.returncode != 0 or not wheels:
        sys.exit(f"install: building the wheel of {source} failed: {done.stderr.strip()[-500:]}")
    return wheels[0]


def declared_extras(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))
    return set(metadata.get_all("Provides-Extra") or [])


def requirement(wheel: Path, extra: str | None, declared: set[str]) -> tuple[str, str]:
    """(the requirement to install, what it resolves to, for the report)."""
    if extra is None:
        return str(wheel), "mlci (core)"
    if extra not in declared:
        return str(wheel), f"mlci (core): this wheel has no [{extra}] extra"
    return f"mlci[{extra}] @ {wheel.as_uri()}", f"mlci[{extra}]"


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def footprint(venv: Path) -> dict[str, Any]:
    site = site_packages(venv)
    dists = [p for p in site.iterdir() if p.name.endswith(".dist-info")]
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and not f.is_symlink())
    return {"packages": len(dists), "site_packages_mb": round(size / 2**20, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--extras", nargs="+", choices=list(EXTRAS), default=list(EXTRAS))
    parser.add_argument("--kinds", nargs="+", choices=["cold", "warm"], default=["cold", "warm"])
    parser.add_argument("--quick", action="store_true", help="1 run: every extra warm, lint cold (no warm-up)")
    parser.add_argument("--source", type=Path, default=ROOT, help="the mlci checkout to build (default: this one)")
    parser.add_argument("--name", default="install", help="results file name (default: install)")
    parser.add_argument("--warm-cache", type=Path, default=None, help="the warm uv cache (default: uv cache dir)")
    args = parser.parse_args()
    warm_cache: Path = args.warm_cache or Path(
        subprocess.run([*uv(), "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
    )
    load_at_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="mlci-bench-install-") as tmp:
        work = Path(tmp)
        source: Path = args.source.resolve()
        constraints = source / "requirements" / "constraints.txt"
        if not constraints.is_file():
            sys.exit(f"install: {constraints} not found: --source must be an mlci checkout")
        wheel = build_wheel(source, work / "dist")
        declared = declared_extras(wheel)
        counter = iter(range(10**6))
        installs: dict[str, dict[str, Any]] = {}
        cases = []
        plan = [(kind, name) for kind in args.kinds for name in args.extras]
        if args.quick:
            args.runs = 1
            plan = [("warm", name) for name in args.extras] + [("cold", "lint")]
        for kind, name in plan:
            spec, resolved = requirement(wheel, EXTRAS[name], declared)
            installs.setdefault(EXTRAS[name] or "core", {"resolved_as": resolved})
            state: dict[str, Path] = {"cache": work / f"cache-{name}" if kind == "cold" else warm_cache}

            def setup(state: dict[str, Path] = state, kind: str = kind) -> None:
                state["venv"] = work / f"venv{next(counter)}"
                subprocess.run([*uv(), "venv", "--quiet", str(state["venv"])], check=True, env=uv_env(state["cache"]))
                if kind == "cold":  # an empty cache for every cold sample
                    shutil.rmtree(state["cache"], ignore_errors=True)
                    state["cache"].mkdir()

            def command(state: dict[str, Path] = state, spec: str = spec, constraints: Path = constraints) -> list[str]:
                python = state["venv"] / "bin" / "python"
                return [
                    *uv(),
                    "pip",
                    "install",
                    "--quiet",
                    "--python",
                    str(python),
                    "--constraints",
                    str(constraints),
                    spec,
                ]

            def count(
                _sample: Sample, state: dict[str, Path] = state, key: str = EXTRAS[name] or "core"
            ) -> dict[str, Any]:
                installs[key].update(footprint(state["venv"]))  # the same for every sample of an extra
                return {}

            cases.append(
                Case(
                    f"{name}, {kind}",
                    command,
                    env=uv_env(state["cache"]),
                    setup=setup,
                    extract=count,
                    group=kind,
                    params={"extra": EXTRAS[name] or "core", "kind": kind},
                    timeout=900,
                )
            )
        if args.quick:  # a cold warm-up would download everything once more
            measured = interleave([c for c in cases if c.group == "warm"], 1)
            measured += interleave([c for c in cases if c.group == "cold"], 1, warmup=0)
        else:
            measured = interleave(cases, args.runs)
        document = results_document(
            "install",
            measured,
            mode="quick" if args.quick else "full",
            runs=args.runs,
            distributions=("mlci", "uv"),
            load_at_start=load_at_start,
            extra={"installs": installs, "declared_extras": sorted(declared), "wheel": wheel.name},
        )
    path = write_results(args.name, document)
    for name, case in document["cases"].items():
        wall = case["wall_s"]
        figures = installs[case["params"]["extra"]]
        print(f"{name}: {wall['median']} s ({wall['min']}-{wall['max']}), {figures} {case['note']}")
    print(f"results: benchmarks/results/{path.name}; tables: python benchmarks/report.py")
    return 0


def uv_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["UV_CACHE_DIR"] = str(cache)
    env.pop("VIRTUAL_ENV", None)
    return env


if __name__ == "__main__":
    sys.exit(main())
