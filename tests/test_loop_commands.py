"""Commands and clones in the real study loop, in this process.

Commands arrive the way `hpotui stop` and the TUI send them: rows in the commands table, written
through another connection to the study's file (or raw SQL, for rows no hpotui would write), here
from inside a scripted trial's run (engine/executors/fake.py) so that they land while trials run.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from hpotui.engine.executors.fake import Call, FakeExecutor, FakeTrial, Hang, Say, Step, report
from tests.faults.test_commands import BAD_ROWS
from tests.inproc import InProcessRun, Prepared, prepare


def counting(epochs: int, at: dict[tuple[int, int], Callable[[], object]] | None = None) -> Callable[[FakeTrial], list[Step]]:
    """faults/conftest.py's counting trial: one uniquely-numbered line per epoch; ``at[(trial, epoch)]``
    is called right after that line."""
    def script(trial: FakeTrial) -> list[Step]:
        steps: list[Step] = []
        for epoch in range(1, epochs + 1):
            steps.append(report(epoch=epoch, val_acc=trial.params["lr"] * epoch / epochs,
                                uid=trial.number * 100000 + epoch))
            steps.append(Say(f"epoch {epoch} of trial {trial.number}"))
            if at and (trial.number, epoch) in at:
                steps.append(Call(at[(trial.number, epoch)]))
        return steps
    return script


def counting_space(name: str, *, max_trials: int, max_parallel: int, space: str = "lr: {type: uniform, low: 0.1, high: 1.0}") -> str:
    return f"""
        name: {name}
        command: python count.py {{lr}}
        objective: {{metric: val_acc, mode: max}}
        search: {{algorithm: random, seed: 0}}
        budget: {{max_trials: {max_trials}, max_parallel: {max_parallel}}}
        space:
          {space}
        """


def exactly_once(run: InProcessRun) -> tuple[int, Counter[float], Counter[float]]:
    """(uid lines printed, printed but not recorded, recorded more than once) over every trial's log."""
    printed: Counter[float] = Counter()
    for t in run.trials():
        for line in Path(t.stdout_path).read_text().splitlines():
            if line.startswith("@hpotui "):
                printed[float(json.loads(line[8:])["uid"])] += 1
    recorded = Counter(float(r[0]) for r in run.store.conn.execute("SELECT value FROM metrics WHERE name = 'uid'"))
    return sum(printed.values()), printed - recorded, recorded - printed


def _insert(prepared: Prepared, rows: list[tuple]) -> list[int]:
    conn = sqlite3.connect(prepared.store.path, timeout=30)
    try:
        ids = [conn.execute("INSERT INTO commands (study_id, trial_number, action, args, created_at) "
                            "VALUES (?, ?, ?, ?, ?)", (prepared.study.id, n, a, args, time.time())).lastrowid
               for n, a, args in rows]
        conn.commit()
        return [i for i in ids if i is not None]
    finally:
        conn.close()


def _results(run: InProcessRun, ids: list[int]) -> list[str]:
    return [run.store.conn.execute("SELECT result FROM commands WHERE id = ?", (i,)).fetchone()[0] for i in ids]


def test_malformed_commands_are_refused_and_the_study_goes_on(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, counting_space("cmds", max_trials=3, max_parallel=1))
    sent: dict[str, list[int]] = {}

    def send_bad_then_good() -> None:
        sent["bad"] = _insert(prepared, BAD_ROWS)
        sent["good"] = _insert(prepared, [(None, "set_max_parallel", '{"value": 2}')])

    run = prepared.run(counting(25, {(1, 2): send_bad_then_good}))
    assert run.code == 0, run.out[-3000:]
    results = _results(run, sent["bad"])
    assert all(r.startswith("refused:") for r in results), results
    assert all(len(r) < 200 and "\n" not in r for r in results), results
    assert _results(run, sent["good"]) == ["max_parallel is now 2"]
    oks = [r[0] for r in run.store.conn.execute("SELECT ok FROM commands ORDER BY id")]
    assert oks == [0] * len(BAD_ROWS) + [1]  # the severity travels with the answer (commands.ok)
    assert "Traceback" not in run.out
    assert [t.status for t in run.trials()] == ["completed"] * 3
    checked, missing, extra = exactly_once(run)
    assert checked == 3 * 25 and not missing and not extra


