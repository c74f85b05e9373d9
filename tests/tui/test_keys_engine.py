"""Every key that acts on a study, driven through Pilot against a real headless engine.

The engine runs as a real subprocess on a tiny pure-Python trainer; each test presses keys the
way a user would and then checks the database the engine writes (the only thing that proves
the request reached it) and the acknowledgement on screen.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.tui.conftest import wait_until
from hpotui.tui.app import HpotuiApp
from hpotui.tui.screens.dialogs import CloneScreen, ConfirmScreen
from hpotui.tui.screens.log import LogScreen
from hpotui.tui.screens.study import StudyScreen
from hpotui.tui.widgets.log_view import LogView

pytestmark = pytest.mark.anyio

TRAINER = """
import json, sys, time
lr = float(sys.argv[1])
for epoch in range(1, 400):
    time.sleep(0.05)
    loss = 2.0 / (1 + epoch * lr)
    print("@hpotui " + json.dumps({"epoch": epoch, "train_loss": loss, "val_loss": loss * 1.1,
                                   "train_acc": 1 - loss / 2, "val_acc": 0.95 * (1 - loss / 2)}), flush=True)
    print(f"epoch {epoch} done", flush=True)
"""
SPACE = """
name: live
command: python trainer.py {lr}
objective: {metric: val_acc, mode: max}
search: {algorithm: random, seed: 0}
budget: {max_trials: 8, max_parallel: 2}
space:
  lr: {type: loguniform, low: 1e-3, high: 1}
