"""Schedulers on hand-built learning curves: no processes, no clock, results in arrival order."""

from __future__ import annotations

from collections import Counter

import pytest

from hpotui.engine.schedulers import Action, make_scheduler
from hpotui.engine.schedulers.asha import AshaScheduler
from hpotui.engine.schedulers.fifo import FifoScheduler
from hpotui.engine.schedulers.hyperband import HyperbandScheduler
from hpotui.engine.schedulers.median import MedianStoppingScheduler
from hpotui.engine.schedulers.rungs import Dealer, deal_counts, hyperband_brackets, judged_rungs, ladder, s_max
from hpotui.engine.space_file.space import SchedulerSpec


def asha(min_r: float = 1, max_r: float = 27, eta: float = 3, mode: str = "max", metric: str = "val_acc"):
    spec = SchedulerSpec(type="asha", min_resource=min_r, max_resource=max_r, reduction_factor=eta)
    return AshaScheduler(spec, metric, mode)


# --- rung arithmetic ---------------------------------------------------------------------


def test_rungs_are_min_times_eta_powers_below_max():
    assert judged_rungs(1, 27, 3) == (1, 3, 9)
    assert ladder(1, 27, 3) == (1, 3, 9, 27)
    assert judged_rungs(1, 10, 3) == (1, 3, 9)  # survivors of 9 finish at 10
    assert ladder(1, 10, 3) == (1, 3, 9, 10)
    assert judged_rungs(2, 100, 2) == (2, 4, 8, 16, 32, 64)
    assert judged_rungs(5, 5, 3) == ()  # nothing to judge: every trial runs to the end
    assert judged_rungs(0.1, 0.9, 3) == (0.1, 0.3)  # no float drift: 0.1·3² == 0.9 is the end


def test_hyperband_brackets_reproduce_the_papers_table():
    # Li et al. (2018), Table 1: R = 81, η = 3.
    assert s_max(1, 81, 3) == 4
    table = {b.s: (b.n, b.resources) for b in hyperband_brackets(1, 81, 3)}
    assert table == {
        4: (81, (1, 3, 9, 27, 81)),
        3: (34, (3, 9, 27, 81)),
        2: (15, (9, 27, 81)),
        1: (8, (27, 81)),
        0: (5, (81,)),
    }
    assert sum(n for n, _ in table.values()) == 143


def test_dealer_gives_each_slot_its_weight_every_cycle_and_interleaves():
    weights = (81, 34, 15, 8, 5)
    assert deal_counts(weights, 143) == [81, 34, 15, 8, 5]
    assert deal_counts(weights, 286) == [162, 68, 30, 16, 10]
    dealer = Dealer(weights)
    first = [dealer.deal() for _ in range(30)]
    assert set(first) == {0, 1, 2, 3, 4}  # every bracket is sampled early, not after 81 trials
    again = Dealer(weights)
    assert [again.deal() for _ in range(30)] == first  # deterministic: a resumed study deals alike


# --- ASHA ----------------------------------------------------------------------------------


def test_asha_keeps_the_best_third_at_a_rung_as_trials_arrive():
    s = asha()
    assert s.on_result(1, 1, 0.50).action is Action.CONTINUE  # first at the rung
    d2 = s.on_result(2, 1, 0.40)  # 2 at the rung: keep ceil(2/3) = 1, the best (0.50)
    assert d2.action is Action.STOP
    assert d2.reason == "pruned at epoch 1: val_acc 0.4 below rung cut-off 0.5, 1 of 2 trials kept"
    assert s.on_result(3, 1, 0.60).action is Action.CONTINUE  # a new best
    d4 = s.on_result(4, 1, 0.55)  # 4 at the rung: keep 2; second best so far is 0.50
    assert d4.action is Action.CONTINUE
    assert d4.reason == "promoted at epoch 1: val_acc 0.55 meets rung cut-off 0.5, 2 of 4 trials kept"
    d5 = s.on_result(5, 1, 0.45)  # keep ceil(5/3) = 2 of [0.6, 0.55, 0.5, 0.4, 0.45]
    assert d5.action is Action.STOP
    assert "0.45 below rung cut-off 0.55, 2 of 5 trials kept" in d5.reason
    # What the TUI shows: the 6th arrival must match the 2nd best of the five.
    assert s.rung_cutoffs() == {1: 0.55, 3: None, 9: None}
    assert s.rung_sizes() == {1: 5, 3: 0, 9: 0}


