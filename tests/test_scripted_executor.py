"""The real study loop in this process, driven by a third executor written against the Executor port only.

No subprocess runs: the executor "starts" a trial by writing the output its script gives into the
trial's logs and reports the scripted exit code. That a study completes through it, with the same
records a real trial leaves, is what the port promises to a Slurm or SSH executor.
"""

from __future__ import annotations

import io
import json
import os
import textwrap
from pathlib import Path
from typing import Callable

from hpotui.engine.executors.base import Executor, TrialProcess
from hpotui.engine.space import load_space
from hpotui.engine.store import Store
from hpotui.engine.study import Options, StudyLoop
from hpotui.engine.trial_files import create_trial_logs

Script = Callable[[int, dict[str, str]], tuple[str, str, int]]  # (trial number, env) -> (stdout, stderr, exit code)


class ScriptedExecutor(Executor):
    """Trials that end as soon as they start, with scripted output; stops are recorded, never signalled."""

    name, places_gpus, outlives_engine = "scripted", False, False

    def __init__(self, script: Script) -> None:
        self.script = script
        self.codes: dict[int, int] = {}
        self.shut_down = False

    def start(self, trial_id: int, argv: list[str], *, cwd: Path, env: dict[str, str], stdout_path: Path,
              stderr_path: Path) -> TrialProcess:
        out, err, code = self.script(int(env["HPOTUI_TRIAL_ID"]), env)
        for fd, text in zip(create_trial_logs(stdout_path, stderr_path), (out, err)):
            os.write(fd, text.encode())
            os.close(fd)
        self.codes[trial_id] = code
        return TrialProcess(trial_id=trial_id, pid=0, pgid=0, create_time=0.0, stdout_path=stdout_path,
                            stderr_path=stderr_path, node="scripted-node")

    def adopt(self, trial_id: int, pid: int, pgid: int, create_time: float, stdout_path: Path,
              stderr_path: Path) -> TrialProcess | None:
        return None

    def poll(self, proc: TrialProcess) -> int | None:
        return self.codes[proc.trial_id]

    def request_stop(self, proc: TrialProcess, status: str, reason: str) -> None:
        if proc.final_status is None:
            proc.final_status, proc.final_reason = status, reason

    def enforce_deadline(self, proc: TrialProcess) -> None:
        pass

    def reap_group(self, proc: TrialProcess) -> None:
        pass

    def pause(self, proc: TrialProcess) -> None:
        proc.paused = True

    def resume(self, proc: TrialProcess) -> None:
        proc.paused = False

    def shutdown(self) -> None:
        self.shut_down = True


def run_study(tmp_path: Path, script: Script, *, trials: int, extra: str = "") -> tuple[int, Store, int, str]:
    space_path = tmp_path / "s.yaml"
    space_path.write_text(textwrap.dedent(f"""
        name: scripted
        command: train --lr {{lr}}
        objective: {{metric: loss, mode: min}}
        search: {{algorithm: random, seed: 0}}
        budget: {{max_trials: {trials}, max_parallel: 2, failure_streak: 10}}
        space:
          lr: {{type: loguniform, low: 1e-4, high: 1}}
        """) + textwrap.dedent(extra))
    space = load_space(space_path)
    store = Store(tmp_path / "h.db")
    study = store.create_study(name=space.name, objective_metric="loss", objective_mode="min",
                               space_file=str(space_path), space_yaml=space_path.read_text(),
                               space_json=json.dumps({"base_dir": str(tmp_path)}), parent_id=None,
                               max_parallel=2, headless=True)
    out = io.StringIO()
    options = Options(headless=True, grace_period_s=1.0, out=out, runs_root=tmp_path / "runs")
    code = StudyLoop(store, space, study, options, executor=ScriptedExecutor(script)).run()
    return code, store, study.id, out.getvalue()


def reports(*losses: float) -> str:
    return "".join(f'@hpotui {{"step": {i}, "loss": {v}}}\n' for i, v in enumerate(losses, 1))


def test_a_study_runs_to_its_end_through_a_third_executor(tmp_path: Path) -> None:
    def script(number: int, env: dict[str, str]) -> tuple[str, str, int]:
        if number == 2:
            return reports(0.9), "Traceback (most recent call last):\nValueError: lr too big\n", 1
        return reports(0.5, {1: 0.1, 3: 0.3, 4: 0.4}[number]), "", 0

    code, store, study_id, out = run_study(tmp_path, script, trials=4)
    assert code == 0, out
    trials = store.trials(study_id)
    assert [(t.number, t.status, t.exit_code) for t in trials] == \
        [(1, "completed", 0), (2, "failed", 1), (3, "completed", 0), (4, "completed", 0)]
    assert [t.best_value for t in trials] == [0.1, 0.9, 0.3, 0.4]
    assert {t.host for t in trials} == {"scripted-node"}  # the executor's node is what the trial row names
    failed = trials[1]
    assert failed.status_reason == "exit code 1: ValueError: lr too big"
    event = next(e for e in store.events(study_id, kinds=("failed",)))
    assert event.level == "error" and event.data["stderr_tail"].endswith("ValueError: lr too big\n")
    assert event.message.startswith("trial 2 failed after ") and event.message.endswith(
        ": loss=0.9 (best at step 1) — exit code 1: ValueError: lr too big")
    assert "study scripted completed: 4 trials finished" in out
    assert "best trial 1: train --lr " in out


def test_a_trial_that_says_invalid_is_not_counted_and_another_runs(tmp_path: Path) -> None:
    def script(number: int, env: dict[str, str]) -> tuple[str, str, int]:
        if number == 1:
            return '@hpotui {"invalid": "lr too small for this batch"}\n', "", 0
        return reports(0.2), "", 0

    code, store, study_id, out = run_study(tmp_path, script, trials=2)
    assert code == 0, out
    trials = store.trials(study_id)
    assert [(t.number, t.status) for t in trials] == [(1, "invalid"), (2, "completed"), (3, "completed")]
    assert trials[0].status_reason == "lr too small for this batch"
    assert "trial 1 invalid: lr too small for this batch" in out
