"""Measure the interface on a big study: open time, CPU idle and under a 1 Hz writer, RSS.

Not a test (pytest does not collect it); run by hand, it prints one JSON line:

    python -m tests.tui.bench_tui /tmp/big.db     # makes the file with bigdb.make_big_db if missing

* open: Pilot, headless, from App start until the study screen shows its table and curves;
* CPU and RSS: the real ``hpotui`` in a private tmux server at 160x50, sampled with psutil,
  first with nobody writing (idle), then while a writer plays an engine with 50 running trials
  (one transaction per second: 4 metric rows per trial, progress, heartbeat).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from tests.tui.bigdb import make_big_db
from hpotui.tui.app import HpotuiApp
from hpotui.tui.screens.study import StudyScreen


async def open_time(db: Path) -> float:
    start = time.perf_counter()
    app = HpotuiApp(str(db), "big")
    async with app.run_test(size=(160, 50)) as pilot:
        while True:
            screen = app.screen
            if isinstance(screen, StudyScreen) and screen.view is not None and not screen._busy \
                    and "train_loss" in str(screen.query_one("#loss-chart").render()):
                break
            await pilot.pause(0.01)
        elapsed = time.perf_counter() - start
        await pilot.press("end")  # jump to the last row: scrolling must stay instant
        await pilot.pause(0.2)
    return elapsed


def writer(db: Path, stop: threading.Event) -> None:
    """An engine's write pattern at 1 Hz for the 50 running trials."""
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    me = psutil.Process()
    conn.execute("UPDATE studies SET engine_pid = ?, engine_create_time = ?, engine_host = ?",  # the engine: us
                 (me.pid, me.create_time(), socket.gethostname()))
    running = [r[0] for r in conn.execute("SELECT id FROM trials WHERE status = 'running'")]
    step = {tid: conn.execute("SELECT last_step FROM trials WHERE id = ?", (tid,)).fetchone()[0] or 0
            for tid in running}
    while not stop.wait(1.0):
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        for tid in running:
            step[tid] += 1
            s = step[tid]
            conn.executemany("INSERT INTO metrics (trial_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                             [(tid, s, n, 1.0 / s, now) for n in ("train_loss", "val_loss", "train_acc", "val_acc")])
            conn.execute("UPDATE trials SET last_step = ?, reports = reports + 1 WHERE id = ?", (s, tid))
        conn.execute("UPDATE studies SET engine_heartbeat = ?", (now,))
        conn.execute("COMMIT")
    conn.close()


def tui_process(sock: str) -> psutil.Process:
    pane_pid = int(subprocess.run(["tmux", "-L", sock, "display-message", "-p", "-t", "b", "#{pane_pid}"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    shell = psutil.Process(pane_pid)
    if "python" in shell.name():
        return shell
    for _ in range(100):
        kids = [p for p in shell.children(recursive=True) if "python" in p.name()]
        if kids:
            return kids[0]
        time.sleep(0.1)
    raise RuntimeError("the interface did not start")


def cpu_over(proc: psutil.Process, seconds: float) -> float:
    start = proc.cpu_times()
    time.sleep(seconds)
    end = proc.cpu_times()
    return 100.0 * ((end.user - start.user) + (end.system - start.system)) / seconds


def main() -> None:
    db = Path(sys.argv[1] if len(sys.argv) > 1 else "big.db")
    if not db.exists():
        make_big_db(db)
    result: dict[str, float] = {"open_s": round(asyncio.run(open_time(db)), 2)}
    sock = f"hpotui-bench-{os.getpid()}"
    cmd = f"{sys.executable} -m hpotui.engine.cli --db {db.resolve()}"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", "b", "-x", "160", "-y", "50", cmd],
                   check=True, env=env)
    try:
        proc = tui_process(sock)
        time.sleep(3)
        subprocess.run(["tmux", "-L", sock, "send-keys", "-t", "b", "Enter"], check=True)
        time.sleep(8)  # the study screen opens and settles
        result["cpu_idle_percent"] = round(cpu_over(proc, 20), 2)
        stop = threading.Event()
        thread = threading.Thread(target=writer, args=(db, stop))
        thread.start()
        time.sleep(3)
        result["cpu_1hz_50_running_percent"] = round(cpu_over(proc, 30), 2)
        stop.set()
        thread.join()
        result["rss_mib"] = round(proc.memory_info().rss / 2**20, 1)
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
