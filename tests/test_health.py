"""Health detectors on hand-built curves, and the `health:` section of the space file.

Curves are written out by hand (one symptom each) or drawn from a seeded generator with realistic
noise; the noisy healthy ones must raise nothing at all, because a false flag is a defect: the
user learns to ignore the badges. Real trainings are in test_torch_health.py.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import pytest

from hpotui.engine.errors import SpaceError
from hpotui.engine.flags.health import (KINDS, STATUS_FOR_STOP, Flag, HealthConfig, HealthMonitor, parse_health,
                           status_for)
from hpotui.engine.space_file.space import parse_space


def fail(key: str, problem: str, fix: str = "") -> SpaceError:
    return SpaceError("space.yaml", key, problem, fix)


def feed(monitor: HealthMonitor, rows: list[dict[str, float]], trial: int = 1, first_step: int = 1) -> list[Flag]:
    """Observe one report per row (step = epoch), stopping like the loop does at a stopping flag."""
    flags: list[Flag] = []
    for step, row in enumerate(rows, start=first_step):
        new = monitor.observe(trial, float(step), row)
        flags += new
        if any(f.stop for f in new):
            break
    return flags


def losses(*values: float, name: str = "train_loss") -> list[dict[str, float]]:
    return [{name: v} for v in values]


def monitor(**config) -> HealthMonitor:
    return HealthMonitor(HealthConfig(**config), "val_acc", "max")


# -- the space file's health: section -------------------------------------------------------------------

SPACE = {
    "name": "s", "command": "python train.py --lr {lr}", "objective": {"metric": "val_acc", "mode": "max"},
    "budget": {"max_trials": 2, "max_parallel": 1}, "space": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1}},
}


def test_missing_or_empty_section_gives_the_defaults():
    assert parse_health(None, fail) == HealthConfig()
    assert parse_health({}, fail) == HealthConfig()
    assert HealthConfig().stop_on == ("nan", "divergence")


def test_full_section_accepts_numbers_written_as_strings(tmp_path: Path):
    health = {"num_classes": 10, "train_loss": "loss", "val_acc": "acc", "stop_on": ["nan", "divergence",
              "not_learning"], "ignore": ["underfitting"], "divergence_factor": "5", "divergence_warmup": 2,
              "update_ratio_low": "1e-5", "update_ratio_high": "3e-2", "not_learning_patience": 8}
    space = parse_space({**SPACE, "health": health}, "space.yaml", base_dir=tmp_path)
    config = space.health
    assert config.num_classes == 10 and config.train_loss == "loss" and config.val_acc == "acc"
    assert config.stop_on == ("nan", "divergence", "not_learning") and config.ignore == ("underfitting",)
    assert config.divergence_factor == 5.0 and config.divergence_warmup == 2.0
    assert config.update_ratio_low == 1e-5 and config.update_ratio_high == 3e-2
    assert config.not_learning_patience == 8 and isinstance(config.not_learning_patience, int)


def test_unknown_key_is_one_line_naming_the_close_key(tmp_path: Path):
    with pytest.raises(SpaceError) as info:
        parse_space({**SPACE, "health": {"divergance_factor": 3}}, "space.yaml", base_dir=tmp_path)
    assert str(info.value) == "space.yaml: health.divergance_factor: unknown key; did you mean 'divergence_factor'?"


@pytest.mark.parametrize("health, message", [
    ({"divergence_factor": "three"},
     "space.yaml: health.divergence_factor: expected a number, got 'three'; write a number such as 3 or 1e-3"),
    ({"divergence_factor": 1}, "space.yaml: health.divergence_factor: must be above 1, got 1; write divergence_factor: 3"),
    ({"overfitting_gap": 15}, "space.yaml: health.overfitting_gap: must be an accuracy difference between 0 and 1, "
                              "got 15; write overfitting_gap: 0.15"),
    ({"num_classes": 1}, "space.yaml: health.num_classes: expected a whole number of classes >= 2, got 1; "
                         "write num_classes: 10"),
    ({"not_learning_patience": 4.5}, "space.yaml: health.not_learning_patience: expected a whole number, got 4.5; "
                                     "write not_learning_patience: 5"),
    ({"stop_on": ["nan", "divergnce"]}, "space.yaml: health.stop_on[1]: unknown flag 'divergnce'; did you mean 'divergence'?"),
    ({"stop_on": ["nan"], "ignore": ["nan"]}, "space.yaml: health.stop_on: 'nan' is also under ignore, so it could "
                                              "never stop a trial; remove nan from stop_on or from ignore"),
    ({"update_ratio_low": 1e-2, "update_ratio_high": "1e-3"}, "space.yaml: health.update_ratio_low: update_ratio_low "
                                                             "(0.01) must be below update_ratio_high (0.001); swap or fix the bounds"),
    ({"train_loss": 3}, "space.yaml: health.train_loss: expected a metric name, got 3; write train_loss: train_loss"),
    ({"divergence_warmup": float("nan")}, "space.yaml: health.divergence_warmup: expected a finite number, got nan; "
                                          "write a finite number such as 3 or 1e-3"),
    ({"stop_on": {"nan": True}}, "space.yaml: health.stop_on: expected a list of flag names, got {'nan': True}; "
                                 "write e.g. [nan, divergence]"),
])
def test_bad_values_are_one_line_with_the_key_and_the_fix(health, message):
    with pytest.raises(SpaceError) as info:
        parse_health(health, fail)
    assert str(info.value) == message


def test_section_that_is_not_a_mapping():
    with pytest.raises(SpaceError, match=r"^space.yaml: health: expected a mapping, got \['nan'\]; write health: "):
        parse_health(["nan"], fail)


def test_stop_on_one_name_or_none():
    assert parse_health({"stop_on": "nan"}, fail).stop_on == ("nan",)
    assert parse_health({"stop_on": []}, fail).stop_on == ()
    assert parse_health({"stop_on": None}, fail).stop_on == ()


# -- nan ------------------------------------------------------------------------------------------------

def test_nan_loss_stops_at_once_and_nothing_follows():
    m = monitor()
    flags = feed(m, losses(2.0, 1.2, 0.9, math.nan, math.nan, 1e9))
    assert [(f.kind, f.step, f.stop) for f in flags] == [("nan", 4.0, True)]
    assert status_for(flags[0]) == STATUS_FOR_STOP == "diverged"
    assert flags[0].message.startswith("nan at epoch 4: train_loss = nan — lower the learning rate")
    assert m.observe(1, 7.0, {"train_loss": math.nan, "val_loss": math.inf}) == []


@pytest.mark.parametrize("row, metric", [
    ({"val_loss": math.inf}, "val_loss"),
    ({"train_loss": 0.5, "val_acc": math.nan}, "val_acc"),  # the objective
    ({"loss_kl": -math.inf}, "loss_kl"),  # any metric named like a loss
])
def test_infinity_in_a_loss_or_nan_objective_is_nan(row, metric):
    flags = monitor().observe(1, 3.0, row)
    assert [(f.kind, f.metric, f.stop) for f in flags] == [("nan", metric, True)]


def test_nan_in_another_metric_is_not_a_flag():
    assert monitor().observe(1, 1.0, {"train_loss": 1.0, "grad_norm": math.nan, "lr": math.inf}) == []


def test_nan_only_hints_when_not_under_stop_on():
    m = monitor(stop_on=())
    flags = feed(m, losses(2.0, math.nan, 1.5, math.nan))
    assert [(f.kind, f.stop) for f in flags] == [("nan", False)]
    assert status_for(flags[0]) == "running"


# -- divergence -----------------------------------------------------------------------------------------

def test_loss_climbing_far_above_its_best_stops_the_trial():
    flags = feed(monitor(), losses(2.0, 1.0, 0.6, 0.5, 0.55, 2.5, 2.8, 9.0))
    assert [(f.kind, f.step, f.value, f.stop) for f in flags] == [("divergence", 7.0, 2.8, True)]
    assert status_for(flags[0]) == "diverged"
    assert "5.09x its best (0.55)" in flags[0].message and "lower the learning rate" in flags[0].message


def test_an_explosion_stops_at_its_first_report_a_climb_at_its_second():
    exploding = feed(monitor(), losses(1.3e8, 7.1e15, 4.0e23))
    assert [(f.kind, f.step) for f in exploding] == [("divergence", 2.0)]
    climbing = feed(monitor(), losses(2.0, 1.0, 0.6, 0.5, 0.55, 2.5, 2.8))
    assert [(f.kind, f.step) for f in climbing] == [("divergence", 7.0)]


def test_divergence_waits_for_the_warmup():
    m = monitor(divergence_warmup=6)
    assert feed(m, losses(2.0, 1.0, 0.6, 0.5, 0.55, 2.5)) == []  # steps 1-6: a warm-up bump
    flags = m.observe(1, 7.0, {"train_loss": 2.6})
    assert [(f.kind, f.step) for f in flags] == [("divergence", 7.0)]


def test_spikes_below_the_first_loss_and_factor_are_not_divergence():
    rows = losses(2.3, 1.1, 0.6, 0.4, 0.3, 1.5, 0.3, 0.28, 0.8, 0.27)
    assert feed(monitor(), rows) == []


def test_a_loss_spike_that_recovers_is_not_divergence_but_a_collapse_is():
    # Real train losses from sample_spaces/train_digits.py (SGD lr 0.1, batch 32): the first run
    # spikes 7x above its best at epoch 8 and recovers (val_acc 0.92-0.97 throughout); the second
    # (width 32) climbs past its first epoch's loss at epoch 9 and ends at 26% val_acc.
    recovers = losses(0.941, 0.527, 0.233, 0.102, 0.0996, 0.221, 0.52, 0.69, 0.285, 0.388, 0.202, 0.161, 0.105)
    assert feed(monitor(), recovers) == []
    collapses = losses(1.29, 0.376, 0.387, 0.287, 0.168, 0.239, 0.527, 1.14, 2.42, 1.98, 2.51)
    assert [(f.kind, f.step) for f in feed(monitor(), collapses)] == [("divergence", 9.0)]


def test_divergence_factor_is_configurable():
    rows = losses(2.0, 1.0, 0.6, 0.5, 0.55, 2.5, 2.8)
    assert feed(monitor(divergence_factor=6), rows) == []


def test_divergence_without_train_loss_watches_the_min_objective():
    m = HealthMonitor(HealthConfig(), "val_mse", "min")
    flags = feed(m, losses(1.0, 0.5, 0.3, 0.2, 0.2, 1.4, 1.5, name="val_mse"))
    assert [(f.kind, f.metric) for f in flags] == [("divergence", "val_mse")]


# -- noise must not look like a symptom -----------------------------------------------------------------

def healthy_run(rng: random.Random, epochs: int, noise: float, classes: int = 10) -> list[dict[str, float]]:
    """A decaying loss with multiplicative noise and accuracies that follow it, val a little worse.

    The noise grows as the loss shrinks, as on a real held-out set: at loss 2 every sample adds a
    little, at loss 0.1 a few confidently wrong samples make it jump (30% on the digits runs).
    The train loss is a mean over a whole epoch, so it is three times smoother.
    """
    start, floor, rate = math.log(classes) * rng.uniform(0.6, 0.95), rng.uniform(0.02, 0.3), rng.uniform(0.15, 0.6)
    rows = []
    for epoch in range(1, epochs + 1):
        clean = floor + (start - floor) * math.exp(-rate * (epoch - 1))
        sigma = noise * min(1.0, 0.5 / clean)
        train = clean * math.exp(rng.gauss(0, sigma / 3))
        val = clean * 1.15 * math.exp(rng.gauss(0, sigma))
        acc = 1 - 0.9 * clean / math.log(classes)
        rows.append({"train_loss": train, "val_loss": val, "train_acc": min(1.0, acc + rng.gauss(0, noise / 10)),
                     "val_acc": min(1.0, acc - 0.03 + rng.gauss(0, noise / 5)), "update_ratio": 2e-3})
    return rows


@pytest.mark.parametrize("noise", [0.03, 0.1, 0.3])
def test_noisy_healthy_curves_raise_no_flag_at_all(noise):
    rng = random.Random(noise)
    m = monitor(num_classes=10)
    false_positives = [f.message for trial in range(200) for f in feed(m, healthy_run(rng, 30, noise), trial)]
    assert false_positives == []


def test_noise_around_a_flat_loss_is_not_divergence():
    rng = random.Random(7)
    m = monitor(ignore=("not_learning",))
    flags = [f for t in range(200) for f in feed(m, losses(*(2.3 * math.exp(rng.gauss(0, 0.1)) for _ in range(50))), t)]
    assert flags == []


def test_per_batch_noise_on_a_learning_curve_is_neither_divergence_nor_not_learning():
    rng = random.Random(3)
    m = monitor()
    rows = [losses(*(2.3 * 0.9 ** e * math.exp(rng.gauss(0, 0.3)) for e in range(40))) for _ in range(200)]
    assert [f for t, r in enumerate(rows) for f in feed(m, r, t)] == []


# -- not_learning ---------------------------------------------------------------------------------------

def test_flat_loss_is_not_learning_after_the_patience_window_only():
    m = monitor()
    rows = losses(2.3031, 2.3025, 2.3029, 2.3022, 2.3027, 2.3020)
    assert feed(m, rows[:4]) == []
    flags = m.observe(1, 5.0, rows[4])
    assert [(f.kind, f.step, f.stop) for f in flags] == [("not_learning", 5.0, False)]
    assert "raise the learning rate" in flags[0].hint and status_for(flags[0]) == "running"
    assert m.observe(1, 6.0, rows[5]) == []  # raised once per trial


def test_slow_but_steady_learning_is_not_flagged():
    assert feed(monitor(), losses(*(2.3 * 0.985 ** e for e in range(15)))) == []


def test_stuck_at_chance_after_a_first_epoch_blowup_is_not_learning():
    flags = feed(monitor(), losses(962.0, 2.312, 2.305, 2.309, 2.306, 2.31))
    assert [f.kind for f in flags] == ["not_learning"]


def test_accuracy_at_chance_is_not_learning_even_when_the_loss_wobbles():
    rows = [{"train_loss": 2.5 + 0.1 * (-1) ** e, "train_acc": 0.1 + 0.005 * (-1) ** e, "val_acc": 0.1}
            for e in range(6)]
    flags = feed(monitor(num_classes=10), rows)
    assert [(f.kind, f.metric) for f in flags] == [("not_learning", "train_acc")]
    assert "at chance (1/10)" in flags[0].hint


def test_not_learning_can_be_made_to_stop_the_trial():
    flags = feed(monitor(stop_on=("nan", "not_learning")), losses(*[2.30] * 8))
    assert [(f.kind, f.step, f.stop) for f in flags] == [("not_learning", 5.0, True)]
    assert status_for(flags[0]) == "pruned"  # stopped, but it did not blow up


# -- initial_loss ---------------------------------------------------------------------------------------

def test_first_loss_far_above_ln_classes_is_flagged():
    flags = feed(monitor(num_classes=10), losses(7.0, 2.0, 1.5))
    assert [(f.kind, f.step, f.value, f.stop) for f in flags] == [("initial_loss", 1.0, 7.0, False)]
    assert "ln(10) = 2.30" in flags[0].hint and "check initialisation / labels" in flags[0].hint


def test_first_loss_below_ln_classes_after_an_epoch_is_normal():
    assert feed(monitor(num_classes=10), losses(1.1, 0.6, 0.4)) == []
    assert feed(monitor(num_classes=10), losses(3.2, 2.0, 1.0)) == []  # above ln 10, within the factor


def test_loss_far_below_ln_classes_before_training_is_flagged():
    m = monitor(num_classes=10)
    flags = m.observe(1, 0.0, {"val_loss": 0.2})
    assert [(f.kind, f.metric) for f in flags] == [("initial_loss", "val_loss")]
    assert "before any training" in flags[0].hint


def test_initial_loss_needs_num_classes():
    assert feed(monitor(), losses(7.0, 2.0, 1.5)) == []


# -- overfitting ----------------------------------------------------------------------------------------

def test_train_val_accuracy_gap_is_overfitting():
    rows = [{"train_acc": t, "val_acc": v} for t, v in
            [(0.70, 0.68), (0.85, 0.78), (0.95, 0.79), (0.98, 0.80), (0.99, 0.80), (1.0, 0.80)]]
    flags = feed(monitor(), rows)
    assert [(f.kind, f.step, f.metric) for f in flags] == [("overfitting", 5.0, "train_acc - val_acc")]
    assert flags[0].value == pytest.approx(0.19)
    assert "more regularisation (L2, dropout) or data" in flags[0].hint


def test_accuracy_in_percent_is_understood():
    rows = [{"train_acc": t, "val_acc": v} for t, v in [(95.0, 79.0), (98.0, 80.0), (99.0, 80.0)]]
    assert [f.kind for f in feed(monitor(), rows)] == ["overfitting"]


def test_a_short_gap_is_not_overfitting():
    rows = [{"train_acc": t, "val_acc": v} for t, v in [(0.9, 0.7), (0.92, 0.72), (0.93, 0.88), (0.95, 0.9)]]
    assert feed(monitor(), rows) == []


def test_val_loss_rising_while_train_loss_falls_is_overfitting():
    train = [1.5, 0.9, 0.6, 0.45, 0.35, 0.28, 0.22, 0.18, 0.15, 0.12, 0.10, 0.08, 0.07, 0.06]
    val = [1.4, 0.95, 0.75, 0.70, 0.72, 0.78, 0.85, 0.93, 1.01, 1.10, 1.18, 1.25, 1.32, 1.38]
    flags = feed(monitor(), [{"train_loss": t, "val_loss": v} for t, v in zip(train, val)])
    assert [(f.kind, f.metric, f.step) for f in flags] == [("overfitting", "val_loss", 12.0)]
    assert "64% above its best (0.72) while train_loss still falls" in flags[0].hint


def test_a_jumpy_val_loss_on_a_small_validation_set_is_not_overfitting():
    # Real numbers from a healthy SGD run on the 397 digits held out: val loss jumps 30-150%.
    val = [1.689, 0.359, 0.239, 0.149, 0.155, 0.123, 0.189, 0.185, 0.159, 0.296, 0.118, 0.131, 0.103, 0.120]
    train = [2.0 * 0.7 ** e for e in range(len(val))]
    assert feed(monitor(), [{"train_loss": t, "val_loss": v} for t, v in zip(train, val)]) == []


# -- underfitting ---------------------------------------------------------------------------------------

def test_poor_flat_accuracy_on_both_sides_is_underfitting():
    rows = [{"train_loss": 1.6 - 0.1 * min(e, 3), "train_acc": a, "val_acc": a - 0.02}
            for e, a in enumerate([0.30, 0.41, 0.44, 0.45, 0.44, 0.45, 0.46, 0.45])]
    flags = feed(monitor(num_classes=10), rows)
    assert [(f.kind, f.step) for f in flags] == [("underfitting", 6.0)]
    assert "more capacity, less regularisation" in flags[0].hint and not flags[0].stop


def test_poor_but_improving_accuracy_is_not_underfitting():
    rows = [{"train_acc": a, "val_acc": a - 0.02} for a in [0.30, 0.34, 0.38, 0.42, 0.46, 0.50, 0.54, 0.57]]
    assert feed(monitor(num_classes=10), rows) == []


# -- update_ratio ---------------------------------------------------------------------------------------

def test_update_ratio_far_below_the_band_is_learning_rate_too_low():
    flags = feed(monitor(), [{"update_ratio": 5e-5}] * 6)
    assert [(f.kind, f.step) for f in flags] == [("update_ratio", 5.0)]
    assert flags[0].hint.endswith("learning rate too low")


def test_update_ratio_above_the_band_after_the_warmup_is_learning_rate_too_high():
    flags = feed(monitor(), [{"update_ratio": 3e-2}] * 12)
    assert [(f.kind, f.step) for f in flags] == [("update_ratio", 10.0)]  # steps 6-10, after warm-up 5
    assert flags[0].hint.endswith("learning rate too high")


def test_high_update_ratio_early_in_a_healthy_run_is_not_flagged():
    # Per-epoch geometric means measured on healthy SGD runs of the digits MLP (lr 0.1 and 0.3).
    for ratios in ([3.0e-2, 2.9e-2, 1.1e-2, 8.5e-3, 6.3e-3, 5.1e-3, 4.2e-3, 4.2e-3, 4.5e-3, 4.5e-3],
                   [6.7e-2, 3.5e-2, 2.2e-2, 1.4e-2, 1.0e-2, 9.7e-3, 7.8e-3, 6.5e-3, 7.4e-3, 6.3e-3]):
        assert feed(monitor(), [{"update_ratio": r} for r in ratios]) == []


def test_update_ratio_that_comes_back_into_the_band_is_not_flagged():
    assert feed(monitor(), [{"update_ratio": r} for r in [5e-5] * 4 + [2e-4] + [5e-5] * 4]) == []


# -- the monitor as the study loop uses it --------------------------------------------------------------

def test_each_kind_once_per_trial_and_trials_are_independent():
    m = monitor(num_classes=10, stop_on=())
    assert [f.kind for f in m.observe(1, 1.0, {"train_loss": math.nan})] == ["nan"]
    assert m.observe(1, 2.0, {"train_loss": math.nan}) == []
    assert [f.kind for f in m.observe(2, 1.0, {"train_loss": math.nan})] == ["nan"]
    m.forget(1)
    assert [f.kind for f in m.observe(1, 1.0, {"train_loss": math.nan})] == ["nan"]
    m.forget(99)  # unknown trial: nothing to do


def test_ignored_kinds_are_never_raised():
    assert feed(monitor(num_classes=10, ignore=("initial_loss",)), losses(7.0, 2.0, 1.5)) == []


def test_metric_names_are_configurable():
    m = HealthMonitor(HealthConfig(train_loss="loss/train"), "acc", "max")
    assert [f.metric for f in feed(m, losses(2.0, 1.0, 0.6, 0.5, 0.55, 2.5, 2.8, name="loss/train"))] == ["loss/train"]


def test_a_monitor_without_a_health_section_uses_the_defaults():
    flags = HealthMonitor(None, "val_acc", "max").observe(1, 1.0, {"train_loss": math.nan})
    assert [f.kind for f in flags] == ["nan"]


def test_flag_message_without_a_value():
    flag = Flag(kind="underfitting", step=12.0, value=None, hint="more capacity", stop=False, step_name="step")
    assert flag.message == "underfitting at step 12: more capacity"


def test_kinds_cover_every_flag_the_monitor_raises():
    assert set(KINDS) == {"nan", "divergence", "not_learning", "initial_loss", "overfitting", "underfitting",
                          "update_ratio"}


def test_observe_is_cheap_for_64_trials_and_long_histories():
    rng = random.Random(1)
    m = monitor(num_classes=10)
    runs = [healthy_run(rng, 300, 0.05) for _ in range(64)]
    start = time.perf_counter()
    for step in range(300):
        for trial, rows in enumerate(runs):
            m.observe(trial, float(step + 1), rows[step])
    elapsed = time.perf_counter() - start
    assert elapsed < 4.0, f"{64 * 300} reports took {elapsed:.2f} s"  # about 0.3 s on a loaded 2-core box


# -- the study as the reference (no num_classes) --------------------------------------------------------

SWEEP = json.loads((Path(__file__).parent / "data" / "digits_lr_sweep.json").read_text())["trials"]


def interleaved(m: HealthMonitor, runs: list[list[dict[str, float]]]) -> dict[int, list[Flag]]:
    """Trials side by side, one report each per round, as a study with max_parallel = len(runs) runs them;
    a stopping flag ends that trial."""
    flags: dict[int, list[Flag]] = {t: [] for t in range(len(runs))}
    stopped: set[int] = set()
    for step in range(max(map(len, runs))):
        for trial, rows in enumerate(runs):
            if step < len(rows) and trial not in stopped:
                new = m.observe(trial, float(step + 1), rows[step])
                flags[trial] += new
                stopped |= {trial} if any(f.stop for f in new) else set()
    return flags


def sweep_rows(run: dict) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k != "epoch"} for r in run["reports"]]


def test_half_the_study_blowing_up_before_its_first_report_is_divergence():
    # The study: 4 of 8 trials report a first loss of about 1e6, then sit at chance.
    rng = random.Random(5)
    healthy = [[{"train_loss": 2.0 * 0.7 ** e * math.exp(rng.gauss(0, 0.05)), "val_acc": 0.6 + 0.03 * e}
                for e in range(8)] for _ in range(4)]
    blown = [[{"train_loss": 1e6 * rng.uniform(0.5, 2)}] + [{"train_loss": 2.30 + rng.gauss(0, 0.01), "val_acc": 0.1}
                                                           for _ in range(7)] for _ in range(4)]
    flags = interleaved(monitor(), [run for pair in zip(healthy, blown) for run in pair])
    assert all(flags[t] == [] for t in (0, 2, 4, 6))
    for t in (1, 3, 5, 7):
        assert [(f.kind, f.stop, f.metric) for f in flags[t]] == [("divergence", True, "train_loss")], t
        assert flags[t][0].step <= 2 and status_for(flags[t][0]) == "diverged"
        assert "where the study's other trials start" in flags[t][0].hint


def test_a_first_epoch_that_blew_up_and_fell_back_is_divergence_at_the_next_report():
    m = monitor()
    for trial, first in enumerate((2.2, 1.9, 2.1)):
        m.observe(trial, 1.0, {"train_loss": first})
    assert m.observe(9, 1.0, {"train_loss": 50.0}) == []  # 50 / 2.2 = 23x: not yet an explosion
    flags = m.observe(9, 2.0, {"train_loss": 2.31})
    assert [(f.kind, f.step, f.value) for f in flags] == [("divergence", 2.0, 50.0)]


def test_a_slow_starter_among_fast_learners_is_not_an_early_blowup():
    m = monitor()
    for trial in range(5):
        m.observe(trial, 1.0, {"train_loss": 0.08 + 0.01 * trial})
    assert feed(m, losses(2.30, 2.1, 1.8, 1.4, 1.0, 0.7), trial=9) == []


def test_fewer_than_three_other_trials_are_no_reference():
    m = monitor()
    m.observe(1, 1.0, {"train_loss": 2.0})
    m.observe(2, 1.0, {"train_loss": 2.1})
    assert m.observe(3, 1.0, {"train_loss": 1e6}) == []


def test_at_chance_while_the_others_learn_is_not_learning_without_num_classes():
    m = monitor()
    for trial in range(4):
        feed(m, [{"train_loss": 1.0 - 0.1 * e, "val_acc": 0.8 + 0.02 * e} for e in range(3)], trial=trial)
    rows = [{"train_loss": 2.3 + 0.6 * (-1) ** e, "val_acc": 0.1 + 0.01 * (-1) ** e} for e in range(6)]
    flags = feed(m, rows, trial=9)
    assert [(f.kind, f.step, f.metric, f.stop) for f in flags] == [("not_learning", 5.0, "val_acc", False)]
    assert "flat at 0.10 for 5 reports while the study's learning trials start at 0.80" in flags[0].hint


def test_the_slow_steady_learner_is_not_flagged():
    # The real run from the issue: lr 3e-4, val_acc 0.13 -> 0.54 in 15 epochs while the loss moves 1.2%
    # in the first five (2.310 -> 2.276); it was flagged "not_learning: moved 1.2%".
    run = next(r for r in SWEEP if (r["lr"], r["seed"], r["width"]) == (3e-4, 0, 128))
    rows = sweep_rows(run)
    assert rows[0]["val_acc"] < 0.15 and rows[-1]["val_acc"] > 0.5
    assert feed(monitor(), rows) == [] and feed(monitor(num_classes=10), rows) == []


@pytest.mark.parametrize("num_classes", [None, 10])
@pytest.mark.parametrize("together", [True, False])
def test_the_real_learning_rate_sweep_flags_every_blowup_and_no_healthy_run(num_classes, together):
    # 52 real trainings in one study, side by side or one after the other (shuffled).
    runs = SWEEP if together else random.Random(1).sample(SWEEP, len(SWEEP))
    m = monitor(num_classes=num_classes)
    if together:
        flags = interleaved(m, [sweep_rows(r) for r in runs])
    else:
        flags = {t: feed(m, sweep_rows(r), trial=t) for t, r in enumerate(runs)}
    for t, run in enumerate(runs):
        kinds = [f.kind for f in flags[t]]
        if 3e-3 <= run["lr"] <= 0.1:  # healthy: 0.73-0.98 val_acc after 15 epochs
            assert kinds == [], (run["lr"], run["seed"], run["width"], [f.message for f in flags[t]])
        first = run["reports"][0]["train_loss"]
        if not math.isfinite(first) or (first > 100 and together):  # a blow-up before the first report
            assert kinds[-1] in ("nan", "divergence") and flags[t][-1].step <= 2, (run, kinds)


def test_study_starts_leave_the_trial_itself_out_and_survive_forget():
    m = monitor()
    for trial, value in enumerate((2.0, 2.2, 2.4, 1e6)):
        m.add_start(trial, "train_loss", value)
    m.add_start(0, "train_loss", 99.0)  # a trial's first value never changes
    assert m.starts.low_median("train_loss", 3) == 2.2 and m.starts.ceiling("train_loss", 3) == 2.4
    assert m.starts.low_median("train_loss", 0) == 2.4  # others of trial 0: 2.2, 2.4, 1e6
    m.add_start(5, "val_acc", 85.0)  # percent, as for every accuracy
    assert (5, "val_acc") in m.starts and m.starts.quantile("val_acc", 9, 0.5) is None
    m.forget(0)
    assert m.starts.low_median("train_loss", 3) == 2.2


def test_a_resumed_engine_gets_the_first_reports_of_the_study_so_far(tmp_path: Path):
    from hpotui.engine.executors.fake import FakeTrial, report
    from tests.inproc import launch

    def toy(trial: FakeTrial) -> list:  # tests/conftest.py's toy trainer: three epochs of four metrics
        loss, steps = 2.3, []
        for epoch in range(1, 4):
            loss *= 1 - min(trial.params["lr"], 0.9) * 0.5
            acc = 1 - loss / 2.3
            steps.append(report(epoch=epoch, train_loss=loss, val_loss=loss * 1.1, train_acc=acc, val_acc=acc * 0.95))
        return steps

    run = launch(tmp_path, """
        name: toy
        command: python toy.py {lr} 3 0.05
        objective: {metric: val_acc, mode: max}
        search: {algorithm: random, seed: 0}
        budget: {max_trials: 3, max_parallel: 2}
        space:
          lr: {type: loguniform, low: 1e-3, high: 1}
        """, toy)  # the engine's own writer, in this process
    assert run.code == 0, run.out
    store, study = run.store, run.study
    m = HealthMonitor(HealthConfig(), "val_acc", "max")
    firsts = sorted(store.first_values(study.id, m.start_metrics))
    first_reports = {t.id: store.metrics(t.id)[:4] for t in store.trials(study.id)}  # epoch 1: four metrics
    assert firsts == sorted((tid, row.name, row.value) for tid, rows in first_reports.items() for row in rows
                            if row.name in m.start_metrics)
    for trial_id, name, value in firsts:
        m.add_start(trial_id, name, value)
    assert m.starts.low_median("train_loss", 99) is not None  # three earlier trials: a reference
