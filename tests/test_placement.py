"""Placement on a shared box: GPU counts, busy GPUs, fractions, allow-lists, two engines.

Readings come from a ResourceMonitor over FakeNvml (the simulated hardware), so these
tests go through the same path as the engine; the claims list stands in for the database
rows of running trials.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpotui.engine.gpus.placement import (check_request, claimed_fractions, claims_for, claims_from_rows, cuda_visible_devices,
                              place_trial, trial_gpu_env, why_waiting)
from hpotui.engine.machine.resources import GpuReading, ResourceMonitor
from hpotui.engine.machine.resources_nvml import GIB, FakeGpu, FakeNvml
from hpotui.engine.space_file.space import Resources


def readings(fake: FakeNvml) -> list[GpuReading]:
    return ResourceMonitor(fake).gpus()


def start(readings_: list[GpuReading], resources: Resources, claims: list[tuple[int, float]]) -> tuple[int, ...] | None:
    """Place a trial and record its claims, as the engine does inside one DB transaction."""
    placed = place_trial(readings_, resources, claims)
    if placed:
        claims.extend(claims_for(placed, resources))
    return placed


def test_one_gpu_per_trial_fills_each_gpu_once_then_waits() -> None:
    gpus = readings(FakeNvml(4))
    claims: list[tuple[int, float]] = []
    one = Resources(gpus_per_trial=1)
    placed = [start(gpus, one, claims) for _ in range(4)]
    assert sorted(p[0] for p in placed if p) == [0, 1, 2, 3]
    assert start(gpus, one, claims) is None
    assert why_waiting(gpus, one, claims).startswith("waiting for 1 GPU: GPU 0 1 claimed")


def test_cpu_trials_get_no_gpu_and_never_wait() -> None:
    gpus = readings(FakeNvml(1))
    assert place_trial(gpus, Resources(gpus_per_trial=0), [(0, 1.0)]) == ()
    assert place_trial([], Resources(gpus_per_trial=0), []) == ()
    assert cuda_visible_devices(()) == ""


def test_two_gpus_per_trial_takes_pairs() -> None:
    gpus = readings(FakeNvml(4))
    claims: list[tuple[int, float]] = []
    two = Resources(gpus_per_trial=2)
    first, second = start(gpus, two, claims), start(gpus, two, claims)
    assert first is not None and second is not None
    assert len(first) == 2 and len(second) == 2 and not set(first) & set(second)
    assert start(gpus, two, claims) is None
    assert cuda_visible_devices(first) == f"{first[0]},{first[1]}"


def test_least_loaded_gpu_is_preferred() -> None:
    fake = FakeNvml([FakeGpu(util=40, memory_used=10 * GIB), FakeGpu(util=5, memory_used=2 * GIB),
                     FakeGpu(util=5, memory_used=1 * GIB)])
    assert place_trial(readings(fake), Resources(gpus_per_trial=1), []) == (2,)


def test_gpu_busy_with_a_colleagues_job_is_skipped() -> None:
    fake = FakeNvml([FakeGpu(util=95, processes={999_999: 20 * GIB}), FakeGpu(memory_used=60 * GIB), FakeGpu()])
    gpus = readings(fake)
    one = Resources(gpus_per_trial=1)
    claims: list[tuple[int, float]] = []
    assert start(gpus, one, claims) == (2,)
    assert start(gpus, one, claims) is None  # GPU 0 busy by util, GPU 1 by memory (75 %)
    line = why_waiting(gpus, one, claims)
    assert "GPU 0 busy with other jobs (95% util)" in line and "GPU 1 busy with other jobs (75% memory)" in line
    assert "avoid_busy: false" in line


def test_avoid_busy_off_and_thresholds_are_honoured() -> None:
    gpus = readings(FakeNvml([FakeGpu(util=95)]))
    assert place_trial(gpus, Resources(gpus_per_trial=1, avoid_busy=False), []) == (0,)
    assert place_trial(gpus, Resources(gpus_per_trial=1, busy_util_percent=99), []) == (0,)
    assert place_trial(gpus, Resources(gpus_per_trial=1, busy_util_percent=90), []) is None


def test_two_half_gpu_trials_share_one_gpu_and_a_third_goes_elsewhere() -> None:
    gpus = readings(FakeNvml(2))
    half = Resources(gpus_per_trial=0.5)
    claims: list[tuple[int, float]] = []
    first, second, third = (start(gpus, half, claims) for _ in range(3))
    assert first == second
    assert third is not None and third != first
    assert claimed_fractions(claims) == {first[0]: 1.0, third[0]: 0.5}


def test_a_busy_shared_gpu_still_takes_its_second_half_trial() -> None:
    """Our own 0.5 trial working hard must not make its GPU look like a colleague's."""
    fake = FakeNvml([FakeGpu(util=99, memory_used=70 * GIB), FakeGpu()])
    assert place_trial(readings(fake), Resources(gpus_per_trial=0.5), [(0, 0.5)]) == (0,)


