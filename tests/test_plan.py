"""`hpotui plan`: the contract JSON and its text table, checked against the papers' arithmetic."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from hpotui.engine.schedulers.hyperband import HyperbandScheduler
from hpotui.engine.search.plan import format_plan, plan
from hpotui.engine.space_file.space import SchedulerSpec

PAPER = SchedulerSpec(type="hyperband", min_resource=1, max_resource=81, reduction_factor=3)


def rungs(bracket: dict) -> list[tuple[int, float]]:
    return [(r["n"], r["resource"]) for r in bracket["rungs"]]


def test_hyperband_plan_is_the_papers_table():
    for max_trials in (None, 143):  # one full iteration either way
        p = plan(PAPER, max_trials)
        assert p["scheduler"] == "hyperband"
        assert {b["s"]: rungs(b) for b in p["brackets"]} == {
            4: [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
            3: [(34, 3), (11, 9), (3, 27), (1, 81)],
            2: [(15, 9), (5, 27), (1, 81)],
            1: [(8, 27), (2, 81)],
            0: [(5, 81)],
        }
        assert [b["s"] for b in p["brackets"]] == [4, 3, 2, 1, 0]
        assert p["total_trials"] == 143
        # 405 + 363 + 351 + 378 + 405: each rung counted at n · resource
        assert p["max_total_resource"] == 1902


def test_plan_is_exactly_the_contract_json():
    p = plan(PAPER, None)
    assert set(p) == {"scheduler", "brackets", "total_trials", "max_total_resource"}
    for b in p["brackets"]:
        assert set(b) == {"s", "rungs"} and isinstance(b["s"], int)
        for r in b["rungs"]:
            assert set(r) == {"n", "resource"} and isinstance(r["n"], int)
    assert json.loads(json.dumps(p)) == p
    assert '"resource": 81}' in json.dumps(p)  # whole numbers print as 81, not 81.0


def test_hyperband_plan_with_fewer_trials_shows_what_the_scheduler_will_deal():
    p = plan(PAPER, 20)
    assert p["total_trials"] == 20
    scheduler = HyperbandScheduler(PAPER, "val_acc", "max")
    for trial in range(20):
        scheduler.on_trial_start(trial)
    dealt = Counter(scheduler.bracket_of(t) for t in range(20))
    assert {b["s"]: b["rungs"][0]["n"] for b in p["brackets"]} == dict(dealt)
    s4 = next(b for b in p["brackets"] if b["s"] == 4)
    assert rungs(s4) == [(11, 1), (3, 3), (1, 9), (1, 27), (1, 81)]  # floor, never below one trial
    assert plan(PAPER, 286)["total_trials"] == 286
    assert [b["s"] for b in plan(PAPER, 2)["brackets"]] == [4, 3]  # brackets dealt nothing are left out


def test_hyperband_plan_when_the_range_is_not_a_power_of_eta():
    p = plan(SchedulerSpec(type="hyperband", min_resource=1, max_resource=10, reduction_factor=3), None)
    assert [(b["s"], b["rungs"][0]["n"]) for b in p["brackets"]] == [(2, 9), (1, 5), (0, 3)]
    assert rungs(p["brackets"][0]) == [(9, 1.11111111111), (3, 3.33333333333), (1, 10)]
    assert p["max_total_resource"] == pytest.approx(9 * 10 / 9 + 3 * 10 / 3 + 10 + 5 * 10 / 3 + 10 + 30)


def test_asha_plan_is_one_bracket_halving_by_eta():
    p = plan(SchedulerSpec(type="asha", min_resource=1, max_resource=27, reduction_factor=3), 27)
    assert p == {"scheduler": "asha", "brackets": [{"s": 3, "rungs": [
        {"n": 27, "resource": 1}, {"n": 9, "resource": 3}, {"n": 3, "resource": 9}, {"n": 1, "resource": 27}]}],
        "total_trials": 27, "max_total_resource": 108}
    p = plan(SchedulerSpec(type="asha", min_resource=1, max_resource=10, reduction_factor=3), 20)
    assert rungs(p["brackets"][0]) == [(20, 1), (6, 3), (2, 9), (1, 10)]  # survivors of 9 finish at 10
    assert p["brackets"][0]["s"] == 3


def test_fifo_and_median_plans_are_one_rung_at_the_end():
    p = plan(SchedulerSpec(type="fifo", max_resource=30), 12)
    assert p == {"scheduler": "fifo", "brackets": [{"s": 0, "rungs": [{"n": 12, "resource": 30}]}],
                 "total_trials": 12, "max_total_resource": 360}
    p = plan(SchedulerSpec(type="median", max_resource=30), 12)
    assert p["scheduler"] == "median" and rungs(p["brackets"][0]) == [(12, 30)]
    p = plan(SchedulerSpec(type="fifo"), 12)  # no max_resource: the command decides, cost unknown
    assert rungs(p["brackets"][0]) == [(12, None)] and p["max_total_resource"] is None


def test_plan_rejects_what_it_cannot_plan():
    with pytest.raises(ValueError, match="max_trials"):
        plan(SchedulerSpec(type="asha", max_resource=27), None)
    with pytest.raises(ValueError, match="max_trials"):
        plan(SchedulerSpec(type="fifo"), 0)
    with pytest.raises(ValueError, match="max_resource"):
        plan(SchedulerSpec(type="hyperband"), 10)


def test_format_plan_prints_one_row_per_bracket_and_the_totals():
    text = format_plan(plan(PAPER, None))
    lines = text.splitlines()
    assert lines[0] == "scheduler: hyperband   trials: 143   brackets: 5"
    assert "rungs (trials @ epoch)" in lines[1] and "max epochs" in lines[1]
    assert lines[2].split() == ["s=4", "81", "81@1", "27@3", "9@9", "3@27", "1@81", "405"]
    assert lines[6].split() == ["s=0", "5", "5@81", "405"]
    assert "max total epochs: 1902" in text
    # trials go on from where they are: 54·1 + 18·3 + 6·9 + 2·27 + 1·81 = 297 in bracket 4, ...
    assert "epochs if each trial stops where this plan stops it: 1581" in text


def test_format_plan_names_the_resource_and_says_when_the_cost_is_unknown():
    text = format_plan(plan(SchedulerSpec(type="fifo"), 8), resource="step")
    assert "rungs (trials @ step)" in text and "8@end" in text
    assert "unknown" in text.splitlines()[-1]
    text = format_plan(plan(SchedulerSpec(type="median", max_resource=30), 8))
    assert "max total epochs: 240" in text and "median stopping" in text
