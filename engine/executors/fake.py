"""A scripted executor: trials that are scripts of output lines and exits, run in the engine's own process.

For tests and simulations only (the CLI never chooses it). The real study loop drives it exactly
as it drives :class:`engine.executors.local.LocalExecutor`: it starts a trial, polls it every turn, reads
its ``stdout.log`` / ``stderr.log`` through the real log readers, asks it to stop, pauses it and
re-adopts it on ``resume``. What a trial does is a list of :class:`Step` that a script returns for
it; one step is taken per poll, with no wall-clock sleep anywhere, so a study of many trials runs
in milliseconds and makes the same decisions on every run.

A trial's steps::

    Say(text, stream="stdout")   write a line into its log (``end``, a newline by default, is added);
                                 the poll ends there, so the engine reads it before the trial goes on
    Run(polls=1)                 keep running, printing nothing, for that many polls
    Call(fn)                     call fn() (send a command, raise a signal at the engine) and go on
    Exit(code=0)                 exit with this code; a script that runs out of steps exits 0
    Killed(sig)                  die by this signal: exit code 128 + sig
    Hang()                       run until stopped

``request_stop`` delivers SIGTERM: the trial's remaining steps are replaced by its ``on_stop``
steps (by default ``Killed(SIGTERM)``, i.e. it dies at the next poll; ``(Say("saving"), Exit(0))``
is a trial that handles SIGTERM; ``(Hang(),)`` one that ignores it until SIGKILL, which comes
``grace_polls`` polls later). ``pause`` holds the trial where it is until ``resume``.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, Union

from ..trials.trial_files import create_trial_logs
from .base import Executor, TrialProcess

# Linux never gives out a pid above PID_MAX_LIMIT (2**22): a fake trial's pid is never a real
# process, so nothing the engine does with it (usage sampling, liveness checks) touches another one.
FAKE_PID_BASE = 2**22 + 1


@dataclass(frozen=True)
class Say:
    """One line (or several, joined by newlines) written into the trial's stdout or stderr log."""

    text: str
    stream: Literal["stdout", "stderr"] = "stdout"
    end: str = "\n"  # "" leaves the line unfinished, as a trainer still writing it does


@dataclass(frozen=True)
class Run:
    """Keep running without output for ``polls`` polls (a slow epoch)."""

    polls: int = 1


@dataclass(frozen=True)
class Call:
    """Do something from inside the trial's run (send a command, signal the engine); takes no poll."""

    fn: Callable[[], Any]


@dataclass(frozen=True)
class Exit:
    code: int = 0


@dataclass(frozen=True)
class Killed:
    """Die by a signal, as a crash (SIGSEGV) or the OOM killer (SIGKILL) would end it."""

    sig: int


@dataclass(frozen=True)
class Hang:
    """Run until stopped: only ``request_stop`` (and then its ``on_stop`` steps) ends it."""


Step = Union[Say, Run, Call, Exit, Killed, Hang]


@dataclass(frozen=True)
class TrialScript:
    """A trial's steps and what it does on SIGTERM (default: dies of it)."""

    steps: Sequence[Step]
    on_stop: Sequence[Step] = (Killed(signal.SIGTERM),)


@dataclass(frozen=True)
class FakeTrial:
    """What a script is given to decide a trial's steps: what a real trial would see."""

    trial_id: int
    number: int
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    trial_dir: Path
    params: dict[str, Any]


Script = Callable[[FakeTrial], Union[Sequence[Step], TrialScript]]


def report(**values: Any) -> Say:
    """The metric line a trial prints: ``report(step=1, loss=0.5)`` is ``@hpotui {"step": 1, "loss": 0.5}``."""
    return Say("@hpotui " + json.dumps(values))


