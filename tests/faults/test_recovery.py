"""What `resume` makes of the time the engine was dead (issue 14 items 5 and 17).

Trials that ran to their end while no engine watched them are results, not reruns; a trial cut
short is run again; what they printed in the meantime is recorded once and trimmed to the cap.
"""

from __future__ import annotations

import os
import signal

from hpotui.engine.store import Store
from tests.faults.conftest import Lab, alive, counting_study, exactly_once, wait_for


def _kill_engine_once_trials_report(lab: Lab, study: str, space_args: list[str], n: int) -> list[int]:
    engine = lab.start("launch", *space_args, "--headless")
    wait_for(lambda: sum(1 for t in lab.trials(study) if t["status"] == "running" and t["reports"] > 0) >= n,
             what=f"{n} reporting trials")
    engine.signal(signal.SIGKILL)
    engine.popen.wait()
    return [t["pid"] for t in lab.trials(study) if t["status"] == "running"]


def test_trials_that_finished_while_the_engine_was_dead_are_results_not_reruns(lab: Lab) -> None:
    space = counting_study(lab, "night", max_trials=2, max_parallel=2, epochs=30, delay=0.03)
    pids = _kill_engine_once_trials_report(lab, "night", [str(space)], 2)
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30, what="the orphaned trials to finish")

    resumed = lab.hpotui("resume", "night", "--headless", timeout=90)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = lab.trials("night")
    assert [t["status"] for t in trials] == ["completed", "completed"]  # not interrupted, not run again
    assert all(t["reports"] == 30 and t["best_value"] is not None for t in trials)
    assert resumed.stdout.count("while no engine was running") == 2
    assert "judged from its output: 30 reports" in trials[0]["status_reason"]
    checked, missing, extra = exactly_once(lab, "night")
    assert checked == 60 and not missing and not extra


def test_a_trial_cut_short_before_max_resource_runs_again(lab: Lab) -> None:
    space = counting_study(lab, "short", max_trials=1, max_parallel=1, epochs=200, delay=0.03,
                           scheduler={"type": "fifo", "resource": "epoch", "max_resource": 200})
    pids = _kill_engine_once_trials_report(lab, "short", [str(space)], 1)
    for pid in pids:  # died with the box, say: it reported, but not up to max_resource
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in pids), what="the trial to die")
    trials_before = lab.trials("short")
    assert 0 < trials_before[0]["reports"] < 200

    resumed = lab.hpotui("resume", "short", "--headless", timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    statuses = [t["status"] for t in lab.trials("short")]
    assert statuses == ["interrupted", "completed"], statuses


def test_logs_drained_after_an_engine_death_are_trimmed_to_the_cap(lab: Lab) -> None:
    lab.write_trial("flood.py", """
        import json, os, sys, time
        print("@hpotui " + json.dumps({"epoch": 0, "val_acc": 0.0}), flush=True)
        while not os.path.exists(os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "go")):
            time.sleep(0.02)
        line = "x" * 1023 + "\\n"
        for _ in range(6 * 1024):  # 6 MiB while no engine reads it
            sys.stdout.write(line)
        print("@hpotui " + json.dumps({"epoch": 1, "val_acc": float(sys.argv[1])}), flush=True)
    """)
    space = lab.write_space("flood", command="python flood.py {lr}", space={"lr": {"type": "choice",
                            "values": [0.5]}}, max_trials=1, max_parallel=1, logs={"max_mb": 1})
    pids = _kill_engine_once_trials_report(lab, "flood", [str(space)], 1)
    trial_dir = lab.trial_dirs("flood")[0]
    (trial_dir / "go").touch()
    wait_for(lambda: not any(alive(pid) for pid in pids), what="the flood to end")
    log = trial_dir / "stdout.log"
    assert log.stat().st_blocks * 512 >= 6 * 2**20

    resumed = lab.hpotui("resume", "flood", "--headless", timeout=90)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert lab.metric_values("flood", "val_acc") == [0.0, 0.5]
    assert log.stat().st_size > 6 * 2**20  # same length (offsets stay valid) ...
    assert log.stat().st_blocks * 512 <= 2 * 2**20 + 64 * 1024  # ... but only about max_mb left on disk


def test_an_old_stop_that_no_engine_acted_on_is_not_applied_by_a_later_resume(lab: Lab) -> None:
    space = counting_study(lab, "stale", max_trials=2, max_parallel=2, epochs=30, delay=0.03)
    _kill_engine_once_trials_report(lab, "stale", [str(space)], 1)
    store = Store(lab.db)  # what the TUI's `S` does when it still believed the engine alive
    try:
        command_id = store.send_command(store.study("stale").id, "stop_study")  # type: ignore[union-attr]
    finally:
        store.close()

    resumed = lab.hpotui("resume", "stale", "--headless", timeout=90)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert lab.study_row("stale")["status"] == "completed"  # the resume runs the study to its end
    assert [t["status"] for t in lab.trials("stale")].count("completed") == 2
    result = lab.query("SELECT result FROM commands WHERE id = ?", command_id)[0]["result"]
    assert result.startswith("not applied: this stop of the study was sent at")
    assert "stop_study: not applied" in resumed.stdout
    assert [e["kind"] for e in lab.events("stale", "stale_command")] == ["stale_command"]
