"""Run every hpotui benchmark and print one table: our figure, the competitor's from the same run, the ratio.

    python benchmarks/run_all.py            # the full run (repeats, medians; tens of minutes)
    python benchmarks/run_all.py --quick    # a shorter run: fewer rows, one repeat
    python benchmarks/run_all.py --only 1,3 # some benchmarks only

Competitors (optuna, mlflow, syne-tune, ray) are optional: each missing one is skipped with a
note. The table is also written to benchmarks/RESULTS.md (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_footprint, bench_ingest, bench_overhead, bench_scaling, bench_startup, bench_tui
from benchmarks.common import Figure, say, table

RESULTS = Path(__file__).with_name("RESULTS.md")


def run(quick: bool, only: set[str]) -> tuple[list[Figure], str]:
    flag = ["--quick"] if quick else []
    figures: list[Figure] = []
    scaling = ""
    steps = (("0", bench_startup.main), ("1", bench_ingest.main), ("2", bench_overhead.main),
             ("3", bench_footprint.main), ("4", bench_tui.main))
    for key, main in steps:
        if only and key not in only:
            continue
        t0 = time.monotonic()
        try:
            figures.extend(main(flag))
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            say(f"benchmark {key} failed: {exc!r}")
            figures.append(Figure(key, "benchmark failed", f"{type(exc).__name__}: {str(exc)[:120]}"))
        say(f"benchmark {key} took {time.monotonic() - t0:.0f}s")
    if not only or "5" in only:
        scaling = bench_scaling.main(flag)
    return figures, scaling


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load average {load:.1f} at the end of the run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter run: fewer rows, one repeat each")
    parser.add_argument("--only", default="", help="comma-separated benchmark numbers (0 = start-up)")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/RESULTS.md")
    args = parser.parse_args()
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    started = time.strftime("%Y-%m-%d %H:%M")
    figures, scaling = run(args.quick, only)
    text = table(figures) + ("\n\n### Scaling\n\n" + scaling if scaling else "")
    print("\n" + text)
    if not args.no_write:
        mode = "--quick" if args.quick else "full"
        RESULTS.write_text(f"# hpotui benchmark results\n\n`python benchmarks/run_all.py{' --quick' if args.quick else ''}`"
                           f" ({mode} run, {started}; {machine()}).\n\n{text}\n")
        say(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
