"""Invalid trials and the study's warnings on the study screen, at 80x24, from real engine runs.

A trial that prints ``@hpotui {"invalid": "why"}`` is recorded ``invalid`` with its reason and does
not count toward ``max_trials``; a regex that never matches leaves the study without its objective.
Both are recorded by the engine (trial status and reason, ``studies.warnings``, ``not_read``
events): the screen must show them where a user looks — the header, the reason line, ``h``, ``m``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.tui.conftest import wait_until
from hpotui.engine.database.store import Store
from hpotui.engine.reading.trial_reading import ReadingLedger
from hpotui.tui.app import HpotuiApp
from hpotui.tui.screens.messages import MessagesScreen
from hpotui.tui.screens.study import StudyScreen

pytestmark = pytest.mark.anyio

PICKY = """
import json, sys
lr = float(sys.argv[1])
if lr > 0.5:
    print("@hpotui " + json.dumps({"invalid": f"lr={lr} does not fit this toy"}), flush=True)
    raise SystemExit(0)
for epoch in range(1, 4):
    print("@hpotui " + json.dumps({"epoch": epoch, "val_acc": lr * epoch}), flush=True)
"""
PICKY_SPACE = """
name: picky
command: python trainer.py {lr}
objective: {metric: val_acc, mode: max}
search: {algorithm: grid}
budget: {max_trials: 2, max_parallel: 1}
space:
  lr: {type: choice, values: [0.9, 0.3, 0.2]}
"""
SILENT = """
print("epoch 1 accuracy 0.5", flush=True)
"""
SILENT_SPACE = """
name: silent
command: python trainer.py {x}
objective: {metric: val_acc, mode: max}
search: {algorithm: grid}
budget: {max_trials: 2, max_parallel: 1}
metrics:
  regex: {val_acc: 'val acc {number}', epoch: 'epoch (\\\\d+)'}
space:
  x: {type: choice, values: [1, 2]}
"""


def launched(tmp_path: Path, name: str, trainer: str, space: str) -> Path:
    """The database of a finished headless engine run of ``space`` (the engine's own writer)."""
    (tmp_path / "trainer.py").write_text(textwrap.dedent(trainer))
    (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(space))
    db = tmp_path / "h.db"
    result = run_cli("launch", f"{name}.yaml", "--headless", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return db


def rendered(screen: StudyScreen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def loaded(pilot) -> StudyScreen:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, StudyScreen) and pilot.app.screen.view is not None
                     and not pilot.app.screen._busy, what="the study screen")
    await pilot.app.workers.wait_for_complete()
    return pilot.app.screen  # type: ignore[return-value]


async def on_trial(pilot, screen: StudyScreen, number: int) -> str:
    target = next(i for i, t in enumerate(screen.table.trial_ids) if screen.trials[t].number == number)
    screen.table.move_cursor(target)
    await wait_until(pilot, lambda: f"trial {number} " in rendered(screen, "#reason"),
                     what=f"the reason of trial {number}")
    return rendered(screen, "#reason")


async def test_an_invalid_trial_shows_its_status_and_reason_and_does_not_count(tmp_path: Path):
    db = launched(tmp_path, "picky", PICKY, PICKY_SPACE)
    app = HpotuiApp(str(db), "picky", refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot)
        [invalid] = [t for t in screen.trials.values() if t.status == "invalid"]
        assert invalid.params["lr"] == 0.9
        head = rendered(screen, "#study-header")
        assert "2/2: 2 done 1 inval" in head  # max_trials counts the two valid trials only
        reason = await on_trial(pilot, screen, invalid.number)
        assert "invalid" in reason and "lr=0.9 does not fit this toy" in reason
        assert "not counted toward max_trials" in reason
        for _ in range(7):  # the status filter cycles to `invalid`
            await pilot.press("f")
        await wait_until(pilot, lambda: "filter invalid" in rendered(screen, "#study-header"), what="the filter")
        await wait_until(pilot, lambda: [screen.trials[t].number for t in screen.table.trial_ids] == [invalid.number],
                         what="only the invalid trial")


async def test_a_regex_that_never_matched_is_a_warning_on_the_study_screen(tmp_path: Path):
    db = launched(tmp_path, "silent", SILENT, SILENT_SPACE)
    app = HpotuiApp(str(db), "silent", refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot)
        warnings = screen.view.study.warnings
        assert any("metrics.regex.val_acc never matched the output of 2 trials (1, 2)" in w for w in warnings)
        head = rendered(screen, "#study-header").splitlines()
        assert f"{len(warnings)} warnings (h)" in head[1]  # always in sight, next to the engine's state
        reason = await on_trial(pilot, screen, 1)
        assert "not read│" in reason and "metrics.regex.val_acc ('val acc {number}') never matched" in reason
        await pilot.press("h")
        await wait_until(pilot, lambda: "never matched" in rendered(screen, "#health-panel"), what="the health view")
        panel = rendered(screen, "#health-panel")
        assert f"{len(warnings)} warnings from the engine" in panel and "finished without reporting the objective" in panel
        await pilot.press("m")
        await wait_until(pilot, lambda: isinstance(app.screen, MessagesScreen), what="the message history")
        history = "\n".join(str(line) for line in app.messages)
        assert all(f"warning: {w}" in history for w in warnings)


async def test_a_warning_that_appears_while_watching_is_said_on_the_message_line(tmp_path: Path):
    db = launched(tmp_path, "picky", PICKY, PICKY_SPACE)
    app = HpotuiApp(str(db), "picky", refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot)
        assert "warning" not in rendered(screen, "#study-header")
        ledger = ReadingLedger("val_acc")  # the engine's own words for a metric file that never appeared
        ledger.add(2, "never_appeared", "metrics.csv")
        [line] = ledger.lines()
        store = Store(db)
        store.set_warnings(screen.view.study.id, [line])
        store.close()
        await wait_until(pilot, lambda: "1 warning (h)" in rendered(screen, "#study-header"), what="the count")
        await wait_until(pilot, lambda: "warning: metrics.csv never appeared" in rendered(screen, "#message"),
                         what="the new warning on the message line")
