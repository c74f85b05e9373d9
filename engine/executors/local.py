"""Local subprocess executor: start, signal, reap and read trials.

Each trial runs in its own session (so its own process group) with stdout and stderr going to
files, not pipes: the trial keeps running and keeps its output if the engine dies, and a new
engine re-adopts it by pid + start time and reads on from the recorded offsets. Stopping sends
SIGTERM to the whole group (dataloader workers included) and SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from ..database.records import TrialStatus
from ..trials.liveness import process_alive, process_create_time
from ..trials.process_tree import ProcessTree, processes_of_trial, set_subreaper
from ..trials.trial_files import create_trial_logs
from .base import EXIT_UNKNOWN, Executor, TrialProcess  # re-exported: where callers have imported them from

class LocalExecutor(Executor):
    """Trials as subprocesses of this engine, each in its own session, logs in its trial folder."""

    name = "local"
    places_gpus = False  # the engine places GPUs itself (engine/gpus/gpu_placer.py)
    outlives_engine = True  # a trial's own session survives the engine; `resume` adopts it by pid + start time

    def __init__(self, grace_period_s: float = 10.0) -> None:
        self.grace_period_s = grace_period_s
        self._memo: dict[str, bytes] = {}
        self.tree = ProcessTree()  # descendants that leave a trial's group still end with it

    def watch_descendants(self, on: bool) -> bool:
        """While a study runs, orphans of its trials re-parent to the engine (see engine/trials/process_tree.py)."""
        return set_subreaper(on)

    def sweep(self) -> None:
        """Periodic: note descendants that left their trial's group, reap orphans that exited."""
        self.tree.sweep()

    def start(self, trial_id: int, argv: list[str], *, cwd: Path, env: dict[str, str], stdout_path: Path,
              stderr_path: Path) -> TrialProcess:
        """Raises OSError (e.g. command not found) for the loop to record as a failed trial."""
        out, err = create_trial_logs(stdout_path, stderr_path)  # new files of ours, never a planted link
        try:
            popen = subprocess.Popen(argv, cwd=cwd, env=self._encoded(env), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=err, start_new_session=True, close_fds=True)
        finally:
            os.close(out)
            os.close(err)
        self.tree.leaders.add(popen.pid)
        try:
            create_time = process_create_time(popen.pid) or time.time()
        except OSError:  # out of file descriptors to read /proc with: it started just now anyway
            create_time = time.time()
        return TrialProcess(trial_id=trial_id, pid=popen.pid, pgid=popen.pid, create_time=create_time,
                            stdout_path=stdout_path, stderr_path=stderr_path, popen=popen)

    def _encoded(self, env: dict[str, str]) -> dict[bytes, bytes]:
        """The environment as bytes, memoised: the same ~40 variables go to every trial, and encoding
        them afresh in Popen cost ~0.6 ms of engine CPU per trial (a tenth of a trivial trial)."""
        memo = self._memo
        if len(memo) > 4096:
            memo.clear()
        out = {}
        for key, value in env.items():
            k = memo.get(key)
            if k is None:
                k = memo[key] = os.fsencode(key)
            v = memo.get(value)
            if v is None:
                v = memo[value] = os.fsencode(value)
            out[k] = v
        return out

    def adopt(self, trial_id: int, pid: int, pgid: int, create_time: float, stdout_path: Path,
              stderr_path: Path) -> TrialProcess | None:
        """Take back a trial that outlived a previous engine; None when it is gone."""
        if not process_alive(pid, create_time):
            return None
        return TrialProcess(trial_id=trial_id, pid=pid, pgid=pgid, create_time=create_time,
                            stdout_path=stdout_path, stderr_path=stderr_path)

    def poll(self, proc: TrialProcess) -> int | None:
        """Exit code (128+N for signal N, EXIT_UNKNOWN for adopted trials), or None while running."""
        if proc.popen is not None:
            code = proc.popen.poll()
            if code is None:
                return None
            return 128 - code if code < 0 else code
        return None if process_alive(proc.pid, proc.create_time) else EXIT_UNKNOWN

    def signal_group(self, proc: TrialProcess, sig: int) -> bool:
        try:
            os.killpg(proc.pgid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def request_stop(self, proc: TrialProcess, status: str, reason: str) -> None:
        """SIGTERM now, SIGKILL at ``stop_deadline`` (see ``enforce_deadlines``)."""
        if proc.final_status is None:
            proc.final_status, proc.final_reason = status, reason
        if proc.paused:
            self.signal_group(proc, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        self.signal_group(proc, signal.SIGTERM)
        if proc.stop_deadline is None:
            proc.stop_deadline = time.monotonic() + self.grace_period_s

    def enforce_deadline(self, proc: TrialProcess) -> None:
        if proc.stop_deadline is not None and time.monotonic() >= proc.stop_deadline:
            self.signal_group(proc, signal.SIGKILL)

    def reap_group(self, proc: TrialProcess) -> None:
        """The leader is gone: kill what it left in its group (workers, grandchildren) and what left the group
        (``setsid`` children, found by the process tree and the trial's environment), so nothing is orphaned."""
        escaped = self.tree.leftovers(proc.pid, str(proc.stdout_path.parent), adopted=proc.popen is None)
        terminate_group(proc.pgid, min(self.grace_period_s, 2.0), also=escaped)

    def end_leftovers(self, trial_dir: str) -> int:
        """A trial whose leader died while no engine ran: end whatever of it still runs (found by its
        ``HPOTUI_TRIAL_DIR``; never by its old group id, which a new process may have taken). Returns how many."""
        procs = processes_of_trial(trial_dir)
        terminate_processes(procs, min(self.grace_period_s, 2.0))
        return len(procs)

    def pause(self, proc: TrialProcess) -> None:
        if self.signal_group(proc, signal.SIGSTOP):
            proc.paused = True

    def resume(self, proc: TrialProcess) -> None:
        if self.signal_group(proc, signal.SIGCONT):
            proc.paused = False

    def shutdown(self) -> None:
        """Nothing to release for local trials."""


def terminate_group(pgid: int, grace_s: float, also: list[psutil.Process] | None = None) -> None:
    """SIGCONT + SIGTERM to a whole process group, SIGKILL to what is left after ``grace_s``; blocks.

    SIGCONT first because a paused (SIGSTOPped) trial cannot act on SIGTERM. ``also``: processes of
    the trial outside the group, ended the same way within the same grace period.
    """
    others = list(also or ())
    _signal_each(others, signal.SIGCONT)
    _signal_each(others, signal.SIGTERM)
    group_alive = _signal_group(pgid, signal.SIGCONT) and _signal_group(pgid, signal.SIGTERM)
    group_alive, others = _wait_for_exit(pgid, group_alive, others, time.monotonic() + grace_s)
    if group_alive:
        _signal_group(pgid, signal.SIGKILL)
    if others:
        _signal_each(others, signal.SIGKILL)
        psutil.wait_procs(others, timeout=1.0)  # reaps those that are our children (re-parented orphans)


def terminate_processes(procs: list[psutil.Process], grace_s: float) -> None:
    """SIGCONT + SIGTERM to each of ``procs``, SIGKILL to those left after ``grace_s``; blocks."""
    _signal_each(procs, signal.SIGCONT)
    _signal_each(procs, signal.SIGTERM)
    _, left = _wait_for_exit(0, False, list(procs), time.monotonic() + grace_s)
    if left:
        _signal_each(left, signal.SIGKILL)
        psutil.wait_procs(left, timeout=1.0)


def _wait_for_exit(pgid: int, group_alive: bool, others: list[psutil.Process],
                   deadline: float) -> tuple[bool, list[psutil.Process]]:
    """Poll until the group and ``others`` are gone or ``deadline`` passes; what is still alive."""
    while (group_alive or others) and time.monotonic() < deadline:
        group_alive = group_alive and _signal_group(pgid, 0)
        others = [p for p in others if _running(p)]
        if group_alive or others:
            time.sleep(0.02)
    return group_alive, others


def _signal_each(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie; a zombie child of ours is reaped on the way."""
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return True
        proc.wait(timeout=0)
    except (psutil.Error, ChildProcessError):
        pass
    return False


def ended_in_a_crash(stderr_tail: str) -> bool:
    """What a crash leaves at the end of stderr when the exit code itself is lost."""
    last = next((line.strip() for line in reversed(stderr_tail.splitlines()) if line.strip()), "")
    return "Traceback (most recent call last)" in stderr_tail or "Error" in last


def judge_ended_unwatched(stderr_tail: str, reports: int, last_step: float | None,
                          max_resource: float | None) -> tuple[str, str] | None:
    """(status, reason) of a trial that ended while no engine ran, from its output; None: run it again.

    Its exit code is lost (it was no engine's child when it ended). It counts as finished only when
    its log shows it reported to the end: it reported at all, and up to ``max_resource`` where the
    scheduler names one; a crash at the end of its stderr makes it failed. A trial that never
    reported, or stopped short of ``max_resource``, was most likely killed with the engine (or by a
    reboot): it runs again.
    """
    if reports == 0:
        return None
    if ended_in_a_crash(stderr_tail):
        return TrialStatus.FAILED, "exit code unknown (no engine was its parent when it ended); its stderr ends in a crash"
    if max_resource is not None and (last_step is None or last_step < max_resource):
        return None
    return TrialStatus.COMPLETED, (f"exit code unknown (no engine was its parent when it ended); judged from its output: "
                         f"{reports} reports" + (f", up to step {last_step:g}" if last_step is not None else ""))
