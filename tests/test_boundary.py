"""Boundary warnings: when the best trials crowd an edge of a range, the user is told to widen it."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from hpotui.engine.database.store import Store
from hpotui.engine.search.boundary import boundary_warnings, finished_results, format_bound, position, study_warnings
from hpotui.engine.space_file.space import Param, parse_space

LR = Param(name="lr", type="loguniform", low=1e-5, high=1.0, log=True)
DROPOUT = Param(name="dropout", type="uniform", low=0.0, high=0.5)
BATCH = Param(name="batch", type="choice", values=(32, 64))


def log_grid(n: int, low: float = 1e-5, high: float = 1.0) -> list[float]:
    return [math.exp(math.log(low) + (i + 0.5) / n * (math.log(high) - math.log(low))) for i in range(n)]


def test_position_is_measured_in_log_space_for_log_parameters():
    assert position(LR, 1e-5) == 0.0 and position(LR, 1.0) == 1.0
    assert abs(position(LR, 0.3) - 0.895) < 0.01  # linear middle-ish, but in the top decade of five
    assert abs(position(DROPOUT, 0.25) - 0.5) < 1e-12
    assert position(BATCH, 32) is None


def test_objective_rising_toward_the_upper_edge_warns_upward_with_the_range_in_the_text():
    results = [({"lr": lr}, math.log10(lr)) for lr in log_grid(20)]  # bigger lr is always better
    warnings = boundary_warnings((LR,), results, "max")
    assert [(w.param, w.side) for w in warnings] == [("lr", "upper")]
    assert warnings[0].text.startswith("lr: best trials at the upper edge of [1e-5, 1]")
    assert warnings[0].text.endswith("widen the range upward")


def test_minimising_a_loss_that_falls_toward_the_lower_edge_warns_downward():
    momentum = Param(name="momentum", type="uniform", low=0.5, high=0.99)
    results = [({"momentum": m}, m) for m in [0.5 + i * 0.49 / 20 for i in range(21)]]  # loss = momentum
    warnings = boundary_warnings((momentum,), results, "min")
    assert [(w.param, w.side) for w in warnings] == [("momentum", "lower")]
    assert "widen the range downward" in warnings[0].text


def test_no_warning_at_a_limit_the_parameter_cannot_pass():
    results = [({"dropout": d}, d) for d in [i / 40 for i in range(21)]]  # loss = dropout: none is best
    assert boundary_warnings((DROPOUT,), results, "min") == []
    momentum = Param(name="momentum", type="uniform", low=0.5, high=1.0)
    results = [({"momentum": m}, m) for m in [0.5 + i / 40 for i in range(21)]]
    assert boundary_warnings((momentum,), results, "max") == []


def test_an_optimum_inside_the_range_gives_no_warning():
    results = [({"lr": lr, "dropout": d}, -(math.log10(lr) + 2.5) ** 2 - (d - 0.25) ** 2)
               for lr, d in zip(log_grid(30), [i / 60 for i in range(30)])]
    assert boundary_warnings((LR, DROPOUT), results, "max") == []


def test_a_flat_objective_rarely_warns():
    rng = random.Random(7)
    alarms = 0
    for _ in range(100):
        results = [({"dropout": rng.uniform(0, 0.5)}, rng.random()) for _ in range(20)]
        alarms += len(boundary_warnings((DROPOUT,), results, "max"))
    assert alarms <= 10  # about 2 % per side by construction; 200 chances here


def test_one_lucky_trial_at_the_edge_is_not_enough():
    results = [({"dropout": 0.49}, 1.0)] + [({"dropout": 0.2 + i * 0.01}, 0.9 - i * 0.01) for i in range(12)]
    assert boundary_warnings((DROPOUT,), results, "max") == []


def test_too_few_finished_trials_give_no_warning_yet():
    results = [({"lr": lr}, math.log10(lr)) for lr in log_grid(20)]
    assert boundary_warnings((LR,), results[-9:], "max") == []
    assert boundary_warnings((LR,), results[-9:], "max", min_trials=5) != []


def test_nan_objectives_and_choice_parameters_are_ignored():
    results = [({"lr": lr, "batch": 32}, math.log10(lr)) for lr in log_grid(20)]
    results += [({"lr": 1e-5, "batch": 64}, math.nan)] * 5
    warnings = boundary_warnings((LR, BATCH), results, "max")
    assert [w.param for w in warnings] == ["lr"]


def test_bounds_are_written_the_way_people_write_them():
    assert [format_bound(x) for x in (1e-5, 1.0, 0.5, 512.0, 3e-4)] == ["1e-5", "1", "0.5", "512", "0.0003"]


def test_study_warnings_reads_finished_trials_from_a_real_store(tmp_path: Path):
    text = ("name: s\ncommand: python t.py {lr}\nobjective: {metric: val_acc, mode: max}\n"
            "budget: {max_trials: 30, max_parallel: 1}\nspace:\n  lr: {type: loguniform, low: 1e-5, high: 1}\n")
    import yaml

    space = parse_space(yaml.safe_load(text), "s.yaml", tmp_path)
    store = Store(tmp_path / "hpotui.db")
    study = store.create_study(name="s", objective_metric="val_acc", objective_mode="max",
                               space_file=str(tmp_path / "s.yaml"), space_yaml=text,
                               space_json=json.dumps({"base_dir": str(tmp_path)}), parent_id=None, max_parallel=1,
                               headless=True)
    for i, lr in enumerate(log_grid(20)):
        status = "failed" if i < 3 else ("pruned" if i % 3 else "completed")
        row = store.add_trial(study_id=study.id, params={"lr": lr}, argv=[], trial_dir="", stdout_path="",
                              stderr_path="", sample_index=i, rerun_of=None, seed=None)
        store.buffer_progress(row.id, stdout_offset=0, stderr_offset=0, reports=1, last_step=1,
                              best_value=math.log10(lr), best_step=1)
        store.finish_trial(row.id, status, exit_code=0, reason=None)
    assert len(finished_results(store, study.id)) == 17  # failed trials do not rank
    lines = study_warnings(space, store, study.id)
    assert len(lines) == 1 and lines[0].startswith("lr: best trials at the upper edge")
    store.set_warnings(study.id, lines)
    assert store.study_by_id(study.id).warnings == tuple(lines)
