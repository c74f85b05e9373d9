"""Deterministic study databases for the TUI's tests, snapshots and benchmarks, written by the engine's writer.

Why through :class:`engine.database.store.Store` and not SQL of our own: the interface reads what the
engine writes, and a fixture that writes rows by hand lets the two drift apart unnoticed (the
rung markers once looked for a step on ``pruned`` events while the engine put it on
``scheduler`` events, and only the hand-written fixture agreed with the reader). Here every row
comes from the store's own methods, with the same event kinds and data the study loop records
(``started``, ``scheduler`` stop decisions, ``flag``, ``failed`` with its stderr tail, the
trial's status reason, ``study_end`` with its reason), and ``tests/tui/test_engine_fixture.py``
checks the reader against a real engine run as well.

Times are fixed: the store's clock is frozen at chosen instants while writing, so run times,
ETAs and snapshots never move. The study's engine is this process (alive while the tests run)
unless ``engine`` says ``dead`` (a reaped child's pid) or the study is finished.

``make_study_db`` holds every kind of trial the screens show: running (on GPUs), completed,
pruned at a rung, diverged with a NaN flag, failed with stderr, stopped, queued, a started clone
and a clone still waiting in the engine's queue. ``make_big_db`` is the same at benchmark scale:
10,000 trials with four metrics over up to 198 steps (about 5,000,000 metric rows).

    python -m tests.tui.bigdb /tmp/big.db            # the 10,000-trial benchmark file
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import time as _time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

from hpotui.engine.database import store as store_module
from hpotui.engine.database.records import EventKind, HealthFlag, SchedulerDecision, StudyEnd, TrialEnded, TrialStarted
from hpotui.engine.database.store import Store
from hpotui.engine.trials.liveness import process_create_time

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
STDERR_TAIL = "Traceback (most recent call last):\n  File \"train.py\", line 41, in <module>\n" \
              "ValueError: width must be a multiple of 8, got 61\n"
FLUSH_ROWS = 200_000


class _Clock:
    """Stands in for the ``time`` module inside engine.database.store: ``time()`` says ``now``, the rest is real."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


@contextmanager
def frozen_store_clock(now: float) -> Iterator[_Clock]:
    clock = _Clock(now)
    with mock.patch.object(store_module, "time", clock):
        yield clock


def _status_for(i: int, n: int, running: int) -> str:
    if i >= n - running:
        return "running"
    r = i % 10
    return {0: "completed", 1: "completed", 2: "pruned", 3: "pruned", 4: "pruned", 5: "completed",
            6: "diverged" if i % 20 == 6 else "pruned", 7: "failed" if i % 30 == 7 else "completed",
            8: "pruned", 9: "stopped" if i % 40 == 9 else "completed"}[r]


