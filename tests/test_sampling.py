"""Random and grid sampling: the spread a user expects and reproducible seeds."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from hpotui.engine.search.sampling import GridSampler, RandomSampler
from hpotui.engine.space_file.space import load_space

SPACE = """
name: s
command: python t.py {lr} {dropout} {width} {bs}
objective: {metric: val_acc}
search: {algorithm: random, seed: 7}
budget: {max_trials: 10, max_parallel: 1}
space:
  lr: {type: loguniform, low: 1e-5, high: 1}
  dropout: {type: uniform, low: 0.0, high: 0.5, step: 0.1}
  width: {type: int, low: 16, high: 1024, log: true}
  bs: {type: choice, values: [32, 64]}
"""


def space(tmp_path: Path, text: str = SPACE):
    (tmp_path / "s.yaml").write_text(textwrap.dedent(text))
    return load_space(tmp_path / "s.yaml")


def test_loguniform_spreads_over_every_decade(tmp_path: Path) -> None:
    sampler = RandomSampler(space(tmp_path))
    decades = [0] * 5
    for i in range(2000):
        lr = sampler.suggest(i)["lr"]
        assert 1e-5 <= lr <= 1
        decades[min(4, int(math.floor(math.log10(lr) + 5)))] += 1
    assert all(300 < n < 500 for n in decades), decades  # ~400 each: uniform in log space


def test_int_log_and_step_and_choice(tmp_path: Path) -> None:
    sampler = RandomSampler(space(tmp_path))
    draws = [sampler.suggest(i) for i in range(1000)]
    widths = [d["width"] for d in draws]
    assert all(isinstance(w, int) and 16 <= w <= 1024 for w in widths)
    assert sum(w < 128 for w in widths) > 400  # half the log range lies below 128
    assert {d["dropout"] for d in draws} <= {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}
    assert {d["bs"] for d in draws} == {32, 64}


def test_seed_reproduces_and_differs_between_seeds(tmp_path: Path) -> None:
    a = [RandomSampler(space(tmp_path)).suggest(i) for i in range(5)]
    b = [RandomSampler(space(tmp_path)).suggest(i) for i in range(5)]
    c = [RandomSampler(space(tmp_path, SPACE.replace("seed: 7", "seed: 8"))).suggest(i) for i in range(5)]
    assert a == b and a != c


def test_grid_enumerates_choices_and_points(tmp_path: Path) -> None:
    text = SPACE.replace("search: {algorithm: random, seed: 7}", "search: {algorithm: grid}")
    text = text.replace("{type: loguniform, low: 1e-5, high: 1}", "{type: loguniform, low: 1e-4, high: 1, points: 3}")
    text = text.replace("{type: int, low: 16, high: 1024, log: true}", "{type: int, low: 16, high: 64, log: true, points: 3}")
    sampler = GridSampler(space(tmp_path, text))
    grid = list(sampler)
    assert sampler.size() == 3 * 3 * 3 * 2 == len(grid)
    assert sorted({g["lr"] for g in grid}) == [1e-4, 1e-2, 1.0]  # log-spaced
    assert sorted({g["width"] for g in grid}) == [16, 32, 64]
    assert sorted({g["dropout"] for g in grid}) == [0.0, 0.3, 0.5]  # 0.25 snaps half-up to the 0.1 step
    assert [sampler.suggest(i) for i in range(len(grid))] == grid
    assert sampler.suggest(len(grid)) is None