@dataclass
class FakeRun:
    """One trial's progress through its script; kept by the executor across engines (for ``adopt``)."""

    trial: FakeTrial
    pid: int
    create_time: float
    steps: list[Step]
    on_stop: Sequence[Step]
    stdout_path: Path
    stderr_path: Path
    polls: int = 0
    left_in_step: int = 0  # polls left in the current Run step
    code: int | None = None
    stopping: bool = False
    signals: list[str] = field(default_factory=list)  # what it was sent, in order: SIGTERM, SIGSTOP, SIGCONT, SIGKILL


class FakeExecutor(Executor):
    """Runs each trial's script one step per poll; writes its lines into its real log files.

    ``script`` is called once per started trial. ``outlives_engine`` (default True, like local
    trials) keeps a trial running after its engine's loop ends, for a later loop's ``adopt``. The
    executor keeps every run in ``runs`` (by trial number) so a test can read what was sent to it.
    """

    name = "fake"
    places_gpus = False
    outlives_engine = True

    def __init__(self, script: Script, *, grace_polls: int = 3, outlives_engine: bool = True,
                 node: str | None = None) -> None:
        self.script = script
        self.grace_polls = grace_polls
        self.outlives_engine = outlives_engine
        self.node = node
        self.runs: dict[int, FakeRun] = {}  # by trial number
        self._by_trial_id: dict[int, FakeRun] = {}
        self.shut_down = False

    # -- starting and finding trials -----------------------------------------------------------------
    def start(self, trial_id: int, argv: list[str], *, cwd: Path, env: dict[str, str], stdout_path: Path,
              stderr_path: Path) -> TrialProcess:
        """Raises what the script raises (OSError: the command could not start) before any log exists."""
        trial = FakeTrial(trial_id=trial_id, number=int(env["HPOTUI_TRIAL_ID"]), argv=list(argv), env=dict(env),
                          cwd=cwd, trial_dir=Path(env["HPOTUI_TRIAL_DIR"]), params=_params(env))
        script = self.script(trial)
        if not isinstance(script, TrialScript):
            script = TrialScript(tuple(script))
        for fd in create_trial_logs(stdout_path, stderr_path):  # new owner-only files, as a real start makes
            os.close(fd)
        pid = FAKE_PID_BASE + len(self._by_trial_id)
        run = FakeRun(trial=trial, pid=pid, create_time=float(pid), steps=list(script.steps),
                      on_stop=script.on_stop, stdout_path=stdout_path, stderr_path=stderr_path)
        self.runs[trial.number] = run
        self._by_trial_id[trial_id] = run
        return self._process(trial_id, run)

    def _process(self, trial_id: int, run: FakeRun) -> TrialProcess:
        return TrialProcess(trial_id=trial_id, pid=run.pid, pgid=run.pid, create_time=run.create_time,
                            stdout_path=run.stdout_path, stderr_path=run.stderr_path, node=self.node)

    def adopt(self, trial_id: int, pid: int, pgid: int, create_time: float, stdout_path: Path,
              stderr_path: Path) -> TrialProcess | None:
        """A trial still running from an earlier loop over this executor (same pid and start time)."""
        run = self._by_trial_id.get(trial_id)
        if run is None or run.pid != pid or run.create_time != create_time or run.code is not None:
            return None
        return self._process(trial_id, run)

    # -- running -------------------------------------------------------------------------------------
    def poll(self, proc: TrialProcess) -> int | None:
        """Take the trial's next step (none while paused); its exit code once it ended."""
        run = self._by_trial_id[proc.trial_id]
        if run.code is not None:
            return run.code
        run.polls += 1
        if proc.paused:
            return None
        self._advance(run)
        if run.code is None and not _hanging(run):
            _wake_the_loop()  # more to do at once: the loop's next wait returns at the next turn
        return run.code

    def _advance(self, run: FakeRun) -> None:
        """Steps until one takes this poll (a line, a polls' wait, hanging) or the trial ends."""
        while run.steps:
            step = run.steps[0]
            if isinstance(step, Call):
                run.steps.pop(0)
                step.fn()
            elif isinstance(step, Say):
                run.steps.pop(0)
                _append(run.stdout_path if step.stream == "stdout" else run.stderr_path, step.text + step.end)
                return
            elif isinstance(step, Run):
                run.left_in_step = run.left_in_step or step.polls
                run.left_in_step -= 1
                if run.left_in_step <= 0:
                    run.steps.pop(0)
                return
            elif isinstance(step, Hang):
                return
            else:
                run.code = step.code if isinstance(step, Exit) else 128 + int(step.sig)
                return
        run.code = 0

    def request_stop(self, proc: TrialProcess, status: str, reason: str) -> None:
        """SIGTERM: its ``on_stop`` steps replace what was left; SIGKILL after ``grace_polls`` more polls."""
        run = self._by_trial_id[proc.trial_id]
        if proc.final_status is None:
            proc.final_status, proc.final_reason = status, reason
        if run.code is not None:
            return
        if proc.paused:
            self.resume(proc)  # a stopped process cannot handle SIGTERM
        run.signals.append("SIGTERM")
        if not run.stopping:
            run.stopping = True
            run.steps, run.left_in_step = list(run.on_stop), 0
        if proc.stop_deadline is None:
            proc.stop_deadline = float(run.polls + self.grace_polls)  # in this trial's polls, not seconds
        _wake_the_loop()

    def enforce_deadline(self, proc: TrialProcess) -> None:
        run = self._by_trial_id[proc.trial_id]
        if run.code is None and proc.stop_deadline is not None and run.polls >= proc.stop_deadline:
            run.signals.append("SIGKILL")
            run.code = 128 + signal.SIGKILL

    def reap_group(self, proc: TrialProcess) -> None:
        """A fake trial leaves nothing behind."""

    def pause(self, proc: TrialProcess) -> None:
        run = self._by_trial_id[proc.trial_id]
        if run.code is None:
            run.signals.append("SIGSTOP")
            proc.paused = True

    def resume(self, proc: TrialProcess) -> None:
        run = self._by_trial_id[proc.trial_id]
        if run.code is None:
            run.signals.append("SIGCONT")
            proc.paused = False

    def shutdown(self) -> None:
        self.shut_down = True

    # -- what happens to a trial while no engine watches it (for resume tests) ---------------------------
    def run_to_end(self, number: int) -> int:
        """The trial runs on to its end with no engine polling it (its engine died); its exit code."""
        run = self.runs[number]
        while run.code is None and run.steps and not _hanging(run):
            self._advance(run)
        if run.code is None:
            run.code = 0 if not run.steps else 128 + signal.SIGKILL  # a hanging one dies with the box
        return run.code

    def kill(self, number: int, sig: int = signal.SIGKILL) -> None:
        """The trial is killed from outside (OOM killer, reboot) while no engine watches it."""
        run = self.runs[number]
        if run.code is None:
            run.signals.append(signal.Signals(sig).name)
            run.code = 128 + int(sig)


def _params(env: dict[str, str]) -> dict[str, Any]:
    """The trial's values as the engine hands them over: in the environment, or in a file when large."""
    if "HPOTUI_PARAMS" in env:
        return dict(json.loads(env["HPOTUI_PARAMS"]))
    if "HPOTUI_PARAMS_FILE" in env:
        return dict(json.loads(Path(env["HPOTUI_PARAMS_FILE"]).read_text(encoding="utf-8")))
    return {}


def _hanging(run: FakeRun) -> bool:
    return bool(run.steps) and isinstance(run.steps[0], Hang)


def _append(path: Path, text: str) -> None:
    """Append to a log the engine created for the trial (never create one: O_APPEND without O_CREAT)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def _wake_the_loop() -> None:
    """The loop sleeps on a self-pipe that SIGCHLD fills (see engine/executors/base.py: Threading)."""
    os.kill(os.getpid(), signal.SIGCHLD)
