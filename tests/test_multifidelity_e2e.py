"""Schedulers and health through the real engine: pruned trials really stop early, NaN frees its slot."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import textwrap
from pathlib import Path

from tests.conftest import REPO, run_cli


def test_asha_on_the_digits_sample_prunes_trials_early(tmp_path: Path) -> None:
    shutil.copy(REPO / "sample_spaces" / "train_digits.py", tmp_path)
    (tmp_path / "asha.yaml").write_text(textwrap.dedent("""
        name: digits-asha-small
        command: python train_digits.py --lr {lr} --width {width} --batch-size 64 --epochs {max_resource}
        objective: {metric: val_acc, mode: max}
        search: {algorithm: random, seed: 3}
        budget: {max_trials: 9, max_parallel: 2}
        scheduler: {type: asha, resource: epoch, min_resource: 1, max_resource: 9, reduction_factor: 3}
        space:
          lr:    {type: loguniform, low: 1e-4, high: 1}
          width: {type: int, low: 16, high: 256, log: true}
    """))
    result = run_cli("launch", "asha.yaml", "--headless", "--db", "h.db", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads(run_cli("export", "digits-asha-small", "--db", "h.db", cwd=tmp_path).stdout)
    trials = record["trials"]
    pruned = [t for t in trials if t["status"] == "pruned"]
    completed = [t for t in trials if t["status"] == "completed"]
    assert pruned and completed, [t["status"] for t in trials]
    assert all(t["resource"] < 9 for t in pruned)  # stopped before the full 9 epochs
    assert all(t["resource"] == 9 for t in completed)
    total_epochs = sum(t["resource"] for t in trials)
    assert total_epochs < 9 * 9  # fewer epochs than running every trial to the end
    conn = sqlite3.connect(tmp_path / "h.db")
    reasons = [r[0] for r in conn.execute("SELECT message FROM events WHERE kind = 'scheduler' "
                                          "AND json_extract(data, '$.action') = 'stop'")]
    assert len(reasons) == len(pruned)
    assert all("below rung cut-off" in r and "val_acc" in r for r in reasons)


def test_nan_trial_is_diverged_and_its_slot_is_refilled_within_a_second(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(textwrap.dedent("""
        import sys, time
        bad = float(sys.argv[1]) > 0.5
        print('@hpotui {"epoch": 1, "train_loss": 2.3, "val_acc": 0.1}', flush=True)
        if bad:
            print('@hpotui {"epoch": 2, "train_loss": NaN, "val_acc": 0.1}', flush=True)
            time.sleep(60)   # would hold the slot for a minute without the health monitor
        print('@hpotui {"epoch": 2, "train_loss": 2.0, "val_acc": 0.2}', flush=True)
    """))
    (tmp_path / "s.yaml").write_text(textwrap.dedent("""
        name: nan
        command: python t.py {x}
        objective: {metric: val_acc, mode: max}
        budget: {max_trials: 2, max_parallel: 1}
        space:
          x: {type: choice, values: [1.0]}
    """))
    result = run_cli("launch", "s.yaml", "--headless", "--db", "h.db", "--grace", "1", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(tmp_path / "h.db")
    statuses = [r[0] for r in conn.execute("SELECT status FROM trials ORDER BY number")]
    assert statuses == ["diverged", "diverged"]
    nan_time = conn.execute("SELECT time FROM metrics WHERE trial_id = 1 AND value IS NULL").fetchone()[0]
    second_start = conn.execute("SELECT started_at FROM trials WHERE number = 2").fetchone()[0]
    assert 0 <= second_start - nan_time < 1.0
    first = json.loads(run_cli("export", "nan", "--db", "h.db", cwd=tmp_path).stdout)["trials"][0]
    assert "nan" in first["flags"]
    assert math.isnan(first["last"]["train_loss"])  # recorded as NaN, exported as NaN
    csv = run_cli("export", "nan", "--db", "h.db", "--format", "csv", cwd=tmp_path).stdout
    assert ",NaN," in csv.splitlines()[1]


def test_plan_reproduces_the_hyperband_paper_table(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("")
    (tmp_path / "hb.yaml").write_text(textwrap.dedent("""
        name: hb
        command: python t.py --lr {lr} --epochs {max_resource}
        objective: {metric: val_acc, mode: max}
        budget: {max_trials: 143, max_parallel: 4}
        scheduler: {type: hyperband, min_resource: 1, max_resource: 81, reduction_factor: 3}
        space:
          lr: {type: loguniform, low: 1e-4, high: 1}
    """))
    result = run_cli("plan", "hb.yaml", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["scheduler"] == "hyperband" and plan["total_trials"] == 143
    table = {b["s"]: [(r["n"], r["resource"]) for r in b["rungs"]] for b in plan["brackets"]}
    assert table[4] == [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)]
    assert table[3] == [(34, 3), (11, 9), (3, 27), (1, 81)]
    assert table[2] == [(15, 9), (5, 27), (1, 81)]
    assert table[1] == [(8, 27), (2, 81)]
    assert table[0] == [(5, 81)]
    assert not (tmp_path / "hpotui.db").exists()  # plan runs nothing
