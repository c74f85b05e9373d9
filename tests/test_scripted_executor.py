"""The real study loop in this process, driven by engine/executors/fake.py's FakeExecutor.

No subprocess runs: a trial is a script of lines and exits, written into its real log files and
read back through the engine's real readers. That a study completes through it, with the same
records a real trial leaves, is what the executor port promises to a Slurm or SSH executor; the
last tests pin the fake's own behaviour (one step per poll, SIGTERM handling, pause, adopt).
"""

from __future__ import annotations

import signal
from pathlib import Path

from hpotui.engine.executors.base import Executor, TrialProcess
from hpotui.engine.executors.fake import (Exit, FakeExecutor, FakeTrial, Hang, Killed, Run, Say, Step,
                                          TrialScript, report)
from tests.inproc import launch

SPACE = """
    name: scripted
    command: train --lr {lr}
    objective: {metric: loss, mode: min}
    search: {algorithm: random, seed: 0}
    budget: {max_trials: %d, max_parallel: 2, failure_streak: 10}
    space:
      lr: {type: loguniform, low: 1e-4, high: 1}
    """


def reports(*losses: float) -> list[Step]:
    return [report(step=i, loss=v) for i, v in enumerate(losses, 1)]


def test_the_fake_declares_its_capabilities_like_the_other_executors() -> None:
    assert Executor in FakeExecutor.__mro__
    assert (FakeExecutor.name, FakeExecutor.places_gpus, FakeExecutor.outlives_engine) == ("fake", False, True)
    assert FakeExecutor(lambda t: [], outlives_engine=False).outlives_engine is False


def test_a_study_runs_to_its_end_through_a_third_executor(tmp_path: Path) -> None:
    def script(trial: FakeTrial) -> list[Step]:
        assert trial.argv[:2] == ["train", "--lr"] and float(trial.argv[2]) == trial.params["lr"]
        if trial.number == 2:
            return [*reports(0.9), Say("Traceback (most recent call last):\nValueError: lr too big", "stderr"),
                    Exit(1)]
        return reports(0.5, {1: 0.1, 3: 0.3, 4: 0.4}[trial.number])

    run = launch(tmp_path, SPACE % 4, script)
    assert run.code == 0, run.out
    trials = run.trials()
    assert [(t.number, t.status, t.exit_code) for t in trials] == \
        [(1, "completed", 0), (2, "failed", 1), (3, "completed", 0), (4, "completed", 0)]
    assert [t.best_value for t in trials] == [0.1, 0.9, 0.3, 0.4]
    failed = trials[1]
    assert failed.status_reason == "exit code 1: ValueError: lr too big"
    event = run.events("failed")[0]
    assert event.level == "error" and event.data["stderr_tail"].endswith("ValueError: lr too big\n")
    assert event.message.startswith("trial 2 failed after ") and event.message.endswith(
        ": loss=0.9 (best at step 1) — exit code 1: ValueError: lr too big")
    assert "study scripted completed: 4 trials finished" in run.out
    assert "best trial 1: train --lr " in run.out
    assert run.executor.shut_down


def test_the_executors_node_is_what_the_trial_row_names(tmp_path: Path) -> None:
    run = launch(tmp_path, SPACE % 2, executor=FakeExecutor(lambda t: reports(0.5), node="fake-node-7"))
    assert {t.host for t in run.trials()} == {"fake-node-7"}


def test_a_trial_that_says_invalid_is_not_counted_and_another_runs(tmp_path: Path) -> None:
    def script(trial: FakeTrial) -> list[Step]:
        if trial.number == 1:
            return [Say('@hpotui {"invalid": "lr too small for this batch"}')]
        return reports(0.2)

    run = launch(tmp_path, SPACE % 2, script)
    assert run.code == 0, run.out
    trials = run.trials()
    assert [(t.number, t.status) for t in trials] == [(1, "invalid"), (2, "completed"), (3, "completed")]
    assert trials[0].status_reason == "lr too small for this batch"
    assert "trial 1 invalid: lr too small for this batch" in run.out


def test_a_trial_killed_by_a_signal_fails_with_what_the_signal_means(tmp_path: Path) -> None:
    run = launch(tmp_path, SPACE % 1, lambda t: [*reports(0.5), Killed(signal.SIGSEGV)])
    trial = run.trials()[0]
    assert (trial.status, trial.exit_code) == ("failed", 128 + signal.SIGSEGV)
    assert "SIGSEGV, segmentation fault" in (trial.status_reason or "")


