"""Hostile input and a shared box: values stay single literal arguments, files stay private.

Parameter values reach the trial as argv entries with no shell in between, so quotes, ``;``,
``$(...)``, newlines and leading dashes are just characters. Everything the engine creates is
readable by its owner only, and the commands table can carry nothing but the fixed actions.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from hpotui.engine.database.store import COMMAND_ACTIONS, Store
from tests.faults.conftest import Lab, counting_study
from tests.store_rows import bare_study

HOSTILE = ["two words", "it's \"quoted\"", "a; rm -rf ~", "$(touch PWNED)", "`touch PWNED2`", "line1\nline2",
           "ünïcødé ✓ 🚀", "--help", "-rf", "{lr}", "{}", "> out.txt", "*", "   ", "\\", "%s %n", "back\\slash"]

ARGV_TRIAL = """
    import json, os, sys
    here = os.environ["HPOTUI_TRIAL_DIR"]
    with open(os.path.join(here, "argv.json"), "w", encoding="utf-8") as f:
        json.dump({"argv": sys.argv[1:], "params": json.loads(os.environ["HPOTUI_PARAMS"]),
                   "cwd": os.getcwd()}, f)
    print("@hpotui " + json.dumps({"epoch": 1, "val_acc": 0.5}), flush=True)
"""


@pytest.fixture
def spaced_lab(tmp_path: Path) -> Lab:
    root = tmp_path / "my experiments (v2) ü"
    root.mkdir()
    the_lab = Lab(root=root, db=root / "study dbs" / "hpo tui.db")
    yield the_lab
    the_lab.cleanup()


def test_hostile_values_arrive_as_single_literal_arguments(spaced_lab: Lab) -> None:
    lab = spaced_lab
    (lab.root / "trial code").mkdir()
    lab.write_trial("trial code/show argv.py", ARGV_TRIAL)
    space = lab.write_space("hostile", command=["python", "show argv.py", "{kind}", "--opt={kind}", "x {kind} y"],
                            workdir="trial code", space={"kind": {"type": "choice", "values": HOSTILE}},
                            max_trials=len(HOSTILE), max_parallel=4, file="space file.yaml")
    result = lab.hpotui("launch", str(space), "--headless", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    seen = {}
    for trial in lab.trials("hostile"):
        recorded = json.loads((Path(trial["trial_dir"]) / "argv.json").read_text(encoding="utf-8"))
        value = json.loads(trial["params"])["kind"]
        assert recorded["argv"] == [value, f"--opt={value}", f"x {value} y"]
        assert recorded["params"] == {"kind": value}
        assert recorded["cwd"] == str(lab.root / "trial code")
        assert json.loads(trial["argv"])[2:] == [value, f"--opt={value}", f"x {value} y"]
        seen[value] = trial["status"]
    assert seen == {v: "completed" for v in HOSTILE}
    assert not list(lab.root.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    assert not (lab.root / "trial code" / "out.txt").exists()


def test_engine_files_are_owner_only_even_with_a_permissive_umask(lab: Lab) -> None:
    space = counting_study(lab, "private", max_trials=2, max_parallel=2, epochs=3, delay=0.01)
    engine = lab.start("launch", str(space), "--headless", preexec_fn=lambda: os.umask(0))
    assert engine.wait(timeout=60) == 0, engine.output()[-2000:]
    created = [lab.db, *(Path(str(lab.db) + s) for s in ("-wal", "-shm") if Path(str(lab.db) + s).exists())]
    runs = lab.db.parent / "hpotui_runs"
    created += [runs, *runs.rglob("*")]
    for path in created:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, f"{path}: {oct(mode)}"
        elif path.suffix != ".pid":  # pid files are written by the trial script itself, not the engine
            assert mode == 0o600, f"{path}: {oct(mode)}"


def test_commands_table_only_accepts_the_fixed_actions(lab: Lab) -> None:
    store = Store(lab.db)
    study = bare_study(store, "cmd")
    with pytest.raises(ValueError):
        store.send_command(study.id, "shell", args={"cmd": "rm -rf ~"})
    conn = sqlite3.connect(lab.db)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO commands (study_id, action, args, created_at) VALUES (?, 'shell', ?, 0)",
                     (study.id, json.dumps({"argv": ["sh", "-c", "id"]})))
    columns = {r[1] for r in conn.execute("PRAGMA table_info(commands)")}
    # no column could carry a command line: the acknowledgement is its text and its ok flag (schema 4)
    assert columns == {"id", "study_id", "trial_number", "action", "args", "created_at", "acknowledged_at",
                       "result", "ok"}
    for action in COMMAND_ACTIONS:  # every real action still fits
        conn.execute("INSERT INTO commands (study_id, action, created_at) VALUES (?, ?, 0)", (study.id, action))
    conn.close()
    store.close()
