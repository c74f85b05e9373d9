"""Keys that change what is shown (filter, sort, log-y, metric, mark, compare, help), the study
list, the refine dialog, and a finished study that must stay read-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.tui.conftest import fixed_clock, wait_until
from hpotui.tui.app import HpotuiApp
from hpotui.tui.screens.help import HelpScreen
from hpotui.tui.screens.refine import RefineScreen
from hpotui.tui.screens.study import StudyScreen

pytestmark = pytest.mark.anyio


def rendered(widget) -> str:
    return str(widget.render())


async def loaded(pilot) -> StudyScreen:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, StudyScreen) and pilot.app.screen.view is not None
                     and not pilot.app.screen._busy, what="the study screen")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.1)
    return pilot.app.screen  # type: ignore[return-value]


async def test_enter_on_the_list_opens_the_study_on_its_first_trial(demo_db):
    app = HpotuiApp(str(demo_db), None, clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one("#studies").row_count == 1, what="the list")
        assert "demo" in str(app.screen.query_one("#studies").get_row_at(0)[0])
        await pilot.press("enter")
        screen = await loaded(pilot)
        assert screen.table.cursor_row == 0 and screen.highlighted().number == 1
        await wait_until(pilot, lambda: "train_loss" in rendered(screen.query_one("#loss-chart")),
                         what="the first trial's curves")
        await pilot.press("escape")
        assert app.screen.query("#studies")


async def test_filter_sort_logy_metric_mark_compare(demo_db):
    app = HpotuiApp(str(demo_db), "demo", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await loaded(pilot)
        await pilot.press("f")  # running only
        await wait_until(pilot, lambda: screen.table.row_count == 2, what="the running filter")
        assert "filter running" in rendered(screen.query_one("#study-header"))
        for _ in range(6):
            await pilot.press("f")  # back round to all trials
        await wait_until(pilot, lambda: screen.table.row_count == 13)

        await pilot.press("o")  # sort by best
        await wait_until(pilot, lambda: screen.table.trial_ids[0] == screen.view.best.id, what="best first")
        assert "sort best" in rendered(screen.query_one("#study-header"))

        await pilot.press("L")
        await wait_until(pilot, lambda: "(log y)" in rendered(screen.query_one("#loss-chart")), what="log y")
        await pilot.press("n")
        assert screen.ui.metric is not None and screen.ui.metric in screen.metric_names

        screen.table.move_cursor(row=0)
        await pilot.pause(0.1)
        first, second = screen.table.trial_ids[:2]
        await pilot.press("space")  # marks and moves down
        await pilot.press("space")
        assert screen.ui.marked == {first, second}
        await wait_until(pilot, lambda: str(screen.table.get_row_at(0)[0]).startswith("*"), what="the mark shown")
        screen.ui.metric = "val_acc"
        await pilot.press("v")
        numbers = [screen.trials[t].number for t in (first, second)]
        await wait_until(pilot, lambda: all(f"#{n}" in rendered(screen.query_one("#compare")) for n in numbers),
                         what="the marked trials in compare")
        assert "(marked)" in rendered(screen.query_one("#compare"))
        await pilot.press("g")
        await wait_until(pilot, lambda: "GPU1" in rendered(screen.query_one("#gpu-panel")), what="GPU panel")
        assert "demo#12" in rendered(screen.query_one("#gpu-panel"))
        await pilot.press("h")
        await wait_until(pilot, lambda: "learning rate" in rendered(screen.query_one("#health-panel")))


async def test_help_lists_every_key(demo_db):
    app = HpotuiApp(str(demo_db), "demo", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(100, 60)) as pilot:
        screen = await loaded(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = rendered(app.screen.query_one("#help-text"))
        for binding in screen.BINDINGS:
            assert binding.tooltip in text
        assert "never stops a study" in text
        await pilot.press("escape")
        assert app.screen is screen


async def test_finished_study_is_read_only(finished_db):
    app = HpotuiApp(str(finished_db), "done", clock=fixed_clock, refresh_s=0.1, ack_wait_s=1.0)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await loaded(pilot)
        await pilot.press("s")
        assert "nothing to stop" in rendered(screen.query_one("#message"))
        await pilot.press("p")
        await wait_until(pilot, lambda: "no running engine" in rendered(screen.query_one("#message")),
                         what="the refusal")
        await pilot.press("S", "y")
        await wait_until(pilot, lambda: "nothing to stop" in rendered(screen.query_one("#message")))
    conn = sqlite3.connect(finished_db)
    assert conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0] == 0
    assert conn.execute("SELECT status FROM studies").fetchone()[0] == "completed"


async def test_refine_writes_the_next_stage_with_edited_bounds(finished_db):
    pytest.importorskip("engine.refine")
    app = HpotuiApp(str(finished_db), "done", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(120, 50)) as pilot:
        screen = await loaded(pilot)
        await pilot.press("r")
        assert isinstance(app.screen, RefineScreen)
        dialog = app.screen
        await wait_until(pilot, lambda: "top-5 span" in rendered(dialog.query_one("#info-lr")), what="spans")
        assert "proposed" in rendered(dialog.query_one("#info-lr"))
        dialog.query_one("#low-dropout").value = "0.1"
        dialog.query_one("#max_trials").value = "7"
        dialog.query_one("#output").value = "next.yaml"
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: app.screen is screen, what="the dialog to close")
        await wait_until(pilot, lambda: "edits included" in rendered(screen.query_one("#message")))
    written = yaml.safe_load(Path("next.yaml").read_text())
    assert written["space"]["dropout"]["low"] == 0.1
    assert written["budget"]["max_trials"] == 7
    assert written["parent"] == "done"
