"""What runs on a Ray node for one trial: start the command, stream its output back, clean up its group.

This module is executed inside Ray workers, possibly on machines where hpotui is not installed
(the executor ships the ``hpotui`` package, engine included, to the cluster with ``runtime_env.py_modules``). It
therefore imports only the standard library at the top; ``ray`` and :mod:`engine.machine.resources` are
imported inside the functions that need them, on the node.

Why a generator: each ``yield`` becomes one object the engine reads in order, so output arrives
while the trial runs and the engine stays the only writer of the database and of the log files.
Output is batched (``BATCH_S``) so a chatty trial costs a few objects a second, not one per line.

Why a guard process: when the engine dies, Ray kills the worker running :func:`run_trial`, but the
trial lives in its own session (so that a stop reaches its dataloader workers too) and would go on
holding its GPU. A tiny watcher outside both notices that the worker is gone and ends the group.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

BATCH_S = 0.05  # how long output is gathered before it is sent as one object
BATCH_BYTES = 256 * 1024
READ_BYTES = 64 * 1024
LEFTOVER_GRACE_S = 2.0  # after the leader exits, how long its group's leftovers get before SIGKILL

# Runs as `python -c GUARD worker_pid pgid grace`: ends the trial's group once the worker is gone.
GUARD = """
import os, signal, sys, time
worker, group, grace = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def alive():
    try:
        os.killpg(group, 0)
        return True
    except OSError:
        return False
while alive():
    if os.getppid() != worker:
        for sig, wait in ((signal.SIGCONT, 0), (signal.SIGTERM, grace), (signal.SIGKILL, 0)):
            try:
                os.killpg(group, sig)
            except OSError:
                break
            end = time.monotonic() + wait
            while wait and alive() and time.monotonic() < end:
                time.sleep(0.1)
        break
    time.sleep(0.5)
"""


def run_trial(argv: list[str], cwd: str, env_delta: dict[str, str], grace_period_s: float) -> Iterator[dict[str, Any]]:
    """Ray generator task: yields ``started`` (or ``error``), then ``out``/``err`` byte batches, then ``exit``."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    env = dict(os.environ)
    env.update(env_delta)
    try:
        popen = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
    except OSError as exc:
        yield {"error": f"could not start {argv[0]!r} on {socket.gethostname()}: {exc.strerror or exc}",
               "node_id": node_id}
        return
    # -I -S: no site-packages scan, so the guard costs milliseconds, not a Python start-up per trial.
    guard = subprocess.Popen([sys.executable, "-I", "-S", "-c", GUARD, str(os.getpid()), str(popen.pid),
                              str(grace_period_s)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True)
    try:
        yield {"started": True, "pid": popen.pid, "create_time": time.time(), "node_id": node_id,
               "host": socket.gethostname()}
        yield from _stream(popen)
        code = popen.wait()
        yield {"exit": 128 - code if code < 0 else code}
    finally:
        end_group(popen, LEFTOVER_GRACE_S)  # normal end: leftovers; cancelled: the whole trial
        guard.kill()
        guard.wait()


def _stream(popen: subprocess.Popen[bytes]) -> Iterator[dict[str, bytes]]:
    """Batches of (stdout, stderr) bytes until both pipes close; leftovers holding them are ended."""
    selector = _pipe_selector(popen)
    batch = {"out": bytearray(), "err": bytearray()}
    first_at: float | None = None
    leader_gone_at: float | None = None
    while selector.get_map():
        timeout = 1.0 if first_at is None else max(0.0, first_at + BATCH_S - time.monotonic())
        first_at = _read_ready(selector, timeout, batch, first_at)
        if popen.poll() is not None and selector.get_map():
            leader_gone_at = leader_gone_at or time.monotonic()
            if _end_leftovers(popen, leader_gone_at):
                break  # held by a process outside the group: give up on the rest
        if _batch_due(batch, first_at, pipes_open=bool(selector.get_map())):
            yield {"out": bytes(batch["out"]), "err": bytes(batch["err"])}
            batch = {"out": bytearray(), "err": bytearray()}
            first_at = None
    selector.close()
    if batch["out"] or batch["err"]:
        yield {"out": bytes(batch["out"]), "err": bytes(batch["err"])}


def _pipe_selector(popen: subprocess.Popen[bytes]) -> selectors.BaseSelector:
    """One selector over both pipes, each tagged with the batch key its bytes go to."""
    assert popen.stdout is not None and popen.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(popen.stdout, selectors.EVENT_READ, "out")
    selector.register(popen.stderr, selectors.EVENT_READ, "err")
    return selector


def _read_ready(selector: selectors.BaseSelector, timeout: float, batch: dict[str, bytearray],
                first_at: float | None) -> float | None:
    """Read whatever the pipes hold into ``batch`` (a closed pipe is unregistered); returns when
    the batch's first bytes arrived, the clock its sending is timed from."""
    for key, _ in selector.select(timeout):
        data = os.read(key.fd, READ_BYTES)
        if not data:
            selector.unregister(key.fileobj)
            continue
        batch[key.data] += data
        first_at = first_at or time.monotonic()
    return first_at


def _end_leftovers(popen: subprocess.Popen[bytes], leader_gone_at: float) -> bool:
    """The leader exited but something in its group still holds the pipes: end the group after
    half a second. True once even that has not freed them, so the stream stops waiting."""
    if time.monotonic() - leader_gone_at > 0.5:
        end_group(popen, LEFTOVER_GRACE_S)
        if time.monotonic() - leader_gone_at > 0.5 + LEFTOVER_GRACE_S + 1.0:
            return True
    return False


def _batch_due(batch: dict[str, bytearray], first_at: float | None, pipes_open: bool) -> bool:
    """Send when the batch is BATCH_S old, BATCH_BYTES big, or the pipes have just closed."""
    pending = len(batch["out"]) + len(batch["err"])
    return bool(pending and (first_at is None or time.monotonic() >= first_at + BATCH_S or pending >= BATCH_BYTES
                             or not pipes_open))


def end_group(popen: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the trial's process group (waking it first if paused), SIGKILL whatever is left after ``grace_s``."""
    group = popen.pid
    for sig in (signal.SIGCONT, signal.SIGTERM):
        if not _signal(group, sig):
            popen.poll()
            return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        popen.poll()  # reap the leader so an exited group reads as gone
        if not _signal(group, 0):
            return
        time.sleep(0.02)
    _signal(group, signal.SIGKILL)
    popen.poll()


class NodeAgent:
    """One small Ray actor per node (no CPU): signals trial groups there and reads that node's GPUs.

    Why an actor and not a task per signal: a task needs a free worker process on the node, and
    starting one takes seconds on a busy machine, longer than a stop's grace period. The agent is
    started once per node, ahead of need; calls from the engine run in the order they were sent,
    so a pause can never overtake the resume sent after it.
    """

    def __init__(self) -> None:
        self._monitor: Any = None

    def signal(self, pgid: int, sig: int) -> bool:
        return _signal(pgid, sig)

    def gpus(self) -> tuple[str, list[Any]]:
        """This node's hostname and GPU readings (engine.machine.resources.GpuReading, NA where unknown)."""
        from ..machine.resources import ResourceMonitor

        if self._monitor is None:
            self._monitor = ResourceMonitor()  # NVML stays initialised and its short cache works
        return socket.gethostname(), self._monitor.gpus()


def _signal(pgid: int, sig: int) -> bool:
    if pgid <= 1:
        return False  # 0 would be the caller's own group, 1 init's: never a trial
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
