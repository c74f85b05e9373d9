"""kill -9 of the engine at random moments, each followed by `hpotui resume`: nothing lost, nothing twice.

The trials print one uniquely-numbered ``@hpotui`` line per epoch, so the trial logs (what was
printed) can be compared line for line with the metric rows (what was recorded). The kill moments
are random but seeded, so a failure can be replayed.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.faults.conftest import Lab, alive, counting_study, exactly_once, kill_count, wait_for


def _kill_resume_loop(lab: Lab, kills: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    max_trials = 3 * kills + 3
    space = counting_study(lab, "killed", max_trials=max_trials, max_parallel=3, epochs=20, delay=0.04)
    engine = lab.start("launch", str(space), "--headless")
    delivered = 0
    for _ in range(kills):
        # Once the engine holds the study, any moment is fair: launching, reading, flushing, reaping.
        wait_for(lambda: engine.popen.poll() is not None or lab.trials("killed"), timeout=30,
                 what="the engine to start a trial")
        time.sleep(rng.uniform(0.05, 1.2))
        if engine.popen.poll() is not None:
            break  # the study finished before this kill: nothing left to kill
        engine.signal(signal.SIGKILL)
        engine.popen.wait()
        delivered += 1
        engine = lab.start("resume", "killed", "--headless")
    code = engine.wait(timeout=120)
    assert code == 0, engine.output()[-3000:]
    if lab.study_row("killed")["status"] != "completed":  # the last kill can land after the final commit
        final = lab.hpotui("resume", "killed", "--headless", timeout=120)
        assert final.returncode == 0, final.stdout + final.stderr

    trials = lab.trials("killed")
    statuses = [t["status"] for t in trials]
    assert statuses.count("completed") == max_trials, statuses
    assert set(statuses) <= {"completed", "interrupted"}, statuses
    assert lab.study_row("killed")["status"] == "completed"
    checked, missing, extra = exactly_once(lab, "killed")
    assert not missing, f"lines printed but never recorded: {sorted(missing)[:20]}"
    assert not extra, f"lines recorded twice (or never printed): {sorted(extra)[:20]}"
    assert checked >= max_trials * 20
    assert not lab.live_trial_pids("killed"), "a trial outlived its study"
    assert not any(alive(e.pid) for e in lab.engines)
    return {"kills": delivered, "lines": checked, "trials": len(trials)}


def test_kill_minus_nine_then_resume_loses_nothing(lab: Lab) -> None:
    result = _kill_resume_loop(lab, kills=kill_count(4), seed=7)
    assert result["kills"] >= 1
    print(f"\nkills survived: {result['kills']}, metric lines checked: {result['lines']}, lost: 0")


@pytest.mark.slow
def test_twenty_kills_then_resume_loses_nothing(lab: Lab) -> None:
    result = _kill_resume_loop(lab, kills=20, seed=20)
    assert result["kills"] >= 15
    print(f"\nkills survived: {result['kills']}, metric lines checked: {result['lines']}, lost: 0")


def test_trial_started_but_not_yet_recorded_is_found_and_adopted(lab: Lab) -> None:
    """The engine dies between starting a trial and writing its pid: resume finds it by its folder."""
    space = counting_study(lab, "window", max_trials=1, max_parallel=1, epochs=40, delay=0.05)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: any(t["reports"] > 0 for t in lab.trials("window")), what="a reporting trial")
    engine.signal(signal.SIGKILL)
    engine.popen.wait()
    pid = lab.trials("window")[0]["pid"]
    import sqlite3

    with sqlite3.connect(lab.db) as conn:  # as if mark_running never committed
        conn.execute("UPDATE trials SET status = 'queued', pid = NULL, pgid = NULL, proc_create_time = NULL")
    resumed = lab.hpotui("resume", "window", "--headless", timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"(pid {pid}): re-adopted" in resumed.stdout
    assert [t["status"] for t in lab.trials("window")] == ["completed"]
    checked, missing, extra = exactly_once(lab, "window")
    assert checked == 40 and not missing and not extra
    assert not alive(pid)
