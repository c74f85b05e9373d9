"""The database under pressure: long readers, a writer that holds the lock, a disk that fills up.

A TUI or a `sqlite3` shell holds read transactions; a full disk makes every write fail. The
engine must neither stall behind the first nor lose or double anything through the second.
"""

from __future__ import annotations

import resource
import sqlite3
import time

import psutil

from tests.faults.conftest import Lab, counting_study, exactly_once, wait_for


def _metric_count(lab: Lab) -> int:
    rows = lab.query("SELECT COUNT(*) FROM metrics")
    return rows[0][0] if rows else 0


def test_a_reader_holding_a_transaction_never_stalls_the_engine(lab: Lab) -> None:
    space = counting_study(lab, "read", max_trials=4, max_parallel=2, epochs=30, delay=0.03)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: _metric_count(lab) > 0, what="first metrics")

    reader = sqlite3.connect(lab.db, isolation_level=None)  # like `sqlite3 hpotui.db` then BEGIN; SELECT ...
    reader.execute("BEGIN")
    seen = reader.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    try:
        # While the snapshot is held, the engine keeps committing and others see it.
        wait_for(lambda: _metric_count(lab) > seen + 20, timeout=15, what="engine writes during the reader")
        assert engine.wait(timeout=60) == 0, engine.output()[-2000:]
        assert reader.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == seen  # still the old snapshot
    finally:
        reader.execute("COMMIT")
        reader.close()
    output = engine.output()
    assert "locked" not in output and "Traceback" not in output
    checked, missing, extra = exactly_once(lab, "read")
    assert checked == 4 * 30 and not missing and not extra


def test_a_writer_holding_the_lock_for_seconds_only_delays_the_engine(lab: Lab) -> None:
    space = counting_study(lab, "lockd", max_trials=4, max_parallel=2, epochs=30, delay=0.03)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: _metric_count(lab) > 0, what="first metrics")
    writer = sqlite3.connect(lab.db, isolation_level=None, timeout=30)
    writer.execute("BEGIN IMMEDIATE")  # a slow TUI write, an admin's `sqlite3` session
    time.sleep(2.5)
    writer.execute("COMMIT")
    writer.close()
    assert engine.wait(timeout=60) == 0, engine.output()[-2000:]
    assert "locked" not in engine.output()
    checked, missing, extra = exactly_once(lab, "lockd")
    assert checked == 4 * 30 and not missing and not extra


def test_disk_full_stops_launching_loses_nothing_and_resumes_when_space_returns(lab: Lab) -> None:
    """RLIMIT_FSIZE on the engine: every database write past the current size fails, like a full disk."""
    space = counting_study(lab, "full", max_trials=6, max_parallel=2, epochs=40, delay=0.03)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: _metric_count(lab) >= 20, what="first metrics")
    sizes = [p.stat().st_size for p in (lab.db, lab.db.with_name(lab.db.name + "-wal")) if p.exists()]
    proc = psutil.Process(engine.pid)
    proc.rlimit(psutil.RLIMIT_FSIZE, (max(sizes), resource.RLIM_INFINITY))
    try:
        wait_for(lambda: "cannot write the study database" in engine.output(), timeout=20,
                 what="the engine to say the database cannot be written")
        before_trials, before_metrics = len(lab.trials("full")), _metric_count(lab)
        time.sleep(1.5)
        assert engine.popen.poll() is None, engine.output()[-2000:]  # waiting, not crashed
        assert len(lab.trials("full")) == before_trials  # nothing launched while full
        assert len(lab.trial_dirs("full")) == before_trials
        assert _metric_count(lab) == before_metrics  # nothing recorded lost either
    finally:
        proc.rlimit(psutil.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # space is back
    assert engine.wait(timeout=60) == 0, engine.output()[-3000:]
    assert "writable again" in engine.output()
    assert [t["status"] for t in lab.trials("full")].count("completed") == 6
    assert lab.events("full", "storage"), "the pause is recorded once the database can be written"
    checked, missing, extra = exactly_once(lab, "full")
    assert checked == 6 * 40 and not missing and not extra
    assert not lab.live_trial_pids("full")
