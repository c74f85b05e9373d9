"""The real terminal path, in tmux at 80x24 and 200x60.

* `hpotui launch` opens the interface on a live study, `s` then `y` stops the highlighted trial
  (the confirmation names its number and parameters), `q` leaves the study running;
* the engine is killed with -9: within seconds the screen says so and names `hpotui resume`,
  its trials stop showing as running, and `R` starts a new engine;
* a colleague opens a finished study in a folder they cannot write (its -wal and -shm gone),
  reads it, and quits with exit 0; `--db` on a YAML file ends in one line and exit 2.

A private tmux server (``-L``) keeps the test away from the user's own sessions.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.tui.bigdb import make_study_db
from tests.tui.readonly import as_reader, readonly_copy

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
SIZES = [(80, 24), (200, 60)]

TRAINER = """
import json, sys, time
lr = float(sys.argv[1])
for epoch in range(1, 600):
    time.sleep(0.05)
    loss = 2.0 / (1 + epoch * lr)
    print("@hpotui " + json.dumps({"epoch": epoch, "train_loss": loss, "val_loss": loss * 1.1,
                                   "train_acc": 1 - loss / 2, "val_acc": 0.95 * (1 - loss / 2)}), flush=True)
"""
SPACE = """
name: tmuxed
command: python trainer.py {lr}
objective: {metric: val_acc, mode: max}
search: {algorithm: random, seed: 0}
budget: {max_trials: 6, max_parallel: 2}
space:
  lr: {type: loguniform, low: 1e-3, high: 1}
"""


def one(db: Path, sql: str, *args):
    try:
        conn = sqlite3.connect(db, timeout=30)
        try:
            row = conn.execute(sql, args).fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return None  # the engine is still creating the file
    return row[0] if row else None


def wait(condition, timeout: float, what: str, pane) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; the terminal showed:\n{pane()}")


class Tmux:
    """One private tmux server with one window of the given size."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.base = ["tmux", "-L", f"hpotui-test-{os.getpid()}-{size[0]}"]
        self.size = size

    def start(self, command: str) -> None:
        subprocess.run([*self.base, "new-session", "-d", "-s", "t", "-x", str(self.size[0]), "-y", str(self.size[1]),
                        command], check=True)

    def pane(self) -> str:
        return subprocess.run([*self.base, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True).stdout

    def flat(self) -> str:
        return " ".join(self.pane().split())

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", *keys], check=True)

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


def hpotui_cmd() -> str:
    script = Path(sys.executable).parent / "hpotui"  # the installed console script, as a user types it
    return str(script) if script.exists() else f"{sys.executable} -m hpotui.engine.cli"


def shell(cwd: Path, line: str, env: dict[str, str] | None = None) -> str:
    env = env or cli_env()
    return (f"cd '{cwd}' && env PATH='{env['PATH']}' PYTHONPATH='{env['PYTHONPATH']}' TERM=xterm-256color "
            f"XDG_STATE_HOME='{env.get('XDG_STATE_HOME', '')}' {line}; echo HPOTUI-EXITED-$?; sleep 30")


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    (tmp_path / "trainer.py").write_text(textwrap.dedent(TRAINER))
    (tmp_path / "tmuxed.yaml").write_text(textwrap.dedent(SPACE))
    return tmp_path


def stop_study(db: Path) -> None:
    subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "stop", "tmuxed", "--db", str(db)], env=cli_env(),
                   capture_output=True, timeout=60)


def launch_and_watch(study_dir: Path, db: Path, size) -> Tmux:
    """`hpotui launch` in a real terminal, returned once two trials report and the study screen is up."""
    term = Tmux(size)
    term.start(shell(study_dir, f"{hpotui_cmd()} launch tmuxed.yaml --db {db}"))
    try:
        wait(lambda: (one(db, "SELECT COUNT(*) FROM trials WHERE status = 'running' AND reports > 0") or 0) >= 2,
             60, "two running trials", term.pane)
        wait(lambda: "engine alive" in term.pane(), 30, "the study screen", term.pane)
    except BaseException:
        stop_study(db)
        term.close()
        raise
    return term