def test_three_thirds_fit_on_one_gpu_despite_rounding() -> None:
    gpus = readings(FakeNvml(1))
    third = Resources(gpus_per_trial=1 / 3)
    claims: list[tuple[int, float]] = []
    assert [start(gpus, third, claims) for _ in range(4)] == [(0,), (0,), (0,), None]


def test_whole_gpu_trial_needs_a_gpu_nobody_claims() -> None:
    gpus = readings(FakeNvml(2))
    one = Resources(gpus_per_trial=1)
    assert place_trial(gpus, one, [(0, 0.25)]) == (1,)
    assert place_trial(gpus, one, [(0, 0.25), (1, 0.5)]) is None


def test_allow_list_restricts_the_gpus() -> None:
    gpus = readings(FakeNvml(4))
    allowed = Resources(gpus_per_trial=1, gpus=(1, 3))
    claims: list[tuple[int, float]] = []
    assert sorted([start(gpus, allowed, claims), start(gpus, allowed, claims)]) == [(1,), (3,)]
    assert start(gpus, allowed, claims) is None


def test_placement_keeps_working_on_claims_when_nvml_fails_mid_run() -> None:
    fake = FakeNvml(2)
    monitor = ResourceMonitor(fake, cache_s=0)
    fake.fail("GPU is lost")
    gpus = monitor.gpus()
    assert [g.util_percent for g in gpus] == [None, None]
    claims: list[tuple[int, float]] = []
    one = Resources(gpus_per_trial=1)
    assert sorted([start(gpus, one, claims), start(gpus, one, claims)]) == [(0,), (1,)]
    assert start(gpus, one, claims) is None
    assert check_request(one, gpus, monitor.unavailable_reason) is None


def test_two_engines_sharing_claims_never_oversubscribe() -> None:
    """Study A runs half-GPU trials, study B whole-GPU trials, on one 3-GPU box, with churn."""
    gpus = readings(FakeNvml(3))
    engines = {"A": Resources(gpus_per_trial=0.5), "B": Resources(gpus_per_trial=1)}
    running: list[tuple[str, tuple[int, ...]]] = []
    rng = random.Random(7)
    placed_count = {"A": 0, "B": 0}
    for _ in range(300):
        claims = [c for name, placed in running for c in claims_for(placed, engines[name])]
        name = rng.choice("AB")
        if running and rng.random() < 0.4:
            running.pop(rng.randrange(len(running)))
            continue
        placed = place_trial(gpus, engines[name], claims)
        if placed is not None:
            running.append((name, placed))
            placed_count[name] += 1
        totals = claimed_fractions(c for n, p in running for c in claims_for(p, engines[n]))
        assert all(total <= 1.0 + 1e-9 for total in totals.values())
    assert placed_count["A"] > 20 and placed_count["B"] > 20


@settings(max_examples=150, deadline=None)
@given(
    n_gpus=st.integers(1, 4),
    fractions=st.lists(st.sampled_from([0.25, 1 / 3, 0.5, 1.0, 2.0]), min_size=1, max_size=3),
    steps=st.lists(st.tuples(st.integers(0, 2), st.booleans()), max_size=40),
)
def test_any_mix_of_studies_respects_capacity(n_gpus: int, fractions: list[float],
                                              steps: list[tuple[int, bool]]) -> None:
    gpus = readings(FakeNvml(n_gpus))
    studies = [Resources(gpus_per_trial=f) for f in fractions]
    running: list[tuple[int, tuple[int, ...]]] = []
    for who, release in steps:
        study = who % len(studies)
        if release and running:
            running.pop(0)
            continue
        claims = [c for s, p in running for c in claims_for(p, studies[s])]
        placed = place_trial(gpus, studies[study], claims)
        if placed is None:
            continue
        assert len(placed) == max(1, int(studies[study].gpus_per_trial)) and len(set(placed)) == len(placed)
        running.append((study, placed))
        totals = claimed_fractions(c for s, p in running for c in claims_for(p, studies[s]))
        assert all(total <= 1.0 + 1e-9 for total in totals.values())
        assert set(totals) <= set(range(n_gpus))


def test_no_gpu_request_on_a_machine_without_gpus_is_a_clear_error() -> None:
    monitor = ResourceMonitor(FakeNvml(init_error="NVML Shared Library Not Found"))
    message = check_request(Resources(gpus_per_trial=1), monitor.gpus(), monitor.unavailable_reason)
    assert message == ("resources.gpus_per_trial: 1 GPU per trial asked but no NVIDIA GPU is visible "
                       "(NVML: NVML Shared Library Not Found); set gpus_per_trial: 0 to run on CPU")
    assert check_request(Resources(gpus_per_trial=1), monitor) == message  # the monitor itself will do
    assert check_request(Resources(gpus_per_trial=0), monitor.gpus(), monitor.unavailable_reason) is None
    half = check_request(Resources(gpus_per_trial=0.5), [], None)
    assert half is not None and "0.5 of a GPU per trial" in half and "NVML lists no devices" in half


