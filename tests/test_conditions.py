"""Conditional parameters (`when:`): the space-file rules, every error, and each sampler honouring them."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from hpotui.engine.errors import SpaceError
from hpotui.engine.search.boundary import boundary_warnings
from hpotui.engine.search.refine import refine_space
from hpotui.engine.search.sampling import GridSampler, RandomSampler
from hpotui.engine.space_file.space import load_space, render_argv
from tests.conftest import run_cli

SPACE = """
name: cond
command: python train.py --optimizer {optimizer} --momentum {momentum} --beta2={beta2} --lr {lr}
objective: {metric: val_acc, mode: max}
search: {algorithm: ALGO, seed: 0}
budget: {max_trials: 20, max_parallel: 2}
space:
  optimizer: {type: choice, values: [sgd, adam]}
  momentum:  {type: uniform, low: 0.5, high: 0.99, when: {optimizer: sgd}}
  beta2:     {type: choice, values: [0.99, 0.999], when: {optimizer: [adam]}}
  lr:        {type: loguniform, low: 1e-4, high: 1, points: 3}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def space_of(tmp_path: Path, algorithm: str = "random", text: str = SPACE):
    return load_space(write(tmp_path, text.replace("ALGO", algorithm)))


def check_branches(config: dict) -> None:
    if config["optimizer"] == "sgd":
        assert "momentum" in config and "beta2" not in config and 0.5 <= config["momentum"] <= 0.99
    else:
        assert "beta2" in config and "momentum" not in config and config["beta2"] in (0.99, 0.999)


def test_random_search_draws_only_the_active_parameters(tmp_path: Path) -> None:
    sampler = RandomSampler(space_of(tmp_path))
    configs = [sampler.suggest(i) for i in range(40)]
    for config in configs:
        check_branches(config)
    assert {c["optimizer"] for c in configs} == {"sgd", "adam"}
    assert configs == [sampler.suggest(i) for i in range(40)]  # the n-th configuration is still fixed by the seed


def test_grid_enumerates_only_real_combinations(tmp_path: Path) -> None:
    text = SPACE.replace("high: 0.99, when", "high: 0.99, points: 2, when")
    grid = GridSampler(space_of(tmp_path, "grid", text))
    configs = list(grid)
    # sgd: 2 momenta x 3 lr; adam: 2 beta2 x 3 lr -> 12, never a momentum crossed with adam
    assert grid.size() == 12 and len(configs) == 12
    assert len({tuple(sorted(c.items())) for c in configs}) == 12
    for config in configs:
        check_branches(config)
    assert grid.suggest(12) is None


