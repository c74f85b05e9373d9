"""Keys that change what is shown (filter, search, sort, log-y, metric, mark, compare, parameters, help,
messages), the study list, the refine and clone dialogs, and a finished study that must stay
read-only — at 80x24 (the smallest terminal we promise) and at 200x60."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.tui.bigdb import make_study_db
from tests.tui.conftest import fixed_clock, wait_until
from hpotui.tui.app import HpotuiApp
from hpotui.tui.screens.dialogs import CloneScreen, ConfirmScreen
from hpotui.tui.screens.help import HelpScreen
from hpotui.tui.screens.log import LogScreen
from hpotui.tui.screens.messages import MessagesScreen
from hpotui.tui.screens.refine import RefineScreen
from hpotui.tui.screens.study import StudyScreen
from hpotui.tui.screens.study_list import StudyListScreen

pytestmark = pytest.mark.anyio
SIZES = [(80, 24), (200, 60)]


def rendered(widget) -> str:
    return str(widget.render())


async def loaded(pilot) -> StudyScreen:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, StudyScreen) and pilot.app.screen.view is not None
                     and not pilot.app.screen._busy, what="the study screen")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.1)
    return pilot.app.screen  # type: ignore[return-value]


def header(screen: StudyScreen) -> str:
    return rendered(screen.query_one("#study-header"))


@pytest.mark.parametrize("size", SIZES)
async def test_enter_on_the_list_opens_the_study_on_its_first_trial(demo_db, size):
    app = HpotuiApp(str(demo_db), None, clock=fixed_clock, refresh_s=0.1, open_live=False)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one("#studies").row_count == 1, what="the list")
        row = [str(c) for c in app.screen.query_one("#studies").get_row_at(0)]
        assert row[0] == "demo" and "alive" in row[4] and "0.7244" in row[3]  # best and engine come before counts
        await pilot.press("enter")
        screen = await loaded(pilot)
        assert screen.table.cursor_row == 0 and screen.highlighted().number == 1
        await wait_until(pilot, lambda: "train_loss" in rendered(screen.query_one("#loss-chart")),
                         what="the first trial's curves")
        await pilot.press("escape")
        assert app.screen.query("#studies")


async def test_hpotui_alone_opens_on_the_live_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_study_db(tmp_path / "two.db", name="old", finished=True)
    make_study_db(tmp_path / "two.db", name="live")
    app = HpotuiApp("two.db", None, clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot)
        assert screen.view.study.name == "live"
        await pilot.press("escape")
        assert isinstance(app.screen, StudyListScreen)


@pytest.mark.parametrize("size", SIZES)
async def test_filter_search_sort_logy_metric_mark_compare(demo_db, size):
    app = HpotuiApp(str(demo_db), "demo", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=size) as pilot:
        screen = await loaded(pilot)
        await pilot.press("f")  # running only
        await wait_until(pilot, lambda: screen.table.row_count == 2, what="the running filter")
        assert "filter running" in header(screen)
        await pilot.press("F")  # reset
        await wait_until(pilot, lambda: screen.table.row_count == 14, what="the filter reset")

        await pilot.press("slash", "a", "d", "a", "m")
        await wait_until(pilot, lambda: all(screen.trials[t].params.get("optimizer") == "adam"
                                            for t in screen.table.trial_ids), what="the search")
        assert "/adam" in header(screen)
        await pilot.press("enter")  # keep it
        await pilot.press("slash")
        for _ in range(4):
            await pilot.press("backspace")
        await pilot.press("#", "7", "enter")
        await wait_until(pilot, lambda: [screen.trials[t].number for t in screen.table.trial_ids] == [7],
                         what="trial 7 by number")
        await pilot.press("F")
        await wait_until(pilot, lambda: screen.table.row_count == 14)

        await pilot.press("o")  # next column: status
        await wait_until(pilot, lambda: screen.trials[screen.table.trial_ids[0]].status == "running",
                         what="sorted by status")
        assert "status▲" in screen.table.header_text() and "sort status▲" in header(screen)
        await pilot.press("O")
        await wait_until(pilot, lambda: "status▼" in screen.table.header_text(), what="reversed")

        await pilot.press("L")
        await wait_until(pilot, lambda: "(log y" in rendered(screen.query_one("#loss-chart")), what="log y")
        await pilot.press("n")
        assert screen.ui.metric is not None and screen.ui.metric in screen.metric_names

        await pilot.press("home")
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


async def test_j_k_home_end_in_the_table_and_the_list(demo_db):
    app = HpotuiApp(str(demo_db), None, clock=fixed_clock, refresh_s=0.1, open_live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one("#studies").row_count == 1)
        await pilot.press("end", "home", "j", "k", "enter")
        screen = await loaded(pilot)
        await pilot.press("j", "j")
        assert screen.table.cursor_row == 2
        await pilot.press("k")
        assert screen.table.cursor_row == 1
        await pilot.press("end")
        assert screen.table.cursor_row == screen.table.row_count - 1
        await pilot.press("home")
        assert screen.table.cursor_row == 0


async def test_sort_filter_and_view_are_remembered_across_attaches(demo_db):
    app = HpotuiApp(str(demo_db), "demo", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await loaded(pilot)
        await pilot.press("o", "O", "f", "g")
        await wait_until(pilot, lambda: screen.ui.view == "gpu")
    again = HpotuiApp(str(demo_db), "demo", clock=fixed_clock, refresh_s=0.1)
    async with again.run_test(size=(100, 30)) as pilot:
        screen = await loaded(pilot)
        assert (screen.ui.sort, screen.ui.descending, screen.ui.view) == ("status", True, "gpu")
        assert "filter running" in header(screen) and "sort status▼" in header(screen)


async def test_the_highlighted_trial_stays_on_its_row_when_a_refresh_resorts(demo_db):
    """Sorted by status, the trial under the cursor finishes: it must not slide away under the next key."""
    app = HpotuiApp(str(demo_db), "demo", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await loaded(pilot)
        await pilot.press("o")  # status: running trials first
        await wait_until(pilot, lambda: "status▲" in screen.table.header_text())
        await pilot.app.workers.wait_for_complete()
        await pilot.press("home", "j")  # the second running trial
        await pilot.pause(0.2)
        row, trial = screen.table.cursor_row, screen.highlighted()
        assert trial.status == "running"
        conn = sqlite3.connect(demo_db)
        conn.execute("UPDATE trials SET status = 'failed', finished_at = started_at + 10 WHERE id = ?", (trial.id,))
        conn.commit()
        await wait_until(pilot, lambda: screen.trials.get(trial.id) is not None
                         and screen.trials[trial.id].status == "failed", what="the refresh")
        assert screen.table.cursor_row == row and screen.highlighted().id == trial.id
        await pilot.press("s")  # targets exactly that trial, and says it is not running
        assert f"trial {trial.number} is failed" in rendered(screen.query_one("#message"))


async def test_reasons_are_shown_in_the_detail_area(demo_db):
    app = HpotuiApp(str(demo_db), "demo", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot)

        async def on(number: int) -> str:
            target = next(i for i, t in enumerate(screen.table.trial_ids) if screen.trials[t].number == number)
            screen.table.move_cursor(target)
            await wait_until(pilot, lambda: f"trial {number} " in rendered(screen.query_one("#reason")),
                             what=f"the reason of trial {number}")
            return rendered(screen.query_one("#reason"))

        pruned = await on(3)
        assert "pruned at epoch 2" in pruned and "cut-off" in pruned
        assert "cut at 2" in rendered(screen.query_one("#loss-chart"))  # the rung marker's legend
        assert "clone of #6" in await on(12)
        failed = await on(8)
        assert "exit code 1" in failed and "stderr│ ValueError" in failed
        await pilot.press("l")  # a failed trial's log opens on stderr
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen))
        assert app.screen.stream == "stderr" and "finished: complete log" in rendered(app.screen.query_one("#log-header"))


async def test_parameter_view_with_optuna_importances(demo_db):
    pytest.importorskip("optuna")
    app = HpotuiApp(str(demo_db), "demo", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await loaded(pilot)
        await pilot.press("a")
        await wait_until(pilot, lambda: "importance" in rendered(screen.query_one("#params-panel")), timeout=60,
                         what="the parameter view")
        text = rendered(screen.query_one("#params-panel"))
        assert "Optuna fANOVA" in text and "val_acc vs lr (log x)" in text and "val_acc vs optimizer" in text
        assert "top 3 of 10" in text and "#6" in text


async def test_parameter_view_draws_the_pareto_front_of_two_objectives(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_study_db(tmp_path / "mo.db", name="mo", finished=True)
    conn = sqlite3.connect(tmp_path / "mo.db")
    space = yaml.safe_load(conn.execute("SELECT space_yaml FROM studies").fetchone()[0])
    space["objective"] = [{"metric": "val_acc", "mode": "max"}, {"metric": "val_loss", "mode": "min"}]
    conn.execute("UPDATE studies SET space_yaml = ?", (yaml.safe_dump(space),))
    conn.commit()
    app = HpotuiApp("mo.db", "mo", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await loaded(pilot)
        await pilot.press("a")
        await wait_until(pilot, lambda: "Pareto front" in rendered(screen.query_one("#params-panel")), timeout=60,
                         what="the Pareto front")
        assert "val_loss (min) vs val_acc (max)" in rendered(screen.query_one("#params-panel"))


async def test_log_y_on_a_constant_series_never_shows_another_trials_charts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_study_db(tmp_path / "c.db", name="c", finished=True)
    conn = sqlite3.connect(tmp_path / "c.db")
    conn.execute("UPDATE metrics SET value = 0.1 WHERE trial_id = 2 AND name LIKE '%acc'")  # diverged at chance
    conn.execute("UPDATE metrics SET value = -1.0 WHERE trial_id = 2 AND name = 'train_loss'")
    conn.commit()
    app = HpotuiApp("c.db", "c", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot)
        await pilot.press("L", "j")
        await wait_until(pilot, lambda: "trial 2 " in rendered(screen.query_one("#reason")), what="trial 2")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.3)
        acc = rendered(screen.query_one("#acc-chart"))
        assert "0.1" in acc and "could not" not in rendered(screen.query_one("#message"))
        assert "values ≤ 0 not drawn" in rendered(screen.query_one("#loss-chart"))
        await pilot.press("L")
        await wait_until(pilot, lambda: "(log y" not in rendered(screen.query_one("#acc-chart")))
        axis = [line.split("┤")[0].strip() for line in rendered(screen.query_one("#acc-chart")).splitlines()
                if "┤" in line]
        assert axis and all(not a.startswith("-") for a in axis)  # accuracy never gets a negative axis
        ticks = rendered(screen.query_one("#acc-chart")).splitlines()[-1]
        assert "." not in ticks  # whole epochs


async def test_help_lists_every_key_and_messages_keep_the_long_ones(demo_db):
    app = HpotuiApp(str(demo_db), "demo", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = rendered(app.screen.query_one("#help-text"))
        for binding in screen.BINDINGS:
            assert binding.tooltip in text
        assert "never stops a study" in text and "j/k" in text
        await pilot.press("j", "end", "escape")
        assert app.screen is screen
        long = "refined demo (stage 1): top 5 of 10 finished trials; next stage launched in the background " \
               "(engine pid 4242)"
        screen.say(long)
        assert "(m: all)" in rendered(screen.query_one("#message"))
        await pilot.press("m")
        assert isinstance(app.screen, MessagesScreen)
        assert "engine pid 4242" in rendered(app.screen.query_one("#messages-text"))


async def test_finished_study_keys_say_what_to_do_instead(finished_db):
    app = HpotuiApp(str(finished_db), "done", clock=fixed_clock, refresh_s=0.1, ack_wait_s=1.0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot)
        assert "budget: 12 trials finished" in header(screen)
        await pilot.press("s")
        assert "nothing to stop" in rendered(screen.query_one("#message"))
        for key in ("p", "plus", "minus", "c"):
            await pilot.press(key)
            message = app.messages[-1].plain
            assert "nothing runs it" in message and "resume" not in message
        await pilot.press("S")  # no question first: there is nothing to stop
        assert not isinstance(app.screen, ConfirmScreen)
        assert "nothing to stop" in rendered(screen.query_one("#message"))
        await pilot.press("R")
        assert "nothing to resume" in rendered(screen.query_one("#message"))
    conn = sqlite3.connect(finished_db)
    assert conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0] == 0
    assert conn.execute("SELECT status FROM studies").fetchone()[0] == "completed"


async def test_clone_outside_the_range_is_noted_and_the_key_hint_fits(demo_db):
    app = HpotuiApp(str(demo_db), "demo", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("c")
        assert isinstance(app.screen, CloneScreen)
        dialog = app.screen
        assert dialog.query_one(".hint").region.bottom <= 24 and dialog.query_one(".hint").region.height == 1
        dialog.query_one("#param-lr").value = "5"
        await pilot.pause(0.1)
        assert "outside the searched range" in rendered(dialog.query_one("#clone-note"))
        await pilot.press("escape")


async def test_refine_writes_the_next_stage_with_what_the_fields_show(finished_db):
    pytest.importorskip("hpotui.engine.search.refine")
    app = HpotuiApp(str(finished_db), "done", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(120, 50)) as pilot:
        screen = await loaded(pilot)
        await pilot.press("r")
        assert isinstance(app.screen, RefineScreen)
        dialog = app.screen
        await wait_until(pilot, lambda: "top-5 span" in rendered(dialog.query_one("#info-lr")), what="spans")
        await wait_until(pilot, lambda: dialog.query_one("#max_trials").value != "", what="the budget shown")
        assert dialog.query_one("#max_trials").value == "9"  # 17 halved, as refine writes it
        assert "proposed" in rendered(dialog.query_one("#info-lr"))
        dialog.query_one("#low-dropout").value = "0.1"
        dialog.query_one("#max_trials").value = "7"
        dialog.query_one("#output").value = "next.yaml"
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: app.screen is screen, what="the dialog to close")
        await wait_until(pilot, lambda: "edits included" in app.messages[-1].plain, what="the summary")
    text = Path("next.yaml").read_text()
    written = yaml.safe_load(text)
    assert written["space"]["dropout"]["low"] == 0.1
    assert written["budget"]["max_trials"] == 7 and "budget.max_trials: 17 -> 7" in text
    assert written["parent"] == "done"


async def test_clicking_a_header_sorts_by_it_and_again_reverses(demo_db):
    app = HpotuiApp(str(demo_db), "demo", clock=fixed_clock, refresh_s=0.1)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await loaded(pilot)
        x = 0
        for column in screen.table.columns:
            if column.name == "best":
                break
            x += column.width + 1
        await pilot.click("#trials", offset=(x + 1, 0))
        await wait_until(pilot, lambda: "best▲" in screen.table.header_text(), what="sorted by best")
        await wait_until(pilot, lambda: screen.table.trial_ids[0] == screen.view.best.id, what="best first")
        await pilot.click("#trials", offset=(x + 1, 0))
        await wait_until(pilot, lambda: "best▼" in screen.table.header_text(), what="reversed")
