"""Clones (issue 14 item 15): in addition to max_trials, persisted, exactly once, noted when off-range."""

from __future__ import annotations

import json
import signal

from hpotui.engine.control import send_and_wait
from hpotui.engine.store import Store
from tests.faults.conftest import Lab, counting_study, exactly_once, wait_for


def _clone(lab: Lab, study: str, number: int, params: dict) -> str:
    store = Store(lab.db)
    try:
        row = store.study(study)
        assert row is not None
        return send_and_wait(store, row, "clone_trial", trial_number=number, args={"params": params}, wait_s=20)
    finally:
        store.close()


def _running(lab: Lab, study: str, n: int) -> bool:
    return sum(1 for t in lab.trials(study) if t["status"] == "running" and t["reports"] > 0) >= n


def test_a_clone_queued_after_the_budget_is_fully_launched_still_runs_with_its_note(lab: Lab) -> None:
    space = counting_study(lab, "full", max_trials=2, max_parallel=3, epochs=40, delay=0.05)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: _running(lab, "full", 2), what="both trials of the budget running")
    ack = _clone(lab, "full", 1, {"lr": 5.0})
    assert ack.startswith("clone of trial 1 queued: lr=5")
    assert "lr=5.0 is outside the searched range [0.1, 1.0]; it runs as asked" in ack
    assert engine.wait(timeout=90) == 0, engine.output()[-2000:]

    trials = lab.trials("full")
    assert [t["status"] for t in trials] == ["completed"] * 3  # the two of the budget, and the clone on top
    clone = trials[2]
    assert json.loads(clone["params"]) == {"lr": 5.0} and clone["clone_id"] is not None
    assert "outside the searched range" in engine.output()
    assert [e["trial_id"] for e in lab.events("full", "clone_note")] == [clone["id"]]


def test_a_queued_clone_survives_kill_minus_nine_and_runs_once(lab: Lab) -> None:
    space = counting_study(lab, "kept", max_trials=1, max_parallel=1, epochs=60, delay=0.05)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: _running(lab, "kept", 1), what="the trial running")
    ack = _clone(lab, "kept", 1, {"lr": 0.25})
    assert "queued" in ack  # max_parallel 1: it waits for the running trial
    engine.signal(signal.SIGKILL)
    engine.popen.wait()

    resumed = lab.hpotui("resume", "kept", "--headless", timeout=90)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = lab.trials("kept")
    assert [json.loads(t["params"])["lr"] for t in trials][1:] == [0.25]  # the clone ran, once
    assert [t["status"] for t in trials] == ["completed", "completed"]
    again = lab.hpotui("resume", "kept", "--headless", timeout=60)
    assert again.returncode == 0 and len(lab.trials("kept")) == 2  # and never again
    _, missing, extra = exactly_once(lab, "kept")
    assert not missing and not extra


def test_a_clone_value_the_parameter_cannot_take_is_refused(lab: Lab) -> None:
    space = lab.write_space("refuse", command="python count.py {width} 40 0.05",
                            space={"width": {"type": "int", "low": 1, "high": 8}}, max_trials=1, max_parallel=1)
    counting_study(lab, "unused", max_trials=1, max_parallel=1, epochs=1, delay=0)  # writes count.py
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: _running(lab, "refuse", 1), what="the trial running")
    assert _clone(lab, "refuse", 1, {"width": 2.5}) == "refused: width must be a whole number, got 2.5"
    assert "outside" in _clone(lab, "refuse", 1, {"width": 64.0})  # whole, off-range: runs with its note
    assert engine.wait(timeout=90) == 0, engine.output()[-2000:]
    clone = lab.trials("refuse")[1]
    assert json.loads(clone["params"])["width"] == 64 and clone["argv"].count('"64"') == 1  # an int, as "64"
