"""The reading hot path in this process: microseconds per flood line, by stage.

    python benchmarks/bench_reading.py [--lines 20000] [--repeats 7]

Benchmark 1 (``bench_ingest.py``) times the whole engine; on a shared 2-core box its figures move
by tens of percent between runs, too much to see a change of a few microseconds a line. This one
feeds the same trainer-shaped lines (``bench_ingest.FLOOD``'s) through :class:`TrialLogReader`
over a real log file into a real :class:`Store` (buffered, never flushed), with a ``decide`` that
does nothing, so only reading is timed: CPU time, the best of ``--repeats`` runs (the least
disturbed one). The stages are split by leaving one out at a time: what a line costs without
the store's buffering, without recording the report at all, without parsing it.

Another checkout is timed by putting its package first on PYTHONPATH (for the package-dir layout,
a folder holding its ``hpotui/*.py`` and links to its ``engine`` and ``tui``, as
``common.Checkout.at`` lays out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

if __package__ in (None, ""):  # appended: an ``hpotui`` earlier on PYTHONPATH (another checkout's) is the one timed
    sys.path.append(str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_space
from hpotui.engine.database.store import Store
from hpotui.engine.executors.base import TrialProcess
from hpotui.engine.reading import trial_logs
from hpotui.engine.reading.metricline import parse_metric_line
from hpotui.engine.space_file.space import load_space


def flood_text(lines: int) -> str:
    """What ``bench_ingest.FLOOD`` prints for ``lines`` epochs."""
    out = []
    for i in range(lines):
        loss = 1.0 / (i + 1)
        out.append('@hpotui {"epoch": %d, "sent": %.6f, "train_loss": %.6f, "val_loss": %.6f, "train_acc": %.6f, '
                   '"val_acc": %.6f}\n' % (i + 1, time.time(), loss, loss * 1.1, 1 - loss, 0.95 - loss))
    return "".join(out)


def drain_once(work: Path, text: str) -> float:
    """CPU seconds of one trial's final drain (and settle) of ``text``, on a fresh store."""
    space = load_space(write_space(work, name="read", command="python x.py {x}", trials=1, parallel=1,
                                   metric="val_acc", mode="max"))
    store = Store(work / "h.db")
    study = store.create_study(name="read", objective_metric="val_acc", objective_mode="max",
                               space_file="read.yaml", space_yaml="", space_json="{}", parent_id=None,
                               max_parallel=1, headless=True)
    out, err = work / "stdout.log", work / "stderr.log"
    out.write_text(text)
    err.write_text("")
    row = store.add_trial(study_id=study.id, params={"x": 0.5}, argv=["x"], trial_dir=str(work),
                          stdout_path=str(out), stderr_path=str(err), sample_index=0, rerun_of=None, seed=None)
    assert row is not None
    proc = TrialProcess(trial_id=row.id, pid=0, pgid=0, create_time=0.0, stdout_path=out, stderr_path=err)
    reader = trial_logs.TrialLogReader(store, space, study.id, lambda live, report: None, lambda: None)
    live = trial_logs.follow(store, space, row, proc, out, err)
    start = time.process_time()
    reader.drain(live, final=True)
    reader.settle([live], final=True)
    spent = time.process_time() - start
    store.close()  # nothing flushed: the rows stay in the buffer and are dropped
    return spent


def best_per_line(text: str, lines: int, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="hpotui-bench-reading-") as tmp:
            runs.append(drain_once(Path(tmp), text))
    return min(runs) / lines * 1e6


@contextmanager
def without(owner: Any, name: str, stand_in: Callable[..., Any]) -> Iterator[None]:
    """``owner.name`` replaced by a stand-in that does nothing, for one measurement."""
    original = getattr(owner, name)
    setattr(owner, name, stand_in)
    try:
        yield
    finally:
        setattr(owner, name, original)


def parse_per_line(text: str, repeats: int) -> float:
    lines = text.splitlines()
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        for i, line in enumerate(lines):
            parse_metric_line(line, i, "epoch", 64 * 1024)
        runs.append(time.process_time() - start)
    return min(runs) / len(lines) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    text = flood_text(args.lines)
    full = best_per_line(text, args.lines, args.repeats)
    with without(Store, "buffer_metrics", lambda *a: None):
        unbuffered = best_per_line(text, args.lines, args.repeats)
        with without(trial_logs.TrialLogReader, "_handle_report", lambda *a: None):
            unrecorded = best_per_line(text, args.lines, args.repeats)
            with without(trial_logs, "parse_metric_line", lambda *a: None):
                unparsed = best_per_line(text, args.lines, args.repeats)
    print(f"engine timed: {Path(trial_logs.__file__).parent}")
    print(f"| stage (us per line, best of {args.repeats}, {args.lines:,} lines) | us |")
    print("|---|---|")
    print(f"| whole drain (log tail, line, parse, report, store buffer) | {full:.2f} |")
    print(f"| store: buffer_metrics | {full - unbuffered:.2f} |")
    print(f"| reader: _handle_report (best, curve, open step; decide a no-op) | {unbuffered - unrecorded:.2f} |")
    print(f"| metricline: parse_metric_line (in the drain) | {unrecorded - unparsed:.2f} |")
    print(f"| log tail, drain loop, _handle_line | {unparsed:.2f} |")
    print(f"| parse_metric_line alone, same lines | {parse_per_line(text, args.repeats):.2f} |")


if __name__ == "__main__":
    main()
