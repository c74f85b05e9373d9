"""Trials that exited: the last of their output read, their process group reaped, their end recorded.

Why its own module: an exit is where reading, the executor, the GPU claims and the store meet. The
last lines and files are read before the end is judged, the row gets its final status before
anything else is written (a later failed write must not finish a trial twice), the host-wide GPU
claim goes, and the logs are trimmed once everything in them is recorded. The core decides what
the end means (engine/core/, worded by engine/trials/trial_end.py); this module gathers what it needs.
"""

from __future__ import annotations

import time

from ..core.effects import RecordEnd
from ..core.events import GpuReleased, TrialExited
from ..database.records import EventKind, HealthFlag
from ..gpus.gpu_placer import GpuPlacer
from ..machine.resources import OOM_FLAG, OOM_HINT, is_cuda_oom
from ..machine.usage import UsageSampler
from ..reading import trial_reading as reading
from ..reading.trial_logs import LiveTrial, TrialLogReader
from ..trials import trial_end
from .loop_parts import LoopParts


class TrialExits:
    """Reaps the watched trials that ended and records how (see the module docstring)."""

    def __init__(self, parts: LoopParts, reader: TrialLogReader, gpu: GpuPlacer, usage: UsageSampler) -> None:
        self.parts, self.reader, self.gpu, self.usage = parts, reader, gpu, usage

    def reap(self) -> None:
        """Every watched trial whose process ended (its deadline enforced first): read out, reaped, recorded."""
        executor, live_trials = self.parts.executor, self.parts.live
        for trial_id, live in list(live_trials.items()):
            executor.enforce_deadline(live.proc)
            code = executor.poll(live.proc)
            if code is None:
                continue
            self.reader.drain(live, final=True)
            self.reader.poll_files(live, final=True)  # what its CSV / event files hold at the end
            self.reader.settle([live], final=True)
            executor.reap_group(live.proc)
            self._finish_trial(live, code)  # drops it from live as soon as its status is recorded
            live_trials.pop(trial_id, None)
            for stream in (live.stdout, live.stderr):
                stream.trim()  # all recorded now: only the newest logs.max_mb stays on disk

    def _finish_trial(self, live: LiveTrial, code: int) -> None:
        """Record how the trial ended, then what its end means (the core decides, engine/trials/trial_end.py words it)."""
        space, core = self.parts.space, self.parts.core
        asked = live.proc.final_status
        stderr_tail = live.stderr.tail_text() if trial_end.needs_stderr(code, asked) else ""
        problems = None if live.reading is None else tuple(reading.trial_problems(
            live.reading, space.objective.metric, space.metric_regex, space.logs.max_line_bytes))
        ran_s = time.time() - live.row.started_at if live.row.started_at else None
        effects = core.handle(TrialExited(
            live.row.id, code, asked_status=asked, asked_reason=live.proc.final_reason, reports=live.reports,
            invalid=live.invalid, stderr_tail=stderr_tail, best=live.best, best_step=live.best_step,
            curve=tuple(live.curve), last=live.last, ran_s=ran_s, problems=problems,
            cuda_oom=is_cuda_oom(stderr_tail)))
        self.parts.apply(effects)  # RecordEnd: the row gets its final status
        status = next(e.end.status for e in effects if isinstance(e, RecordEnd))
        retry_alone = self.gpu.oom_retry(live.row, status, stderr_tail)  # out of GPU memory beside others
        self.gpu.ended(live.row, status)  # its host-wide GPU claim goes
        self.parts.apply(core.handle(GpuReleased(live.row.id, retry_alone)))

    def record_end(self, trial_id: int, end: trial_end.TrialEnd) -> None:
        """The trial's row gets its final status; the loop and the sampler of usage drop it."""
        live = self.parts.live[trial_id]
        for stream in (live.stdout, live.stderr):
            stream.close()
        self.parts.store.finish_trial(trial_id, end.status, exit_code=end.exit_code, reason=end.reason or None)
        self.parts.live.pop(trial_id, None)  # recorded: a later failed write (disk full) must not finish it twice
        self.usage.trial_ended(trial_id)

    def flag_cuda_oom(self, trial_id: int, number: int) -> None:
        """A failed trial whose stderr says CUDA ran out of memory gets the oom flag and its hint."""
        self.parts.store.buffer_event(self.parts.study.id, trial_id, EventKind.FLAG,
                                      f"{OOM_FLAG}: trial {number} ran out of GPU memory — {OOM_HINT}",
                                      level="error", data=HealthFlag(OOM_FLAG, hint=OOM_HINT).to_data())