def test_asha_reason_carries_the_numbers_of_the_issue_example():
    s = asha(min_r=3, max_r=27)
    for trial, value in enumerate([0.9, 0.8, 0.7, 0.65, 0.63, 0.6, 0.5, 0.45, 0.3, 0.2, 0.1, 0.05, 0.42]):
        s.on_result(trial, 3, value)
    d = s.on_result(99, 3, 0.41)
    assert d.action is Action.STOP
    assert d.reason == "pruned at epoch 3: val_acc 0.41 below rung cut-off 0.63, 5 of 14 trials kept"


def test_asha_asynchronous_arrival_judges_each_rung_against_its_own_arrivals():
    s = asha()
    # Trial 1 is fast: it reaches epochs 1, 2, 3 before anyone else reports.
    assert s.on_result(1, 1, 0.30).reason.startswith("promoted at epoch 1")
    assert s.on_result(1, 2, 0.35).reason == ""  # between rungs: nothing to judge
    assert s.on_result(1, 3, 0.40).action is Action.CONTINUE  # alone at rung 3
    # Slower trials arrive at rung 1 afterwards; the better ones overtake trial 1.
    assert s.on_result(2, 1, 0.50).action is Action.CONTINUE  # new best at rung 1
    assert s.on_result(3, 1, 0.20).action is Action.STOP
    assert s.on_result(2, 3, 0.70).action is Action.CONTINUE  # best of 2 at rung 3
    assert s.on_result(4, 1, 0.60).action is Action.CONTINUE  # best at rung 1
    d = s.on_result(4, 3, 0.45)  # 3 at rung 3: [0.4, 0.7] + 0.45, keep 1 -> must match 0.7
    assert d.action is Action.STOP
    assert d.reason == "pruned at epoch 3: val_acc 0.45 below rung cut-off 0.7, 1 of 3 trials kept"
    # Trial 1 keeps running: a rung it already passed is never judged again.
    assert s.on_result(1, 4, 0.41).action is Action.CONTINUE


def test_asha_min_mode_prunes_high_losses():
    s = asha(mode="min", metric="val_loss")
    assert s.on_result(1, 1, 0.9).action is Action.CONTINUE
    assert s.on_result(2, 1, 0.5).action is Action.CONTINUE  # lower is better: new best
    d = s.on_result(3, 1, 0.7)  # keep 1 of 3: must match 0.5
    assert d.action is Action.STOP
    assert d.reason == "pruned at epoch 1: val_loss 0.7 above rung cut-off 0.5, 1 of 3 trials kept"
    assert s.rung_cutoffs()[1] == 0.7  # a 4th arrival keeps ceil(4/3) = 2: second lowest of 0.5, 0.7, 0.9
    s.on_result(4, 1, 0.6)
    assert s.rung_cutoffs()[1] == 0.6  # 5th arrival keeps 2 of [0.5, 0.6, 0.7, 0.9]


def test_asha_ties_with_the_cutoff_go_on():
    s = asha()
    s.on_result(1, 1, 0.5)
    assert s.on_result(2, 1, 0.5).action is Action.CONTINUE


def test_asha_result_jumping_rungs_is_judged_at_each_lowest_first():
    s = asha()
    for trial, value in [(1, 0.9), (2, 0.8), (3, 0.7)]:
        s.on_result(trial, 1, value)
    # Trial 4 reports first at epoch 4 (every 4 epochs): it passes rungs 1 and 3 in one line.
    d = s.on_result(4, 4, 0.95)
    assert d.action is Action.CONTINUE
    assert d.reason == ("promoted at epoch 1 (reported at epoch 4): val_acc 0.95 meets rung cut-off 0.8, "
                        "2 of 4 trials kept; promoted at epoch 3 (reported at epoch 4): val_acc 0.95, "
                        "first trial at this rung")
    assert s.rung_sizes() == {1: 4, 3: 1, 9: 0}
    # Failing the lower rung stops it there; the higher rung never records it.
    d = s.on_result(5, 4, 0.1)
    assert d.action is Action.STOP and d.reason.startswith("pruned at epoch 1 (reported at epoch 4)")
    assert s.rung_sizes() == {1: 5, 3: 1, 9: 0}


