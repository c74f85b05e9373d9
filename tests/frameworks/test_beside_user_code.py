"""hpotui in a project that has its own ``engine.py`` and ``tui.py`` (DETR, DeiT, MAE and many
others ship an ``engine.py``), run the way a user runs it: the installed ``hpotui`` command, from
the project folder, no PYTHONPATH, stdin/stdout not a terminal.

- ``hpotui launch space.yaml`` detaches its engine, which finishes the study;
- ``hpotui launch ... --headless`` runs it here;
- the interface opens on the project's ``hpotui.db`` under tmux;
- each trial imports the project's own ``engine`` *and* ``from hpotui import report``.

A project folder that even has a ``hpotui.py`` cannot shadow the engine either, and there the
trial uses the standard-library copy that ``hpotui helpers`` writes (``hpotui_report.py``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

HPOTUI = Path(sys.executable).parent / "hpotui"  # the installed console script, as a user types it

USER_ENGINE = '''
"""The project's own engine: train_one_epoch / evaluate, as in DETR's engine.py."""
OWNER = "the project"


def train_one_epoch(lr, epoch):
    return 2.3 / (1 + lr * epoch)


def evaluate(lr, epoch):
    return 1 - 1 / (1 + lr * epoch)
'''
USER_TUI = '''
raise SystemExit("the project's tui.py was imported by something that wanted hpotui's")
'''
TRAIN = '''
import sys
import engine  # the project's engine.py, beside this script
{import_report}

assert engine.OWNER == "the project", engine.__file__
print("engine from", engine.__file__, flush=True)
lr = float(sys.argv[1])
for epoch in range(1, 4):
    report(epoch, train_loss=engine.train_one_epoch(lr, epoch), val_acc=engine.evaluate(lr, epoch))
'''
SPACE = '''
name: {name}
command: python train.py {{lr}}
objective: {{metric: val_acc, mode: max}}
search: {{algorithm: random, seed: 0}}
budget: {{max_trials: 2, max_parallel: 2}}
space:
  lr: {{type: loguniform, low: 0.01, high: 1}}
'''


def user_env() -> dict[str, str]:
    """A user's shell: the venv's bin on PATH (its python runs the trials), nothing on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HPOTUI_DB")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def project(tmp_path: Path, import_report: str = "from hpotui import report", hpotui_py: bool = False) -> Path:
    root = tmp_path / "detr"
    root.mkdir()
    (root / "engine.py").write_text(textwrap.dedent(USER_ENGINE))
    (root / "tui.py").write_text(textwrap.dedent(USER_TUI))
    (root / "train.py").write_text(textwrap.dedent(TRAIN.format(import_report=import_report)))
    for name in ("detached", "headless"):
        (root / f"{name}.yaml").write_text(textwrap.dedent(SPACE.format(name=name)))
    if hpotui_py:
        (root / "hpotui.py").write_text("raise SystemExit(\"the project's hpotui.py shadowed the installed hpotui\")\n")
    return root


