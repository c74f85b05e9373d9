"""Readings that never raise: GPUs through FakeNvml, host and trials through real processes, hints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Iterator

import pytest

from hpotui.engine.machine.resources import (LOW_UTIL_HINT, OOM_HINT, ResourceMonitor, is_cuda_oom, low_utilisation_hint,
                              process_trees)
from hpotui.engine.machine.resources_nvml import GIB, FakeGpu, FakeNvml


class Clock:
    """A hand-turned clock so cache and retry timing need no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- GPU readings --------------------------------------------------------------------------

def test_readings_report_every_gpu_in_our_units() -> None:
    fake = FakeNvml([FakeGpu(name="NVIDIA H100 80GB HBM3", util=87, memory_used=30 * GIB, temperature=61,
                             power_w=412.5), FakeGpu()])
    monitor = ResourceMonitor(fake)
    first, second = monitor.gpus()
    assert monitor.available() and monitor.unavailable_reason is None
    assert (first.index, first.name, first.uuid) == (0, "NVIDIA H100 80GB HBM3", "GPU-fake-0000")
    assert (first.util_percent, first.temperature_c, first.power_w) == (87.0, 61.0, 412.5)
    assert first.memory_used_bytes == 30 * GIB and first.memory_total_bytes == 80 * GIB
    assert first.memory_percent == pytest.approx(37.5)
    assert second.index == 1


def test_no_driver_means_no_gpus_and_a_reason_never_an_exception() -> None:
    monitor = ResourceMonitor(FakeNvml(init_error="Driver Not Loaded"))
    assert monitor.gpus() == [] and not monitor.available()
    assert monitor.unavailable_reason == "Driver Not Loaded"
    assert monitor.gpu_processes() == {}
    usage = monitor.trial_usage({"t1": os.getpid()})["t1"]
    assert usage.gpu_memory_bytes is None and usage.gpu_util_percent is None and usage.rss_bytes


def test_real_nvml_on_this_machine_never_raises() -> None:
    """Whatever this machine is (no GPU in CI), the real backend answers one way or the other."""
    import pynvml

    try:
        pynvml.nvmlInit()
        expected = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        expected = None
    monitor = ResourceMonitor()
    if expected is None:
        assert not monitor.available() and monitor.gpus() == [] and monitor.unavailable_reason
    else:
        assert monitor.available() and len(monitor.gpus()) == expected
    monitor.close()


def test_nvml_failing_mid_run_turns_readings_into_na_and_recovers() -> None:
    clock = Clock()
    fake = FakeNvml([FakeGpu(util=50, memory_used=4 * GIB), FakeGpu()])
    monitor = ResourceMonitor(fake, cache_s=2, retry_s=30, clock=clock)
    assert monitor.gpus()[0].util_percent == 50

    fake.fail("GPU is lost")
    clock.now += 3
    lost = monitor.gpus()
    assert not monitor.available() and monitor.unavailable_reason == "GPU is lost"
    assert [(g.index, g.name, g.memory_total_bytes) for g in lost] == [(0, "Fake GPU 80GB", 80 * GIB),
                                                                       (1, "Fake GPU 80GB", 80 * GIB)]
    assert all(g.util_percent is None and g.memory_used_bytes is None and g.power_w is None for g in lost)
    assert monitor.gpu_processes() == {}

    fake.recover()
    clock.now += 10
    assert not monitor.available()  # no retry before retry_s: a dead driver is not hammered
    clock.now += 30
    assert monitor.available() and monitor.gpus()[0].util_percent == 50


def test_one_unsupported_reading_is_na_without_losing_the_gpu() -> None:
    fake = FakeNvml([FakeGpu(power_w=100, unsupported=frozenset({"power_w", "temperature"}))])
    monitor = ResourceMonitor(fake)
    (gpu,) = monitor.gpus()
    assert gpu.power_w is None and gpu.temperature_c is None and gpu.util_percent == 0
    assert monitor.available()


def test_readings_are_cached_for_a_few_seconds() -> None:
    clock = Clock()
    fake = FakeNvml([FakeGpu(util=10)])
    monitor = ResourceMonitor(fake, cache_s=2, clock=clock)
    assert monitor.gpus()[0].util_percent == 10
    calls = fake.calls
    fake.gpus[0].util = 90
    clock.now += 1
    assert monitor.gpus()[0].util_percent == 10 and fake.calls == calls
    clock.now += 1.5
    assert monitor.gpus()[0].util_percent == 90


# --- host and trials (real processes) --------------------------------------------------------

def test_host_reading_has_cpu_ram_and_load() -> None:
    monitor = ResourceMonitor(FakeNvml(0))
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        pass  # burn a little CPU so the figure has something to measure
    host = monitor.host()
    assert host.cpu_percent is not None and 0 < host.cpu_percent <= 100
    assert host.ram_total_bytes and 0 < host.ram_used_bytes <= host.ram_total_bytes  # type: ignore[operator]
    assert host.cpu_count and host.cpu_count >= 1
    assert host.load_1m is not None and host.load_1m >= 0


