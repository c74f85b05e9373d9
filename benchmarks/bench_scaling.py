"""Benchmark 5, scaling: how ingestion, per-trial overhead and footprint grow with trials and rows.

Reuses the measurements of benchmarks 1-3 at several sizes (one run each: a trend, not a
headline) and prints one small table per benchmark.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_footprint, bench_ingest, bench_overhead
from benchmarks.common import fmt_ms, fmt_rate, say


def ingest_rows(trial_counts: tuple[int, ...], lines: tuple[int, ...]) -> list[str]:
    out = ["| trials | rows | rows/s (wall) | rows per engine CPU-s | visible p50 / p99 |", "|---|---|---|---|---|"]
    for n in trial_counts:
        for total in lines:
            say(f"scaling/ingest: {n} trials, {total} lines")
            r = bench_ingest.run_hpotui(n, max(1, total // n))
            out.append(f"| {n} | {r.rows:,} | {fmt_rate(r.rate)} | {fmt_rate(r.cpu_rate)} | "
                       f"{fmt_ms(r.p50)} / {fmt_ms(r.p99)} |")
    return out


def overhead_rows(trial_counts: tuple[int, ...]) -> list[str]:
    out = ["| trials (2 at a time) | xargs floor | hpotui | ratio | engine CPU per trial |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="hpotui-bench-scaling-") as tmp:
        work = Path(tmp)
        (work / "tiny.py").write_text(bench_overhead.TINY)
        for i, n in enumerate(trial_counts):
            say(f"scaling/overhead: {n} trials")
            floor = bench_overhead.floor_seconds(work / "tiny.py", n)
            total, _, cpu = bench_overhead.hpotui_seconds(work, n, i)
            out.append(f"| {n} | {floor:.2f}s | {total:.2f}s | {total / floor:.2f}x | {cpu / n * 1000:.1f} ms |")
    return out


def footprint_rows(trial_counts: tuple[int, ...], window_s: float) -> list[str]:
    out = ["| sleeping trials (2 Hz) | engine RSS | engine CPU (% of one core) | rows/s landed |", "|---|---|---|---|"]
    for n in trial_counts:
        _, m = bench_footprint.measure(n, window_s, 1)
        out.append(f"| {n} | {m['rss_mb']:.1f} MB | {m['cpu_percent']:.2f}% | {m['rows_per_s']:.0f} |")
    return out


def measure(quick: bool) -> str:
    if quick:
        parts = [ingest_rows((1, 32), (20_000,)), overhead_rows((30, 100)), footprint_rows((16, 64), 6.0)]
    else:
        parts = [ingest_rows((1, 8, 32, 128), (50_000, 200_000)), overhead_rows((50, 200, 800)),
                 footprint_rows((16, 64, 128), 12.0)]
    titles = ("Ingestion (5.1)", "Per-trial overhead (5.2)", "Engine footprint (5.3)")
    return "\n\n".join(f"**{t}**\n\n" + "\n".join(rows) for t, rows in zip(titles, parts))


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    text = measure(args.quick)
    print(text)
    return text


if __name__ == "__main__":
    main()
