"""The executor port: what the study loop asks of whatever runs its trials.

The loop (:mod:`engine.study`) never knows where a trial runs. It hands an executor an argv, a
working directory, an environment and two log paths, gets a :class:`TrialProcess` back, and from
then on only asks the questions below and reads the two log files. Everything the engine records
(metrics, offsets, statuses) comes from those files, so an executor's one duty beyond process
control is to keep ``stdout.log`` / ``stderr.log`` filled on the engine's machine while the trial runs.

Two executors implement this today: :class:`engine.executors.local.LocalExecutor` (subprocesses on this
machine) and :class:`engine.executors.ray.RayExecutor` (Ray tasks on a cluster). A third one
(Slurm, SSH ...) subclasses :class:`Executor`, sets the three capabilities, and implements the
methods without a default body; the ones with a default body are optional and the default says
what "not supported" means to the loop. mypy names a required method left out (an abstract member)
where the executor is made.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..database.records import EXIT_UNKNOWN  # noqa: F401  (re-exported: part of the executor contract)


@dataclass
class TrialProcess:
    """A running trial as the executor sees it; ``popen`` is None for a re-adopted trial.

    The loop reads ``trial_id``, ``pid``, ``pgid``, ``create_time``, ``node`` (recorded on the
    trial's row), the two log paths, and ``final_status`` / ``final_reason`` (set by
    :meth:`Executor.request_stop`, or by the executor when it knows better how the trial ended,
    e.g. Ray's lost node). ``popen`` is the local executor's. An executor that needs its own
    per-trial handle subclasses this and returns the subclass from :meth:`Executor.start`
    (Ray's ``RayTrialProcess`` keeps its task's output stream there); the loop only ever reads
    the fields above.
    """

    trial_id: int
    pid: int
    pgid: int
    create_time: float
    stdout_path: Path
    stderr_path: Path
    popen: subprocess.Popen[bytes] | None = None
    stop_deadline: float | None = None  # when set, SIGKILL the group once passed
    final_status: str | None = None  # status to record when it exits (stopped / pruned / diverged ...)
    final_reason: str | None = None
    paused: bool = False
    node: str | None = None


class Executor(Protocol):
    """Starts, watches and ends trials; the loop is typed against this and nothing else.

    Capabilities (class attributes, read by the loop instead of probing for methods):

    - ``name``: what the space file's ``executor.type`` calls it ("local", "ray").
    - ``places_gpus``: True when the executor chooses each trial's GPUs itself (Ray on its nodes);
      the engine's own NVML placement and host-wide GPU claims then stay out, and GPU readings come
      from :meth:`gpu_readings` instead of this machine.
    - ``outlives_engine``: True when a trial keeps running after its engine dies and can be found
      again on this machine: ``resume`` then adopts it (:meth:`adopt`), looks for a started but
      unrecorded one by its trial folder, and judges one that ended unwatched from its logs.
      False means every trial dies with its engine and ``resume`` simply runs it again.

    Threading: every method is called from the loop's one thread. An executor that learns things
    on other threads (Ray's readers) hands them over through :meth:`poll` and :meth:`take_placed`,
    and may wake the loop early with ``os.kill(os.getpid(), signal.SIGCHLD)``.
    """

    name: str
    places_gpus: bool
    outlives_engine: bool

    def start(self, trial_id: int, argv: list[str], *, cwd: Path, env: dict[str, str], stdout_path: Path,
              stderr_path: Path) -> TrialProcess:
        """Start the trial and return at once; its output goes to the two (new, owner-only) log files.

        Raises OSError when it cannot start (command not found, EMFILE): the loop records a failed
        trial, or runs it again later when it was out of file descriptors. ``pid`` may be 0 while the
        trial waits for a place (see :meth:`take_placed`).
        """
        ...

    def adopt(self, trial_id: int, pid: int, pgid: int, create_time: float, stdout_path: Path,
              stderr_path: Path) -> TrialProcess | None:
        """Take back a trial that outlived a previous engine (pid + start time); None when it is gone."""
        ...

    def poll(self, proc: TrialProcess) -> int | None:
        """None while it runs; once it ended, its exit code (128+N for signal N, EXIT_UNKNOWN if lost)."""
        ...

    def request_stop(self, proc: TrialProcess, status: str, reason: str) -> None:
        """Ask the trial to end (SIGTERM or the like) and set ``stop_deadline``; the first status asked wins.

        Sets ``proc.final_status`` / ``final_reason`` when not set yet: that is what the loop records.
        A paused trial must be resumed first so that it can act on the request.
        """
        ...

    def enforce_deadline(self, proc: TrialProcess) -> None:
        """Called every loop turn: once ``stop_deadline`` passed, end the trial for good (SIGKILL)."""
        ...

    def reap_group(self, proc: TrialProcess) -> None:
        """The trial's leader ended: end whatever it left behind (workers, grandchildren); may block briefly."""
        ...

    def pause(self, proc: TrialProcess) -> None:
        """Suspend the trial (SIGSTOP) and set ``proc.paused``; nothing when it cannot be reached."""
        ...

    def resume(self, proc: TrialProcess) -> None:
        """Continue a paused trial (SIGCONT) and clear ``proc.paused``."""
        ...

    def shutdown(self) -> None:
        """The study is over: release what the executor holds (connections, threads, staged files)."""
        ...

    # -- optional: the defaults say what "not supported" means ----------------------------------------
    def take_placed(self) -> list[TrialProcess]:
        """Trials that started somewhere since the last call (``pid``, ``pgid``, ``node`` now real).

        For executors whose :meth:`start` returns before the trial has a place (a cluster queue);
        the loop records their node and pid. Default: every trial is placed when it starts.
        """
        return []

    def watch_descendants(self, on: bool) -> bool:
        """While the study runs, have the trials' orphans come back to the engine; True if now watching.

        Default: not possible (trials run elsewhere).
        """
        return False

    def sweep(self) -> None:
        """Periodic (every few seconds): note processes that left their trial, reap ended orphans.

        Default: nothing to sweep.
        """
        return None

    def end_leftovers(self, trial_dir: str) -> int:
        """A trial's leader died while no engine ran: end what of it still runs; returns how many.

        Only called when ``outlives_engine``. Default: nothing can be left over.
        """
        return 0

    def gpu_readings(self) -> dict[str, list[Any]]:
        """GPU readings per node name (engine.machine.resources.GpuReading), for executors that ``places_gpus``.

        Must not block the loop. Default: no readings beyond this machine's own.
        """
        return {}