def test_asha_never_prunes_at_max_resource_and_ignores_results_below_min():
    s = asha(max_r=9)  # rungs 1, 3; 9 is the end
    s.on_result(1, 0.5, 0.0)
    assert s.rung_sizes() == {1: 0, 3: 0}
    for trial in (1, 2, 3):
        s.on_result(trial, 1, 0.9)
        s.on_result(trial, 3, 0.9)
    s.on_result(4, 1, 0.95)
    s.on_result(4, 3, 0.95)
    d = s.on_result(4, 9, 0.01)  # awful at the end, but the budget is already spent
    assert d.action is Action.CONTINUE and d.reason == ""


def test_asha_stopped_trial_late_lines_repeat_the_decision_and_change_nothing():
    s = asha()
    s.on_result(1, 1, 0.9)
    stop = s.on_result(2, 1, 0.1)
    assert stop.action is Action.STOP
    assert s.on_result(2, 3, 0.99) == stop  # the line printed before the signal landed
    assert s.rung_sizes() == {1: 2, 3: 0, 9: 0}


def test_asha_replay_rebuilds_the_same_decisions():
    results = [(1, 1, 0.5), (2, 1, 0.6), (1, 3, 0.55), (3, 1, 0.2), (2, 3, 0.7), (4, 1, 0.65), (4, 3, 0.5)]
    first, second = asha(), asha()
    assert [first.on_result(*r) for r in results] == [second.on_result(*r) for r in results]
    assert first.rung_cutoffs() == second.rung_cutoffs()


def test_asha_needs_max_resource():
    with pytest.raises(ValueError, match="max_resource"):
        AshaScheduler(SchedulerSpec(type="asha"), "val_acc", "max")


# --- Hyperband -----------------------------------------------------------------------------


def hyperband(mode: str = "max") -> HyperbandScheduler:
    spec = SchedulerSpec(type="hyperband", min_resource=1, max_resource=81, reduction_factor=3)
    return HyperbandScheduler(spec, "val_acc", mode)


def test_hyperband_deals_new_trials_in_proportion_to_n_s():
    s = hyperband()
    for trial in range(286):
        s.on_trial_start(trial)
    counts = Counter(s.bracket_of(t) for t in range(143))
    assert counts == {4: 81, 3: 34, 2: 15, 1: 8, 0: 5}
    assert Counter(s.bracket_of(t) for t in range(143, 286)) == counts
    assert {s.bracket_of(t) for t in range(20)} == {4, 3, 2, 1, 0}  # a short study samples every bracket
    s.on_trial_start(0)
    assert s.bracket_of(0) == 4  # starting twice does not deal twice


def test_hyperband_judges_each_bracket_at_its_own_rungs_against_its_own_trials():
    s = hyperband()
    for trial in range(143):
        s.on_trial_start(trial)
    by_bracket = {b: [t for t in range(143) if s.bracket_of(t) == b] for b in range(5)}
    b2 = by_bracket[2]  # starts at epoch 9
    for t in b2[:3]:  # bad values at epochs 1 and 3: bracket 2 judges nothing there
        assert s.on_result(t, 1, 0.0).action is Action.CONTINUE
        assert s.on_result(t, 3, 0.0).action is Action.CONTINUE
    assert s.on_result(b2[0], 9, 0.8).action is Action.CONTINUE
    d = s.on_result(b2[1], 9, 0.7)
    assert d.action is Action.STOP
    assert d.reason == "pruned at epoch 9 in bracket 2: val_acc 0.7 below rung cut-off 0.8, 1 of 2 trials kept"
    # Bracket 4 never saw 0.8: a 0.1 is the first there at epoch 9 and goes on.
    b4 = by_bracket[4][0]
    for epoch in (1, 3):
        assert s.on_result(b4, epoch, 0.1).action is Action.CONTINUE
    assert s.on_result(b4, 9, 0.1).action is Action.CONTINUE
    # Bracket 0 runs every trial to the end unjudged.
    for t in by_bracket[0]:
        assert s.on_result(t, 81, 0.0).action is Action.CONTINUE
    assert s.rung_cutoffs()[2] == {9: 0.8, 27: None}
    assert s.rung_cutoffs()[0] == {}


def test_hyperband_min_mode_and_results_from_unannounced_trials():
    s = hyperband(mode="min")
    s.on_result(7, 1, 0.3)  # never announced (a resumed study replaying results): dealt now
    assert s.bracket_of(7) == 4
    s.on_trial_start(8)
    assert s.bracket_of(8) == 3
    with pytest.raises(KeyError):
        s.bracket_of(99)


# --- median stopping -----------------------------------------------------------------------


