"""search.algorithm: tpe — Optuna's TPE behind our Sampler interface."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

pytest.importorskip("optuna")

from hpotui.engine.database.store import Store
from hpotui.engine.search.sampling import RandomSampler, make_sampler
from hpotui.engine.search.tpe import TpeSampler
from hpotui.engine.space_file.space import parse_space

REPO = Path(__file__).resolve().parents[1]

SPACE = """\
name: tpe
command: python t.py {lr} {width} {depth} {act} {drop}
objective: {metric: loss, mode: min}
search: {algorithm: tpe, seed: SEED}
budget: {max_trials: 40, max_parallel: 1}
space:
  lr:    {type: loguniform, low: 1e-5, high: 1}
  width: {type: int, low: 16, high: 1024, log: true}
  depth: {type: int, low: 1, high: 6}
  act:   {type: choice, values: [relu, gelu, tanh]}
  drop:  {type: uniform, low: 0.0, high: 0.5, step: 0.05}
"""


def space(seed: int = 0, text: str = SPACE):
    return parse_space(yaml.safe_load(text.replace("SEED", str(seed))), "tpe.yaml", Path("."))


def loss(p: dict) -> float:
    return (math.log10(p["lr"]) + 3) ** 2 + (math.log2(p["width"]) - 8) ** 2 / 4 + (p["act"] != "gelu")


def run(sampler, n: int, f=loss) -> list[dict]:
    suggested = []
    for i in range(n):
        p = sampler.suggest(i)
        suggested.append(p)
        sampler.observe(i, p, f(p))
    return suggested


def test_make_sampler_picks_tpe_and_every_suggestion_is_inside_the_space():
    sampler = make_sampler(space())
    assert isinstance(sampler, TpeSampler)
    for p in run(sampler, 30):
        assert 1e-5 <= p["lr"] <= 1 and isinstance(p["lr"], float)
        assert 16 <= p["width"] <= 1024 and isinstance(p["width"], int)
        assert 1 <= p["depth"] <= 6 and isinstance(p["depth"], int)
        assert p["act"] in ("relu", "gelu", "tanh")
        assert 0 <= p["drop"] <= 0.5 and round(p["drop"] / 0.05, 9) == round(p["drop"] / 0.05)
        assert repr(p["drop"]) == repr(round(p["drop"], 12))  # 0.15, not 0.15000000000000002


def test_the_same_seed_gives_the_same_search_and_another_seed_another():
    a, b, c = run(TpeSampler(space(1)), 25), run(TpeSampler(space(1)), 25), run(TpeSampler(space(2)), 25)
    assert a == b
    assert a != c


def test_asking_an_index_again_returns_the_same_configuration():
    sampler = TpeSampler(space(3))
    assert sampler.suggest(0) == sampler.suggest(0)


def test_it_concentrates_near_the_optimum_better_than_random_search():
    text = SPACE.replace("{lr} {width} {depth} {act} {drop}", "{lr}").split("  width:")[0]
    f = lambda p: (math.log10(p["lr"]) + 2.5) ** 2
    tpe_dist, random_dist, tpe_best, random_best = [], [], [], []
    for seed in range(5):
        tpe = run(TpeSampler(space(seed, text)), 40, f)
        rnd = run(RandomSampler(space(seed, text)), 40, f)
        tpe_dist.append(statistics.median(math.sqrt(f(p)) for p in tpe[30:]))  # decades off, last 10 asks
        random_dist.append(statistics.median(math.sqrt(f(p)) for p in rnd[30:]))
        tpe_best.append(min(f(p) for p in tpe))
        random_best.append(min(f(p) for p in rnd))
    assert statistics.mean(tpe_dist) < 0.5 * statistics.mean(random_dist)
    assert statistics.median(tpe_best) <= statistics.median(random_best)


def test_failed_pruned_and_completed_trials_reach_optuna_in_their_own_state():
    import optuna

    sampler = TpeSampler(space(4))
    p0, p1, p2, p3 = (sampler.suggest(i) for i in range(4))
    sampler.observe(0, p0, 1.5)
    sampler.observe(1, p1, None)  # reported nothing
    sampler.observe(2, p2, 2.0, status="pruned", step=3)
    sampler.observe(3, p3, 0.5, status="failed")
    states = [t.state for t in sampler.study.trials]
    S = optuna.trial.TrialState
    assert states == [S.COMPLETE, S.FAIL, S.PRUNED, S.FAIL]
    assert sampler.study.trials[0].value == 1.5
    assert sampler.study.trials[2].intermediate_values == {3: 2.0}


def test_history_replayed_into_a_fresh_sampler_steers_it():
    """After a resume the loop can replay finished trials through observe(); unknown indices are added."""
    text = SPACE.replace("{lr} {width} {depth} {act} {drop}", "{lr}").split("  width:")[0]
    f = lambda p: (math.log10(p["lr"]) + 2.5) ** 2
    replayed, no_history = [], []
    for seed in range(5):
        history = run(TpeSampler(space(seed + 10, text)), 30, f)
        fresh = TpeSampler(space(seed, text))
        for i, p in enumerate(history):
            fresh.observe(i, p, f(p))
        assert len(fresh.study.trials) == 30
        fresh.observe(99, {"lr": 50.0}, 1.0)  # outside the space (a parent stage's range): ignored
        assert len(fresh.study.trials) == 30
        after = []
        for i in range(100, 110):
            after.append(fresh.suggest(i))
            fresh.observe(i, after[-1], f(after[-1]))
        replayed.append(statistics.median(math.sqrt(f(p)) for p in after))
        # the first 10 asks of a study without history are random (Optuna's startup trials)
        no_history.append(statistics.median(math.sqrt(f(p)) for p in run(TpeSampler(space(seed, text)), 10, f)))
    assert statistics.mean(replayed) < 0.7 * statistics.mean(no_history)


def test_an_observation_under_an_unknown_index_settles_the_matching_asked_trial():
    sampler = TpeSampler(space(7))
    p = sampler.suggest(0)
    sampler.observe(-1, p, 3.0)  # the loop without the index in hand
    assert [t.value for t in sampler.study.trials] == [3.0]


def test_without_optuna_the_user_gets_one_line_naming_the_extra(tmp_path: Path):
    code = textwrap.dedent(f"""
        import sys, yaml
        sys.modules["optuna"] = None  # as if the extra were not installed
        from pathlib import Path
        from hpotui.engine.errors import UserError
        from hpotui.engine.search.sampling import make_sampler
        from hpotui.engine.space_file.space import parse_space
        space = parse_space(yaml.safe_load({SPACE.replace("SEED", "0")!r}), "tpe.yaml", Path("."))
        try:
            make_sampler(space)
        except UserError as exc:
            print(exc)
        """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, text=True, capture_output=True, timeout=60, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.stdout == "tpe.yaml: search.algorithm: tpe needs Optuna; pip install 'hpotui[tpe]'\n", done.stderr


TRAINER = """
import json, math, sys
import time
lr, epochs = float(sys.argv[1]), int(sys.argv[2])
for epoch in range(1, epochs + 1):
    time.sleep(0.05)
    loss = (math.log10(lr) + 2) ** 2 + 1.0 / epoch
    print("@hpotui " + json.dumps({"epoch": epoch, "loss": loss}), flush=True)
"""


def test_tpe_with_asha_runs_a_real_study_and_prunes(tmp_path: Path):
    (tmp_path / "t.py").write_text(TRAINER)
    (tmp_path / "s.yaml").write_text(textwrap.dedent("""\
        name: bohb
        command: python t.py {lr} {max_resource}
        objective: {metric: loss, mode: min}
        search: {algorithm: tpe, seed: 0}
        budget: {max_trials: 12, max_parallel: 2}
        scheduler: {type: asha, min_resource: 1, max_resource: 9, reduction_factor: 3}
        space:
          lr: {type: loguniform, low: 1e-5, high: 1}
        """))
    env = dict(os.environ, PYTHONPATH=str(REPO), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "launch", "s.yaml", "--headless", "--db", "t.db"],
                          cwd=tmp_path, env=env, text=True, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    store = Store(tmp_path / "t.db")
    trials = store.trials(store.study("bohb").id)
    assert len(trials) == 12 and {t.status for t in trials} <= {"completed", "pruned"}
    assert any(t.status == "pruned" and t.last_step < 9 for t in trials)
    assert all(1e-5 <= t.params["lr"] <= 1 for t in trials)
