"""Starting one trial: its folder, argv, environment, row (with its GPU), the executor's start, the record.

Why its own module: the core decides that a configuration runs (a ``Launch`` effect); turning
that into a running process is file-system, database and process work with its own failure
cases (a study folder that cannot take trial folders, no GPU free yet, a program that cannot be
started, out of file descriptors, a start that could not be recorded). Each is handled here, and
what it means for the study goes back to the core as an event.
"""

from __future__ import annotations

import errno
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

from ..core.commands import show_params
from ..core.effects import Launch
from ..core.events import Halt, Launched, RerunQueued, StartFailed, TrialFacts, TrialStarted
from ..database.records import EventKind, TrialStatus
from ..database.records import TrialStarted as StartedPayload
from ..database.store import HOSTNAME, TrialRow
from ..errors import UserError
from ..executors.base import TrialProcess
from ..gpus.gpu_placer import GpuPlacer
from ..space_file.conditions import inactive_names
from ..space_file.space import render_argv
from ..trials.fd_limits import out_of_fds
from ..trials.trial_files import folder_warnings, make_trial_folder
from ..trials.trial_params import params_environment
from .loop_parts import LoopParts


class TrialLauncher:
    """Starts the trials the core offers, in the study's folder (see the module docstring)."""

    def __init__(self, parts: LoopParts, gpu: GpuPlacer, runs_root: Path, git_commit: str | None) -> None:
        self.parts, self.gpu, self.git_commit = parts, gpu, git_commit
        self.store, self.space, self.study = parts.store, parts.space, parts.study
        self.runs_root = runs_root
        self.study_dir = runs_root / self.study.name
        self._waiting_note: str | None = None
        self._base_env = dict(os.environ)  # read once: os.environ decodes every item on each access

    # -- the study's folder ---------------------------------------------------------------------------
    def make_study_folders(self) -> None:
        """hpotui_runs/ and the study's folder, each level owner-only whatever the umask says; one line if not."""
        for folder in (self.runs_root, self.study_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                if not folder.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, "not a folder")
            except OSError as exc:
                raise UserError(f"{folder}: cannot hold trial folders ({exc.strerror or exc}); move it away or "
                                f"fix its permissions, then run again") from None

    def warn_about_folders(self) -> None:
        """Say so when others could swap trial folders under us (shared project folders)."""
        for warning in folder_warnings([self.runs_root, self.study_dir]):
            self.store.add_event(self.study.id, None, EventKind.FOLDER_MODE, warning, level="warning")
            self.parts.say(f"warning: {warning}")

    # -- one trial ------------------------------------------------------------------------------------
    def launch_one(self, launch: Launch) -> bool:
        """Make the trial's folder and row (with its GPU), then start it; False when it must wait or cannot."""
        params, sample_index, rerun_of, clone_id = launch.params, launch.sample_index, launch.rerun_of, launch.clone_id
        number = self.store.next_trial_number(self.study.id)
        try:
            folder = make_trial_folder(self.study_dir, number)  # fresh: a trial never inherits a folder or a file
        except OSError as exc:
            return self._cannot_make_folders(exc)
        trial_dir = folder.path
        seed = trial_seed(self.space.search.seed, sample_index)
        argv = self._trial_argv(params, number, trial_dir)

        def insert(picker: Any) -> TrialRow | None:
            return self.store.add_trial(study_id=self.study.id, params=params, argv=argv, trial_dir=str(trial_dir),
                                        stdout_path=str(trial_dir / "stdout.log"),
                                        stderr_path=str(trial_dir / "stderr.log"), sample_index=sample_index,
                                        rerun_of=rerun_of, seed=seed, number=number, gpu_picker=picker,
                                        clone_id=clone_id)

        uses_gpus = self.gpu.uses_gpus(self.parts.executor)
        inserted = self.gpu.insert(insert, params, rerun_of) if uses_gpus else insert(None)
        placement = self.gpu.placed(inserted) if inserted is not None else ""
        if inserted is None:
            os.rmdir(trial_dir)  # still empty and ours; the next try makes it again
            self._note_waiting_for_gpus()
            return False  # no GPU free right now: the next tick tries again
        row: TrialRow = inserted
        self.parts.core.handle(Launched(TrialFacts.of(row)))  # its configuration is consumed
        self._waiting_note = None
        self._note_new_trial(row, folder.note, clone_id)
        env = self._trial_env(row, params, trial_dir, seed)
        try:
            proc = self.parts.executor.start(row.id, argv, cwd=self.space.workdir, env=env,
                                             stdout_path=Path(row.stdout_path), stderr_path=Path(row.stderr_path))
        except OSError as exc:
            self._start_failed(row, argv[0], exc)
            return True
        self._record_start(row, proc, params, launch.clone_of, placement)
        return True

    def _cannot_make_folders(self, exc: OSError) -> bool:
        """The study folder cannot take trial folders (not writable, gone): no trial can start; say so."""
        if out_of_fds(exc):
            raise exc
        reason = (f"cannot make trial folders in {self.study_dir} ({exc.strerror or exc}): no new trials; "
                  f"fix the folder, then `hpotui resume {self.study.name}`")
        self.parts.apply(self.parts.core.handle(Halt(reason, record_kind=EventKind.TRIAL_FOLDER)))
        return False

    def _note_new_trial(self, row: TrialRow, folder_note: str | None, clone_id: int | None) -> None:
        """Say what is unusual about a trial about to start: a taken folder name, a clone's off-range values."""
        notes = [("trial_folder", folder_note)]
        if clone_id is not None:  # values outside the searched ranges: it runs as asked, and says so
            notes.append(("clone_note", self.store.clone_note(clone_id)))
        for kind, note in notes:
            if note:
                self.store.add_event(self.study.id, row.id, kind, f"trial {row.number}: {note}", level="warning")
                self.parts.say(f"trial {row.number}: {note}")

    def _note_waiting_for_gpus(self) -> None:
        note = self.gpu.note_waiting()
        if note != self._waiting_note:
            self._waiting_note = note
            self.store.add_event(self.study.id, None, EventKind.WAITING, note)
            self.parts.say(note)

    def _trial_argv(self, params: dict[str, Any], number: int, trial_dir: Path) -> list[str]:
        """The space file's command with this trial's values (and its number, folder, max_resource) filled in."""
        values: dict[str, Any] = dict(params, trial_id=number, trial_dir=str(trial_dir))
        if self.space.scheduler.max_resource is not None:
            mr = self.space.scheduler.max_resource
            values["max_resource"] = int(mr) if mr == int(mr) else mr
        return render_argv(self.space.command, values, inactive_names(self.space.params, params))

    def _trial_env(self, row: TrialRow, params: dict[str, Any], trial_dir: Path, seed: int | None) -> dict[str, str]:
        """The engine's environment plus what the trial is told: its number, folder, study, GPUs, seed, values."""
        env = dict(self._base_env)
        env.update(HPOTUI_TRIAL_ID=str(row.number), HPOTUI_TRIAL_DIR=str(trial_dir), HPOTUI_STUDY=self.study.name,
                   PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES=row.gpus or "")
        for inherited in ("HPOTUI_PARAMS", "HPOTUI_PARAMS_FILE"):  # never the engine's own, if it has one
            env.pop(inherited, None)
        env.update(params_environment(params, trial_dir))  # a file past the kernel's per-string limit
        if row.gpus:
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # NVML's numbering, which placement used
        if seed is not None:
            env["HPOTUI_SEED"] = str(seed)
        return env

    def _start_failed(self, row: TrialRow, program: str, exc: OSError) -> None:
        """The executor could not start it: a failed trial (out of file descriptors: it runs again later)."""
        self.gpu.ended(row, TrialStatus.FAILED)  # it never ran: its GPU claim goes at once
        self._requeue_if_out_of_fds(row, exc)
        reason = f"could not start {program!r}: {exc.strerror or exc}"
        self.store.finish_trial(row.id, TrialStatus.FAILED, exit_code=127, reason=reason)
        self.parts.apply(self.parts.core.handle(StartFailed(row.id, reason)))  # counted; a storm of them pauses launching

    def _requeue_if_out_of_fds(self, row: TrialRow, exc: OSError) -> None:
        """EMFILE at a start is not the trial's fault: it runs again once a running trial frees its files;
        the loop (``OpenFileCap.ran_out``) stops launching."""
        if out_of_fds(exc):
            self.store.finish_trial(row.id, TrialStatus.INTERRUPTED, exit_code=None,
                                    reason=f"not started: the engine is out of file descriptors ({exc.strerror})")
            self.parts.core.handle(RerunQueued(TrialFacts.of(self.store.trial(row.id))))
            raise exc

    def _record_start(self, row: TrialRow, proc: TrialProcess, params: dict[str, Any], clone_of: int | None,
                      placement: str) -> None:
        """Mark it running, track it, tell the scheduler and the GPU claims, and say where it runs."""
        number, core = row.number, self.parts.core
        try:
            self.store.mark_running(row.id, pid=proc.pid, pgid=proc.pgid, proc_create_time=proc.create_time,
                                    git_commit=self.git_commit, host=proc.node or HOSTNAME)
        except sqlite3.OperationalError:
            self.parts.track(row, proc)  # it runs: read and reap it even though its start could not be recorded
            core.handle(TrialStarted(TrialFacts.of(row)))  # its bracket is not recorded: the file is failing
            raise
        row = self.store.trial(row.id)  # type: ignore[assignment]
        self.parts.track(row, proc)
        self.gpu.started(row, proc.pid, proc.create_time)
        self.parts.apply(core.handle(TrialStarted(TrialFacts.of(row))))  # the scheduler deals its bracket
        where = f" on GPU {row.gpus}" + (f" ({placement})" if placement else "") if row.gpus else ""
        self.store.buffer_event(self.study.id, row.id, EventKind.STARTED, f"trial {number} started{where}: "
                                f"{show_params(params)}",
                                data=StartedPayload(proc.pid, row.gpus, clone_of, placement).to_data())
        self.parts.say(f"trial {number} started{where}: {show_params(params)}")

    # -- a cluster's late start -----------------------------------------------------------------------
    def note_placements(self) -> None:
        """Trials a cluster executor (Ray) queued at start and has now placed: record their node and pid."""
        for proc in self.parts.executor.take_placed():
            live = self.parts.live.get(proc.trial_id)
            if live is None:
                continue
            self.store.mark_running(proc.trial_id, pid=proc.pid, pgid=proc.pgid, proc_create_time=proc.create_time,
                                    git_commit=self.git_commit, host=proc.node or HOSTNAME)
            live.row = self.store.trial(proc.trial_id) or live.row  # its started_at is now when it started there
            self.store.buffer_event(self.study.id, proc.trial_id, EventKind.PLACED,
                                    f"trial {live.row.number} running on {proc.node} (pid {proc.pid})",
                                    data={"pid": proc.pid, "node": proc.node})
            self.parts.say(f"trial {live.row.number} running on {proc.node}")


def trial_seed(seed: int | None, index: int | None) -> int | None:
    """The seed a trial is told (HPOTUI_SEED): fixed by the study's seed and the trial's sample index."""
    if seed is None or index is None:
        return None
    return random.Random(f"trial-seed:{seed}:{index}").randrange(2**31)
