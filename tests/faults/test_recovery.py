"""What `resume` makes of the time the engine was dead (issue 14 items 5 and 17), after a real SIGKILL.

What a trial printed while no engine ran is recorded once and its log trimmed to the cap. The
decisions themselves (a trial that ran to its end is a result, one cut short runs again, an old
stop is not applied) are tested in-process in tests/test_loop_resume.py.
"""

from __future__ import annotations

import signal

from tests.faults.conftest import Lab, alive, wait_for


def _kill_engine_once_trials_report(lab: Lab, study: str, space_args: list[str], n: int) -> list[int]:
    engine = lab.start("launch", *space_args, "--headless")
    wait_for(lambda: sum(1 for t in lab.trials(study) if t["status"] == "running" and t["reports"] > 0) >= n,
             what=f"{n} reporting trials")
    engine.signal(signal.SIGKILL)
    engine.popen.wait()
    return [t["pid"] for t in lab.trials(study) if t["status"] == "running"]


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
