"""The study file damaged or deleted under a running engine, and what hpotui says afterwards.

The engine watches the file it opened (identity and size) and checks its integrity when SQLite
reports an error: it stops launching, says what happened, exits 1, and never writes over the
damaged file again. No later command recreates a schema over what was an hpotui database, and
nothing claims "nothing recorded is lost" unless the file passed its integrity check.
"""

from __future__ import annotations

import os
import sqlite3

import pytest

from tests.faults.conftest import Lab, counting_study, wait_for


def _running_engine(lab: Lab, name: str):
    space = counting_study(lab, name, max_trials=40, max_parallel=2, epochs=200, delay=0.02)
    engine = lab.start("launch", str(space), "--headless", "--grace", "2")
    wait_for(lambda: len(lab.metric_values(name, "uid")) > 30, timeout=30, what="metrics recorded")
    return engine


def _ended_saying(lab: Lab, engine, name: str, *words: str) -> str:
    assert engine.wait(timeout=60) == 1, engine.output()[-3000:]
    output = engine.output()
    for word in words:
        assert word in output, output[-3000:]
    assert "nothing recorded is lost" not in output
    assert "Traceback" not in output
    assert not lab.live_trial_pids(name), "the engine stopped its trials"
    return output


@pytest.mark.parametrize("size", ["half", "zero"])
def test_a_database_truncated_mid_run_stops_the_engine_and_is_never_rebuilt(lab: Lab, size: str) -> None:
    engine = _running_engine(lab, "cut")
    trials_before = len(lab.trial_dirs("cut"))
    os.truncate(lab.db, lab.db.stat().st_size // 2 if size == "half" else 0)
    _ended_saying(lab, engine, "cut", "truncated", str(lab.db), "no new trials")
    assert len(lab.trial_dirs("cut")) <= trials_before + 2  # launching stopped at once (a turn's launch at most)

    for command in (["status"], ["export", "cut"], ["status", "cut"]):
        size_before = lab.db.stat().st_size
        result = lab.hpotui(*command, timeout=60)
        assert "nothing recorded is lost" not in result.stderr
        assert "Traceback" not in result.stderr
        if result.returncode != 0:
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert lab.db.stat().st_size == size_before, f"{command} wrote to the damaged file"


def test_status_never_builds_a_schema_in_an_emptied_database(lab: Lab) -> None:
    """`status` after the file was emptied: one line and exit 2, and the file stays empty."""
    space = counting_study(lab, "empty", max_trials=1, max_parallel=1, epochs=2, delay=0.0)
    assert lab.hpotui("launch", str(space), "--headless").returncode == 0
    os.truncate(lab.db, 0)
    for command in (["status"], ["export", "empty"], ["stop", "empty"], ["resume", "empty"],
                    ["launch", str(space), "--headless"]):
        result = lab.hpotui(*command)
        assert result.returncode == 2, (command, result.stdout + result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert lab.db.stat().st_size == 0, f"{command} wrote into the emptied study database"


def test_a_database_deleted_mid_run_is_noticed_and_not_recreated(lab: Lab) -> None:
    engine = _running_engine(lab, "gone")
    lab.db.unlink()
    _ended_saying(lab, engine, "gone", "deleted", str(lab.db))
    assert not lab.db.exists(), "the engine must not recreate a database it lost"
    result = lab.hpotui("status")
    assert result.returncode == 2 and not lab.db.exists()


def test_a_database_replaced_mid_run_is_not_written_to(lab: Lab) -> None:
    engine = _running_engine(lab, "swap")
    other = lab.root / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    os.replace(other, lab.db)
    _ended_saying(lab, engine, "swap", "replaced", str(lab.db))
    # The file itself, not SQLite's view through a -wal left beside it by the old file's connection.
    conn = sqlite3.connect(f"file:{lab.db}?mode=ro&immutable=1", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    assert tables == {"notes"}


def test_an_error_on_a_sound_file_still_says_nothing_is_lost_only_after_checking(lab: Lab) -> None:
    """The honest case: a database error on a file that passes its integrity check."""
    from pathlib import Path

    from hpotui.engine.database.dbfile import explain_error
    from hpotui.engine.database.store import Store

    store = Store(lab.db)
    store.close()
    line, damaged = explain_error(Path(lab.db), sqlite3.OperationalError("database or disk is full"))
    assert not damaged and "integrity check" in line and "nothing recorded is lost" in line
    with open(lab.db, "r+b") as f:  # scribble over the schema page
        f.seek(100)
        f.write(b"\xff" * 3000)
    line, damaged = explain_error(Path(lab.db), sqlite3.DatabaseError("database disk image is malformed"))
    assert damaged and "damaged" in line and "nothing recorded is lost" not in line