# -- the fake itself: one step per poll, stops, pause, adopt ------------------------------------------------
def _started(tmp_path: Path, steps: list[Step] | TrialScript, grace_polls: int = 3) -> tuple[FakeExecutor, TrialProcess]:
    fake = FakeExecutor(lambda t: steps, grace_polls=grace_polls)
    env = {"HPOTUI_TRIAL_ID": "1", "HPOTUI_TRIAL_DIR": str(tmp_path), "HPOTUI_PARAMS": '{"lr": 0.1}'}
    proc = fake.start(7, ["train"], cwd=tmp_path, env=env, stdout_path=tmp_path / "stdout.log",
                      stderr_path=tmp_path / "stderr.log")
    return fake, proc


def test_each_poll_takes_one_step_and_the_lines_land_in_the_real_logs(tmp_path: Path) -> None:
    fake, proc = _started(tmp_path, [Say("one"), Run(2), Say("oops", "stderr"), Exit(3)])
    assert fake.runs[1].trial.params == {"lr": 0.1} and proc.pid > 2**22  # never a real process
    seen = []
    for _ in range(6):
        seen.append(fake.poll(proc))
    assert seen == [None, None, None, None, 3, 3]
    assert (tmp_path / "stdout.log").read_text() == "one\n"
    assert (tmp_path / "stderr.log").read_text() == "oops\n"


def test_sigterm_runs_the_trials_on_stop_steps_and_sigkill_follows_the_grace(tmp_path: Path) -> None:
    fake, proc = _started(tmp_path, TrialScript([Hang()], on_stop=[Say("saving"), Exit(0)]))
    assert fake.poll(proc) is None and fake.poll(proc) is None
    fake.request_stop(proc, "stopped", "by you")
    fake.request_stop(proc, "pruned", "later ask")
    assert (proc.final_status, proc.final_reason) == ("stopped", "by you")  # the first ask wins
    assert [fake.poll(proc), fake.poll(proc)] == [None, 0]
    assert (tmp_path / "stdout.log").read_text() == "saving\n"


def test_a_trial_that_ignores_sigterm_gets_sigkill_after_the_grace_polls(tmp_path: Path) -> None:
    fake, proc = _started(tmp_path, TrialScript([Hang()], on_stop=[Hang()]), grace_polls=2)
    fake.request_stop(proc, "stopped", "by you")
    codes = []
    for _ in range(3):
        fake.enforce_deadline(proc)
        codes.append(fake.poll(proc))
    assert codes == [None, None, 137] and fake.runs[1].signals == ["SIGTERM", "SIGKILL"]


def test_a_paused_trial_holds_still_and_an_adopted_one_goes_on(tmp_path: Path) -> None:
    fake, proc = _started(tmp_path, [Say("a"), Say("b"), Exit(0)])
    fake.poll(proc)
    fake.pause(proc)
    assert proc.paused and [fake.poll(proc), fake.poll(proc)] == [None, None]
    assert (tmp_path / "stdout.log").read_text() == "a\n"
    fake.resume(proc)
    again = fake.adopt(7, proc.pid, proc.pgid, proc.create_time, proc.stdout_path, proc.stderr_path)
    assert again is not None and fake.adopt(7, proc.pid, proc.pgid, 1.0, proc.stdout_path, proc.stderr_path) is None
    assert [fake.poll(again), fake.poll(again)] == [None, 0]
    assert (tmp_path / "stdout.log").read_text() == "a\nb\n"
    assert fake.adopt(7, proc.pid, proc.pgid, proc.create_time, proc.stdout_path, proc.stderr_path) is None
    assert fake.runs[1].signals == ["SIGSTOP", "SIGCONT"]


def test_no_engine_module_imports_the_fake() -> None:
    """It is for tests and simulations: the CLI's paths never load it, not even lazily."""
    import ast

    engine = Path(__file__).resolve().parents[1] / "engine"
    importers = []
    for path in engine.rglob("*.py"):
        if path.name == "fake.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[-1] == "fake":
                importers.append(str(path.relative_to(engine)))
            if isinstance(node, ast.ImportFrom) and any(alias.name == "fake" for alias in node.names):
                importers.append(str(path.relative_to(engine)))
    assert importers == []
