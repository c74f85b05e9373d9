"""A step a plain script announced survives a real SIGKILL of the engine and `resume`.

Real engine subprocesses on a real SQLite file, with a small trial script. Curves, warnings, streaks
of silent trials, metric files, repeated steps and long lines are tested in-process in
tests/test_loop_reading.py.
"""

from __future__ import annotations

import json
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