TRIAL = textwrap.dedent("""
    import os, subprocess, sys, time
    # a dataloader-like worker that outlives its parent: re-parented to init, same process group
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: pass"])
    print(orphan.pid, child.pid, flush=True)
    time.sleep(60)
""")


@pytest.fixture
def trial() -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """A trial started the way the runner starts it: its own session, so pgid == pid."""
    proc = subprocess.Popen([sys.executable, "-c", TRIAL], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    orphan, child = (int(x) for x in proc.stdout.readline().split())
    try:
        yield proc, orphan, child
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_trial_usage_sums_its_process_tree_and_maps_gpu_memory(trial: tuple[subprocess.Popen[str], int, int]) -> None:
    proc, orphan, child = trial
    foreign = 999_999_999
    fake = FakeNvml([FakeGpu(util=20, processes={foreign: 30 * GIB}),
                     FakeGpu(util=80, processes={child: 3 * GIB, orphan: 1 * GIB})])
    monitor = ResourceMonitor(fake, cache_s=0)
    first = monitor.trial_usage({"t1": proc.pid})["t1"]
    assert set(first.pids) == {proc.pid, orphan, child}
    assert first.gpu_memory_bytes == 4 * GIB  # the colleague's 30 GiB on GPU 0 is not ours
    assert first.gpu_indices == (1,) and first.gpu_util_percent == 80
    assert first.cpu_percent is None  # CPU time needs a second reading
    assert first.rss_bytes and first.rss_bytes > 3 * 1024 * 1024

    time.sleep(0.5)
    second = monitor.trial_usage({"t1": proc.pid})["t1"]
    assert second.cpu_percent is not None and second.cpu_percent > 20  # the busy-looping child


def test_orphaned_workers_stay_counted_after_the_parent_exits(trial: tuple[subprocess.Popen[str], int, int]) -> None:
    proc, orphan, child = trial
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert process_trees([proc.pid])[proc.pid] == {orphan, child}
    fake = FakeNvml([FakeGpu(processes={orphan: 2 * GIB})])
    usage = ResourceMonitor(fake).trial_usage({"t1": proc.pid}, gpus={"t1": [0]})["t1"]
    assert usage.gpu_memory_bytes == 2 * GIB and usage.gpu_util_percent == 0


def test_a_finished_trial_reads_as_empty_not_as_an_error() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    usage = ResourceMonitor(FakeNvml(1)).trial_usage({"gone": proc.pid}, gpus={"gone": [0]})["gone"]
    assert usage.pids == () and usage.rss_bytes is None and usage.cpu_percent is None
    assert usage.gpu_memory_bytes == 0 and usage.gpu_util_percent == 0


def test_unreported_process_memory_is_na_not_zero(trial: tuple[subprocess.Popen[str], int, int]) -> None:
    proc, _, child = trial
    fake = FakeNvml([FakeGpu(processes={child: None})])  # what NVML gives without permission (WDDM, some VMs)
    usage = ResourceMonitor(fake).trial_usage({"t1": proc.pid})["t1"]
    assert usage.gpu_memory_bytes is None and usage.gpu_indices == (0,)


# --- hints -------------------------------------------------------------------------------------

def test_low_utilisation_for_minutes_gives_the_dataloader_hint() -> None:
    samples = [(t * 10.0, 12.0 + t % 5) for t in range(0, 37)]  # six minutes at 12-16 %
    assert low_utilisation_hint(samples, minutes=5) == f"GPU under 30 % for 5 min: {LOW_UTIL_HINT}"


def test_no_hint_while_the_history_is_short_or_the_gpu_works() -> None:
    assert low_utilisation_hint([(t * 10.0, 5.0) for t in range(20)], minutes=5) is None  # 3 min 10 s only
    busy_once = [(t * 10.0, 5.0) for t in range(37)]
    busy_once[30] = (300.0, 95.0)
    assert low_utilisation_hint(busy_once, minutes=5) is None
    assert low_utilisation_hint([], minutes=5) is None
    unknown = [(t * 10.0, None) for t in range(37)]
    assert low_utilisation_hint(unknown, minutes=5) is None  # NA readings prove nothing


def test_an_idle_gpu_gets_a_different_hint() -> None:
    hint = low_utilisation_hint([(t * 30.0, 0.0) for t in range(12)], minutes=5)
    assert hint is not None and "is the model on the GPU?" in hint


@pytest.mark.parametrize("tail", [
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of "
    "79.10 GiB of which 3.2 GiB is free.",
    "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 512.00 MiB (GPU 0; 23.65 GiB total capacity)",
    "RuntimeError: CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
    "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "RuntimeError: cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.2GiB.",
])
def test_cuda_out_of_memory_is_recognised(tail: str) -> None:
    assert is_cuda_oom("Traceback (most recent call last):\n  ...\n" + tail)
    assert "lower the batch size" in OOM_HINT


@pytest.mark.parametrize("tail", [
    "ValueError: val_acc is NaN",
    "RuntimeError: CUDA error: device-side assert triggered",
    "Killed",  # the host OOM killer: not a GPU batch-size problem
    "MemoryError",
    "",
])
def test_other_failures_are_not_called_oom(tail: str) -> None:
    assert not is_cuda_oom(tail)

