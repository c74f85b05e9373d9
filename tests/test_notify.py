"""The space file's ``notify:`` section: the engine runs a command (never a shell) on study events.

Real headless studies: the notify command is a small Python script appending its arguments to a
file, so the test sees exactly the argv the engine built; a command that cannot run is a warning
event and the study still ends normally.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_cli
from hpotui.engine.errors import SpaceError
from hpotui.engine.outputs.notify import parse_notify, render

TRAINER = """
import json, sys
lr = float(sys.argv[1])
for epoch in range(1, 4):
    print("@hpotui " + json.dumps({"epoch": epoch, "val_acc": lr * epoch}), flush=True)
"""
RECORDER = """
import json, sys
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(sys.argv[2:]) + "\\n")
"""


def fail(key: str, problem: str, fix: str = "") -> SpaceError:
    return SpaceError("space.yaml", key, problem, fix)


def space(notify: str, failing: bool = False) -> str:
    command = "python trainer.py {lr}" if not failing else "python -c 'import sys; sys.exit(3)' {lr}"
    return textwrap.dedent(f"""
        name: told
        command: {command}
        objective: {{metric: val_acc, mode: max}}
        search: {{algorithm: grid}}
        budget: {{max_trials: 3, max_parallel: 1, failure_streak: 2}}
        space:
          lr: {{type: choice, values: [0.1, 0.3, 0.2]}}
        notify: {notify}
        """)


def test_placeholders_are_replaced_inside_arguments_and_other_braces_pass():
    argv = render(("notify-send", "hpotui {study}", "{event}: {message}", '{"json": 1}'), "s1", "ended", "done; rm x")
    assert argv == ["notify-send", "hpotui s1", "ended: done; rm x", '{"json": 1}']


@pytest.mark.parametrize("raw, key", [
    ("notify-send hi", "notify"),
    ({"command": "notify-send {message}"}, "notify.command"),
    ({"command": ["x", "{who}"]}, "notify.command"),
    ({"command": ["x"], "on": ["died"]}, "notify.on"),
    ({"command": ["x"], "when": ["ended"]}, "notify.when"),
])
def test_bad_notify_sections_name_the_key_and_the_fix(raw, key):
    with pytest.raises(SpaceError) as caught:
        parse_notify(raw, fail)
    assert caught.value.key == key and caught.value.fix


def test_engine_runs_the_command_on_best_and_end(tmp_path: Path):
    (tmp_path / "trainer.py").write_text(textwrap.dedent(TRAINER))
    (tmp_path / "recorder.py").write_text(textwrap.dedent(RECORDER))
    out = tmp_path / "told.txt"
    notify = json.dumps({"command": [sys.executable, "recorder.py", str(out), "{study}", "{event}", "{message}"],
                         "on": ["ended", "best"]})
    (tmp_path / "told.yaml").write_text(space(notify))
    result = run_cli("launch", "told.yaml", "--headless", "--db", str(tmp_path / "h.db"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in out.read_text().splitlines()]
    events = [c[1] for c in calls]
    assert events.count("ended") == 1 and events[-1] == "ended"
    assert events.count("best") == 2  # 0.3 beats 0.1; 0.2 does not beat 0.3 (grid order 0.1, 0.3, 0.2)
    assert all(c[0] == "told" for c in calls)
    assert "study told completed: budget: 3 trials finished" in calls[-1][2]


def test_a_storm_pause_is_told_and_a_broken_command_is_logged_never_fatal(tmp_path: Path):
    notify = json.dumps({"command": ["/nonexistent/notifier", "{message}"], "on": ["paused", "ended"]})
    (tmp_path / "told.yaml").write_text(space(notify, failing=True))
    db = tmp_path / "h.db"
    result = run_cli("launch", "told.yaml", "--headless", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 1  # the failure storm ends a headless study, as before
    rows = sqlite3.connect(db).execute("SELECT level, message FROM events WHERE kind = 'notify'").fetchall()
    assert len(rows) == 2 and all(level == "warning" for level, _ in rows)
    assert "could not run '/nonexistent/notifier' for paused" in rows[0][1]
    assert "could not run" in result.stdout
