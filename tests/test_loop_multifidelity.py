"""Schedulers and health in the real study loop, in this process: pruned trials stop early, NaN frees its slot.

Scripted trials (engine/executors/fake.py) print a learning curve one epoch per poll, so the
scheduler judges each rung before the next epoch is printed, as it does with a real trainer.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from hpotui.engine.executors.fake import FakeTrial, Hang, Say, Step, report
from tests.inproc import launch


def digits_like(trial: FakeTrial) -> list[Step]:
    """A trainer's val_acc curve over ``--epochs {max_resource}``: how good depends on lr and width."""
    epochs = int(trial.argv[trial.argv.index("--epochs") + 1])
    lr, width = trial.params["lr"], trial.params["width"]
    quality = max(0.05, 1 - abs(math.log10(lr) + 2) / 3) * (0.8 + 0.2 * math.log2(width) / 8)
    return [report(epoch=e, val_acc=round(quality * (1 - 0.6 ** e), 4)) for e in range(1, epochs + 1)]


def test_asha_prunes_trials_early(tmp_path: Path) -> None:
    run = launch(tmp_path, """
        name: digits-asha-small
        command: python train_digits.py --lr {lr} --width {width} --batch-size 64 --epochs {max_resource}
        objective: {metric: val_acc, mode: max}
        search: {algorithm: random, seed: 3}
        budget: {max_trials: 9, max_parallel: 2}
        scheduler: {type: asha, resource: epoch, min_resource: 1, max_resource: 9, reduction_factor: 3}
        space:
          lr:    {type: loguniform, low: 1e-4, high: 1}
          width: {type: int, low: 16, high: 256, log: true}
        """, digits_like)
    assert run.code == 0, run.out
    trials = run.export()["trials"]
    pruned = [t for t in trials if t["status"] == "pruned"]
    completed = [t for t in trials if t["status"] == "completed"]
    assert pruned and completed, [t["status"] for t in trials]
    assert all(t["resource"] < 9 for t in pruned)  # stopped before the full 9 epochs
    assert all(t["resource"] == 9 for t in completed)
    assert sum(t["resource"] for t in trials) < 9 * 9  # fewer epochs than running every trial to the end
    stops = [e.message for e in run.events("scheduler") if e.data.get("action") == "stop"]
    assert len(stops) == len(pruned)
    assert all("below rung cut-off" in r and "val_acc" in r for r in stops)
    assert all(run.executor.runs[t["id"]].signals == ["SIGTERM"] for t in pruned)  # asked to stop, not killed


def test_nan_trial_is_diverged_and_its_slot_is_refilled_within_a_second(tmp_path: Path) -> None:
    def script(trial: FakeTrial) -> list[Step]:
        return [Say('@hpotui {"epoch": 1, "train_loss": 2.3, "val_acc": 0.1}'),
                Say('@hpotui {"epoch": 2, "train_loss": NaN, "val_acc": 0.1}'),
                Hang()]  # would hold the slot for good without the health monitor

    run = launch(tmp_path, """
        name: nan
        command: python t.py {x}
        objective: {metric: val_acc, mode: max}
        budget: {max_trials: 2, max_parallel: 1}
        space:
          x: {type: choice, values: [1.0]}
        """, script)
    assert run.code == 0, run.out
    assert run.statuses() == [(1, "diverged"), (2, "diverged")]
    conn = sqlite3.connect(run.store.path)
    nan_time = conn.execute("SELECT time FROM metrics WHERE trial_id = 1 AND value IS NULL").fetchone()[0]
    second_start = conn.execute("SELECT started_at FROM trials WHERE number = 2").fetchone()[0]
    conn.close()
    assert 0 <= second_start - nan_time < 1.0
    first = run.export()["trials"][0]
    assert "nan" in first["flags"]
    assert math.isnan(first["last"]["train_loss"])  # recorded as NaN, exported as NaN
    assert ",NaN," in run.export("csv").splitlines()[1]
