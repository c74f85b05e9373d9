"""What the engine makes of what trials print and log: curves export, warnings, streaks, resume.

Real engine subprocesses on a real SQLite file, with small trial scripts.
"""

from __future__ import annotations

import json
import math
import re
import signal
import sqlite3
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, start_cli


def _space(tmp_path: Path, name: str, command: str, *, trials: int = 1, parallel: int = 1, extra: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        command: {command}
        objective: {{metric: val_acc, mode: max}}
        budget: {{max_trials: {trials}, max_parallel: {parallel}}}
        space:
          x: {{type: uniform, low: 0, high: 1}}
    """) + textwrap.dedent(extra))
    return path


def _export(tmp_path: Path, name: str, *flags: str) -> dict:
    result = run_cli("export", name, "--db", "h.db", "--format", "json", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_curves_export_one_point_per_step_last_value_wins_and_best_follows_it(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(textwrap.dedent("""
        import sys
        for line in ['{"epoch": 2, "val_acc": 0.9}', '{"epoch": 2, "val_acc": 0.6}', '{"epoch": 1, "val_acc": 0.5}',
                     '{"epoch": 3, "val_acc": 0.55, "loss": NaN}', '{"epoch": 4, "loss": Infinity}']:
            print("@hpotui " + line, flush=True)
    """))
    _space(tmp_path, "curves", "python t.py {x}")
    assert run_cli("launch", "curves.yaml", "--headless", "--db", "h.db", cwd=tmp_path).returncode == 0
    plain = _export(tmp_path, "curves")
    [trial] = plain["trials"]
    assert "curves" not in trial and Path(trial["trial_dir"]).is_absolute() and Path(trial["trial_dir"]).is_dir()
    assert trial["best"] == 0.6  # epoch 2's value is its last one, 0.6; the 0.9 it replaced is not the best
    result = run_cli("export", "curves", "--db", "h.db", "--format", "json", "--curves", cwd=tmp_path)
    curves = json.loads(result.stdout)["trials"][0]["curves"]
    assert curves["val_acc"] == [[1.0, 0.5], [2.0, 0.6], [3.0, 0.55]]
    assert math.isnan(curves["loss"][0][1]) and curves["loss"][1] == [4.0, math.inf]
    assert re.search(r"3\.0,\s*NaN", result.stdout) and re.search(r"4\.0,\s*Infinity", result.stdout)


def test_what_was_never_read_is_said_in_status_export_and_headless_output(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("print('epoch 1 accuracy 0.5', flush=True)\n")
    _space(tmp_path, "silent", "python t.py {x}", trials=2, extra="""
        metrics:
          regex: {val_acc: 'val acc {number}', epoch: 'epoch (\\d+)'}
          csv: "{trial_dir}/metrics.csv"
    """)
    launched = run_cli("launch", "silent.yaml", "--headless", "--db", "h.db", cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr
    assert "never reported the objective val_acc" in launched.stdout
    warnings = _export(tmp_path, "silent")["study"]["warnings"]
    joined = "\n".join(warnings)
    assert "2 trials (1, 2) finished without reporting the objective val_acc" in joined
    assert "metrics.regex.val_acc never matched the output of 2 trials (1, 2)" in joined
    assert "metrics.csv never appeared for 2 trials (1, 2)" in joined
    status = run_cli("status", "silent", "--db", "h.db", cwd=tmp_path).stdout
    assert all(f"warning: {w}" in status for w in warnings)
    db = sqlite3.connect(tmp_path / "h.db")
    kinds = {json.loads(d)["problem"] for (d,) in db.execute("SELECT data FROM events WHERE kind = 'not_read'")}
    assert kinds == {"no_objective", "never_matched", "never_appeared"}


def test_ten_trials_in_a_row_without_the_objective_pause_launching_and_name_the_pattern(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("print('val_accuracy=0.5', flush=True)\n")
    _space(tmp_path, "broken", "python t.py {x}", trials=30, parallel=2,
           extra="metrics: {regex: {val_acc: 'val acc: {number}'}}\n")
    launched = run_cli("launch", "broken.yaml", "--headless", "--db", "h.db", cwd=tmp_path)
    assert launched.returncode == 1, launched.stdout[-2000:]
    db = sqlite3.connect(tmp_path / "h.db")
    finished = db.execute("SELECT COUNT(*) FROM trials WHERE status = 'completed'").fetchone()[0]
    assert 10 <= finished <= 11  # the tenth pauses launching; one more may already be running
    reason = db.execute("SELECT pause_reason FROM studies").fetchone()[0]
    assert "10 trials in a row finished without reporting the objective val_acc" in reason
    assert "metrics.regex.val_acc never matched" in reason
    assert reason in run_cli("status", "broken", "--db", "h.db", cwd=tmp_path).stdout


def test_a_nan_in_a_csv_read_after_the_trial_exited_marks_it_diverged(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(textwrap.dedent("""
        import os
        with open(os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "m.csv"), "w") as f:
            f.write("epoch,val_acc,train_loss\\n1,0.5,1.2\\n2,,nan\\n")
    """))  # written and gone before the engine's first look at the file
    _space(tmp_path, "nancsv", "python t.py {x}", extra='metrics: {csv: "{trial_dir}/m.csv"}\n')
    assert run_cli("launch", "nancsv.yaml", "--headless", "--db", "h.db", cwd=tmp_path).returncode == 0
    [trial] = _export(tmp_path, "nancsv", "--curves")["trials"]
    assert trial["status"] == "diverged" and "nan" in trial["flags"]
    assert trial["curves"]["val_acc"] == [[1.0, 0.5]]  # the empty cell is not a value


@pytest.mark.parametrize("adopted", [True, False], ids=["re-adopted", "ended-while-no-engine"])
def test_resume_after_kill_9_keeps_the_step_a_plain_script_announced(tmp_path: Path, adopted: bool) -> None:
    """The engine dies after reading "Epoch 3/4" but before the epoch's metrics: they stay epoch 3,
    whether the trial is still running when `resume` re-adopts it or ended while no engine ran."""
    (tmp_path / "t.py").write_text(textwrap.dedent("""
        import os, time
        go = os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "go")
        for epoch in range(1, 5):
            print(f"Epoch {epoch}/4", flush=True)
            if epoch == 3:
                while not os.path.exists(go):
                    time.sleep(0.02)
            print(f"val acc: {epoch / 10}", flush=True)
    """))
    _space(tmp_path, "resumed", "python t.py {x}",
           extra="metrics: {regex: {epoch: 'Epoch (\\d+)/', val_acc: 'val acc: {number}'}}\n")
    engine = start_cli("launch", "resumed.yaml", "--headless", "--db", "h.db", cwd=tmp_path)
    db_path = tmp_path / "h.db"
    deadline = time.monotonic() + 60
    trial_dir = None
    while time.monotonic() < deadline:
        if db_path.exists():
            try:
                row = sqlite3.connect(db_path).execute("SELECT trial_dir, stdout_offset FROM trials").fetchone()
            except sqlite3.OperationalError:  # the engine is still creating the file
                row = None
            if row and Path(row[0], "stdout.log").exists() and row[1] == Path(row[0], "stdout.log").stat().st_size \
                    and b"Epoch 3/4" in Path(row[0], "stdout.log").read_bytes():
                trial_dir = row[0]
                break
        time.sleep(0.05)
    assert trial_dir, "the engine never recorded reading past the Epoch 3 line"
    engine.send_signal(signal.SIGKILL)
    engine.wait(timeout=10)
    if not adopted:
        Path(trial_dir, "go").touch()
        time.sleep(0.5)  # the trial finishes with no engine watching
    resumed = start_cli("resume", "resumed", "--headless", "--db", "h.db", cwd=tmp_path)
    if adopted:
        while time.monotonic() < deadline and not sqlite3.connect(db_path).execute(
                "SELECT COUNT(*) FROM events WHERE kind = 'adopted'").fetchone()[0]:
            time.sleep(0.05)
        Path(trial_dir, "go").touch()
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, out[-2000:] + err
    [trial] = _export(tmp_path, "resumed", "--curves")["trials"]
    assert trial["curves"]["val_acc"] == [[1.0, 0.1], [2.0, 0.2], [3.0, 0.3], [4.0, 0.4]]


def test_the_scheduler_judges_a_step_by_its_last_value(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(textwrap.dedent("""
        import time
        for epoch, acc in ((1, 0.9), (1, 0.2), (2, 0.3), (3, 0.4)):
            print(f'@hpotui {{"epoch": {epoch}, "val_acc": {acc}}}', flush=True)
            time.sleep(0.05)
    """))
    _space(tmp_path, "rung", "python t.py {x}",
           extra="scheduler: {type: asha, resource: epoch, min_resource: 1, max_resource: 3, reduction_factor: 3}\n")
    assert run_cli("launch", "rung.yaml", "--headless", "--db", "h.db", cwd=tmp_path).returncode == 0
    db = sqlite3.connect(tmp_path / "h.db")
    [(message, data)] = db.execute("SELECT message, data FROM events WHERE kind = 'scheduler'").fetchall()
    assert json.loads(data)["value"] == 0.2 and json.loads(data)["step"] == 1, message


def test_a_line_longer_than_the_cap_keeps_its_metrics_and_is_said(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(textwrap.dedent("""
        import sys, time
        sys.stdout.write("epoch 1 " + "x" * 5000 + " val acc 0.25 ")  # a 5 KB line still being written
        sys.stdout.flush()
        time.sleep(1.0)
        sys.stdout.write("y" * 3000 + " val acc 0.5\\n")
    """))
    _space(tmp_path, "longline", "python t.py {x}", extra="""
        logs: {max_line_kb: 1}
        metrics: {regex: {epoch: 'epoch (\\d+)', val_acc: 'val acc {number}'}}
    """)
    launched = run_cli("launch", "longline.yaml", "--headless", "--db", "h.db", cwd=tmp_path)
    assert launched.returncode == 0, launched.stdout
    record = _export(tmp_path, "longline", "--curves")
    assert record["trials"][0]["curves"]["val_acc"] == [[1.0, 0.5]]  # the line's last value, read past the cap
    assert any("longer than logs.max_line_kb was read in parts in 1 trial (1)" in w
               for w in record["study"]["warnings"]), record["study"]["warnings"]
