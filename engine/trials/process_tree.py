"""A trial's descendants that left its process group still end with the trial.

Stopping a trial signals its process group, but a child can leave the group (``setsid``,
``setpgid(0, 0)``: daemonising data loaders, ``nohup``-style helpers) and would outlive the study,
still writing to its log. Three things find them:

- the engine is a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): when a trial's leader
  exits, its orphaned descendants are re-parented to the engine instead of to init, so they stay
  in the engine's process tree (and the engine reaps them when they exit);
- every trial's processes inherit ``HPOTUI_TRIAL_DIR``: an orphan carrying this trial's folder
  belongs to this trial (and a trial re-adopted after an engine restart is found the same way,
  by a scan of this user's processes);
- a periodic sweep (:meth:`ProcessTree.sweep`) remembers each trial's descendants that left its
  group, for the few that also cleared their environment.

A per-trial cgroup would be tighter but needs a writable cgroup tree, which a user on a shared
box rarely has; this works for any user on Linux and degrades to "group only" elsewhere.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass, field

import psutil

PR_SET_CHILD_SUBREAPER = 36
TRIAL_DIR_ENV = "HPOTUI_TRIAL_DIR"


def set_subreaper(on: bool) -> bool:
    """Make this process (un)adopt its descendants' orphans; False where the kernel cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def direct_children(pid: int | str = "self") -> list[int]:
    """Pids of a process's children, cheaply (``/proc/PID/task/*/children``), else through psutil."""
    try:
        pids: list[int] = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                pids.extend(int(p) for p in f.read().split())
        return pids
    except OSError:
        try:
            proc = psutil.Process() if pid == "self" else psutil.Process(int(pid))
            return [c.pid for c in proc.children()]
        except (psutil.Error, OSError):  # gone, or out of file descriptors: the next sweep tries again
            return []


def _carries_trial_dir(pid: int) -> bool:
    try:
        return TRIAL_DIR_ENV in psutil.Process(pid).environ()
    except (psutil.Error, OSError):
        return False


def _same_trial(proc: psutil.Process, trial_dir: str) -> bool:
    try:
        return proc.environ().get(TRIAL_DIR_ENV) == trial_dir
    except (psutil.Error, OSError):
        return False


@dataclass
class ProcessTree:
    """What the local executor knows about its trials' processes beyond their groups."""

    leaders: set[int] = field(default_factory=set)  # pids of live trial leaders this engine started
    escaped: dict[int, set[tuple[int, float]]] = field(default_factory=dict)  # leader -> (pid, start time)
    orphans: set[int] = field(default_factory=set)  # trial processes re-parented to the engine, to be reaped

    def sweep(self) -> None:
        """Remember descendants that left their trial's group; reap orphans that already exited.

        Walks down from each trial leader (``/proc/PID/task/*/children``): its cost follows the
        trials' own process trees, not how many processes the box runs.
        """
        self.reap_orphans()
        for leader in self.leaders:
            stack, seen = direct_children(leader), self.escaped.setdefault(leader, set())
            while stack:
                pid = stack.pop()
                stack.extend(direct_children(pid))
                try:
                    if os.getpgid(pid) != leader:
                        seen.add((pid, psutil.Process(pid).create_time()))
                except (OSError, psutil.Error):
                    continue

    def reap_orphans(self) -> None:
        """Collect exited orphans of trials re-parented to the engine.

        Only processes known to be a trial's (its environment read while it was alive, or a recorded
        escapee): any other child of the engine belongs to a ``Popen`` of its own (a notify command),
        whose exit status must stay with it.
        """
        for pid in direct_children():
            if pid not in self.leaders and pid not in self.orphans and _carries_trial_dir(pid):
                self.orphans.add(pid)
        escapees = {pid for seen in self.escaped.values() for pid, _ in seen}
        for pid in list(self.orphans | escapees):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours (still under its trial) or already collected
                done = pid
            if done:
                self.orphans.discard(pid)

    def leftovers(self, leader: int, trial_dir: str, adopted: bool) -> list[psutil.Process]:
        """Live processes of the trial led by ``leader`` outside its group (call once the leader exited)."""
        self.leaders.discard(leader)
        found: dict[int, psutil.Process] = {}
        for pid, create_time in self.escaped.pop(leader, set()):
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - create_time) < 1.0:
                    found[pid] = proc
            except (psutil.Error, OSError):
                continue
        try:
            for proc in self._candidates(adopted):
                if proc.pid not in found and _same_trial(proc, trial_dir):
                    found[proc.pid] = proc
        except OSError:  # out of file descriptors: end what is known, the group goes anyway
            pass
        return [p for p in found.values() if p.pid != os.getpid()]

    def _candidates(self, adopted: bool) -> list[psutil.Process]:
        """Orphans in the engine's tree; for a re-adopted trial (not our child), this user's processes."""
        if adopted:
            uid = os.geteuid()
            procs = []
            for proc in psutil.process_iter(["uids"]):
                uids = proc.info["uids"]
                if uids is not None and uids.real == uid:
                    procs.append(proc)
            return procs
        procs = []
        for pid in direct_children():
            if pid in self.leaders:
                continue  # another live trial: its tree ends with it
            try:
                orphan = psutil.Process(pid)
                procs.append(orphan)
                procs.extend(orphan.children(recursive=True))
            except psutil.Error:
                continue
        return procs


def processes_of_trial(trial_dir: str) -> list[psutil.Process]:
    """This user's live processes carrying the trial's ``HPOTUI_TRIAL_DIR`` (for use without an engine)."""
    return ProcessTree().leftovers(0, trial_dir, adopted=True)
