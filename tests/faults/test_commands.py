"""Malformed rows in the commands table: refused with an acknowledgement, never a crash.

The table is written by other processes (the TUI, `hpotui stop`, a sqlite3 shell, another
hpotui version). Whatever a row holds, the engine acknowledges it ("refused: ..."), goes on
with the study, and a later `resume` does the same instead of crashing on it again. The rows
arriving while a study runs are tested in-process (tests/test_loop_commands.py); here, rows left
behind by an engine killed with SIGKILL and read by a real `hpotui resume`.
"""

from __future__ import annotations

import signal
import sqlite3
import time

from tests.faults.conftest import Lab, counting_study, wait_for

# (trial_number, action, args) rows SQLite accepts but no command may act on
BAD_ROWS = [
    (None, "stop_study", "not json at all"),
    (None, "stop_study", "[1, 2, 3]"),
    (None, "pause_launching", '"a string"'),
    (1, "clone_trial", '{"params": [0.5]}'),
    (1, "clone_trial", '{"params": "lr=0.5"}'),
    (1, "clone_trial", '{"params": {"lr": 1' + "0" * 400 + '}}'),
    ("one", "stop_trial", "{}"),
    (None, "stop_trial", "{}"),
    (None, "set_max_parallel", '{"value": "lots"}'),
    (None, "set_max_parallel", '{"value": [4]}'),
    (None, "stop_study", "[" * 50_000),
]


def _insert(lab: Lab, study_id: int, rows: list[tuple]) -> list[int]:
    conn = sqlite3.connect(lab.db, timeout=30)
    try:
        ids = []
        for number, action, args in rows:
            cur = conn.execute("INSERT INTO commands (study_id, trial_number, action, args, created_at) "
                               "VALUES (?, ?, ?, ?, ?)", (study_id, number, action, args, time.time()))
            ids.append(cur.lastrowid)
        conn.commit()
        return ids
    finally:
        conn.close()


def _results(lab: Lab, ids: list[int]) -> list[str | None]:
    marks = ",".join("?" * len(ids))
    return [r["result"] for r in lab.query(f"SELECT result FROM commands WHERE id IN ({marks}) ORDER BY id", *ids)]


def test_resume_refuses_malformed_commands_left_behind_instead_of_crashing(lab: Lab) -> None:
    space = counting_study(lab, "left", max_trials=2, max_parallel=1, epochs=20, delay=0.03)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: lab.metric_values("left", "uid"), what="first metrics")
    engine.signal(signal.SIGKILL)
    engine.popen.wait()
    ids = _insert(lab, lab.study_row("left")["id"], BAD_ROWS)
    for _ in range(2):  # the first resume must not crash; nor may the one after it
        result = lab.hpotui("resume", "left", "--headless", timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    # Stops left by a dead engine are set aside on resume ("not applied: ..."); the rest are refused.
    assert all(r and r.startswith(("refused:", "not applied:")) for r in _results(lab, ids)), _results(lab, ids)
    assert all(r.startswith("refused:") for (_n, action, _a), r in zip(BAD_ROWS, _results(lab, ids))
               if not action.startswith("stop_"))
    assert lab.study_row("left")["status"] == "completed"
    assert sum(t["status"] == "completed" for t in lab.trials("left")) == 2


def test_every_kind_of_bad_row_is_named_in_its_refusal() -> None:
    """The checks themselves, including rows the table's CHECK would stop (a newer hpotui's action)."""
    from hpotui.engine.database.command_check import check_command
    from hpotui.engine.database.store import COMMAND_ACTIONS

    cases = {
        ("reboot_box", None, "{}"): "unknown action",
        ("stop_trial", True, "{}"): "trial_number",
        ("stop_trial", 1.5, "{}"): "trial_number",
        ("pause_trial", None, "{}"): "needs a trial_number",
        ("stop_study", None, b"{}"): "bytes",
        ("stop_study", None, 42): "JSON object",
        ("stop_study", None, "x" * (2 << 20)): "characters long",
        ("clone_trial", 1, '{"params": {"lr": null}}'): "clone value",
        ("clone_trial", 1, '{"params": {"lr": [1]}}'): "clone value",
        ("set_max_parallel", None, '{"value": 0}'): "max_parallel",
        ("set_max_parallel", None, '{"value": true}'): "max_parallel",
    }
    for (action, number, args), words in cases.items():
        checked = check_command(action, number, args, COMMAND_ACTIONS)
        assert checked.problem and checked.problem.startswith("refused:") and words in checked.problem, checked
        assert len(checked.problem) < 200
    good = check_command("clone_trial", 3, '{"params": {"lr": 0.1, "opt": "adam"}}', COMMAND_ACTIONS)
    assert good.problem is None and good.args == {"params": {"lr": 0.1, "opt": "adam"}}
    assert check_command("clone_trial", 3, None, COMMAND_ACTIONS).args == {"params": {}}
