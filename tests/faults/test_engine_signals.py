"""What happens to a headless engine on Ctrl-C, SIGTERM, an SSH drop, or a second engine on its study.

Exit codes are the CLI contract: 130 after Ctrl-C (trials stopped and recorded ``interrupted``),
143 after SIGTERM, 2 for a refused second engine; an SSH drop (SIGHUP) changes nothing but where
the engine's output goes.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.faults.conftest import Lab, alive, counting_study, exactly_once, wait_for


def _running_with_reports(lab: Lab, study: str, n: int) -> bool:
    return sum(1 for t in lab.trials(study) if t["status"] == "running" and t["reports"] > 0) >= n


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_signal_stops_and_records_the_trials(lab: Lab, sig: int, code: int) -> None:
    space = counting_study(lab, "sig", max_trials=6, max_parallel=2, epochs=200, delay=0.05)
    engine = lab.start("launch", str(space), "--headless", "--grace", "2")
    wait_for(lambda: _running_with_reports(lab, "sig", 2), what="two reporting trials")
    pids = lab.trial_pids("sig")
    engine.signal(sig)
    assert engine.wait(timeout=20) == code, engine.output()[-2000:]
    assert "stopping 2 running trials" in engine.output()
    assert not any(alive(pid) for pid in pids)
    assert [t["status"] for t in lab.trials("sig")] == ["interrupted", "interrupted"]
    assert lab.study_row("sig")["status"] == "interrupted"
    assert lab.study_row("sig")["engine_pid"] is None  # the lock is released, not just stale
    _, missing, extra = exactly_once(lab, "sig")
    assert not missing and not extra


def test_keep_trials_leaves_them_running_and_resume_adopts_them(lab: Lab) -> None:
    space = counting_study(lab, "keep", max_trials=2, max_parallel=2, epochs=60, delay=0.05)
    engine = lab.start("launch", str(space), "--headless", "--keep-trials")
    wait_for(lambda: _running_with_reports(lab, "keep", 2), what="two reporting trials")
    pids = lab.trial_pids("keep")
    engine.signal(signal.SIGTERM)
    assert engine.wait(timeout=20) == 143
    assert all(alive(pid) for pid in pids), "--keep-trials must leave the trials running"
    resumed = lab.hpotui("resume", "keep", "--headless", timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.count("re-adopted") == 2
    statuses = [t["status"] for t in lab.trials("keep")]
    assert statuses == ["completed", "completed"]  # adopted, not rerun
    checked, missing, extra = exactly_once(lab, "keep")
    assert checked == 2 * 60 and not missing and not extra
    assert not lab.live_trial_pids("keep")


def test_sighup_keeps_the_engine_running_and_moves_its_output_to_engine_log(lab: Lab) -> None:
    space = counting_study(lab, "hup", max_trials=3, max_parallel=2, epochs=20, delay=0.05)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: _running_with_reports(lab, "hup", 1), what="a reporting trial")
    engine.signal(signal.SIGHUP)
    assert engine.wait(timeout=60) == 0, engine.output()[-2000:]
    log = (lab.run_dir("hup") / "engine.log").read_text()
    assert "study hup completed: 3 trials finished" in log
    assert oct((lab.run_dir("hup") / "engine.log").stat().st_mode & 0o777) == "0o600"
    assert [t["status"] for t in lab.trials("hup")] == ["completed"] * 3


def test_second_engine_refuses_and_a_dead_engines_lock_does_not_block_resume(lab: Lab) -> None:
    space = counting_study(lab, "twice", max_trials=3, max_parallel=2, epochs=60, delay=0.05)
    first = lab.start("launch", str(space), "--headless")
    wait_for(lambda: _running_with_reports(lab, "twice", 1), what="a reporting trial")

    second = lab.hpotui("resume", "twice", "--headless", timeout=30)
    assert second.returncode == 2
    assert f"already run by engine pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.popen.poll() is None  # the refusal did not disturb the first engine

    first.signal(signal.SIGKILL)
    first.popen.wait()
    # The dead engine's pid now belongs to someone else (pid reuse): same pid, other start time.
    import sqlite3

    with sqlite3.connect(lab.db) as conn:
        conn.execute("UPDATE studies SET engine_pid = ?, engine_create_time = 1.0 WHERE name = 'twice'",
                     (os.getpid(),))
    resumed = lab.hpotui("resume", "twice", "--headless", timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [t["status"] for t in lab.trials("twice")].count("completed") == 3
    _, missing, extra = exactly_once(lab, "twice")
    assert not missing and not extra
    assert not lab.live_trial_pids("twice")