@pytest.mark.parametrize("size", SIZES)
def test_launch_in_tmux_stop_a_trial_by_key_and_quit(study_dir: Path, size):
    db = study_dir / "study.db"
    term = launch_and_watch(study_dir, db, size)
    try:
        wait(lambda: "running" in term.pane() and "tmuxed" in term.pane(), 30, "the study screen", term.pane)
        assert one(db, "SELECT status FROM trials WHERE number = 1") == "running"
        term.keys("s")
        wait(lambda: "Stop trial 1? (running; lr=" in term.flat(), 15, "the confirmation with the params", term.pane)
        term.keys("y")
        wait(lambda: one(db, "SELECT status FROM trials WHERE number = 1") == "stopped", 30, "trial 1 to stop",
             term.pane)
        wait(lambda: "stopping trial 1" in term.pane(), 15, "the acknowledgement on screen", term.pane)
        term.keys("q")
        wait(lambda: "HPOTUI-EXITED-0" in term.pane(), 15, "the interface to exit", term.pane)
        assert "keep running" in term.flat()
        assert one(db, "SELECT status FROM studies") == "running"  # quitting never stops the study
    finally:
        stop_study(db)
        term.close()


@pytest.mark.parametrize("size", SIZES)
def test_engine_killed_in_tmux_is_said_and_r_resumes(study_dir: Path, size):
    db = study_dir / "study.db"
    term = launch_and_watch(study_dir, db, size)
    try:
        for (group,) in sqlite3.connect(db).execute("SELECT pgid FROM trials WHERE status = 'running'"):
            os.killpg(group, signal.SIGKILL)  # the box lost them too: nothing runs any more
        os.kill(one(db, "SELECT engine_pid FROM studies"), signal.SIGKILL)
        killed = time.monotonic()
        wait(lambda: "engine gone: R resumes (hpotui resume tmuxed)" in term.pane(), 10, "the engine's death",
             term.pane)
        assert time.monotonic() - killed < 6
        wait(lambda: "gone" in term.pane() and " running " not in term.pane().split("\n", 3)[-1], 15,
             "its trials to stop showing as running", term.pane)
        term.keys("R")
        wait(lambda: "engine alive" in term.pane(), 40, "a new engine", term.pane)
    finally:
        stop_study(db)
        term.close()


@pytest.mark.parametrize("size", SIZES)
def test_a_colleagues_finished_study_in_a_folder_they_cannot_write(tmp_path: Path, size):
    made = make_study_db(tmp_path / "done.db", name="done", finished=True)
    state = Path(tempfile.mkdtemp(prefix="hpotui-state-"))
    os.chmod(state, 0o777)
    env = cli_env({"XDG_STATE_HOME": str(state)})
    term = Tmux(size)
    with readonly_copy(made, "their study #1") as db:
        reader = " ".join(f"'{a}'" for a in as_reader([]))
        term.start(shell(db.parent.parent, f"{reader} {hpotui_cmd()} --db '{db}'", env))
        try:
            wait(lambda: "done" in term.pane() and "completed" in term.pane(), 30, "the study list", term.pane)
            term.keys("Enter")
            wait(lambda: "budget: 12 trials finished" in term.flat() or "ended" in term.pane(), 20,
                 "the finished study", term.pane)
            assert "Traceback" not in term.pane()
            term.keys("q")
            wait(lambda: "HPOTUI-EXITED-0" in term.pane(), 15, "the interface to exit", term.pane)
        finally:
            term.close()
    shutil.rmtree(state, ignore_errors=True)


def test_a_yaml_file_as_db_is_one_line_and_exit_2(study_dir: Path):
    term = Tmux((80, 24))
    term.start(shell(study_dir, f"{hpotui_cmd()} --db tmuxed.yaml"))
    try:
        wait(lambda: "HPOTUI-EXITED-2" in term.pane(), 20, "exit 2", term.pane)
        assert "tmuxed.yaml: not a readable hpotui study database" in term.flat()
        assert "Traceback" not in term.pane()
    finally:
        term.close()