def test_tpe_asks_conditional_parameters_only_on_their_branch(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from hpotui.engine.search.tpe import TpeSampler

    sampler = TpeSampler(space_of(tmp_path, "tpe"))
    for i in range(16):
        config = sampler.suggest(i)
        check_branches(config)
        sampler.observe(i, config, 0.5 + (0.3 if config["optimizer"] == "adam" else 0.0), status="completed")
    told = sampler.study.trials
    assert len(told) == 16 and all(set(t.params) == set(sampler._asked[t.number]) for t in told)


def test_inactive_arguments_and_their_flags_leave_the_command(tmp_path: Path) -> None:
    space = space_of(tmp_path)
    adam = {"optimizer": "adam", "beta2": 0.99, "lr": 0.01}
    argv = render_argv(space.command, adam, ["momentum"])
    assert argv == ["python", "train.py", "--optimizer", "adam", "--beta2=0.99", "--lr", "0.01"]
    sgd = {"optimizer": "sgd", "momentum": 0.9, "lr": 0.01}
    assert render_argv(space.command, sgd, ["beta2"]) == ["python", "train.py", "--optimizer", "sgd",
                                                          "--momentum", "0.9", "--lr", "0.01"]
    # a bare placeholder after a positional argument: only the argument goes
    assert render_argv(("prog", "x", "{momentum}", "--lr", "{lr}"), {"lr": 1}, ["momentum"]) == ["prog", "x",
                                                                                                  "--lr", "1"]


@pytest.mark.parametrize("spec, key, words", [
    ("{type: uniform, low: 0, high: 1, when: {optimiser: sgd}}", "space.momentum.when.optimiser",
     "not a parameter"),
    ("{type: uniform, low: 0, high: 1, when: {lr: 0.1}}", "space.momentum.when.lr", "not a choice"),
    ("{type: uniform, low: 0, high: 1, when: {optimizer: rmsprop}}", "space.momentum.when.optimizer",
     "not one of optimizer's values"),
    ("{type: uniform, low: 0, high: 1, when: sgd}", "space.momentum.when", "expected a mapping"),
])
def test_bad_conditions_are_one_line_errors(tmp_path: Path, spec: str, key: str, words: str) -> None:
    text = SPACE.replace("{type: uniform, low: 0.5, high: 0.99, when: {optimizer: sgd}}", spec)
    with pytest.raises(SpaceError) as caught:
        space_of(tmp_path, text=text)
    message = str(caught.value)
    assert key in message and words in message and "\n" not in message


def test_a_cycle_of_conditions_is_an_error(tmp_path: Path) -> None:
    text = """
    name: loop
    command: python t.py {a} {b}
    objective: {metric: m}
    budget: {max_trials: 2, max_parallel: 1}
    space:
      a: {type: choice, values: [x, y], when: {b: x}}
      b: {type: choice, values: [x, y], when: {a: y}}
    """
    with pytest.raises(SpaceError, match="cycle: a -> b -> a|cycle: b -> a -> b"):
        load_space(write(tmp_path, text))


def test_a_conditional_placeholder_must_not_share_its_argument(tmp_path: Path) -> None:
    text = SPACE.replace("--momentum {momentum}", "--opt={optimizer}:{momentum}").replace(
        "--optimizer {optimizer} ", "")
    with pytest.raises(SpaceError, match=r"holds \{momentum\} \(conditional\) and \{optimizer\}"):
        space_of(tmp_path, text=text)


def test_unused_conditional_parameter_is_still_an_error(tmp_path: Path) -> None:
    text = SPACE.replace(" --beta2={beta2}", "")
    with pytest.raises(SpaceError, match="space.beta2: parameter never reaches the trial"):
        space_of(tmp_path, text=text)


def test_cli_reports_a_bad_condition_in_one_line_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, SPACE.replace("ALGO", "random").replace("when: {optimizer: sgd}", "when: {optimizer: sgdd}"))
    done = run_cli("launch", str(path), "--headless", "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "space.momentum.when.optimizer" in done.stderr
    assert "Traceback" not in done.stderr


def test_big_grids_are_computed_not_enumerated(tmp_path: Path) -> None:
    text = """
    name: big
    command: python t.py {x} {y}
    objective: {metric: m}
    search: {algorithm: grid}
    budget: {max_trials: 5, max_parallel: 1}
    space:
      x: {type: uniform, low: 0, high: 1, points: 100000}
      y: {type: int, low: 1, high: 1000000, points: 1000000}
    """
    started = time.process_time()
    grid = GridSampler(load_space(write(tmp_path, text)))
    assert grid.size() == 100000 * 1000000
    assert grid.suggest(grid.size() - 1) == {"x": 1.0, "y": 1000000}
    assert time.process_time() - started < 20  # was 51 s for one axis of 100000 (quadratic)


def test_an_impossible_grid_is_refused_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, """
    name: huge
    command: python t.py {x}
    objective: {metric: m}
    search: {algorithm: grid}
    budget: {max_trials: 5, max_parallel: 1}
    space:
      x: {type: uniform, low: 0, high: 1, points: 1000000000}
    """)
    done = run_cli("launch", str(path), "--headless", "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    assert done.returncode == 2 and "space.x.points" in done.stderr and "MemoryError" not in done.stderr
    assert done.stderr.strip().count("\n") == 0


def results_for(space, n: int = 30) -> list[tuple[dict, float]]:
    """SGD trials whose objective rises with momentum (best at the top of its range); adam ones flat."""
    sampler = RandomSampler(space)
    results = []
    for i in range(n):
        config = sampler.suggest(i)
        value = config["momentum"] if config["optimizer"] == "sgd" else 0.2
        results.append((config, value))
    return results


def test_boundary_warnings_judge_a_conditional_parameter_where_it_was_active(tmp_path: Path) -> None:
    space = space_of(tmp_path)
    results = results_for(space)
    warnings = boundary_warnings(space.params, results, "max")
    assert [w.param for w in warnings] == ["momentum"] and "upper edge" in warnings[0].text
    only_adam = [r for r in results if r[0]["optimizer"] == "adam"]
    assert boundary_warnings(space.params, only_adam, "max") == []  # no active trial: nothing to say


def test_refine_drops_a_parameter_whose_branch_the_top_trials_left(tmp_path: Path) -> None:
    space = space_of(tmp_path)
    results = results_for(space)  # sgd is best: the top trials are all sgd
    raw, changes = refine_space(space, results, top=5)
    assert raw["space"]["optimizer"]["values"] == ["sgd"]
    assert "beta2" not in raw["space"] and "beta2" not in raw["command"]
    assert raw["space"]["momentum"]["when"] == {"optimizer": "sgd"}
    assert any(c.key == "space.beta2" and c.after == "removed" for c in changes)
    assert raw["search"]["warm_start"] == ["cond"]
    refined = write(tmp_path, "", "next.yaml")
    import yaml

    refined.write_text(yaml.safe_dump(raw))
    load_space(refined)  # the refined file launches


@pytest.mark.parametrize("replace, key, words", [
    ("objective: {metric: val_acc, mode: max}", "objective: []", "empty list"),
    ("objective: {metric: val_acc, mode: max}",
     "objective: [{metric: val_acc, mode: max}, {metric: val_acc, mode: min}]", "listed twice"),
    ("objective: {metric: val_acc, mode: max}", "objective: [{metric: val_acc, mode: best}]", "objective[0].mode"),
    ("search: {algorithm: ALGO, seed: 0}", "search: {algorithm: ALGO, warm_start: {a: 1}}", "search.warm_start"),
])
def test_bad_objective_lists_and_warm_starts_are_one_line_errors(tmp_path: Path, replace: str, key: str,
                                                                 words: str) -> None:
    with pytest.raises(SpaceError) as caught:
        space_of(tmp_path, text=SPACE.replace(replace, key))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_objective_list_and_warm_start_parse(tmp_path: Path) -> None:
    text = SPACE.replace("objective: {metric: val_acc, mode: max}",
                         "objective: [{metric: val_acc, mode: max}, {metric: size_mb, mode: min}]").replace(
        "search: {algorithm: ALGO, seed: 0}", "search: {algorithm: ALGO, warm_start: [a, b]}")
    space = space_of(tmp_path, text=text)
    assert space.multi_objective and space.objective.metric == "val_acc"  # the first drives early stopping
    assert [o.mode for o in space.objectives] == ["max", "min"] and space.search.warm_start == ("a", "b")
    single = space_of(tmp_path)
    assert not single.multi_objective and len(single.objectives) == 1


def test_a_clone_that_switches_a_branch_drops_the_old_branch_and_needs_the_new_one(tmp_path: Path) -> None:
    from hpotui.engine.space_file.clones import Refused, with_overrides

    space = space_of(tmp_path)
    source = {"optimizer": "sgd", "momentum": 0.9, "lr": 0.01}
    with pytest.raises(Refused, match="switches on beta2"):
        with_overrides(space, source, {"optimizer": "adam"})
    params, note = with_overrides(space, source, {"optimizer": "adam", "beta2": 0.999})
    assert params == {"optimizer": "adam", "beta2": 0.999, "lr": 0.01} and note is None
    with pytest.raises(Refused, match="momentum is only used when optimizer is sgd"):
        with_overrides(space, {"optimizer": "adam", "beta2": 0.99, "lr": 0.01}, {"momentum": 0.8})
