"""Trials that crash in every way a training script can: right status, readable event, engine unharmed.

One study runs every fault side by side (grid search over a ``kind`` choice), the way a real
search meets them: a segfault next to a flood of output next to a trial that ignores SIGTERM.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.faults.conftest import Lab, alive, wait_for

FAULTY_TRIAL = r"""
    import json, os, signal, sys, time
    kind = sys.argv[1]
    here = os.environ["HPOTUI_TRIAL_DIR"]
    def note_pid(name, pid):
        with open(os.path.join(here, name + ".pid"), "w") as f:
            f.write(str(pid))
    def report(**values):
        print("@hpotui " + json.dumps(values), flush=True)
    note_pid("trial", os.getpid())
    if kind != "silent":
        report(epoch=1, val_acc=0.5)
    if kind == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "abort":
        os.abort()
    elif kind == "oom137":
        sys.exit(137)
    elif kind == "traceback":
        raise RuntimeError("loss exploded at batch 7")
    elif kind == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open(os.path.join(here, "ready"), "w").close()
        while True:
            time.sleep(0.1)
    elif kind == "grandchild":
        pid = os.fork()
        if pid == 0:  # a dataloader worker that ignores SIGTERM and would outlive its trial
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            note_pid("grandchild", os.getpid())
            time.sleep(600)
            os._exit(0)
        while not os.path.exists(os.path.join(here, "grandchild.pid")):
            time.sleep(0.01)
        report(epoch=2, val_acc=0.6)
    elif kind == "flood":
        block = ("x" * 1023 + "\n") * 1024  # 1 MiB of ordinary log lines per write
        out = sys.stdout
        for _ in range(100):
            out.write(block)
        out.flush()
        report(epoch=2, val_acc=0.7)
    elif kind == "bad_lines":
        print("@hpotui {not json", flush=True)
        print("@hpotui " + json.dumps({"val_acc": 1, "pad": "y" * 300_000}), flush=True)
        print("@hpotui " + "[" * 50_000 + "]" * 50_000, flush=True)
        print("@hpotui " + '{"a":' * 2000 + "1" + "}" * 2000, flush=True)
        print("@hpotui " + json.dumps({"epoch": 2, "val_acc": "high", "note": [1, 2]}), flush=True)
        print("@hpotui 42", flush=True)
        print("@hpotui {}", flush=True)
        sys.stdout.buffer.write(b"@hpotui {\"val_acc\": \xff\xfe}\n"); sys.stdout.flush()
        print("@hpotui " + "z" * 2_000_000, flush=True)  # one line over any sane limit, no JSON at all
        report(epoch=3, val_acc=0.9)
    elif kind == "silent":
        print("training without reporting anything", flush=True)
