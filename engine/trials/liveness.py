"""Is a recorded process still the one we started?

A pid alone lies after a reboot or pid reuse, so every check compares the process's start time
with the one recorded when it was launched. Engines on other hosts (Ray head moved, NFS home)
are judged by their heartbeat instead.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import psutil

HOSTNAME = socket.gethostname()  # what trial and engine rows record as their host (engine.database.store re-exports it)
HEARTBEAT_STALE_S = 60.0
CREATE_TIME_SLACK_S = 1.0


def live_process(pid: int | None, create_time: float | None) -> psutil.Process | None:
    """The process ``pid`` if it is alive (not a zombie) and is the one started at ``create_time``.

    ``create_time`` None accepts any process with that pid. Shared by the study's liveness checks
    and the host-wide GPU claims, which must both survive pid reuse.
    """
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if create_time is not None and abs(proc.create_time() - create_time) >= CREATE_TIME_SLACK_S:
            return None  # the pid now belongs to another process
        return proc
    except (psutil.Error, OSError):
        return None


def process_alive(pid: int | None, create_time: float | None) -> bool:
    return live_process(pid, create_time) is not None


def process_create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def engine_alive(study: Any) -> bool:
    """Whether the engine recorded on a study row is still running it."""
    if not study.engine_pid:
        return False
    if study.engine_host == HOSTNAME:
        return process_alive(study.engine_pid, study.engine_create_time)
    return study.engine_heartbeat is not None and time.time() - study.engine_heartbeat < HEARTBEAT_STALE_S


def find_trial_process(trial_dir: str) -> tuple[int, float] | None:
    """(pid, start time) of the live trial leader started for ``trial_dir``, found by its environment.

    For the one moment a pid is not in the database yet: the engine started the trial but was
    killed before recording it. Every trial carries ``HPOTUI_TRIAL_DIR`` in its environment and
    leads its own process group, which tells it apart from its workers (same environment).
    """
    me = psutil.Process()
    try:
        my_uid = me.uids().real
    except (psutil.Error, AttributeError):
        my_uid = None
    for proc in psutil.process_iter(["pid", "uids", "create_time"]):
        try:
            if my_uid is not None and proc.info["uids"] is not None and proc.info["uids"].real != my_uid:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE or os.getpgid(proc.pid) != proc.pid:
                continue
            if proc.environ().get("HPOTUI_TRIAL_DIR") == trial_dir:
                return proc.pid, proc.info["create_time"]
        except (psutil.Error, OSError):
            continue
    return None
