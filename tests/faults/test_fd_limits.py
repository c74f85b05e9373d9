"""Open-file limits against max_parallel (issue 14 item 6): raised, or parallelism capped, never a crash."""

from __future__ import annotations

import resource
import time

import psutil

from tests.faults.conftest import Lab, counting_study, exactly_once, wait_for

LIMIT_TRIAL = """
    import json, resource, time
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    time.sleep(0.2)
    print("@hpotui " + json.dumps({"epoch": 1, "val_acc": 0.5, "nofile": soft}), flush=True)
"""


def _with_nofile(soft: int, hard: int):  # type: ignore[no-untyped-def]
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _most_at_once(lab: Lab, study: str) -> int:
    spans = [(t["started_at"], t["finished_at"]) for t in lab.trials(study) if t["started_at"]]
    return max(sum(1 for s, f in spans if s <= start < f) for start, _ in spans)


def _limit_study(lab: Lab, name: str, max_trials: int, max_parallel: int):  # type: ignore[no-untyped-def]
    lab.write_trial("limit.py", LIMIT_TRIAL)
    return lab.write_space(name, command="python limit.py {lr}", space={"lr": {"type": "uniform", "low": 0.1,
                           "high": 1.0}}, algorithm="random", max_trials=max_trials, max_parallel=max_parallel)


def test_a_soft_limit_below_what_max_parallel_needs_is_raised(lab: Lab) -> None:
    space = _limit_study(lab, "raise", max_trials=3, max_parallel=200)
    engine = lab.start("launch", str(space), "--headless", preexec_fn=_with_nofile(256, 4096))
    assert engine.wait(timeout=90) == 0, engine.output()[-2000:]
    assert "raised the open-file limit (ulimit -n) from 256 to 864 for max_parallel 200" in engine.output()
    assert lab.metric_values("raise", "nofile") == [864.0] * 3  # and the trials got it too


def test_a_hard_limit_too_low_caps_parallelism_with_a_message(lab: Lab) -> None:
    space = _limit_study(lab, "cap", max_trials=8, max_parallel=8)
    engine = lab.start("launch", str(space), "--headless", preexec_fn=_with_nofile(80, 80))
    assert engine.wait(timeout=120) == 0, engine.output()[-2000:]
    assert "allows about 4 trials at once, not max_parallel 8: running at most 4 at a time" in engine.output()
    assert [t["status"] for t in lab.trials("cap")] == ["completed"] * 8
    assert _most_at_once(lab, "cap") <= 4
    assert [e["kind"] for e in lab.events("cap", "fd_limit")] == ["fd_limit"]


def test_running_out_of_descriptors_mid_study_stops_launching_instead_of_dying(lab: Lab) -> None:
    space = counting_study(lab, "emfile", max_trials=8, max_parallel=4, epochs=30, delay=0.03)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: sum(1 for t in lab.trials("emfile") if t["status"] == "running" and t["reports"] > 0) >= 4,
             what="four reporting trials")
    proc = psutil.Process(engine.pid)
    in_use = proc.num_fds()
    proc.rlimit(psutil.RLIMIT_NOFILE, (in_use, in_use))  # as `prlimit --nofile` from outside: no headroom left
    time.sleep(0.5)
    assert engine.wait(timeout=120) == 0, engine.output()[-3000:]
    assert "out of file descriptors" in engine.output()
    statuses = [t["status"] for t in lab.trials("emfile")]
    assert statuses.count("completed") == 8 and set(statuses) <= {"completed", "interrupted"}, statuses
    _, missing, extra = exactly_once(lab, "emfile")
    assert not missing and not extra