def _steps_for(status: str, i: int, steps: int) -> int:
    if status == "queued":
        return 0
    if status == "running":
        return min(steps, max(1, steps // 2 + i % 3))
    if status == "pruned":
        return max(1, steps // 3)
    if status in ("diverged", "failed"):
        return max(1, steps // 4)
    return steps


def _dead_pid() -> int:
    """The pid of a child that has exited and been reaped: an engine that is gone."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@dataclass(frozen=True)
class Shape:
    """What a generated study holds."""

    trials: int
    steps: int
    running: int
    queued: int
    gpus: int
    now: float
    clones: bool

    @property
    def parallel(self) -> int:
        return max(1, self.running)

    @property
    def start(self) -> float:
        return self.now - (self.trials + 2) * self.steps * STEP_SECONDS / self.parallel


def make_study_db(path: str | Path, *, name: str = "demo", trials: int = 12, steps: int = 8, running: int = 2,
                  queued: int = 1, gpus: int = 2, seed: int = 0, now: float = FIXED_NOW,
                  finished: bool = False, engine: str = "alive", clones: bool = True) -> Path:
    """Write a study with ``trials`` trials (``running`` of them running) and ``len(METRICS)`` x steps rows each.

    ``engine``: ``alive`` (this process holds the study), ``dead`` (a pid that is gone).
    """
    path = Path(path)
    shape = Shape(trials, steps, 0 if finished else running, 0 if finished else queued, gpus, now, clones)
    with frozen_store_clock(shape.start) as clock:
        store = Store(path)
        study = store.create_study(name=name, objective_metric="val_acc", objective_mode="max",
                                   space_file=str(path.parent / f"{name}.yaml"),
                                   space_yaml=SPACE_YAML.format(name=name, max_trials=trials + queued + 4,
                                                                parallel=shape.parallel, steps=steps),
                                   space_json="{}", parent_id=None, max_parallel=shape.parallel, headless=True)
        pid = os.getpid() if engine == "alive" else _dead_pid()
        created = process_create_time(pid) if engine == "alive" else None
        store.acquire_engine_lock(study.id, pid, created or shape.start)
        store.set_study_status(study.id, "running")
        _write_trials(store, study.id, shape, random.Random(seed), clock)
        _write_samples(store, shape, clock)
        clock.now = now
        if finished:
            store.set_study_status(study.id, "completed")
            store.add_event(study.id, None, EventKind.STUDY_END, "study completed",
                            data=StudyEnd("completed", f"budget: {trials} trials finished").to_data())
            store.release_engine_lock(study.id, pid)
        else:
            if clones:
                _waiting_clone(store, study.id)
            store.heartbeat(study.id)
        store.close()
    return path


def _write_trials(store: Store, study_id: int, shape: Shape, rng: random.Random, clock: _Clock) -> None:
    for i in range(shape.trials + shape.queued):
        status = "queued" if i >= shape.trials else _status_for(i, shape.trials, shape.running)
        params = {"lr": round(10 ** rng.uniform(-4, 0), 6), "dropout": round(rng.uniform(0, 0.5), 3),
                  "width": int(2 ** rng.uniform(5, 9)), "optimizer": rng.choice(["sgd", "adam"])}
        started = _started(status, i, shape)
        clock.now = started if started is not None else shape.now
        clone_of = 6 if shape.clones and status == "running" and i == shape.trials - 1 else None
        _write_trial(store, study_id, i, status, params, started, shape, rng, clock, clone_of)
        if store.pending_writes() >= FLUSH_ROWS:
            store.flush()
    store.flush()


def _started(status: str, i: int, shape: Shape) -> float | None:
    if status == "queued":
        return None
    if status == "running":
        return shape.now - _steps_for(status, i, shape.steps) * STEP_SECONDS - 3.0
    return shape.start + i * shape.steps * STEP_SECONDS / shape.parallel


def _write_samples(store: Store, shape: Shape, clock: _Clock) -> None:
    """One GPU and host reading, as the engine's resource sampler records them."""
    now = shape.now
    clock.now = now - 1.0
    store.add_resource_samples(
        [{"time": now, "host": "box", "gpu": g, "name": "NVIDIA A100", "util": 35.0 + 40 * g,
          "memory_used": (8 + 12 * g) * 2**30, "memory_total": 40 * 2**30, "temperature": 60.0, "power": 250.0}
         for g in range(shape.gpus)],
        {"time": now, "host": "box", "cpu_percent": 23.5, "ram_used": 48 * 2**30, "ram_total": 128 * 2**30,
         "load1": 3.2})


def _queue_clone(store: Store, study_id: int, params: dict[str, Any], note: str | None) -> int:
    """A clone of trial 6 as the engine queues it: the command, acknowledged in the clones table's own write."""
    command = store.send_command(study_id, "clone_trial", trial_number=6, args={"params": {"lr": params["lr"]}})
    clone_id = store.queue_clone(study_id, command_id=command, source_number=6, params=params, note=note,
                                 result=f"clone of trial 6 queued: lr={params['lr']:g}")
    assert clone_id is not None
    return clone_id


def _waiting_clone(store: Store, study_id: int) -> None:
    """A second clone of trial 6, off the searched range, still waiting in the queue (launching has no slot)."""
    params = {"lr": 2.5, "dropout": 0.365, "width": 225, "optimizer": "sgd"}
    _queue_clone(store, study_id, params, "lr=2.5 is outside the searched range [0.0001, 1]")


def _write_trial(store: Store, study_id: int, i: int, status: str, params: dict[str, Any], started: float | None,
                 shape: Shape, rng: random.Random, clock: _Clock, clone_of: int | None) -> None:
    number = i + 1
    gpu = str(i % shape.gpus) if status == "running" and shape.gpus else None
    clone_id = _queue_clone(store, study_id, params, None) if clone_of is not None else None
    row = store.add_trial(study_id=study_id, params=params, argv=["python", "train.py"], clone_id=clone_id,
                          trial_dir=f"/nonexistent/{number}", stdout_path=f"/nonexistent/{number}/stdout.log",
                          stderr_path=f"/nonexistent/{number}/stderr.log", sample_index=i, rerun_of=None, seed=None,
                          number=number, gpu_picker=(lambda _claims: (gpu, 1.0)) if gpu else None)
    assert row is not None
    if status == "queued":
        return
    store.mark_running(row.id, pid=0, pgid=0, proc_create_time=started or 0.0, git_commit=None)
    store.buffer_event(study_id, row.id, EventKind.STARTED, f"trial {number} started",
                       data=TrialStarted(0, gpu, clone_of).to_data())
    n_steps = _steps_for(status, i, shape.steps)
    value, best = _report(store, row.id, status, params, started or 0.0, n_steps, shape.steps, rng, clock)
    if status != "running":
        _finish(store, study_id, row.id, number, status, n_steps, value, best, clock)


def _report(store: Store, trial_id: int, status: str, params: dict[str, Any], started: float, n_steps: int,
            steps: int, rng: random.Random, clock: _Clock) -> tuple[float, float | None]:
    """The metric lines of one trial, buffered with their progress as the engine does; (last value, best)."""
    quality = 1.0 - abs(math.log10(params["lr"]) + 2) / 3  # best near lr = 1e-2
    best: float | None = None
    best_step: float | None = None
    value = 0.0
    for step in range(1, n_steps + 1):
        clock.now = started + 3.0 + step * STEP_SECONDS
        progress = 1 - math.exp(-step / max(1, steps / 3))
        noise = rng.uniform(-0.01, 0.01)
        value = 0.1 + 0.85 * quality * progress + noise
        loss = 2.3 * (1 - 0.9 * quality * progress) + noise
        values = {"train_loss": loss * 0.9, "val_loss": loss, "train_acc": min(1.0, value * 1.03), "val_acc": value}
        if status == "diverged" and step == n_steps:
            values = {k: math.nan for k in values}
        store.buffer_metrics(trial_id, float(step), values, clock.now)
        if not math.isnan(values["val_acc"]) and (best is None or values["val_acc"] > best):
            best, best_step = values["val_acc"], float(step)
        store.buffer_progress(trial_id, stdout_offset=0, stderr_offset=0, reports=step, last_step=float(step),
                              best_value=best, best_step=best_step)
    return value, best


def _finish(store: Store, study_id: int, trial_id: int, number: int, status: str, n_steps: int, value: float,
            best: float | None, clock: _Clock) -> None:
    """The events and the status the study loop records when a trial ends this way."""
    exit_code: int | None = 0 if status == "completed" else None
    reason = ""
    if status == "pruned":
        reason = (f"pruned at epoch {n_steps}: val_acc {value:.4g} below rung cut-off {value + 0.05:.4g}, "
                  "1 of 3 trials kept")
        store.buffer_event(study_id, trial_id, EventKind.SCHEDULER, f"trial {number} {reason}",
                           data=SchedulerDecision("stop", float(n_steps), value, float(n_steps), 0).to_data())
    elif status == "diverged":
        reason = f"nan: val_loss is NaN at epoch {n_steps}"
        store.buffer_event(study_id, trial_id, EventKind.FLAG, reason, level="error",
                           data=HealthFlag("nan", float(n_steps), None,
                                           "lower the learning rate or clip gradients").to_data())
    elif status == "failed":
        exit_code = 1
        reason = "exit code 1: ValueError: width must be a multiple of 8, got 61"
    elif status == "stopped":
        reason = "stopped by the user"
    clock.now += 3.0
    store.finish_trial(trial_id, status, exit_code=exit_code, reason=reason or None)
    data = TrialEnded(exit_code, best, n_steps, STDERR_TAIL if status == "failed" else None).to_data()
    store.add_event(study_id, trial_id, status, f"trial {number} {status}" + (f" — {reason}" if reason else ""),
                    level="error" if status == "failed" else "info", data=data)


def make_big_db(path: str | Path, *, trials: int = 10_000, steps: int = 198, running: int = 50) -> Path:
    """The benchmark file: 10,000 trials, 4 metrics, up to 198 steps (pruned ones stop early): ~5.0M metric rows."""
    return make_study_db(path, name="big", trials=trials, steps=steps, running=running, queued=0, gpus=8)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "big.db")
    if target.exists():
        sys.exit(f"{target} exists; remove it first")
    make_big_db(target)
    print(target)
