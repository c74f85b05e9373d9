"""Search features of the real study loop, in this process: two objectives and their Pareto front,
warm starts. Scripted trials (engine/executors/fake.py) report what the search-power toy trainer
prints; the records are read back through the same functions `hpotui export` / `status` print with.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from hpotui.engine.cli import main as hpotui
from hpotui.engine.executors.fake import FakeTrial, Step, report
from tests.inproc import InProcessRun, launch


def toy(trial: FakeTrial) -> list[Step]:
    """tests/test_search_power_e2e.py's toy: two epochs of acc and size from --x and --kind."""
    x, bonus = trial.params["x"], 0.05 if trial.params.get("kind") == "b" else 0.0
    return [report(epoch=e, acc=x * e / 2 + bonus, size=x ** 2 + (0.5 if bonus else 0.0)) for e in (1, 2)]


def dominated(a: dict, others: list[dict]) -> bool:
    """a is dominated when another trial has acc >= and size <= with one strictly better (acc max, size min)."""
    return any(o["acc"] >= a["acc"] and o["size"] <= a["size"] and (o["acc"] > a["acc"] or o["size"] < a["size"])
               for o in others)


def test_two_objectives_export_the_list_and_mark_the_pareto_front(tmp_path: Path) -> None:
    pytest.importorskip("optuna")  # Optuna's multi-objective TPE, told each trial's last values
    run = launch(tmp_path, """
        name: mo
        command: python toy.py --x {x} --kind {kind}
        objective:
          - {metric: acc, mode: max}
          - {metric: size, mode: min}
        search: {algorithm: tpe, seed: 1}
        budget: {max_trials: 8, max_parallel: 2}
        space:
          x:    {type: uniform, low: 0.1, high: 1}
          kind: {type: choice, values: [a, b]}
        """, toy)
    assert run.code == 0, run.out
    assert "pareto front of acc (max), size (min)" in run.out

    record = run.export()
    assert record["study"]["objective"] == [{"metric": "acc", "mode": "max"}, {"metric": "size", "mode": "min"}]
    trials = record["trials"]
    assert len(trials) == 8 and all(isinstance(t["pareto"], bool) for t in trials)
    lasts = [t["last"] for t in trials]
    for t in trials:
        assert t["pareto"] == (not dominated(t["last"], [o for o in lasts if o is not t["last"]]))
    front = {t["id"] for t in trials if t["pareto"]}
    assert front
    _front_in_csv_markdown_and_status(run, front)


def _front_in_csv_markdown_and_status(run: InProcessRun, front: set[int]) -> None:
    rows = list(csv.DictReader(io.StringIO(run.export("csv"))))
    assert {int(r["id"]) for r in rows if r["pareto"] == "yes"} == front
    markdown = run.export("md")
    assert "| pareto |" in markdown and "Objective: acc (max), size (min)" in markdown

    status = run.status()
    assert f"pareto front of acc (max), size (min): {len(front)} of 8 completed trials" in status
    for number in front:
        assert f"  trial {number} " in status


WARM = """
    name: NAME
    command: python toy.py --x {x} --kind {kind}
    objective: {metric: acc, mode: max}
    search: {algorithm: grid, WARM}
    budget: {max_trials: 20, max_parallel: 2}
    space:
      x:    {type: choice, values: [0.2, 0.4, 0.6]}
      kind: {type: choice, values: [a, b]}
    """


def test_a_warm_started_grid_skips_what_the_earlier_study_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "w.db"
    first = launch(tmp_path, WARM.replace("NAME", "first").replace("WARM", "seed: 0").replace(
        "max_trials: 20", "max_trials: 3"), toy, db=db, space_name="first.yaml")
    assert first.code == 0, first.out
    second = launch(tmp_path, WARM.replace("NAME", "second").replace("WARM", "warm_start: [first]"), toy, db=db,
                    space_name="second.yaml")
    assert second.code == 0, second.out
    ran_first = [json.dumps(t["params"], sort_keys=True) for t in first.export()["trials"]]
    ran_second = [json.dumps(t["params"], sort_keys=True) for t in second.export()["trials"]]
    assert len(ran_first) == 3 and len(ran_second) == 3  # the 6-point grid, minus the 3 already run
    assert not set(ran_first) & set(ran_second)
    assert "warm start from first (3 of 3 ended trials fit this space); configurations already run are skipped" \
        in second.status()

    # The CLI in this process: the refusal comes before any trial could start.
    (tmp_path / "third.yaml").write_text(WARM.replace("NAME", "third").replace("WARM", "warm_start: [nope]"))
    capsys.readouterr()
    assert hpotui(["launch", str(tmp_path / "third.yaml"), "--headless", "--db", str(db)]) == 2
    assert "search.warm_start[0]: no study named 'nope'" in capsys.readouterr().err
