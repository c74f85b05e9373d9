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
NOTES = """
### How to read it

- **0** start-up: `hpotui status` against a bare `python -c pass`, and which heavy modules it loads.
- **1** ingestion: trials print trainer-shaped lines (4 metrics + a timestamp = 5 rows) as fast as
  Python can, one write per line; rows/s is from the first print to the last row visible to a
  reader polling the file; latency is print -> visible to that reader. "rows per engine CPU-s" is
  the same work divided by the engine's own CPU time: what one free core sustains, and the figure
  that stays put on a busy machine. Competitors report one value per call from the same number of
  processes for a capped time; their latency is the call's duration (visible when it returns).
- **2** per-trial overhead: the whole `hpotui launch --headless` command (start-up, database, every
  trial, final summary) over `xargs -P 2` running the same trial processes. Syne Tune's ratio is
  over the floor of its own trial script (which imports its reporter); Ray Tune runs functions in
  its own workers, so it is compared with our script's floor.
- **3** footprint: psutil on the engine process alone once all trials run.
- **4** TUI: headless `App.run_test` in a child process on `tests/tui/bigdb.py`'s file.
- The machine is shared and noisy: wall-clock ratios move by tens of percent between runs (the
  floor itself does); CPU-time figures are the stable ones. Full runs repeat and report medians.
"""


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
                           f" ({mode} run, {started}; {machine()}).\n\n{text}\n{NOTES}")
        say(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
