"""Clones (issue 14 item 15) persisted across a SIGKILL of the engine and run exactly once.

A clone on top of max_trials, its off-range note and a refused value run in-process in
tests/test_loop_commands.py.
"""

from __future__ import annotations

import json
import signal

from hpotui.engine.database.store import Store
from hpotui.engine.trials.control import send_and_wait
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