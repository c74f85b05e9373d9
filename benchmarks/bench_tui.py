"""Benchmark 4, the TUI at scale: a 10,000-trial, 5,000,000-row study file.

The file comes from ``tests/tui/bigdb.py`` (the TUI's own deterministic generator) and is cached
between runs. The interface runs headless (``App.run_test``) in a child process so its RSS and
CPU are its own: time to open the study screen with the table and curves filled, time per full
refresh, CPU while nothing changes, and CPU while a separate writer process lands the reports of
50 live trials once a second (as an engine would), then RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import PYTHON, REPO, Figure, has_module, median, say, table, trial_env

CACHE = Path(os.environ.get("HPOTUI_BENCH_CACHE", Path(tempfile.gettempdir()) / "hpotui-bench"))

WRITER = r'''
import sqlite3, sys, time
db, seconds = sys.argv[1], float(sys.argv[2])
conn = sqlite3.connect(db, timeout=30, isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
live = [r[0] for r in conn.execute("SELECT id FROM trials WHERE status = 'running' ORDER BY id")]
step = conn.execute("SELECT COALESCE(MAX(step), 0) FROM metrics WHERE trial_id = ?", (live[0],)).fetchone()[0]
end = time.monotonic() + seconds
while time.monotonic() < end:
    step += 1
    now = time.time()
    rows = [(t, step, name, 1.0 / step, now) for t in live for name in ("train_loss", "val_loss", "train_acc", "val_acc")]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO metrics (trial_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)", rows)
    conn.executemany("UPDATE trials SET reports = reports + 1, last_step = ? WHERE id = ?", [(step, t) for t in live])
    conn.execute("COMMIT")
    time.sleep(1.0)
'''


def big_db(trials: int, steps: int) -> Path:
    """The generated study file, made once per size and kept in the cache directory."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"big-{trials}x{steps}.db"
    if path.exists():
        with sqlite3.connect(path) as conn:
            (rows,) = conn.execute("SELECT COUNT(*) FROM metrics").fetchone()
        if rows >= trials * steps * 4 * 0.5:  # the generator prunes some trials early
            return path
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    say(f"tui: generating {path} ({trials} trials x {steps} steps; takes a while, once)")
    code = ("import sys; from tests.tui.bigdb import make_study_db; "
            f"make_study_db(sys.argv[1], name='big', trials={trials}, steps={steps}, running=50, queued=0, gpus=8)")
    subprocess.run([PYTHON, "-c", code, str(path)], cwd=REPO, env=trial_env(), check=True)
    return path


async def _measure(db: Path, idle_s: float, live_s: float, refreshes: int) -> dict:
    import psutil

    from hpotui.tui.app import HpotuiApp
    from hpotui.tui.screens.study import StudyScreen

    me = psutil.Process()
    work = Path(tempfile.mkdtemp(prefix="hpotui-bench-tui-"))
    live_db = work / "big.db"
    subprocess.run(["cp", str(db), str(live_db)], check=True)  # the live phase writes: never into the cache
    result: dict = {}
    start = time.perf_counter()
    app = HpotuiApp(str(live_db), "big")
    async with app.run_test(size=(200, 60)) as pilot:
        async def settle(timeout: float = 120) -> StudyScreen:
            deadline = time.perf_counter() + timeout
            while time.perf_counter() < deadline:
                screen = app.screen
                if isinstance(screen, StudyScreen) and screen.view is not None and not screen._busy \
                        and screen.table.row_count:
                    return screen
                await asyncio.sleep(0.005)
            raise RuntimeError("the study screen did not load")

        screen = await settle()
        result["open_s"] = time.perf_counter() - start
        result["launch_s"] = time.time() - me.create_time()  # process start, imports included
        result["rows_shown"] = screen.table.row_count
        times = []
        for _ in range(refreshes):
            t0 = time.perf_counter()
            screen.request(table=True, detail=True)
            await asyncio.sleep(0)
            await settle()
            times.append(time.perf_counter() - t0)
        result["refresh_s"] = median(times)
        await pilot.pause(1.5)
        c0, w0 = me.cpu_times(), time.perf_counter()
        await asyncio.sleep(idle_s)
        c1, w1 = me.cpu_times(), time.perf_counter()
        result["idle_cpu"] = (c1.user + c1.system - c0.user - c0.system) / (w1 - w0) * 100
        writer = subprocess.Popen([PYTHON, "-c", WRITER, str(live_db), str(live_s + 2)])
        await asyncio.sleep(1.0)
        c0, w0 = me.cpu_times(), time.perf_counter()
        await asyncio.sleep(live_s)
        c1, w1 = me.cpu_times(), time.perf_counter()
        result["live_cpu"] = (c1.user + c1.system - c0.user - c0.system) / (w1 - w0) * 100
        writer.wait(timeout=60)
        result["rss_mb"] = me.memory_info().rss / 1e6
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return result