"""

KINDS = ["segfault", "abort", "oom137", "traceback", "ignore_term", "grandchild", "flood", "bad_lines", "silent"]


def _by_kind(lab: Lab, study: str) -> dict[str, dict]:
    return {json.loads(t["params"])["kind"]: dict(t) for t in lab.trials(study)}


def _events_for(lab: Lab, study: str, trial_id: int) -> list[str]:
    return [e["message"] for e in lab.events(study) if e["trial_id"] == trial_id]


def test_every_kind_of_crash_ends_with_the_right_status_and_a_readable_event(lab: Lab) -> None:
    lab.write_trial("faulty.py", FAULTY_TRIAL)
    space = lab.write_space("faults", command="python faulty.py {kind}",
                            space={"kind": {"type": "choice", "values": KINDS}}, max_trials=len(KINDS),
                            max_parallel=len(KINDS), logs={"max_mb": 4, "max_line_kb": 64})
    engine = lab.start("launch", str(space), "--headless", "--grace", "1")

    # The trial that ignores SIGTERM is stopped by the user: SIGTERM, then SIGKILL after the grace.
    stubborn = wait_for(lambda: next((Path(t["trial_dir"]) for t in lab.trials("faults")
                                      if "ignore_term" in t["params"] and (Path(t["trial_dir"]) / "ready").exists()),
                                     None), what="the SIGTERM-ignoring trial to be ready")
    number = int(stubborn.name)
    stop = lab.hpotui("stop", "faults", "--trial", str(number), timeout=30)
    assert stop.returncode == 0, stop.stderr
    assert f"stopping trial {number}" in stop.stdout

    assert engine.wait(timeout=120) == 0, engine.output()[-3000:]
    trials = _by_kind(lab, "faults")
    assert set(trials) == set(KINDS)
    expected = {"segfault": ("failed", 139, "SIGSEGV"), "abort": ("failed", 134, "SIGABRT"),
                "oom137": ("failed", 137, "out-of-memory"), "traceback": ("failed", 1, "loss exploded at batch 7"),
                "ignore_term": ("stopped", None, "stopped by the user"), "grandchild": ("completed", 0, ""),
                "flood": ("completed", 0, ""), "bad_lines": ("completed", 0, ""), "silent": ("completed", 0, "")}
    for kind, (status, code, words) in expected.items():
        t = trials[kind]
        assert t["status"] == status, (kind, t["status"], t["status_reason"])
        if code is not None:
            assert t["exit_code"] == code, (kind, t["exit_code"])
        messages = _events_for(lab, "faults", t["id"])
        final = [m for m in messages if m.startswith(f"trial {t['number']} {status}")]
        assert final, (kind, messages)
        assert words in final[-1], (kind, final[-1])
        assert "Traceback" not in final[-1] or kind == "traceback"

    # Nothing the faulty trials started lives on: not the SIGTERM-ignorer, not the grandchild.
    for kind in ("ignore_term", "grandchild"):
        trial_dir = Path(trials[kind]["trial_dir"])
        for pid_file in trial_dir.glob("*.pid"):
            assert not alive(int(pid_file.read_text())), f"{kind}: {pid_file.name} still alive"
    assert not lab.live_trial_pids("faults")

    # Good lines after bad ones still count; every bad one left a warning, none crashed the engine.
    bad = trials["bad_lines"]
    values = [r[0] for r in lab.query("SELECT value FROM metrics WHERE trial_id = ? AND name = 'val_acc'",
                                      bad["id"])]
    assert values == [0.5, 0.9]
    warnings = [e["message"] for e in lab.events("faults", "bad_metric_line") if e["trial_id"] == bad["id"]]
    assert any("not valid JSON" in w for w in warnings)
    assert any("over the" in w and "limit" in w for w in warnings)
    assert any("non-numeric" in w and "val_acc" in w for w in warnings)
    assert any("one JSON object" in w for w in warnings)
    assert all(len(w) < 400 for w in warnings), "a warning must stay one readable line"

    # 100 MB of output: recorded metric after the flood, and the log on disk stays near its 4 MB cap.
    flood = trials["flood"]
    assert [r[0] for r in lab.query("SELECT value FROM metrics WHERE trial_id = ? AND name = 'val_acc'",
                                    flood["id"])] == [0.5, 0.7]
    log = Path(flood["stdout_path"])
    st = os.stat(log)
    assert st.st_size > 100 * 2**20  # offsets stay valid: the file keeps its length ...
    assert st.st_blocks * 512 <= 6 * 2**20, f"log uses {st.st_blocks * 512 / 2**20:.1f} MiB on disk"  # ... not its blocks
    assert log.read_bytes()[-40:].endswith(b'"val_acc": 0.7}\n')  # the recent part stays readable

    # A trial that never reported is told apart from one that did.
    silent = trials["silent"]
    assert silent["reports"] == 0
    assert any("no metric" in m or "never reported" in m for m in _events_for(lab, "faults", silent["id"]))
    print(f"\nfaults tried: {len(KINDS)}; statuses: " + ", ".join(f"{k}={trials[k]['status']}" for k in KINDS))


def test_stop_of_a_sigterm_ignoring_trial_escalates_to_sigkill_after_the_grace(lab: Lab) -> None:
    """The `--grace` seconds are a promise: a trial that ignores SIGTERM is gone shortly after them."""
    lab.write_trial("faulty.py", FAULTY_TRIAL)
    space = lab.write_space("stubborn", command="python faulty.py {kind}",
                            space={"kind": {"type": "choice", "values": ["ignore_term"]}}, max_trials=1,
                            max_parallel=1)
    engine = lab.start("launch", str(space), "--headless", "--grace", "1")
    wait_for(lambda: any((Path(t["trial_dir"]) / "ready").exists() for t in lab.trials("stubborn")),
             what="trial ready")
    pid = lab.trials("stubborn")[0]["pid"]
    started = time.monotonic()
    assert lab.hpotui("stop", "stubborn").returncode == 0
    assert engine.wait(timeout=30) == 0
    assert time.monotonic() - started < 8
    assert not alive(pid)
    t = lab.trials("stubborn")[0]
    assert t["status"] == "stopped"
    assert lab.study_row("stubborn")["status"] == "stopped"
