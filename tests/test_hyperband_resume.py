"""A resumed Hyperband / ASHA study makes the decisions the uninterrupted study would have made.

In-process: a hand-built stream of starts and results is fed to a live scheduler, which records
what the engine records (each trial's bracket, its scheduler events); a second scheduler is
restored from that record at a cut in the middle of a bracket and fed the rest of the stream.
End to end: a real engine runs a Hyperband study with max_parallel 1 twice, once uninterrupted and
once killed with SIGKILL mid-bracket and resumed; brackets and stop/continue events must agree.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
from dataclasses import dataclass

import pytest

from hpotui.engine.schedulers import Action, Decision, make_scheduler
from hpotui.engine.schedulers.base import RecordedDecision, RecordedTrial, Scheduler
from hpotui.engine.space_file.space import SchedulerSpec
from tests.faults.conftest import Lab, lab, wait_for  # noqa: F401  (lab: the fault tests' fixture)

Step = tuple[str, int, float, float]  # ("start", trial, 0, 0) or ("result", trial, resource, value)


def _spec(kind: str) -> SchedulerSpec:
    return SchedulerSpec(type=kind, resource="epoch", min_resource=1, max_resource=27, reduction_factor=3)


def _stream(seed: int, trials: int = 40, parallel: int = 4) -> list[Step]:
    """Trials start in number order, up to ``parallel`` at once, and report out of start order;
    every fifth trial never reports its objective (it dies early, or logs only a loss)."""
    rng = random.Random(seed)
    steps: list[Step] = []
    running: dict[int, int] = {}  # trial -> next epoch
    quality = {t: rng.random() for t in range(trials)}
    next_trial = 0
    while running or next_trial < trials:
        while len(running) < parallel and next_trial < trials:
            steps.append(("start", next_trial, 0.0, 0.0))
            running[next_trial] = 1
            next_trial += 1
        trial = rng.choice(sorted(running))
        epoch = running[trial]
        if trial % 5 == 3 or epoch > 27:
            del running[trial]
            continue
        steps.append(("result", trial, float(epoch), quality[trial] * (1 - 0.5 ** epoch) + rng.gauss(0, 0.01)))
        running[trial] = epoch + rng.choice((1, 1, 2))  # some trials report every other epoch
    return steps


@dataclass
class Recorder:
    """What the engine writes: each trial's bracket at start, each decision with a reason as an event."""

    scheduler: Scheduler
    brackets: dict[int, int | None]
    started: list[int]
    results: dict[int, list[tuple[float, float]]]
    events: dict[int, list[RecordedDecision]]
    stopped: set[int]

    @classmethod
    def fresh(cls, scheduler: Scheduler) -> "Recorder":
        return cls(scheduler, {}, [], {}, {}, set())

    def feed(self, step: Step) -> Decision | None:
        kind, trial, resource, value = step
        if kind == "start":
            self.scheduler.on_trial_start(trial)
            self.started.append(trial)
            self.brackets[trial] = self.scheduler.assigned_bracket(trial)
            return None
        if trial in self.stopped:
            return None  # the engine judges nothing from a trial it is stopping
        self.results.setdefault(trial, []).append((resource, value))
        decision = self.scheduler.on_result(trial, resource, value)
        if decision.action == Action.STOP:
            self.stopped.add(trial)
        if decision.reason:
            self.events.setdefault(trial, []).append(
                RecordedDecision(decision.action, resource, value, decision.rung, decision.reason))
        return decision

    def record(self) -> list[RecordedTrial]:
        return [RecordedTrial(t, self.brackets[t], tuple(self.results.get(t, ())), tuple(self.events.get(t, ())),
                              running=True) for t in self.started]


def _decisions_after_resume(kind: str, steps: list[Step], cut: int) -> tuple[list[Decision | None], Recorder]:
    before = Recorder.fresh(make_scheduler(_spec(kind), "acc", "max"))
    for step in steps[:cut]:
        before.feed(step)
    resumed = make_scheduler(_spec(kind), "acc", "max")
    resumed.restore(before.record())
    after = Recorder.fresh(resumed)
    after.stopped = set(before.stopped)
    return [after.feed(step) for step in steps[cut:]], after


