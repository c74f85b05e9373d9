"""Is a recorded process still the one we started?

A pid alone lies after a reboot or pid reuse, so every check compares the process's start time
with the one recorded when it was launched. Engines on other hosts (Ray head moved, NFS home)
are judged by their heartbeat instead.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from engine.store import HOSTNAME

HEARTBEAT_STALE_S = 60.0
CREATE_TIME_SLACK_S = 1.0


def process_alive(pid: int | None, create_time: float | None) -> bool:
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < CREATE_TIME_SLACK_S
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


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
