"""Benchmark 3, engine footprint: RSS and CPU of the engine minding many quiet trials.

64 trials (by default) sleep and report twice a second, as long training runs do. Once all are
running, psutil samples the engine process alone (its trials are separate processes) for a
window: peak RSS and CPU time over the window as a percentage of one core.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import PYTHON, Figure, median, say, table, trial_env, write_space

SLEEPER = r'''
import sys, time
seconds, period = float(sys.argv[1]), 0.5
end = time.monotonic() + seconds
step = 0
while time.monotonic() < end:
    time.sleep(period)
    step += 1
    print('@hpotui {"epoch": %d, "loss": %.6f, "acc": %.6f}' % (step, 1.0 / step, 1 - 1.0 / step), flush=True)
'''


def measure_once(trials: int, window_s: float) -> tuple[float, float, int]:
    """(peak RSS in MB, CPU % of one core, rows landed during the window) for one study."""
    with tempfile.TemporaryDirectory(prefix="hpotui-bench-footprint-") as tmp:
        work = Path(tmp)
        (work / "sleeper.py").write_text(SLEEPER)
        lifetime = window_s + 30  # long enough to cover start-up of every trial and the window
        space = write_space(work, name="footprint", command=f"python sleeper.py {lifetime} {{x}}", trials=trials,
                            parallel=trials)
        db = work / "h.db"
        engine = subprocess.Popen([PYTHON, "-m", "hpotui.engine.cli", "launch", str(space), "--headless", "--db", str(db),
                                   "--grace", "2"], cwd=work, env=trial_env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        proc = psutil.Process(engine.pid)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # wait until every trial runs and has reported
                time.sleep(0.5)
                if engine.poll() is not None:
                    raise RuntimeError(f"engine exited early: {engine.stderr.read().decode()[-500:]}")
                if db.exists():
                    with sqlite3.connect(db) as conn:
                        try:
                            running = conn.execute("SELECT COUNT(*) FROM trials WHERE status = 'running' "
                                                   "AND reports > 0").fetchone()[0]
                        except sqlite3.OperationalError:
                            running = 0
                    if running >= trials:
                        break
            else:
                raise RuntimeError("trials did not all start within 120 s")
            time.sleep(1.0)  # let the start-up burst settle
            rows_before = _rows(db)
            t0, wall0 = proc.cpu_times(), time.monotonic()
            peak = proc.memory_info().rss
            while time.monotonic() - wall0 < window_s:
                time.sleep(0.25)
                peak = max(peak, proc.memory_info().rss)
            t1, wall1 = proc.cpu_times(), time.monotonic()
            rows = _rows(db) - rows_before
            cpu = (t1.user + t1.system - t0.user - t0.system) / (wall1 - wall0) * 100
            return peak / 1e6, cpu, rows
        finally:
            engine.terminate()  # SIGTERM: the engine stops its trials and records them interrupted
            try:
                engine.wait(timeout=30)
            except subprocess.TimeoutExpired:
                engine.kill()


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]


def measure(trials: int, window_s: float, repeats: int) -> tuple[list[Figure], dict[str, float]]:
    rss, cpu, rows = [], [], []
    for r in range(repeats):
        say(f"footprint: {trials} sleeping trials reporting at 2 Hz, {window_s:g}s window (run {r + 1}/{repeats})")
        a, b, c = measure_once(trials, window_s)
        rss.append(a)
        cpu.append(b)
        rows.append(c)
        say(f"  RSS {a:.1f} MB, CPU {b:.2f}% of one core, {c / window_s:.0f} rows/s landed")
    peak, load = median(rss), median(cpu)
    figures = [
        Figure("3", f"engine RSS, {trials} trials reporting at 2 Hz", f"{peak:.1f} MB", "", "", "<=60 MB",
               peak <= 60),
        Figure("3", f"engine CPU, {trials} trials reporting at 2 Hz", f"{load:.2f}% of one core", "", "", "<=5%",
               load <= 5),
    ]
    return figures, {"rss_mb": peak, "cpu_percent": load, "rows_per_s": median(rows) / window_s}


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=64)
    args = parser.parse_args(argv)
    figures, _ = measure(args.trials, 8.0 if args.quick else 20.0, 1 if args.quick else 3)
    print(table(figures))
    return figures


if __name__ == "__main__":
    main()