@pytest.mark.parametrize("kind", ["hyperband", "asha", "median"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_restored_scheduler_decides_as_the_uninterrupted_one(kind: str, seed: int) -> None:
    steps = _stream(seed)
    live = Recorder.fresh(make_scheduler(_spec(kind), "acc", "max"))
    expected = [live.feed(step) for step in steps]
    assert any(d is not None and d.action == Action.STOP for d in expected)  # the stream exercises pruning
    for cut in range(5, len(steps), 17):
        got, after = _decisions_after_resume(kind, steps, cut)
        assert got == expected[cut:], f"{kind}, seed {seed}: decisions differ after a resume at step {cut}"
        if kind == "hyperband":
            for trial in after.started:  # trials started after the resume are dealt the live brackets
                assert after.brackets[trial] == live.brackets[trial]


def test_restore_keeps_brackets_that_first_report_order_would_deal_differently() -> None:
    """The replay this replaces dealt brackets in first-report order; a trial that never reports shifted
    every later bracket. Restored from the record, nothing moves."""
    steps = _stream(4)
    live = Recorder.fresh(make_scheduler(_spec("hyperband"), "acc", "max"))
    for step in steps:
        live.feed(step)
    replayed = make_scheduler(_spec("hyperband"), "acc", "max")
    for kind, trial, resource, value in steps:
        if kind == "result":
            replayed.on_result(trial, resource, value)  # the old resume: deal at first result
    reporting = [t for t in live.started if t in live.results]
    assert any(replayed.bracket_of(t) != live.brackets[t] for t in reporting)
    restored = make_scheduler(_spec("hyperband"), "acc", "max")
    restored.restore(live.record())
    assert all(restored.bracket_of(t) == live.brackets[t] for t in live.started)
    assert restored.rung_cutoffs() == live.scheduler.rung_cutoffs()  # type: ignore[attr-defined]


def test_stop_recorded_at_a_low_rung_records_no_value_at_the_rungs_above() -> None:
    """A result that jumps two rungs and fails the first counts at that rung only, as it did live."""
    live = make_scheduler(_spec("asha"), "acc", "max")
    for trial, value in ((0, 0.7), (1, 0.8), (2, 0.9)):  # each a new best: each goes on
        assert live.on_result(trial, 1, value).action == Action.CONTINUE
    stop = live.on_result(3, 9, 0.1)  # reaches rungs 1, 3 and 9 at once; fails at 1
    assert stop.action == Action.STOP and stop.rung == 1
    record = [RecordedTrial(t, None, ((1.0, v),), (RecordedDecision(Action.CONTINUE, 1, v, None, "promoted"),), False)
              for t, v in ((0, 0.7), (1, 0.8), (2, 0.9))]
    record.append(RecordedTrial(3, None, ((9.0, 0.1),), (RecordedDecision(Action.STOP, 9, 0.1, 1, stop.reason),),
                                False))
    restored = make_scheduler(_spec("asha"), "acc", "max")
    restored.restore(record)
    assert restored.rung_sizes() == live.rung_sizes() == {1: 4, 3: 0, 9: 0}  # type: ignore[attr-defined]
    assert restored.on_result(3, 10, 0.95) == stop  # a late line from the stopped trial changes nothing


# -- end to end: the real engine, killed with SIGKILL mid-bracket -----------------------------------------
TRAINER = """
import json, sys, time
x, delay = int(sys.argv[1]), float(sys.argv[2])
for epoch in range(1, 10):
    time.sleep(delay)
    if x % 4 == 1:  # logs its loss but never the objective: it must still be dealt a bracket
        print("@hpotui " + json.dumps({"epoch": epoch, "loss": 1.0 / epoch}), flush=True)
    else:
        quality = ((x * 7) % 10) / 10
        print("@hpotui " + json.dumps({"epoch": epoch, "val_acc": quality * (1 - 0.5 ** epoch)}), flush=True)
"""
TRIALS = 14


def _hyperband_study(lab: Lab, name: str, delay: float) -> None:
    lab.write_trial("hb_trainer.py", TRAINER)
    lab.write_space(name, command=f"python hb_trainer.py {{x}} {delay}", algorithm="grid",
                    space={"x": {"type": "choice", "values": list(range(TRIALS))}},
                    max_trials=TRIALS, max_parallel=1,
                    scheduler={"type": "hyperband", "resource": "epoch", "min_resource": 1, "max_resource": 9,
                               "reduction_factor": 3})


def _decisions(lab: Lab, name: str) -> tuple[dict[int, int | None], list[tuple[int, str, float]], dict[int, str]]:
    """(bracket by trial number, (trial number, action, step) of every scheduler event, status by number)."""
    trials = lab.trials(name)
    number = {t["id"]: t["number"] for t in trials}
    events = []
    for e in lab.events(name, "scheduler"):
        data = json.loads(e["data"])
        events.append((number[e["trial_id"]], data["action"], data["step"]))
    return ({t["number"]: t["bracket"] for t in trials}, sorted(events),
            {t["number"]: t["status"] for t in trials})


def test_hyperband_resumed_mid_bracket_decides_as_an_uninterrupted_run(lab: Lab) -> None:
    _hyperband_study(lab, "straight", delay=0.03)
    done = lab.hpotui("launch", str(lab.root / "straight.yaml"), "--headless", timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    expected = _decisions(lab, "straight")
    assert set(expected[0].values()) == {2, 1, 0}, expected[0]  # every bracket dealt, every trial recorded
    assert any(action == "stop" for _, action, _ in expected[1])

    _hyperband_study(lab, "killed", delay=0.15)  # slower: the kill lands while trial 9 is between its rungs
    engine = lab.start("launch", str(lab.root / "killed.yaml"), "--headless")
    wait_for(lambda: any(t["number"] == 9 and t["reports"] >= 2 for t in lab.trials("killed")), timeout=120,
             what="trial 9 to report twice")
    engine.signal(signal.SIGKILL)
    engine.popen.wait()
    with sqlite3.connect(lab.db) as conn:
        assert conn.execute("SELECT status FROM studies WHERE name = 'killed'").fetchone()[0] == "running"
    resumed = lab.hpotui("resume", "killed", "--headless", timeout=180)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    got = _decisions(lab, "killed")
    assert got[0] == expected[0], "brackets after the resume differ from the uninterrupted run"
    assert got[1] == expected[1], "stop/continue decisions after the resume differ from the uninterrupted run"
    assert got[2] == expected[2]
