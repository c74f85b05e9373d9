"""Trial processes end with their trial and study: a second Ctrl-C, children that leave the group.

Issue 14 items 8 and 9.
"""

from __future__ import annotations

import signal
import pytest

from tests.faults.conftest import Lab, alive, wait_for

STUBBORN_TRIAL = """
    import json, os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ignores the polite stop
    with open(os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "trial.pid"), "w") as f:
        f.write(str(os.getpid()))
    for epoch in range(1, 100000):
        print("@hpotui " + json.dumps({"epoch": epoch, "val_acc": 0.1}), flush=True)
        time.sleep(0.05)
"""

# The trial starts a helper that leaves its process group, then reports and exits (or keeps going).
ESCAPING_TRIAL = """
    import json, os, subprocess, sys, time
    how, epochs = sys.argv[1], int(sys.argv[2])
    helper = "import time\\nwhile True:\\n    print('helper still writing', flush=True)\\n    time.sleep(0.05)\\n"
    kwargs = {"start_new_session": True} if how == "setsid" else {"process_group": 0}
    child = subprocess.Popen([sys.executable, "-c", helper], **kwargs)
    with open(os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "escaped.pid"), "w") as f:
        f.write(str(child.pid))
    for epoch in range(1, epochs + 1):
        print("@hpotui " + json.dumps({"epoch": epoch, "val_acc": 0.5}), flush=True)
        time.sleep(0.05)
"""


def _escaped_pids(lab: Lab, study: str) -> list[int]:
    return [int(p.read_text()) for d in lab.trial_dirs(study) for p in d.glob("escaped.pid") if p.read_text()]


def test_a_second_ctrl_c_kills_trials_that_ignore_sigterm_instead_of_abandoning_them(lab: Lab) -> None:
    lab.write_trial("stubborn.py", STUBBORN_TRIAL)
    space = lab.write_space("stubborn", command="python stubborn.py {lr}", space={"lr": {"type": "choice",
                            "values": [0.1, 0.2]}}, max_trials=2, max_parallel=2)
    engine = lab.start("launch", str(space), "--headless", "--grace", "120")
    wait_for(lambda: sum(1 for t in lab.trials("stubborn") if t["reports"] > 0) >= 2, what="two reporting trials")
    pids = lab.trial_pids("stubborn")
    engine.signal(signal.SIGINT)
    wait_for(lambda: "stopping 2 running trials" in engine.output(), what="the first Ctrl-C to be taken")
    engine.signal(signal.SIGINT)
    assert engine.wait(timeout=30) == 130, engine.output()[-2000:]  # long before the 120 s grace period
    assert "second SIGINT: killing 2 trials now" in engine.output()
    assert not any(alive(pid) for pid in pids), "a second Ctrl-C must not leave trials running"
    assert [t["status"] for t in lab.trials("stubborn")] == ["interrupted", "interrupted"]
    assert lab.study_row("stubborn")["engine_pid"] is None