"""


def query(db: Path, sql: str, *args):
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the engine is still creating the file
            return [(None,)]
        raise
    finally:
        conn.close()


@pytest.fixture
def live_study(tmp_path: Path):
    """A running study: `hpotui launch --headless` in a subprocess, stopped at the end whatever happens."""
    (tmp_path / "trainer.py").write_text(textwrap.dedent(TRAINER))
    (tmp_path / "live.yaml").write_text(textwrap.dedent(SPACE))
    db = tmp_path / "live.db"
    proc = subprocess.Popen([sys.executable, "-m", "hpotui.engine.cli", "launch", "live.yaml", "--headless", "--db",
                             str(db), "--grace", "2"], cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if db.exists() and (query(db, "SELECT COUNT(*) FROM trials WHERE status = 'running' AND reports > 0")[0][0]
                            or 0) >= 2:
            break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "engine exited"
        time.sleep(0.05)
    else:
        raise AssertionError("the engine did not start two trials")
    yield db
    if proc.poll() is None:
        subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "stop", "live", "--db", str(db)], env=cli_env(),
                       capture_output=True, timeout=60)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def app_for(db: Path) -> HpotuiApp:
    return HpotuiApp(str(db), "live", refresh_s=0.1, ack_wait_s=15.0)


def said(app: HpotuiApp) -> str:
    """Every message of the session in full (the message line shows the start of the latest)."""
    return "\n".join(m.plain for m in app.messages)


def message(app: HpotuiApp) -> str:
    return str(app.screen.query_one("#message").render())


async def on_study(pilot) -> StudyScreen:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, StudyScreen) and pilot.app.screen.view is not None,
                     what="the study screen")
    return pilot.app.screen  # type: ignore[return-value]


async def highlight_running(pilot, screen: StudyScreen) -> int:
    """Move the cursor to the first running trial; returns its number."""
    await wait_until(pilot, lambda: any(t.status == "running" for t in screen.trials.values()),
                     what="a running trial")
    for _ in range(screen.table.row_count):
        trial = screen.highlighted()
        if trial is not None and trial.status == "running" and not trial.paused:
            return trial.number
        await pilot.press("down")
    raise AssertionError("no running trial in the table")


async def test_stop_trial_asks_first_then_stops_it(live_study):
    app = app_for(live_study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await on_study(pilot)
        number = await highlight_running(pilot, screen)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert "cancelled" in message(app)
        assert query(live_study, "SELECT status FROM trials WHERE number = ?", number)[0][0] == "running"
        await pilot.press("s")
        await pilot.press("y")
        await wait_until(pilot, lambda: query(live_study, "SELECT status FROM trials WHERE number = ?",
                                              number)[0][0] == "stopped", what="the trial to stop")
        await wait_until(pilot, lambda: f"stopping trial {number}" in message(app), what="the acknowledgement")
        await wait_until(pilot, lambda: any(t.number == number and t.status == "stopped"
                                            for t in screen.trials.values()), what="the table to show it")


async def test_pause_resume_trial_launching_and_parallel(live_study):
    app = app_for(live_study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await on_study(pilot)
        number = await highlight_running(pilot, screen)
        paused = "SELECT paused FROM trials WHERE number = ?"
        await pilot.press("P")
        await wait_until(pilot, lambda: query(live_study, paused, number)[0][0] == 1, what="SIGSTOP")
        await wait_until(pilot, lambda: f"trial {number} paused" in message(app), what="pause ack")
        await wait_until(pilot, lambda: screen.highlighted() is not None and screen.highlighted().paused,
                         what="the table to show paused")
        await pilot.press("P")
        await wait_until(pilot, lambda: query(live_study, paused, number)[0][0] == 0, what="SIGCONT")

        launching = "SELECT launching_paused FROM studies WHERE name = 'live'"
        await pilot.press("p")
        await wait_until(pilot, lambda: query(live_study, launching)[0][0] == 1, what="launching paused")
        await wait_until(pilot, lambda: "launching paused" in message(app))
        await wait_until(pilot, lambda: screen.view.study.launching_paused, what="header to know")
        await pilot.press("p")
        await wait_until(pilot, lambda: query(live_study, launching)[0][0] == 0, what="launching resumed")

        parallel = "SELECT max_parallel FROM studies WHERE name = 'live'"
        await pilot.press("plus")
        await wait_until(pilot, lambda: query(live_study, parallel)[0][0] == 3, what="max_parallel 3")
        await wait_until(pilot, lambda: "max_parallel is now 3" in message(app))
        await wait_until(pilot, lambda: screen.view.study.max_parallel == 3)
        await pilot.press("minus")
        await wait_until(pilot, lambda: query(live_study, parallel)[0][0] == 2, what="max_parallel 2")


async def test_clone_with_an_edited_parameter(live_study):
    app = app_for(live_study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await on_study(pilot)
        number = await highlight_running(pilot, screen)
        await pilot.press("c")
        assert isinstance(app.screen, CloneScreen)
        field = app.screen.query_one("#param-lr")
        field.value = "0.5"
        await pilot.press("enter")
        await wait_until(pilot, lambda: f"clone of trial {number} queued" in said(app),
                         what="clone ack")
        rows = query(live_study, "SELECT args, result FROM commands WHERE action = 'clone_trial'")
        assert json.loads(rows[0][0]) == {"params": {"lr": 0.5}}
        await pilot.press("plus")  # make room so the clone starts now
        await wait_until(pilot, lambda: query(live_study, "SELECT COUNT(*) FROM trials WHERE params = ?",
                                              json.dumps({"lr": 0.5}))[0][0] == 1, what="the clone to launch")
        await wait_until(pilot, lambda: any(t.clone_of == number and not t.pending for t in screen.trials.values()),
                         what="the started clone to say whose clone it is")


async def test_a_clone_queued_while_launching_is_paused_is_visible(live_study):
    app = app_for(live_study)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await on_study(pilot)
        number = await highlight_running(pilot, screen)
        await pilot.press("p")
        await wait_until(pilot, lambda: screen.view.study.launching_paused, what="launching paused")
        await pilot.press("c")
        app.screen.query_one("#param-lr").value = "0.25"
        await pilot.press("enter")
        await wait_until(pilot, lambda: any(t.pending and t.clone_of == number for t in screen.trials.values()),
                         what="the waiting clone in the table")
        assert "1 clone waiting" in str(screen.query_one("#study-header").render())


async def test_log_view_tails_and_follows_stdout(live_study):
    app = app_for(live_study)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await on_study(pilot)
        await highlight_running(pilot, screen)
        await pilot.press("l")
        assert isinstance(app.screen, LogScreen)
        log = app.screen.query_one(LogView)
        await wait_until(pilot, lambda: any("done" in line for line in log.lines), what="log lines")
        first = log.line_count
        await wait_until(pilot, lambda: log.line_count > first, what="follow to add new lines")
        await pilot.press("e")
        await wait_until(pilot, lambda: "stderr" in str(app.screen.query_one("#log-header").render()))
        await pilot.press("escape")
        assert isinstance(app.screen, StudyScreen)


async def test_stop_study_then_quit_says_it_keeps_running(live_study):
    app = app_for(live_study)
    async with app.run_test(size=(100, 30)) as pilot:
        await on_study(pilot)
        await pilot.press("S")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: query(live_study, "SELECT status FROM studies")[0][0] == "stopped",
                         timeout=30, what="the study to stop")
        assert query(live_study, "SELECT COUNT(*) FROM trials WHERE status = 'running'")[0][0] == 0
        await pilot.press("q")
    assert "keep running" in app.return_value


async def test_refine_enter_writes_and_launches_the_next_stage(live_study):
    pytest.importorskip("hpotui.engine.search.refine")
    app = app_for(live_study)
    async with app.run_test(size=(120, 50)) as pilot:
        screen = await on_study(pilot)
        await pilot.press("S", "y")
        await wait_until(pilot, lambda: query(live_study, "SELECT status FROM studies")[0][0] == "stopped",
                         timeout=30, what="the study to stop")
        await pilot.press("r")
        await wait_until(pilot, lambda: "top-5 span" in str(app.screen.query_one("#info-lr").render()),
                         what="the spans")
        await pilot.press("enter")  # in the top-K field: write and launch
        await wait_until(pilot, lambda: app.screen is screen, what="the dialog to close")
        await wait_until(pilot, lambda: "next stage launched" in said(app), what="the launch message")
    stage = live_study.parent
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not query(live_study, "SELECT name FROM studies WHERE stage = 2 "
                                                                    "AND engine_pid IS NOT NULL"):
            time.sleep(0.1)  # its engine holds it: a stop now reaches the engine, not a study about to start
        [(name, parent)] = query(live_study, "SELECT s.name, p.name FROM studies s JOIN studies p "
                                             "ON p.id = s.parent_id")
        assert parent == "live"
    finally:
        for (name,) in query(live_study, "SELECT name FROM studies WHERE stage = 2"):
            subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "stop", name, "--db", str(live_study)],
                           env=cli_env(), capture_output=True, timeout=60, cwd=stage)


def engine_pid(db: Path) -> int:
    return query(db, "SELECT engine_pid FROM studies WHERE name = 'live'")[0][0]


async def test_engine_death_is_said_within_seconds_and_r_resumes(live_study):
    """kill -9 the engine and one trial's process group: the screen, the list and a notice all say so."""
    import os
    import signal

    app = app_for(live_study)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await on_study(pilot)
            await highlight_running(pilot, screen)
            [(gone_number, gone_group)] = query(live_study, "SELECT number, pgid FROM trials WHERE status = "
                                                            "'running' ORDER BY number LIMIT 1")
            os.kill(engine_pid(live_study), signal.SIGKILL)
            os.killpg(gone_group, signal.SIGKILL)
            killed = time.monotonic()
            await wait_until(pilot, lambda: screen.view.engine_died, timeout=10, what="the engine's death")
            assert time.monotonic() - killed < 5
            head = str(screen.query_one("#study-header").render())
            assert "engine gone: R resumes (hpotui resume live)" in head and "ETA" not in head
            await wait_until(pilot, lambda: any(t.number == gone_number and t.shown_status == "gone"
                                                for t in screen.trials.values()), timeout=10, what="the gone trial")
            gone = next(t for t in screen.trials.values() if t.number == gone_number)
            assert gone.eta_s is None
            assert not any(t.shown_status == "running" for t in screen.trials.values())
            assert any("engine of live is gone" in m.plain for m in app.messages)  # the notice (and the bell)
            await pilot.press("escape")
            await wait_until(pilot, lambda: "engine gone" in str(app.screen.query_one("#studies").get_row_at(0)[2]),
                             what="the study list to say it")
            await pilot.press("enter")
            screen = await on_study(pilot)
            await pilot.press("R")
            await wait_until(pilot, lambda: "resumed live in the background" in said(app),
                             timeout=20, what="the resume")
            await wait_until(pilot, lambda: screen.view is not None and screen.view.alive, timeout=30,
                             what="a live engine again")
    finally:
        subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "stop", "live", "--db", str(live_study)],
                       env=cli_env(), capture_output=True, timeout=60)