def child(db: str, idle_s: float, live_s: float, refreshes: int) -> None:
    result = asyncio.run(_measure(Path(db), idle_s, live_s, refreshes))
    print("RESULT " + json.dumps(result), flush=True)


def measure(trials: int, steps: int, idle_s: float, live_s: float, refreshes: int, repeats: int) -> list[Figure]:
    if not (has_module("textual") and (REPO / "tui" / "app.py").exists()):
        say("tui: skipped (tui.app or textual is not available)")
        return [Figure("4", "TUI at scale", "skipped: no tui.app")]
    db = big_db(trials, steps)
    with sqlite3.connect(db) as conn:
        (rows,) = conn.execute("SELECT COUNT(*) FROM metrics").fetchone()
        (count,) = conn.execute("SELECT COUNT(*) FROM trials").fetchone()
    runs = []
    for r in range(repeats):
        say(f"tui: {count:,} trials, {rows:,} metric rows (run {r + 1}/{repeats})")
        done = subprocess.run([PYTHON, __file__, "--child", str(db), str(idle_s), str(live_s), str(refreshes)],
                              cwd=REPO, env=trial_env(), capture_output=True, text=True, timeout=900)
        lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"TUI benchmark failed: {done.stderr[-1500:]}")
        runs.append(json.loads(lines[-1][len("RESULT "):]))
        say("  " + ", ".join(f"{k} {v:.3g}" for k, v in runs[-1].items()))
    m = {k: median([r[k] for r in runs]) for k in runs[0]}
    scale = f"{count:,} trials / {rows / 1e6:.1f}M rows"
    return [
        Figure("4", f"open the study screen ({scale})", f"{m['open_s']:.2f} s", "", "", "<1 s", m["open_s"] < 1),
        Figure("4", "process start to study screen (Python + Textual imports included)", f"{m['launch_s']:.2f} s"),
        Figure("4", "one full refresh (table + curves)", f"{m['refresh_s'] * 1000:.0f} ms"),
        Figure("4", "TUI CPU, nothing changing", f"{m['idle_cpu']:.2f}%", "", "", "<=1%", m["idle_cpu"] <= 1),
        Figure("4", "TUI CPU, 50 live trials reporting at 1 Hz", f"{m['live_cpu']:.2f}%", "", "", "<=10%",
               m["live_cpu"] <= 10),
        Figure("4", "TUI RSS", f"{m['rss_mb']:.0f} MB"),
    ]


def main(argv: list[str] | None = None) -> list[Figure]:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1], float(argv[2]), float(argv[3]), int(argv[4]))
        return []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1,000-trial file and shorter windows")
    args = parser.parse_args(argv)
    if args.quick:
        figures = measure(1_000, 125, 5.0, 6.0, 3, 1)
    else:
        figures = measure(10_000, 125, 10.0, 15.0, 5, 3)
    print(table(figures))
    return figures


if __name__ == "__main__":
    main()