def hpotui(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HPOTUI), *args], cwd=root, env=user_env(), text=True, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def one(db: Path, sql: str, *args):
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute(sql, args).fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def wait(condition, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def assert_trials_used_both(root: Path, study: str) -> None:
    """Both trials completed with three reports each, and each imported the project's engine.py."""
    db = root / "hpotui.db"
    assert one(db, "SELECT COUNT(*) FROM trials t JOIN studies s ON s.id = t.study_id "
                   "WHERE s.name = ? AND t.status = 'completed'", study) == 2
    assert one(db, "SELECT COUNT(*) FROM metrics m JOIN trials t ON t.id = m.trial_id JOIN studies s "
                   "ON s.id = t.study_id WHERE s.name = ? AND m.name = 'val_acc'", study) == 6
    for number in (1, 2):
        log = (root / "hpotui_runs" / study / str(number) / "stdout.log").read_text()
        assert f"engine from {root / 'engine.py'}" in log


pytestmark = pytest.mark.skipif(not HPOTUI.exists(), reason="needs the installed hpotui console script")


def test_detached_and_headless_launches_beside_the_projects_engine_and_tui(tmp_path: Path):
    root = project(tmp_path)
    detached = hpotui(root, "launch", "detached.yaml")
    assert detached.returncode == 0, detached.stderr
    assert "runs in the background" in detached.stdout
    wait(lambda: one(root / "hpotui.db", "SELECT status FROM studies WHERE name = 'detached' AND engine_pid IS NULL")
         == "completed", "the detached engine to finish the study")
    assert_trials_used_both(root, "detached")

    headless = hpotui(root, "launch", "headless.yaml", "--headless")
    assert headless.returncode == 0, headless.stderr
    assert "best trial" in headless.stdout and "Traceback" not in headless.stderr
    assert_trials_used_both(root, "headless")
    status = hpotui(root, "status")
    assert status.returncode == 0 and "detached" in status.stdout and "headless" in status.stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_the_interface_opens_from_the_project_folder(tmp_path: Path):
    root = project(tmp_path)
    assert hpotui(root, "launch", "headless.yaml", "--headless").returncode == 0
    sock = f"hpotui-beside-{os.getpid()}"
    tmux = ["tmux", "-L", sock]
    env = user_env()
    command = f"cd {root} && env PATH='{env['PATH']}' TERM=xterm-256color {HPOTUI}; echo HPOTUI-EXITED; sleep 30"

    def pane() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True).stdout

    subprocess.run([*tmux, "new-session", "-d", "-s", "t", "-x", "120", "-y", "30", command], check=True,
                   env={k: v for k, v in env.items() if k != "TMUX"})
    try:
        wait(lambda: "headless" in pane() and "completed" in pane(), "the study list showing the study", timeout=60)
        assert "tui.py was imported" not in pane()
        subprocess.run([*tmux, "send-keys", "-t", "t", "q"], check=True)
        wait(lambda: "HPOTUI-EXITED" in pane(), "the interface to quit", timeout=30)
        assert "Traceback" not in pane()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def test_a_project_hpotui_py_cannot_shadow_the_engine_and_the_copied_helper_reports(tmp_path: Path):
    # With a hpotui.py in the project, `import hpotui` in a trial gets the project's file, so the
    # trial uses the standard-library copy; the engine (started by the console script, and
    # detached with the working directory off its path) never sees the project's file.
    root = project(tmp_path, import_report="from hpotui_report import report", hpotui_py=True)
    copied = hpotui(root, "helpers")
    assert copied.returncode == 0, copied.stderr
    assert (root / "hpotui_report.py").exists() and (root / "hpotui_callbacks.py").exists()
    detached = hpotui(root, "launch", "detached.yaml")
    assert detached.returncode == 0, detached.stderr
    wait(lambda: one(root / "hpotui.db", "SELECT status FROM studies WHERE name = 'detached' AND engine_pid IS NULL")
         == "completed", "the detached engine to finish the study")
    assert_trials_used_both(root, "detached")
    engine_log = (root / "hpotui_runs" / "detached" / "engine.log").read_text()
    assert "shadowed" not in engine_log


def test_hpotui_in_its_own_environment_and_trials_in_a_training_environment_without_it(tmp_path: Path):
    # What a pipx / uv tool install amounts to: the hpotui command runs from this environment, and
    # trials run the python of another one that has never heard of hpotui (a bare venv here: the
    # copied helper needs only the standard library).
    training_env = tmp_path / "train-env"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip",
                    str(training_env)], check=True, timeout=120)
    python = training_env / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import hpotui"], capture_output=True).returncode != 0
    root = project(tmp_path, import_report="from hpotui_report import report")
    (root / "headless.yaml").write_text((root / "headless.yaml").read_text().replace("python train.py", f"{python} train.py"))
    assert hpotui(root, "helpers").returncode == 0
    headless = hpotui(root, "launch", "headless.yaml", "--headless")
    assert headless.returncode == 0, headless.stdout[-2000:] + headless.stderr[-2000:]
    assert_trials_used_both(root, "headless")