@pytest.mark.parametrize("how", ["setsid", "setpgid"])
def test_children_that_leave_the_trials_group_end_with_the_trial(lab: Lab, how: str) -> None:
    lab.write_trial("escape.py", ESCAPING_TRIAL)
    space = lab.write_space("escape", command=f"python escape.py {how} {{epochs}}",
                            space={"epochs": {"type": "choice", "values": [5]}}, max_trials=1, max_parallel=1)
    result = lab.hpotui("launch", str(space), "--headless", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    escaped = _escaped_pids(lab, "escape")
    assert escaped
    wait_for(lambda: not any(alive(pid) for pid in escaped), timeout=5, what="the escaped helper to be ended")
    assert [t["status"] for t in lab.trials("escape")] == ["completed"]


def test_an_escaped_child_of_a_readopted_trial_ends_with_it(lab: Lab) -> None:
    lab.write_trial("escape.py", ESCAPING_TRIAL)
    space = lab.write_space("adopt", command="python escape.py setsid {epochs}",
                            space={"epochs": {"type": "choice", "values": [60]}}, max_trials=1, max_parallel=1)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: any(t["reports"] > 0 for t in lab.trials("adopt")), what="a reporting trial")
    engine.signal(signal.SIGKILL)  # the helper is now nobody's descendant but init's
    engine.popen.wait()
    resumed = lab.hpotui("resume", "adopt", "--headless", timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "re-adopted" in resumed.stdout
    escaped = _escaped_pids(lab, "adopt")
    wait_for(lambda: not any(alive(pid) for pid in escaped), timeout=5, what="the escaped helper to be ended")


def test_an_escaped_child_with_a_cleared_environment_is_still_tracked(lab: Lab) -> None:
    lab.write_trial("bare.py", """
        import json, os, subprocess, sys, time
        helper = "import time\\nwhile True:\\n    time.sleep(0.05)\\n"
        child = subprocess.Popen([sys.executable, "-c", helper], start_new_session=True, env={})
        with open(os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "escaped.pid"), "w") as f:
            f.write(str(child.pid))
        for epoch in range(1, 8 * 20 + 1):  # 8 s: past the engine's 5 s process-tree sweep
            print("@hpotui " + json.dumps({"epoch": epoch, "val_acc": 0.5}), flush=True)
            time.sleep(0.05)
    """)
    space = lab.write_space("bare", command="python bare.py {lr}", space={"lr": {"type": "choice", "values": [1]}},
                            max_trials=1, max_parallel=1)
    result = lab.hpotui("launch", str(space), "--headless", timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    escaped = _escaped_pids(lab, "bare")
    wait_for(lambda: not any(alive(pid) for pid in escaped), timeout=5, what="the bare helper to be ended")


def _orphaned_helper(lab: Lab, study: str, epochs: int) -> tuple[list[int], list[int]]:
    """A trial with a setsid helper, left behind by a kill -9 of its engine: (trial pids, helper pids)."""
    lab.write_trial("escape.py", ESCAPING_TRIAL)
    space = lab.write_space(study, command="python escape.py setsid {epochs}",
                            space={"epochs": {"type": "choice", "values": [epochs]}}, max_trials=1, max_parallel=1)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: any(t["reports"] > 0 for t in lab.trials(study)), what="a reporting trial")
    engine.signal(signal.SIGKILL)
    engine.popen.wait()
    return [t["pid"] for t in lab.trials(study)], _escaped_pids(lab, study)


def test_stop_without_an_engine_also_ends_children_that_left_the_group(lab: Lab) -> None:
    trial_pids, escaped = _orphaned_helper(lab, "nostop", epochs=400)
    result = lab.hpotui("stop", "nostop", timeout=60)
    assert result.returncode == 0 and "no engine was running" in result.stdout, result.stdout + result.stderr
    wait_for(lambda: not any(alive(pid) for pid in trial_pids + escaped), timeout=10, what="the trial and helper")


def test_resume_ends_what_a_trial_that_died_unwatched_left_running(lab: Lab) -> None:
    trial_pids, escaped = _orphaned_helper(lab, "left", epochs=10)
    wait_for(lambda: not any(alive(pid) for pid in trial_pids), what="the trial to end on its own")
    assert all(alive(pid) for pid in escaped)  # its helper lives on, nobody's child
    resumed = lab.hpotui("resume", "left", "--headless", timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    wait_for(lambda: not any(alive(pid) for pid in escaped), timeout=10, what="the helper to be ended")
    assert [e["kind"] for e in lab.events("left", "leftovers")] == ["leftovers"]


def test_the_orphan_reaper_leaves_other_children_their_exit_status() -> None:
    """A notify command (the engine's own Popen) must still see its real exit code after a sweep."""
    import os
    import subprocess
    import sys

    from hpotui.engine.trials.process_tree import ProcessTree

    env = {k: v for k, v in os.environ.items() if k != "HPOTUI_TRIAL_DIR"}
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], env=env)
    wait_for(lambda: not alive(child.pid), what="the child to exit")  # a zombie now, not yet collected
    ProcessTree().sweep()
    assert child.wait(timeout=10) == 3
