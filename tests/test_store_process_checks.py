"""The store asks the OS about processes (psutil) before it takes the write lock, never while holding it.

A process lookup can take milliseconds per trial (thousands of ``/proc`` reads on a busy host); done
inside ``BEGIN IMMEDIATE`` it would hold every other writer of the file (engines, the TUI's
commands) waiting. Each test lets another connection try to write at the moment the store judges a
process: with the lock held that write fails at once (busy timeout 0).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from hpotui.engine.database import store as store_module
from hpotui.engine.database.store import EngineLocked, Store, StudyRow
from hpotui.engine.trials.liveness import process_create_time
from tests.store_rows import bare_study


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    the_store = Store(tmp_path / "hpotui.db")
    try:
        yield the_store
    finally:
        the_store.close()


def _dead_pid() -> tuple[int, float]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    create_time = process_create_time(proc.pid) or 1.0
    proc.wait()
    return proc.pid, create_time


def _another_writer_can_write(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:  # "database is locked": the store holds the write lock
        return False
    finally:
        other.close()


def _watching(real: Callable[..., bool], path: Path, seen: list[bool]) -> Callable[..., bool]:
    def judged(*args: Any) -> bool:
        seen.append(_another_writer_can_write(path))
        return real(*args)
    return judged


def test_the_engine_lock_judges_the_holder_with_no_write_lock_held(store: Store,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    study = bare_study(store)
    pid, create_time = _dead_pid()
    store.acquire_engine_lock(study.id, pid, create_time)
    seen: list[bool] = []
    monkeypatch.setattr(store_module, "engine_alive", _watching(store_module.engine_alive, store.path, seen))
    me = os.getpid()
    store.acquire_engine_lock(study.id, me, process_create_time(me) or 0.0)  # the dead engine's claim is taken
    assert seen == [True]
    assert store.study_by_id(study.id).engine_pid == me  # type: ignore[union-attr]


def test_an_engine_that_claims_the_study_while_the_old_holder_is_judged_keeps_it(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The look and the claim are apart now; a claim made in between is judged in its turn, never overwritten."""
    study = bare_study(store)
    dead, dead_time = _dead_pid()
    store.acquire_engine_lock(study.id, dead, dead_time)
    rival = Store(store.path)
    parent = os.getppid()  # a live process that is not this one: the engine that got there first
    real = store_module.engine_alive
    rival_claimed: list[bool] = []

    def judged(row: StudyRow) -> bool:
        if row.engine_pid == dead and not rival_claimed:
            rival_claimed.append(True)
            rival.acquire_engine_lock(study.id, parent, process_create_time(parent) or 0.0)
        return real(row)

    monkeypatch.setattr(store_module, "engine_alive", judged)
    me = os.getpid()
    try:
        with pytest.raises(EngineLocked, match=f"already run by engine pid {parent}"):
            store.acquire_engine_lock(study.id, me, process_create_time(me) or 0.0)
    finally:
        rival.close()
    assert store.study_by_id(study.id).engine_pid == parent  # type: ignore[union-attr]


def test_gpu_claims_judge_running_trials_with_no_write_lock_held(store: Store, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    study = bare_study(store)
    queued = store.add_trial(study_id=study.id, params={}, argv=[], trial_dir=str(tmp_path), stdout_path="o",
                             stderr_path="e", sample_index=0, rerun_of=None, seed=None,
                             gpu_picker=lambda claims: ("0", 1.0))
    assert queued is not None
    pid, create_time = _dead_pid()
    store.mark_running(queued.id, pid=pid, pgid=pid, proc_create_time=create_time, git_commit=None)
    seen: list[bool] = []
    monkeypatch.setattr(store_module, "process_alive", _watching(store_module.process_alive, store.path, seen))
    offered: list[list[tuple[str, float]]] = []

    def picker(claims: list[tuple[str, float]]) -> tuple[str, float]:
        offered.append(claims)
        return ("0", 1.0)

    placed = store.add_trial(study_id=study.id, params={}, argv=[], trial_dir=str(tmp_path), stdout_path="o",
                             stderr_path="e", sample_index=1, rerun_of=None, seed=None, gpu_picker=picker)
    assert seen == [True]  # the dead trial was judged, outside the transaction
    assert offered == [[]] and placed is not None and placed.gpus == "0"  # its GPU is free again
