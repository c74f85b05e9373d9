"""TPE with several objectives, invalid trials, warm starts, and the BOHB rule (fit on one rung)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("optuna")

from hpotui.engine.database.store import Store
from hpotui.engine.search.rung_model import RungObservations, rungs_for, value_at
from hpotui.engine.search.tpe import TpeSampler
from hpotui.engine.search.warm_start import apply_warm_start
from hpotui.engine.space_file.space import parse_space

SPACE = """\
name: rungs
command: python t.py {x} {y}
objective: {metric: acc, mode: max}
search: {algorithm: tpe, seed: 0}
budget: {max_trials: 40, max_parallel: 1}
scheduler: {type: asha, min_resource: 1, max_resource: 9, reduction_factor: 3}
space:
  x: {type: uniform, low: 0, high: 1}
  y: {type: uniform, low: 0, high: 1}
"""


def space(text: str = SPACE):
    return parse_space(yaml.safe_load(text), "rungs.yaml", Path("."))


def test_rung_values_count_only_trials_that_got_there() -> None:
    curve = [(1.0, 0.2), (2.0, 0.3), (3.0, 0.5), (4.0, 0.4)]
    assert value_at(curve, 1) == 0.2 and value_at(curve, 3) == 0.5
    assert value_at(curve, 9) is None  # stopped at 4: says nothing about 9
    assert rungs_for(space().scheduler) == (1.0, 3.0, 9.0)


def test_the_model_is_fit_on_the_highest_rung_with_d_plus_3_results() -> None:
    rungs = RungObservations((1.0, 3.0, 9.0), dims=2)  # needs 5 results at a rung
    for i in range(10):
        rungs.add({"x": i / 10, "y": 0.0}, [(1.0, 0.1), (3.0, 0.2)] if i < 6 else [(1.0, 0.1)])
    assert rungs.rung_to_fit() == 3.0  # 6 at rung 3, none at 9
    for i in range(5):
        rungs.add({"x": 0.5, "y": i / 10}, [(1.0, 0.1), (3.0, 0.2), (9.0, 0.9)])
    assert rungs.rung_to_fit() == 9.0 and len(rungs.at(9.0)) == 5


def test_tpe_with_asha_learns_the_rung_values_not_the_pruned_trials_last_values() -> None:
    sampler = TpeSampler(space())
    # Crossing curves: high x leads at epoch 1 and is pruned there; low x ends best at epoch 9.
    for i in range(12):
        config = sampler.suggest(i)
        x = config["x"]
        curve = [(1.0, x), (3.0, 1 - x), (9.0, 1 - x)] if i % 2 == 0 else [(1.0, x)]
        sampler.observe(i, config, max(v for _, v in curve), status="completed" if i % 2 == 0 else "pruned",
                        step=curve[-1][0], curve=curve)
    sampler.suggest(12)
    assert sampler.fitted_rung == 9.0  # 6 trials reached 9 epochs: >= d + 3 = 5
    told = [t for t in sampler.study.trials if t.state.name == "COMPLETE"]
    assert len(told) == 6 and all(abs(t.value - (1 - t.params["x"])) < 1e-9 for t in told)
    assert sum(t.state.name == "RUNNING" for t in sampler.study.trials) == 1  # the one just asked


def test_invalid_trials_are_told_as_pruned_without_values() -> None:
    sampler = TpeSampler(space(SPACE.replace("scheduler: {type: asha, min_resource: 1, max_resource: 9, "
                                             "reduction_factor: 3}\n", "")))
    config = sampler.suggest(0)
    sampler.observe(0, config, None, status="invalid")
    (trial,) = sampler.study.trials
    assert trial.state.name == "PRUNED" and trial.intermediate_values == {}


def test_several_objectives_make_a_multi_objective_study_told_the_last_values() -> None:
    text = SPACE.replace("objective: {metric: acc, mode: max}",
                         "objective: [{metric: acc, mode: max}, {metric: size, mode: min}]")
    sampler = TpeSampler(space(text))
    assert sampler.rungs is None  # the rung rule is single-objective; schedulers use the first objective
    for i in range(4):
        config = sampler.suggest(i)
        sampler.observe(i, config, 0.5, status="completed", last={"acc": config["x"], "size": config["y"]})
    assert [d.name for d in sampler.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert all(t.values == [t.params["x"], t.params["y"]] for t in sampler.study.trials)


def test_a_tpe_warm_start_tells_the_earlier_studys_fitting_trials(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.db")
    old = store.create_study(name="old", objective_metric="acc", objective_mode="max", space_file="", space_yaml="",
                             space_json="{}", parent_id=None, max_parallel=1, headless=True)
    for n, x in enumerate((0.2, 0.4, 1.5), start=1):  # 1.5 is outside the new range: left out
        row = store.add_trial(study_id=old.id, params={"x": x, "y": 0.5}, argv=["t"], trial_dir=str(tmp_path / str(n)),
                              stdout_path=str(tmp_path / f"{n}.out"), stderr_path=str(tmp_path / f"{n}.err"),
                              sample_index=n - 1, rerun_of=None, seed=None, number=n, gpu_picker=None)
        for epoch in (1, 3, 9):
            store.buffer_metrics(row.id, float(epoch), {"acc": x * epoch / 9}, 0.0)
        store.buffer_progress(row.id, stdout_offset=0, stderr_offset=0, reports=3, last_step=9.0, best_value=x,
                              best_step=9.0)
        store.flush()
        store.finish_trial(row.id, "completed", exit_code=0, reason=None)
    text = SPACE.replace("search: {algorithm: tpe, seed: 0}", "search: {algorithm: tpe, seed: 0, warm_start: [old]}")
    sampler, told = apply_warm_start(store, space(text), TpeSampler(space(text)))
    assert [(t.study, t.fitting, t.ended) for t in told] == [("old", 2, 3)]
    assert [len(c) for _, c in sampler.rungs.trials] == [3, 3]  # curves went to the rung model
