"""The headless engine end to end: real CLI, real trial processes, real SQLite file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import run_cli, start_cli


def export(tmp_path: Path, study: str, db: Path) -> dict:
    result = run_cli("export", study, "--format", "json", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def count(db: Path, sql: str, *args) -> int:
    """0 while the engine has not created the schema yet."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def test_headless_study_records_everything_and_prints_the_best_command(tmp_path: Path, toy_study) -> None:
    space = toy_study(trials=5, parallel=2, epochs=3)
    db = tmp_path / "h.db"
    result = run_cli("launch", str(space), "--headless", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count(" started: lr=") == 5 and out.count(" completed") >= 5
    assert "top 5 by val_acc" in out
    best_line = [line for line in out.splitlines() if "best trial" in line][0]
    assert "python toy.py" in best_line
    record = export(tmp_path, "toy", db)
    assert record["study"]["name"] == "toy" and record["study"]["status"] == "completed"
    assert record["study"]["objective"] == {"metric": "val_acc", "mode": "max"}
    trials = record["trials"]
    assert len(trials) == 5
    for t in trials:
        assert set(t) >= {"id", "status", "params", "last", "best", "resource", "flags", "exit_code"}
        assert t["status"] == "completed" and t["exit_code"] == 0 and t["resource"] == 3
        assert set(t["last"]) == {"train_loss", "val_loss", "train_acc", "val_acc"}
        assert t["best"] == pytest.approx(max(t["best"], t["last"]["val_acc"]))
        assert 1e-3 <= t["params"]["lr"] <= 1
    assert count(db, "SELECT COUNT(*) FROM metrics") == 5 * 3 * 4
    assert count(db, "PRAGMA user_version") >= 1
    # WAL while the engine runs; once it ends and no one else has the file open it leaves WAL, so that
    # the finished study opens read-only from storage where no -shm can be made (issue 14, item 11).
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert (tmp_path / "hpotui_runs" / "toy" / "1" / "stdout.log").read_text().count("done") == 3
    md = run_cli("export", "toy", "--format", "md", "--db", str(db), cwd=tmp_path).stdout
    assert md.count("| completed |") == 5
    csv = run_cli("export", "toy", "--format", "csv", "--db", str(db), cwd=tmp_path).stdout
    assert csv.splitlines()[0].startswith("id,status,lr,best") and len(csv.splitlines()) == 6


def test_trial_environment_and_placeholders(tmp_path: Path) -> None:
    (tmp_path / "env.py").write_text(textwrap.dedent("""
        import json, os, sys
        keys = ["HPOTUI_TRIAL_ID", "HPOTUI_TRIAL_DIR", "HPOTUI_PARAMS", "CUDA_VISIBLE_DEVICES"]
        json.dump({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys}},
                  open(os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "seen.json"), "w"))
        print('@hpotui {"val_acc": 0.5}')
    """))
    (tmp_path / "s.yaml").write_text(textwrap.dedent("""
        name: envs
        command: [python, env.py, "{trial_id}", "{trial_dir}", "--opt={opt}", '{"json": "kept"}']
        objective: {metric: val_acc, mode: max}
        budget: {max_trials: 1, max_parallel: 1}
        resources: {gpus_per_trial: 0}
        space:
          opt: {type: choice, values: ["a b; $(echo hi)"]}
    """))
    result = run_cli("launch", "s.yaml", "--headless", "--db", "h.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trial_dir = tmp_path / "hpotui_runs" / "envs" / "1"
    seen = json.loads((trial_dir / "seen.json").read_text())
    assert seen["argv"] == ["1", str(trial_dir), "--opt=a b; $(echo hi)", '{"json": "kept"}']
    assert seen["env"]["HPOTUI_TRIAL_ID"] == "1" and seen["env"]["HPOTUI_TRIAL_DIR"] == str(trial_dir)
    assert json.loads(seen["env"]["HPOTUI_PARAMS"]) == {"opt": "a b; $(echo hi)"}
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == ""


def test_launching_an_existing_name_never_mixes_trials(tmp_path: Path, toy_study) -> None:
    space = toy_study(trials=2, epochs=1)
    db = tmp_path / "h.db"
    assert run_cli("launch", str(space), "--headless", "--db", str(db), cwd=tmp_path).returncode == 0
    second = run_cli("launch", str(space), "--headless", "--db", str(db), cwd=tmp_path)
    assert second.returncode == 0 and "toy-2" in second.stderr
    assert len(export(tmp_path, "toy", db)["trials"]) == 2
    assert len(export(tmp_path, "toy-2", db)["trials"]) == 2


def test_patience_stops_launching(tmp_path: Path) -> None:
    (tmp_path / "flat.py").write_text("print('@hpotui {\"val_acc\": 0.5}')\n")
    (tmp_path / "s.yaml").write_text(textwrap.dedent("""
        name: flat
        command: python flat.py {x}
        objective: {metric: val_acc, mode: max}
        budget: {max_trials: 30, max_parallel: 1, patience: 3}
        space:
          x: {type: uniform, low: 0, high: 1}
    """))
    result = run_cli("launch", "s.yaml", "--headless", "--db", "h.db", cwd=tmp_path)
    assert result.returncode == 0 and "patience" in result.stdout
    assert len(export(tmp_path, "flat", tmp_path / "h.db")["trials"]) == 4  # the first, then 3 without gain


def test_ctrl_c_interrupts_records_and_exits_130_then_resume_finishes(tmp_path: Path, toy_study) -> None:
    space = toy_study(trials=3, parallel=2, epochs=40, delay=0.05)
    db = tmp_path / "h.db"
    engine = start_cli("launch", str(space), "--headless", "--db", str(db), cwd=tmp_path)
    wait_for(lambda: db.exists() and count(db, "SELECT COUNT(*) FROM metrics") >= 8, what="some metrics")
    engine.send_signal(signal.SIGINT)
    assert engine.wait(timeout=30) == 130
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status='interrupted'") == 2
    pids = [r[0] for r in sqlite3.connect(db).execute("SELECT pid FROM trials")]
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    result = run_cli("resume", "toy", "--headless", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = export(tmp_path, "toy", db)
    finished = [t for t in record["trials"] if t["status"] == "completed"]
    assert len(finished) == 3 and record["study"]["status"] == "completed"


def test_kill_9_then_resume_loses_nothing_and_duplicates_nothing(tmp_path: Path, toy_study) -> None:
    space = toy_study(trials=4, parallel=2, epochs=30, delay=0.04)
    db = tmp_path / "h.db"
    engine = start_cli("launch", str(space), "--headless", "--db", str(db), cwd=tmp_path)
    wait_for(lambda: db.exists() and count(db, "SELECT COUNT(*) FROM metrics") >= 20, what="metrics")
    os.kill(engine.pid, signal.SIGKILL)
    engine.wait()
    running_pids = [r[0] for r in sqlite3.connect(db).execute("SELECT pid FROM trials WHERE status='running'")]
    assert running_pids and all(psutil.pid_exists(p) for p in running_pids)  # trials outlive the engine
    # a second engine refuses while... nobody: the dead engine's lock must not block resume
    result = run_cli("resume", "toy", "--headless", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    conn = sqlite3.connect(db)
    trials = conn.execute("SELECT id, number, status, stdout_path FROM trials ORDER BY number").fetchall()
    assert sum(1 for t in trials if t[2] == "completed") == 4
    for trial_id, number, status, stdout_path in trials:
        printed = [json.loads(line[len("@hpotui "):]) for line in Path(stdout_path).read_text().splitlines()
                   if line.startswith("@hpotui ")]
        rows = conn.execute("SELECT step, value FROM metrics WHERE trial_id = ? AND name = 'val_acc' ORDER BY step",
                            (trial_id,)).fetchall()
        assert [(p["epoch"], pytest.approx(p["val_acc"])) for p in printed] == rows, f"trial {number}"
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in running_pids)


def test_second_engine_refuses_while_first_lives(tmp_path: Path, toy_study) -> None:
    space = toy_study(trials=2, parallel=2, epochs=100, delay=0.05)
    db = tmp_path / "h.db"
    engine = start_cli("launch", str(space), "--headless", "--db", str(db), cwd=tmp_path)
    try:
        wait_for(lambda: db.exists() and count(db, "SELECT COUNT(*) FROM trials WHERE status='running'") == 2)
        second = run_cli("resume", "toy", "--headless", "--db", str(db), cwd=tmp_path)
        assert second.returncode == 2 and "already run by engine pid" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        engine.send_signal(signal.SIGINT)
        engine.wait(timeout=30)


def test_unknown_study_is_one_line_exit_2(tmp_path: Path) -> None:
    run_cli("status", "--db", str(tmp_path / "h.db"), cwd=tmp_path)
    result = run_cli("export", "nope", "--db", str(tmp_path / "h.db"), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_missing_module_storm_names_the_other_python(tmp_path: Path, monkeypatch) -> None:
    from hpotui.engine.study import _interpreter_hint

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text("#!/bin/sh\nexit 1\n")
    (fake / "python").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    hint = _interpreter_hint("python")
    assert str(fake / "python") in hint and "activate your training environment" in hint
    assert _interpreter_hint("./train.sh") == ""


def test_interactive_launch_detaches_the_engine_and_survives_without_a_terminal(tmp_path: Path, toy_study) -> None:
    space = toy_study(trials=3, parallel=2, epochs=3)
    db = tmp_path / "h.db"
    result = run_cli("launch", str(space), "--db", str(db), cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "runs in the background" in result.stdout and "not a terminal" in result.stderr
    wait_for(lambda: count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") == 3,
             what="the detached engine to finish the study")
    wait_for(lambda: count(db, "SELECT COUNT(*) FROM studies WHERE status = 'completed' AND engine_pid IS NULL") == 1,
             what="the engine to record the end and let go of the study")
    assert (tmp_path / "hpotui_runs" / "toy" / "engine.log").read_text().count("started") == 3
