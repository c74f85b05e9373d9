"""Deterministic study databases for the TUI's tests, snapshots and benchmarks.

``make_study_db`` writes a study through the real :class:`engine.store.Store` schema with fixed
times (so run times, ETAs and snapshots never move) and every kind of trial the screens show:
running (on GPUs), completed, pruned at a rung (with its 'pruned' event), diverged with a NaN
flag, failed, queued. ``make_big_db`` is the same at benchmark scale: 10,000 trials with four
metrics over up to 198 steps (pruned and failed trials stop early) = about 5,000,000 metric rows.

    python -m tests.tui.bigdb /tmp/big.db            # the 10,000-trial benchmark file
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

from hpotui.engine.store import Store

FIXED_NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: "now" for every generated file
STEP_SECONDS = 2.0
SPACE_YAML = """name: {name}
command: python train.py --lr {{lr}} --dropout {{dropout}} --width {{width}} --optimizer {{optimizer}}
objective: {{metric: val_acc, mode: max}}
search: {{algorithm: random, seed: 0}}
budget: {{max_trials: {max_trials}, max_parallel: {parallel}}}
scheduler: {{type: asha, max_resource: {steps}, reduction_factor: 3}}
space:
  lr: {{type: loguniform, low: 1e-4, high: 1}}
  dropout: {{type: uniform, low: 0.0, high: 0.5}}
  width: {{type: int, low: 32, high: 512, log: true}}
  optimizer: {{type: choice, values: [sgd, adam]}}
