"""Compare this tree's engine with another commit's, back to back in one run.

    python benchmarks/compare.py 7ccafc1                  # ingestion at 1 and 8 trials, 3 rounds
    python benchmarks/compare.py 7ccafc1 --trials '' --overhead 2,200   # per-trial engine CPU

On a shared, noisy box figures from separate runs cannot be compared: a change of 20 % drowns in
the machine's own swings. Here both engines run in turns (the order alternates every round, so
a busy moment does not always hit the same side), each figure is the median of its rounds, and
the last column is new / old. The other commit is exported with ``git archive`` into a temporary
folder (nothing in this repository's worktrees or index changes); its trials are this tree's
benchmark scripts, so only the engine differs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from io import BytesIO
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_ingest, bench_overhead
from benchmarks.common import REPO, Checkout, fmt_rate, median, say


def export(revision: str, into: Path) -> Path:
    """The tree of ``revision`` written under ``into`` (``git archive``: read-only for the repository)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", revision],
                             check=True, capture_output=True).stdout
    root = into / "tree"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root


Rounds = dict[str, dict[str, list[float]]]  # figure -> side -> one value per round


def rounds(sides: dict[str, Checkout], repeats: int, trial_counts: tuple[int, ...], total_lines: int,
           overhead_counts: tuple[int, ...], work: Path) -> Rounds:
    got: Rounds = defaultdict(lambda: defaultdict(list))
    names = list(sides)
    (work / "tiny.py").write_text(bench_overhead.TINY)
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for n in trial_counts:
            for side in order:
                res = bench_ingest.run_hpotui(n, max(1, total_lines // n), sides[side])
                say(f"round {r + 1}, {n} trials, {side}: {fmt_rate(res.rate)} rows, "
                    f"{fmt_rate(res.cpu_rate)} per engine CPU-s")
                got[f"ingest rows/s, {n} trials"][side].append(res.rate)
                got[f"ingest rows per engine CPU-s, {n} trials"][side].append(res.cpu_rate)
        for n in overhead_counts:
            for side in order:
                total, _loop, cpu = bench_overhead.hpotui_seconds(work, n, f"{side}{r}x{n}", sides[side])
                say(f"round {r + 1}, {n} trivial trials, {side}: {total:.2f}s, engine CPU {cpu:.2f}s")
                got[f"{n} trivial trials: whole command, s"][side].append(total)
                got[f"{n} trivial trials: engine CPU, s"][side].append(cpu)
                got[f"{n} trivial trials: engine CPU per trial, ms"][side].append(cpu / n * 1000)
    return got


def marginal(got: Rounds, counts: tuple[int, ...], side: str) -> float:
    """Engine CPU per trial beyond the start-up: the slope between the smallest and largest study."""
    low, high = min(counts), max(counts)
    cpu = {n: median(got[f"{n} trivial trials: engine CPU, s"][side]) for n in (low, high)}
    return (cpu[high] - cpu[low]) / (high - low) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="the commit to compare with (anything `git archive` takes), or the "
                        "folder of another checkout")
    parser.add_argument("--trials", default="1,8", help="ingestion at these trial counts (empty: none)")
    parser.add_argument("--lines", type=int, default=40_000, help="metric lines per study (5 rows each)")
    parser.add_argument("--overhead", default="", help="also studies of N trivial trials, 2 at a time "
                        "(N,M: both, and the engine CPU per added trial between them)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    counts = tuple(int(x) for x in args.trials.split(",") if x)
    with tempfile.TemporaryDirectory(prefix="hpotui-compare-") as tmp:
        work = Path(tmp)
        other = Path(args.revision)
        old = Checkout.at(other if other.is_dir() else export(args.revision, work), work / "site")
        sides = {"old": old, "new": Checkout.this()}
        overhead = tuple(int(x) for x in args.overhead.split(",") if x)
        got = rounds(sides, args.repeats, counts, args.lines, overhead, work)
    print(f"| measured ({args.repeats} rounds, medians) | {args.revision} | this tree | new / old |")
    print("|---|---|---|---|")
    for figure, by_side in got.items():
        o, n = median(by_side["old"]), median(by_side["new"])
        show = fmt_rate if "rows" in figure else (lambda x: f"{x:.2f}")
        print(f"| {figure} | {show(o)} | {show(n)} | {n / o:.2f} |")
    if len(overhead) > 1:
        o, n = marginal(got, overhead, "old"), marginal(got, overhead, "new")
        print(f"| engine CPU per added trial ({min(overhead)} -> {max(overhead)} trials), ms | {o:.2f} | {n:.2f} "
              f"| {n / o:.2f} |")


if __name__ == "__main__":
    main()