def median(grace: float = 2, min_trials: int = 3, mode: str = "max") -> MedianStoppingScheduler:
    spec = SchedulerSpec(type="median", grace_period=grace, min_trials=min_trials)
    return MedianStoppingScheduler(spec, "val_acc", mode)


def feed(s, trial: int, curve: list[float]) -> list:
    return [s.on_result(trial, epoch, v) for epoch, v in enumerate(curve, start=1)]


def test_median_stops_a_trial_whose_best_is_below_the_median_running_average():
    s = median()
    feed(s, 1, [0.5, 0.6, 0.7])  # running averages at 3: 0.6
    feed(s, 2, [0.4, 0.5, 0.6])  # 0.5
    feed(s, 3, [0.6, 0.7, 0.8])  # 0.7
    decisions = feed(s, 4, [0.30, 0.45, 0.48])
    assert [d.action for d in decisions] == [Action.CONTINUE, Action.STOP, Action.STOP]
    # at epoch 2 the others' averages are 0.55, 0.45, 0.65: median 0.55 > best 0.45
    assert decisions[1].reason == ("pruned at epoch 2: best val_acc 0.45 below median running average 0.55 "
                                   "of 3 other trials")


def test_median_compares_with_running_averages_not_last_values():
    s = median(grace=1)
    for trial in (1, 2, 3):
        feed(s, trial, [0.1, 0.2, 0.9])  # last value 0.9, but average at epoch 3 is 0.4
    decisions = feed(s, 4, [0.35, 0.4, 0.5])
    assert [d.action for d in decisions] == [Action.CONTINUE] * 3  # 0.35 beats the others' mean 0.1 at epoch 1


def test_median_waits_for_the_grace_period_and_min_trials():
    s = median(grace=3, min_trials=3)
    feed(s, 1, [0.9, 0.9, 0.9, 0.9])
    feed(s, 2, [0.9, 0.9, 0.9, 0.9])
    assert all(d.action is Action.CONTINUE for d in feed(s, 3, [0.1, 0.1, 0.1]))  # only 2 others
    s = median(grace=3, min_trials=2)
    feed(s, 1, [0.9, 0.9, 0.9, 0.9])
    feed(s, 2, [0.9, 0.9, 0.9, 0.9])
    decisions = feed(s, 3, [0.1, 0.1, 0.1])
    assert [d.action for d in decisions] == [Action.CONTINUE, Action.CONTINUE, Action.STOP]  # grace: epoch 3


def test_median_ignores_other_trials_that_never_reached_the_step():
    s = median(grace=1, min_trials=3)
    feed(s, 1, [0.9])  # stopped or crashed after epoch 1
    feed(s, 2, [0.9, 0.9])
    feed(s, 3, [0.9, 0.9])
    d = feed(s, 4, [0.95, 0.1])
    assert d[1].action is Action.CONTINUE  # at epoch 2 only trials 2 and 3 count: fewer than 3
    assert s.median_at(1) == (0.9, 4)  # the TUI's median line at epoch 1: 0.9, 0.9, 0.9, 0.95


def test_median_min_mode_stops_high_losses():
    s = median(grace=1, mode="min")
    for trial in (1, 2, 3):
        feed(s, trial, [1.0, 0.8])
    d = feed(s, 4, [1.2, 1.1])
    assert d[0].action is Action.STOP
    assert "best val_acc 1.2 above median running average 1 of 3 other trials" in d[0].reason
    assert s.on_result(4, 3, 0.01) == d[0]  # stopped stays stopped


# --- FIFO and dispatch ---------------------------------------------------------------------


def test_make_scheduler_dispatches_on_type():
    kinds = {"fifo": FifoScheduler, "asha": AshaScheduler, "hyperband": HyperbandScheduler,
             "median": MedianStoppingScheduler}
    for name, cls in kinds.items():
        spec = SchedulerSpec(type=name, max_resource=27)
        assert type(make_scheduler(spec, "val_acc", "max")) is cls
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_scheduler(SchedulerSpec(type="pbt"), "val_acc", "max")
    with pytest.raises(ValueError, match="mode"):
        make_scheduler(SchedulerSpec(), "val_acc", "maximize")


def test_fifo_never_stops():
    s = make_scheduler(SchedulerSpec(), "val_acc", "max")
    s.on_result(1, 1, 0.9)
    assert s.on_result(2, 1, 0.0).action is Action.CONTINUE
