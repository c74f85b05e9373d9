"""`--db` pointed at something that is not an hpotui study database, and databases on odd paths.

hpotui writes only to a file it creates or one that already holds an hpotui study: another
application's SQLite file keeps its bytes (no tables added, no switch to WAL). A newer schema,
a path under a regular file, a folder, a file that is not SQLite: one line, exit 2. A finished
study opens for status and export from read-only storage, and paths holding `#`, `?` or `%`
are paths, not URI syntax.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import Lab, counting_study, engine_env, wait_for
from tests.store_rows import bare_study


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line_exit_2(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _commands(lab: Lab) -> list[list[str]]:
    space = counting_study(lab, "s", max_trials=1, max_parallel=1, epochs=1, delay=0.0)
    return [["status"], ["status", "s"], ["export", "s"], ["stop", "s"], ["resume", "s"],
            ["launch", str(space), "--headless"]]


def test_another_applications_sqlite_file_is_never_written(lab: Lab) -> None:
    conn = sqlite3.connect(lab.db)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    conn.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    conn.commit()
    conn.close()
    before = _digest(lab.db)
    for command in _commands(lab):
        _one_line_exit_2(lab.hpotui(*command), str(lab.db), "not an hpotui study database")
        assert _digest(lab.db) == before, f"{command} changed the file"
        assert not Path(str(lab.db) + "-wal").exists()
    conn = sqlite3.connect(lab.db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_a_database_of_a_newer_hpotui_is_refused_untouched(lab: Lab) -> None:
    from hpotui.engine.database.store import SCHEMA_VERSION, Store

    store = Store(lab.db)
    store.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    store.close()
    before = _digest(lab.db)
    for command in _commands(lab):
        _one_line_exit_2(lab.hpotui(*command), "newer hpotui")
        assert _digest(lab.db) == before


@pytest.mark.parametrize("kind", ["under-a-file", "folder", "not-sqlite"])
def test_paths_that_cannot_be_a_study_database_are_one_line(lab: Lab, kind: str) -> None:
    plain = lab.root / "notes.txt"
    plain.write_text("just text\n" * 100, encoding="utf-8")
    target = {"under-a-file": plain / "hpotui.db", "folder": lab.root / "afolder", "not-sqlite": plain}[kind]
    if kind == "folder":
        target.mkdir()
    lab.db = target
    before = _digest(plain)
    for command in _commands(lab):
        _one_line_exit_2(lab.hpotui(*command), str(target))
    assert _digest(plain) == before


def _without_write_permission(command: list[str]) -> list[str]:
    """Root ignores file modes: drop the capabilities that let it, so a 0555 folder is read-only."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make storage read-only")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]


def test_a_finished_study_on_read_only_storage_opens_for_status_and_export(lab: Lab) -> None:
    space = counting_study(lab, "done", max_trials=2, max_parallel=2, epochs=3, delay=0.0)
    assert lab.hpotui("launch", str(space), "--headless").returncode == 0
    shelf = lab.root / "archive"
    shelf.mkdir()
    shutil.copy(lab.db, shelf / "hpotui.db")
    for leftover in ("-wal", "-shm"):
        assert not Path(str(shelf / "hpotui.db") + leftover).exists()
    # The case that broke: a file still marked WAL, with no -shm and no way to create one.
    conn = sqlite3.connect(shelf / "hpotui.db")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    (shelf / "hpotui.db").chmod(0o444)
    shelf.chmod(0o555)
    try:
        for command in (["status"], ["status", "done"], ["export", "done", "--format", "csv"]):
            argv = _without_write_permission([sys.executable, "-m", "hpotui.engine.cli", *command,
                                              "--db", str(shelf / "hpotui.db")])
            result = subprocess.run(argv, cwd=lab.root, env=engine_env(), text=True, capture_output=True, timeout=60)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "completed" in result.stdout
        assert sorted(p.name for p in shelf.iterdir()) == ["hpotui.db"]
    finally:
        shelf.chmod(0o755)


def test_the_engine_leaves_wal_when_the_study_ends(lab: Lab) -> None:
    space = counting_study(lab, "tidy", max_trials=2, max_parallel=2, epochs=3, delay=0.0)
    assert lab.hpotui("launch", str(space), "--headless").returncode == 0
    with open(lab.db, "rb") as f:
        header = f.read(20)
    assert header[18:20] == b"\x01\x01", "file format bytes: 1 = rollback journal, 2 = WAL"


@pytest.mark.parametrize("folder", ["run#3", "what?now", "100% done", "a%23b"])
def test_database_paths_with_uri_characters_are_paths(tmp_path: Path, folder: str) -> None:
    from hpotui.engine.database.dbfile import sqlite_uri
    from hpotui.engine.database.store import Store, connect

    db = tmp_path / folder / "hpotui.db"
    store = Store(db)
    bare_study(store, "x")
    store.close()
    reader = connect(db, readonly=True)
    try:
        assert [r[0] for r in reader.execute("SELECT name FROM studies")] == ["x"]
        with pytest.raises(sqlite3.OperationalError):
            reader.execute("INSERT INTO studies (name, status) VALUES ('y', 'queued')")
    finally:
        reader.close()
    readonly = Store(db, readonly=True)
    assert [s.name for s in readonly.studies()] == ["x"]
    readonly.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder], "no stray file beside the folder"
    assert "#" not in sqlite_uri(db) and "?" not in sqlite_uri(db) and sqlite_uri(db).count("%") == \
        str(db).count("%") * 1 + str(db).count("#") + str(db).count("?") + str(db).count(" ")


def test_the_wal_is_cut_back_once_a_long_reader_lets_go(lab: Lab) -> None:
    """A reader holding a snapshot lets the WAL grow; released, the engine truncates it while still running."""
    lab.write_trial("flood.py", """
        import json, os, sys, time
        stop = os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "..", "..", "..", "stop-flood")
        for i in range(120_000):
            print("@hpotui " + json.dumps({"step": i, "val_acc": i / 120_000, "pad": i * 1.5}))
        sys.stdout.flush()
        while not os.path.exists(stop):
            time.sleep(0.1)
        print("@hpotui " + json.dumps({"step": 120_001, "val_acc": 1.0}), flush=True)
    """)
    space = lab.write_space("wal", command="python flood.py {lr}", algorithm="random", max_trials=1,
                            max_parallel=1, space={"lr": {"type": "uniform", "low": 0.1, "high": 1.0}})
    wal = Path(str(lab.db) + "-wal")
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: lab.db.exists() and lab.trials("wal"), what="the study to start")
    reader = sqlite3.connect(lab.db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM metrics").fetchone()  # holds this snapshot: no checkpoint gets past it
    try:
        wait_for(lambda: len(lab.metric_values("wal", "pad")) >= 100_000, timeout=120, what="the flood recorded")
        grown = wal.stat().st_size
        assert grown > 8 * 1024 * 1024, grown
    finally:
        reader.execute("COMMIT")
        reader.close()
    wait_for(lambda: wal.exists() and wal.stat().st_size < 2 * 1024 * 1024, timeout=30,
             what=f"the WAL ({grown:,} bytes) to be cut back while the engine runs")
    assert engine.popen.poll() is None, "cut back by the running engine, not by its exit"
    (lab.root / "stop-flood").write_text("")
    assert engine.wait(timeout=60) == 0, engine.output()[-2000:]
