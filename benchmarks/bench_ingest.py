"""Benchmark 1, ingestion: N trials flooding metric lines through the real engine into SQLite.

Each trial prints ``@hpotui`` lines as fast as Python can, one write per line (as a trainer with
``flush=True`` does), each carrying the wall time it was printed at (``sent``). A reader in this
process polls the database and notes when every ``sent`` row becomes visible: that is the
report-to-visible latency a TUI or ``hpotui status`` sees. Rows/s is every metric row landed
over the span from the first print to the last row visible, so engine start-up is not counted
(and neither is the competitors' import). Competitors report the same kind of values one call
each, from the same number of processes, for a capped time (at ~640/s Optuna would need minutes
for our row counts): their rate is steady, so the cap changes the run time, not the figure.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (PYTHON, Checkout, Figure, fmt_ms, fmt_rate, fmt_ratio, has_module, median, percentile,
                               say, write_space)

FLOOD = r'''
import sys, time
n = int(sys.argv[1])
write, now = sys.stdout.write, time.time
for i in range(n):
    loss = 1.0 / (i + 1)
    write('@hpotui {"epoch": %d, "sent": %.6f, "train_loss": %.6f, "val_loss": %.6f, "train_acc": %.6f, '
          '"val_acc": %.6f}\n' % (i + 1, now(), loss, loss * 1.1, 1 - loss, 0.95 - loss))
'''
ROWS_PER_LINE = 5  # a line shaped like a trainer's: 4 metrics and the timestamp (the epoch is the step)
POLL_S = 0.005


@dataclass(frozen=True)
class IngestResult:
    trials: int
    rows: int
    seconds: float
    p50: float
    p99: float
    cpu_s: float = math.nan  # CPU seconds the engine process itself spent (trials not counted)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.nan

    @property
    def cpu_rate(self) -> float:
        """Rows per CPU-second of the engine: what one free core would sustain (robust to a busy box)."""
        return self.rows / self.cpu_s if self.cpu_s > 0 else math.nan


class Watch:
    """A reader polling the database while the engine runs: the rows it sees land, when, and the
    engine's own CPU time (its trials are children, not counted)."""

    def __init__(self, db: Path, pid: int) -> None:
        self.db, self.process = db, psutil.Process(pid)
        self.conn: sqlite3.Connection | None = None
        self.last_id, self.rows = 0, 0
        self.first_sent, self.last_visible = math.inf, 0.0
        self.latencies: list[float] = []
        self.cpu_s, self.cpu_base = math.nan, math.nan  # the base is taken once the engine has started (imports done)

    def poll(self) -> None:
        try:
            times = self.process.cpu_times()
            self.cpu_s = times.user + times.system
        except psutil.Error:
            pass  # exited: the last reading stands (only its final summary is missed)
        if self.conn is None and self.db.exists():
            self.conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30, isolation_level=None)
        if self.conn is None:
            return
        got = self._query("SELECT id, name, value FROM metrics WHERE id > ? ORDER BY id", (self.last_id,))
        if math.isnan(self.cpu_base) and not got:  # no row yet: once a trial exists, the engine has started
            count = self._query("SELECT COUNT(*) FROM trials", ())
            if count and count[0][0]:
                self.cpu_base = self.cpu_s
        seen = time.time()
        if got:
            self.last_id = got[-1][0]
            self.rows += len(got)
            self.last_visible = seen
            for _, name, value in got:
                if name == "sent":
                    self.latencies.append(seen - value)
                    self.first_sent = min(self.first_sent, value)

    def _query(self, sql: str, args: tuple) -> list:
        assert self.conn is not None
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []  # schema not created yet

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def run_hpotui(trials: int, lines_per_trial: int, engine: Checkout | None = None) -> IngestResult:
    """One study of ``trials`` flooding trials, all at once; returns what a polling reader saw.

    ``engine``: another checkout's engine (``benchmarks/compare.py``), else this one's.
    """
    engine = engine or Checkout.this()
    with tempfile.TemporaryDirectory(prefix="hpotui-bench-ingest-") as tmp:
        work = Path(tmp)
        (work / "flood.py").write_text(FLOOD)
        space = write_space(work, name="ingest", command=f"python flood.py {lines_per_trial} {{x}}",
                            trials=trials, parallel=trials, metric="val_acc", mode="max")
        db = work / "h.db"
        proc = subprocess.Popen([*engine.cli, "launch", str(space), "--headless", "--db", str(db)],
                                cwd=work, env=engine.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        expected = trials * lines_per_trial * ROWS_PER_LINE
        watch = Watch(db, proc.pid)
        try:
            while True:
                finished = proc.poll() is not None
                watch.poll()
                if watch.rows >= expected or finished:
                    break
                time.sleep(POLL_S)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
            watch.close()
        if proc.returncode != 0:
            raise RuntimeError(f"engine exited {proc.returncode}: {_stderr_tail(proc)}")
        if watch.rows < expected:
            raise RuntimeError(f"only {watch.rows} of {expected} rows landed")
        return IngestResult(trials, watch.rows, watch.last_visible - watch.first_sent, percentile(watch.latencies, 50),
                            percentile(watch.latencies, 99), watch.cpu_s - watch.cpu_base)


def _stderr_tail(proc: subprocess.Popen[bytes]) -> str:
    return proc.stderr.read().decode()[-500:] if proc.stderr is not None else ""


def run_competitor(kind: str, processes: int, values_per_process: int, seconds: float) -> IngestResult | None:
    """The same number of reporting processes through ``kind``; None (with a note) when not installed."""
    module = "mlflow" if kind == "mlflow" else "optuna"
    if not has_module(module):
        say(f"  {kind}: skipped ({module} is not installed; `pip install {module}` to compare)")
        return None
    script = str(Path(__file__).with_name("competitors.py"))
    with tempfile.TemporaryDirectory(prefix=f"hpotui-bench-{kind}-") as tmp:
        target = str(Path(tmp) / ("journal.log" if kind == "optuna-journal" else "c.db"))
        go = Path(tmp) / "go"
        subprocess.run([PYTHON, script, "prepare", kind, target], check=True, capture_output=True, timeout=300)
        workers = [subprocess.Popen([PYTHON, script, "worker", kind, target, "--values", str(values_per_process),
                                     "--seconds", str(seconds), "--go", str(go)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(processes)]
        try:
            for w in workers:
                if w.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                    raise RuntimeError(f"{kind} worker failed: {w.stderr.read()[-800:]}")  # type: ignore[union-attr]
            go.touch()
            outputs = [json.loads(w.stdout.readline()) for w in workers]  # type: ignore[union-attr]
        finally:
            for w in workers:
                if w.poll() is None:
                    w.wait(timeout=seconds + 120)
        count = sum(o["count"] for o in outputs)
        span = max(o["end"] for o in outputs) - min(o["start"] for o in outputs)
        durations = [d for o in outputs for d in o["durations"]]
        return IngestResult(processes, count, span, percentile(durations, 50), percentile(durations, 99))


COMPETITOR_LABELS = (("optuna-sqlite", "Optuna RDB/SQLite"), ("optuna-journal", "Optuna JournalStorage"),
                     ("mlflow", "MLflow log_metric/SQLite"))


def run_competitors(n: int, lines: int, competitors: tuple[str, ...], seconds: float,
                    max_processes: int) -> dict[str, IngestResult | None]:
    """Each competitor with ``n`` reporting processes (None: skipped, with the reason said)."""
    theirs: dict[str, IngestResult | None] = {}
    for kind in competitors:
        if n > max_processes:
            say(f"  {kind}: skipped at {n} processes in a quick run (importing it {n} times takes minutes)")
            theirs[kind] = None
            continue
        say(f"  {kind}: {n} processes for up to {seconds:g}s")
        try:
            theirs[kind] = run_competitor(kind, n, lines * ROWS_PER_LINE, seconds)
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
            say(f"  {kind}: skipped ({exc})")
            theirs[kind] = None
        t = theirs[kind]
        if t is not None:
            say(f"    {fmt_rate(t.rate)} values, p50 {fmt_ms(t.p50)}, p99 {fmt_ms(t.p99)}")
    return theirs


def rate_figures(n: int, ours: IngestResult, rate: float, theirs: dict[str, IngestResult | None],
                 competitors: tuple[str, ...]) -> list[Figure]:
    """Our rate beside each competitor's; the first row carries the target and whether it is met."""
    sqlite = theirs.get("optuna-sqlite")
    sqlite_rate = sqlite.rate if sqlite else math.nan
    figures: list[Figure] = []
    for kind, label in COMPETITOR_LABELS:
        if kind not in competitors:
            continue
        first = not figures
        t = theirs.get(kind)
        comp = f"{label}: {fmt_rate(t.rate)}" if t else f"{label}: skipped (see notes)"
        target, met = "", None
        if first:
            target = ">=100k/s, >=150x Optuna/SQLite"
            if not math.isnan(rate):
                met = rate >= 100_000 and (math.isnan(sqlite_rate) or rate / sqlite_rate >= 150)
        figures.append(Figure("1", f"ingest rows/s, {n} trials ({ours.rows:,} rows)" if first else "",
                              fmt_rate(rate) if first else "", comp, fmt_ratio(rate, t.rate if t else math.nan),
                              target, met))
    return figures


def measure(trial_counts: tuple[int, ...], total_lines: int, repeats: int, competitor_seconds: float,
            competitors: tuple[str, ...] = ("optuna-sqlite", "optuna-journal", "mlflow"),
            competitor_max_processes: int = 1024) -> list[Figure]:
    figures: list[Figure] = []
    for n in trial_counts:
        lines = max(1, total_lines // n)
        runs = []
        for r in range(repeats):
            say(f"ingest: {n} trials x {lines} lines (run {r + 1}/{repeats})")
            runs.append(run_hpotui(n, lines))
        ours = sorted(runs, key=lambda x: x.rate)[len(runs) // 2]  # the median run, whole
        rate = median([x.rate for x in runs])
        cpu_rate = median([x.cpu_rate for x in runs])
        say(f"  hpotui: {fmt_rate(rate)} rows, p50 {fmt_ms(ours.p50)}, p99 {fmt_ms(ours.p99)}, "
            f"{fmt_rate(cpu_rate)} rows per engine CPU-second")
        theirs = run_competitors(n, lines, competitors, competitor_seconds, competitor_max_processes)
        figures += rate_figures(n, ours, rate, theirs, competitors)
        lat_comp = "; ".join(f"{k.split('-')[-1] if k.startswith('optuna') else k} {fmt_ms(t.p50)}/{fmt_ms(t.p99)}"
                             for k, t in theirs.items() if t)
        figures.append(Figure("1", f"report-to-visible p50/p99, {n} trials", f"{fmt_ms(ours.p50)} / {fmt_ms(ours.p99)}",
                              f"call time {lat_comp}" if lat_comp else ""))
    return figures


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows, one repeat")
    parser.add_argument("--trials", default="1,8,32")
    parser.add_argument("--no-competitors", action="store_true")
    args = parser.parse_args(argv)
    counts = tuple(int(x) for x in args.trials.split(","))
    competitors = () if args.no_competitors else ("optuna-sqlite", "optuna-journal", "mlflow")
    if args.quick:
        figures = measure(counts, total_lines=40_000, repeats=1, competitor_seconds=2.0, competitors=competitors,
                          competitor_max_processes=8)
    else:
        figures = measure(counts, total_lines=100_000, repeats=3, competitor_seconds=5.0, competitors=competitors)
    from benchmarks.common import table

    print(table(figures))
    return figures


if __name__ == "__main__":
    main()