def test_a_clone_queued_after_the_budget_is_fully_launched_still_runs_with_its_note(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, counting_space("full", max_trials=2, max_parallel=3))
    sent: list[int] = []
    run = prepared.run(counting(40, {(2, 2): lambda: sent.append(prepared.send("clone_trial", 1, params={"lr": 5.0}))}))
    assert run.code == 0, run.out[-2000:]
    ack = prepared.outcome(sent[0])
    assert ack.ok and ack.message.startswith("clone of trial 1 queued: lr=5")
    assert "lr=5.0 is outside the searched range [0.1, 1.0]; it runs as asked" in ack.message

    trials = run.trials()
    assert [t.status for t in trials] == ["completed"] * 3  # the two of the budget, and the clone on top
    clone = trials[2]
    assert clone.params == {"lr": 5.0} and clone.clone_id is not None
    assert "outside the searched range" in run.out
    assert [e.trial_id for e in run.events("clone_note")] == [clone.id]


def test_a_clone_value_the_parameter_cannot_take_is_refused(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, counting_space("refuse", max_trials=1, max_parallel=1,
                                                space="width: {type: int, low: 1, high: 8}").replace(
        "python count.py {lr}", "python count.py {width} 40 0.05"))
    sent: list[int] = []

    def clone_twice() -> None:
        sent.append(prepared.send("clone_trial", 1, params={"width": 2.5}))
        sent.append(prepared.send("clone_trial", 1, params={"width": 64.0}))

    def script(trial: FakeTrial) -> list[Step]:
        steps: list[Step] = [report(epoch=e, val_acc=trial.params["width"] / 64 * e / 40) for e in range(1, 41)]
        return steps[:2] + [Call(clone_twice)] + steps[2:] if trial.number == 1 else steps

    run = prepared.run(script)
    assert run.code == 0, run.out[-2000:]
    refused, taken = (prepared.outcome(i) for i in sent)
    assert (refused.ok, refused.message) == (False, "refused: width must be a whole number, got 2.5")
    assert taken.ok and "outside" in taken.message  # whole, off-range: runs with its note
    clone = run.trials()[1]
    assert clone.params["width"] == 64 and clone.argv[2] == "64"  # an int, as "64" (never "64.0")


def test_stop_one_trial_then_the_study(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, counting_space("toy", max_trials=2, max_parallel=2))
    sent: list[int] = []

    def script(trial: FakeTrial) -> list[Step]:
        steps: list[Step] = [report(epoch=1, val_acc=0.1)]
        if trial.number == 1:
            steps.append(Call(lambda: sent.append(prepared.send("stop_trial", 1))))
        if trial.number == 2:
            steps += [Say("epoch 1 done")] * 5 + [Call(lambda: sent.append(prepared.send("stop_study")))]
        return [*steps, Hang()]

    run = prepared.run(script)
    assert run.code == 0, run.out
    assert [prepared.outcome(i).message for i in sent] == ["stopping trial 1",
                                                              "stopping 1 running trials; no new trials"]
    record = run.export()
    assert [t["status"] for t in record["trials"]] == ["stopped", "stopped"]
    assert record["study"]["status"] == "stopped"
    assert run.executor.runs[1].signals == ["SIGTERM"]


def test_a_paused_trial_holds_still_until_resumed_then_finishes(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, counting_space("held", max_trials=2, max_parallel=2))
    sent: list[int] = []
    lines_of_trial_1: list[int] = []

    def count_lines() -> None:
        lines_of_trial_1.append(len((tmp_path / "hpotui_runs" / "held" / "1" / "stdout.log").read_text().splitlines()))

    executor = FakeExecutor(counting(30, {
        (1, 2): lambda: sent.append(prepared.send("pause_trial", 1)),
        (2, 10): count_lines, (2, 20): count_lines,  # trial 2 runs on meanwhile
        (2, 21): lambda: sent.append(prepared.send("resume_trial", 1))}))
    run = prepared.run(executor=executor)
    assert run.code == 0, run.out
    assert [prepared.outcome(i).message for i in sent] == ["trial 1 paused", "trial 1 resumed"]
    assert lines_of_trial_1[0] == lines_of_trial_1[1] < 60  # nothing printed while paused
    assert executor.runs[1].signals == ["SIGSTOP", "SIGCONT"]
    assert [t.status for t in run.trials()] == ["completed", "completed"]
    checked, missing, extra = exactly_once(run)
    assert checked == 60 and not missing and not extra