"""
METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")


def _status_for(i: int, n: int, running: int, rng: random.Random) -> str:
    if i >= n - running:
        return "running"
    r = i % 10
    return {0: "completed", 1: "completed", 2: "pruned", 3: "pruned", 4: "pruned", 5: "completed",
            6: "diverged" if i % 20 == 6 else "pruned", 7: "failed" if i % 30 == 7 else "completed",
            8: "pruned", 9: "stopped" if i % 40 == 9 else "completed"}[r]


def make_study_db(path: str | Path, *, name: str = "demo", trials: int = 12, steps: int = 8, running: int = 2,
                  queued: int = 1, gpus: int = 2, seed: int = 0, now: float = FIXED_NOW,
                  finished: bool = False) -> Path:
    """Write a study with ``trials`` trials (``running`` of them running) and ``len(METRICS)`` x steps rows each."""
    path = Path(path)
    store = Store(path)
    rng = random.Random(seed)
    parallel = max(1, running)
    study = store.create_study(name=name, objective_metric="val_acc", objective_mode="max",
                               space_file=str(path.parent / f"{name}.yaml"),
                               space_yaml=SPACE_YAML.format(name=name, max_trials=trials + queued + 4,
                                                            parallel=parallel, steps=steps),
                               space_json="{}", parent_id=None, max_parallel=parallel, headless=True)
    start = now - (trials + 2) * steps * STEP_SECONDS / parallel
    conn = store.conn
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE studies SET status = ?, created_at = ?, started_at = ?, finished_at = ? WHERE id = ?",
                 ("completed" if finished else "running", start, start, now if finished else None, study.id))
    trial_rows, metric_rows, events = [], [], []
    live = 0 if finished else running
    total = trials + (0 if finished else queued)
    for i in range(total):
        number = i + 1
        status = "queued" if i >= trials else _status_for(i, trials, live, rng)
        params = {"lr": round(10 ** rng.uniform(-4, 0), 6), "dropout": round(rng.uniform(0, 0.5), 3),
                  "width": int(2 ** rng.uniform(5, 9)), "optimizer": rng.choice(["sgd", "adam"])}
        quality = 1.0 - abs(math.log10(params["lr"]) + 2) / 3  # best near lr = 1e-2
        if status == "queued":
            n_steps = 0
        elif status == "running":
            n_steps = max(1, steps // 2 + i % 3)
        elif status == "pruned":
            n_steps = max(1, steps // 3)
        elif status in ("diverged", "failed"):
            n_steps = max(1, steps // 4)
        else:
            n_steps = steps
        n_steps = min(n_steps, steps)
        started = None if status == "queued" else (now - n_steps * STEP_SECONDS - 3.0 if status == "running"
                                                   else start + i * steps * STEP_SECONDS / parallel)
        ended = None if status in ("queued", "running") else started + n_steps * STEP_SECONDS + 3.0
        best = None
        best_step = None
        trial_id = i + 1
        for step in range(1, n_steps + 1):
            at = started + 3.0 + step * STEP_SECONDS
            progress = 1 - math.exp(-step / max(1, steps / 3))
            noise = rng.uniform(-0.01, 0.01)
            acc = 0.1 + 0.85 * quality * progress + noise
            loss = 2.3 * (1 - 0.9 * quality * progress) + noise
            values = {"train_loss": loss * 0.9, "val_loss": loss, "train_acc": min(1.0, acc * 1.03), "val_acc": acc}
            if status == "diverged" and step == n_steps:
                values = {k: None for k in values}
            for metric in METRICS:
                metric_rows.append((trial_id, float(step), metric, values[metric], at))
            if values["val_acc"] is not None and (best is None or values["val_acc"] > best):
                best, best_step = values["val_acc"], float(step)
        if len(metric_rows) >= 200_000:  # bounded memory at benchmark scale
            conn.executemany("INSERT INTO metrics (trial_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                             metric_rows)
            metric_rows = []
        gpu = str(i % gpus) if status == "running" and gpus else None
        trial_rows.append((trial_id, study.id, number, status, "box" if started else None, json.dumps(params),
                           json.dumps(["python", "train.py"]), i, f"/nonexistent/{name}/{number}", f"/nonexistent/{name}/{number}/stdout.log",
                           f"/nonexistent/{name}/{number}/stderr.log", n_steps, gpu,
                           1.0 if gpu else None, 1 if status == "failed" else (0 if status == "completed" else None),
                           started or now, started, ended, float(n_steps) if n_steps else None, best, best_step))
        if status == "pruned":
            events.append((study.id, trial_id, ended, "pruned", "info",
                           f"trial {number} pruned at rung {n_steps}: below the top 1/3", json.dumps({"step": n_steps})))
        if status == "diverged":
            events.append((study.id, trial_id, ended - 1, "flag", "error", f"nan: val_loss is NaN at step {n_steps}",
                           json.dumps({"flag": "nan", "step": n_steps, "value": None,
                                       "hint": "lower the learning rate or clip gradients"})))
    conn.executemany("INSERT INTO trials (id, study_id, number, status, host, params, argv, sample_index, trial_dir, "
                     "stdout_path, stderr_path, reports, gpus, gpu_fraction, exit_code, created_at, started_at, "
                     "finished_at, last_step, best_value, best_step) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                     "?, ?, ?, ?, ?, ?, ?)", trial_rows)
    conn.executemany("INSERT INTO metrics (trial_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)", metric_rows)
    conn.executemany("INSERT INTO events (study_id, trial_id, time, kind, level, message, data) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", events)
    for g in range(gpus):
        conn.execute("INSERT INTO gpu_samples (time, host, gpu, name, util, memory_used, memory_total, temperature, "
                     "power) VALUES (?, 'box', ?, 'NVIDIA A100', ?, ?, ?, 60, 250)",
                     (now, g, 35.0 + 40 * g, (8 + 12 * g) * 2**30, 40 * 2**30))
    conn.execute("INSERT INTO host_samples (time, host, cpu_percent, ram_used, ram_total, load1) "
                 "VALUES (?, 'box', 23.5, ?, ?, 3.2)", (now, 48 * 2**30, 128 * 2**30))
    conn.execute("COMMIT")
    store.close()
    return path


def make_big_db(path: str | Path, *, trials: int = 10_000, steps: int = 198, running: int = 50) -> Path:
    """The benchmark file: 10,000 trials, 4 metrics, up to 198 steps (pruned ones stop early): ~5.0M metric rows."""
    return make_study_db(path, name="big", trials=trials, steps=steps, running=running, queued=0, gpus=8)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "big.db")
    if target.exists():
        sys.exit(f"{target} exists; remove it first")
    make_big_db(target)
    print(target)
