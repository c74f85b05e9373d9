"""The main screens pinned as pictures, at 80x24 (the smallest terminal we promise) and 200x60.

The study file is written by the engine's own store with fixed times (``tests/tui/bigdb.py``)
and the app gets a fixed clock, so run times, ETAs and message stamps never move. Update after
an intended change with ``--snapshot-update``, after looking at the pictures.
"""

from __future__ import annotations

import pytest

from tests.tui.bigdb import make_study_db
from tests.tui.conftest import fixed_clock, wait_until
from hpotui.tui.app import HpotuiApp
from hpotui.tui.screens.study import StudyScreen

SIZES = [(80, 24), (200, 60)]


def make_app(db, study: str | None = "demo") -> HpotuiApp:
    return HpotuiApp(str(db), study, clock=fixed_clock, refresh_s=0.1, open_live=False)


async def settle(pilot) -> None:
    """Wait until the study screen's refresh worker is idle with nothing queued."""
    screen = pilot.app.screen
    if isinstance(screen, StudyScreen):
        await wait_until(pilot, lambda: screen.view is not None and not screen._busy and not screen._want_detail,
                         what="the study screen to load")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.2)
    await pilot.app.workers.wait_for_complete()


@pytest.mark.parametrize("size", SIZES)
def test_study_list(snap_compare, demo_db, size):
    async def run_before(pilot):
        await wait_until(pilot, lambda: pilot.app.screen.query("#studies").first().row_count == 1)

    assert snap_compare(make_app(demo_db, None), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_study_curves(snap_compare, demo_db, size):
    assert snap_compare(make_app(demo_db), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("key", ["g", "h", "v", "a"])
def test_study_panels(snap_compare, demo_db, size, key):
    """g: GPU panel, h: health panel, v: compare view, a: parameter view."""
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot)

    assert snap_compare(make_app(demo_db), terminal_size=size, run_before=run_before)


def test_help_screen(snap_compare, demo_db):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(make_app(demo_db), terminal_size=(80, 24), run_before=run_before)


def test_failed_trial_reason(snap_compare, demo_db):
    """The reason line of a failed trial: exit code and the last lines of its stderr, above its curves."""
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press(*["j"] * 7)  # trial 8 failed
        await wait_until(pilot, lambda: "trial 8 " in str(pilot.app.screen.query_one("#reason").render()))
        await settle(pilot)

    assert snap_compare(make_app(demo_db), terminal_size=(80, 24), run_before=run_before)


def test_engine_gone(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_study_db(tmp_path / "dead.db", name="dead", engine="dead")

    assert snap_compare(HpotuiApp("dead.db", "dead", clock=fixed_clock, refresh_s=0.1), terminal_size=(80, 24),
                        run_before=settle)


def test_finished_study_without_color(snap_compare, finished_db, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")

    assert snap_compare(HpotuiApp(str(finished_db), "done", clock=fixed_clock, refresh_s=0.1),
                        terminal_size=(80, 24), run_before=settle)