def test_more_gpus_per_trial_than_allowed_is_a_clear_error() -> None:
    gpus = readings(FakeNvml(2))
    assert check_request(Resources(gpus_per_trial=4), gpus) == (
        "resources.gpus_per_trial: 4 GPUs per trial asked but this machine has 2 (GPUs 0, 1); lower gpus_per_trial")
    limited = check_request(Resources(gpus_per_trial=2, gpus=(1,)), gpus)
    assert limited is not None and "resources.gpus allows 1 (GPU 1)" in limited
    assert check_request(Resources(gpus_per_trial=2), gpus) is None


def test_allow_list_naming_absent_gpus_is_a_clear_error() -> None:
    gpus = readings(FakeNvml(2))
    assert check_request(Resources(gpus_per_trial=1, gpus=(0, 5, 7)), gpus) == (
        "resources.gpus: GPUs 5, 7 not on this machine (it has GPUs 0, 1); list only those or remove resources.gpus")


@pytest.mark.parametrize("indices, expected", [((0,), "0"), ((1, 3), "1,3"), ((), "")])
def test_trial_environment_names_gpus_in_nvml_order(indices: tuple[int, ...], expected: str) -> None:
    assert trial_gpu_env(indices) == {"CUDA_VISIBLE_DEVICES": expected, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def test_claims_read_back_from_the_database_block_the_same_gpus() -> None:
    """What a trial records (CUDA_VISIBLE_DEVICES text, fraction per GPU) is what the next placement reads."""
    gpus = readings(FakeNvml(4))
    two, half = Resources(gpus_per_trial=2), Resources(gpus_per_trial=0.5)
    placed = place_trial(gpus, two, [])
    assert placed is not None
    rows = [(cuda_visible_devices(placed), claims_for(placed, two)[0][1]), ("3", 0.5), (None, None), ("", 1.0)]
    claims = claims_from_rows(rows)
    assert claims == [(placed[0], 1.0), (placed[1], 1.0), (3, 0.5)]
    assert place_trial(gpus, half, claims) == (3,)
    assert place_trial(gpus, two, claims) is None


# --- memory-aware packing (resources.gpu_memory) ------------------------------------------------

from hpotui.engine.gpus.placement import Claim, available_bytes, placement_reason  # noqa: E402


def memory(gib: float) -> Resources:
    return Resources(gpus_per_trial=1, gpu_memory=int(gib * GIB))


def start_by_memory(readings_: list[GpuReading], resources: Resources, claims: list[Claim]) -> tuple[int, ...] | None:
    placed = place_trial(readings_, resources, claims)
    if placed:
        claims.extend(Claim(i, f, resources.gpu_memory) for i, f in claims_for(placed, resources, readings_))
    return placed


def test_mixed_sizes_pack_onto_one_gpu_while_they_fit() -> None:
    gpus = readings(FakeNvml(2))  # 80 GiB each
    claims: list[Claim] = []
    assert start_by_memory(gpus, memory(30), claims) == (0,)
    assert start_by_memory(gpus, memory(12), claims) == (0,)   # best fit: the fuller GPU still has room
    assert start_by_memory(gpus, memory(30), claims) == (0,)   # 72 of 80
    assert start_by_memory(gpus, memory(12), claims) == (1,)   # 8 GiB left on GPU 0: not enough
    assert start_by_memory(gpus, memory(8), claims) == (0,)    # exactly the 8 GiB left
    assert placement_reason(gpus[0], 0, claims) == "GPU 0: 4 trials, 80 of 80 GiB claimed"
    assert placement_reason(gpus[1], 1, claims) == "GPU 1: 1 trial, 12 of 80 GiB claimed"


def test_claimed_but_not_yet_used_memory_is_not_free() -> None:
    """NVML says 80 GiB free, but a trial placed a second ago was promised 50 of them."""
    gpu = readings(FakeNvml(1))[0]
    fresh = [Claim(0, 50 / 80, 50 * GIB, used_bytes=None)]
    assert available_bytes(gpu, fresh) == 30 * GIB
    assert place_trial([gpu], memory(40), fresh) is None
    line = why_waiting([gpu], memory(40), fresh)
    assert line == "waiting for 40 GiB on one GPU: GPU 0 30 GiB free (1 trial, 50 of 80 GiB claimed)"


def test_memory_a_trial_already_uses_counts_once() -> None:
    fake = FakeNvml([FakeGpu(memory_used=45 * GIB)])  # the claimed trial now holds 45 of its 50 GiB
    gpu = readings(fake)[0]
    loaded = [Claim(0, 50 / 80, 50 * GIB, used_bytes=45 * GIB)]
    assert available_bytes(gpu, loaded) == 30 * GIB


def test_other_users_memory_is_taken_from_what_is_free() -> None:
    fake = FakeNvml([FakeGpu(memory_used=60 * GIB, processes={4242: 60 * GIB}), FakeGpu(memory_used=10 * GIB)])
    gpus = readings(fake)
    both_on = Resources(gpus_per_trial=1, gpu_memory=15 * GIB, avoid_busy=False)
    assert place_trial(gpus, both_on, []) == (0,)  # 20 GiB free there: the tighter fit
    assert place_trial(gpus, Resources(gpus_per_trial=1, gpu_memory=25 * GIB, avoid_busy=False), []) == (1,)


def test_a_whole_gpu_claim_or_fractions_leave_no_memory() -> None:
    gpus = readings(FakeNvml(1))
    assert place_trial(gpus, memory(1), [Claim(0, 1.0)]) is None
    assert place_trial(gpus, memory(30), [Claim(0, 0.5), Claim(0, 0.25)]) is None  # 60 of 80 claimed by fractions
    assert place_trial(gpus, memory(20), [Claim(0, 0.5), Claim(0, 0.25)]) == (0,)


def test_unknown_gpu_size_means_one_memory_trial_per_gpu() -> None:
    gpus = [GpuReading(index=0), GpuReading(index=1)]
    claims: list[Claim] = []
    assert start_by_memory(gpus, memory(4), claims) == (0,)
    assert start_by_memory(gpus, memory(4), claims) == (1,)
    assert start_by_memory(gpus, memory(4), claims) is None
    assert placement_reason(gpus[0], 0, claims) == "GPU 0: 1 trial, 1 of 1 GPU claimed"


def test_asking_for_more_memory_than_any_gpu_has_is_a_clear_error() -> None:
    gpus = readings(FakeNvml([FakeGpu(memory_total=24 * GIB), FakeGpu(memory_total=48 * GIB)]))
    assert check_request(memory(64), gpus) == ("resources.gpu_memory: 64 GiB per trial asked but the largest allowed "
                                               "GPU has 48 GiB; lower gpu_memory (or use gpus_per_trial: 2 and no "
                                               "gpu_memory)")
    assert check_request(memory(40), gpus) is None
    assert check_request(Resources(gpus_per_trial=1, gpus=(0,), gpu_memory=40 * GIB), gpus) is not None


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([4, 10, 12, 17.5, 30, 40, 79]), min_size=1, max_size=4),
    others=st.lists(st.sampled_from([0, 10, 30]), min_size=2, max_size=2),
    steps=st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=50),
)
def test_memory_claims_never_exceed_what_a_gpu_has(sizes: list[float], others: list[int],
                                                   steps: list[tuple[int, bool]]) -> None:
    """Studies of mixed gpu_memory sizes and fraction trials, other users' memory: never more than the GPU."""
    fake = FakeNvml([FakeGpu(memory_used=o * GIB, processes={9000 + o: o * GIB} if o else {}) for o in others])
    gpus = readings(fake)
    studies = [memory(s) for s in sizes] + [Resources(gpus_per_trial=0.5, avoid_busy=False)]
    running: list[Claim] = []
    for who, release in steps:
        if release and running:
            running.pop(0)
            continue
        study = studies[who % len(studies)]
        placed = start_by_memory(gpus, replace_busy(study), running)
        for g in gpus:
            held = [c for c in running if c.gpu == g.index]
            assert sum(c.fraction for c in held) <= 1 + 1e-9
            if study.gpu_memory is None or not placed or placed[0] != g.index:
                continue  # a fraction is the user's share, not a memory figure: checked by the test above
            reserved = sum(c.memory_bytes if c.memory_bytes is not None else c.fraction * g.memory_total_bytes for c in held)  # type: ignore[operator]
            assert reserved + (g.memory_used_bytes or 0) <= g.memory_total_bytes + 1  # type: ignore[operator]


def replace_busy(resources: Resources) -> Resources:
    from dataclasses import replace

    return replace(resources, avoid_busy=False)


def test_readings_taken_a_moment_apart_never_count_memory_twice_as_free() -> None:
    """The GPU reading says 0 used (older); the process reading already shows the trial's 28 GiB."""
    gpu = readings(FakeNvml(1))[0]
    assert available_bytes(gpu, [Claim(0, 30 / 80, 30 * GIB, used_bytes=28 * GIB)]) == 50 * GIB
    assert available_bytes(gpu, [Claim(0, 30 / 80, 30 * GIB, used_bytes=34 * GIB)]) == 46 * GIB  # over its claim
