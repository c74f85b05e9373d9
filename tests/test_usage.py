"""Resource sampling into the study file: what the GPU panel and `status` read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hpotui.engine.database.store import Store
from hpotui.engine.executors.local import LocalExecutor
from hpotui.engine.machine.resources import ResourceMonitor
from hpotui.engine.machine.resources_nvml import FakeGpu, FakeNvml
from hpotui.engine.machine.usage import UsageSampler
from tests.store_rows import bare_study, bare_trial


def make_store(tmp_path: Path) -> tuple[Store, int, int]:
    store = Store(tmp_path / "h.db")
    study = bare_study(store)
    return store, study.id, bare_trial(store, study, tmp_path).id


def test_gpu_and_host_rows_land_and_the_trials_peak_memory_is_kept(tmp_path: Path) -> None:
    store, study_id, trial_id = make_store(tmp_path)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        gpu = FakeGpu(util=80.0, memory_used=3 * 2**30, processes={worker.pid: 2 * 2**30})
        sampler = UsageSampler(store, study_id, LocalExecutor(), ResourceMonitor(FakeNvml([gpu, FakeGpu()]), cache_s=0))
        sampler.sample({trial_id: (1, worker.pid, "0")})
        gpu.processes[worker.pid] = 5 * 2**30
        gpu.util = 40.0
        sampler.sample({trial_id: (1, worker.pid, "0")})
        sampler.trial_ended(trial_id)
    finally:
        worker.kill()
        worker.wait()
    rows = store.conn.execute("SELECT gpu, util, memory_used FROM gpu_samples ORDER BY id").fetchall()
    assert [tuple(r) for r in rows[:2]] == [(0, 80.0, 3 * 2**30), (1, 0.0, 0)]
    assert store.conn.execute("SELECT COUNT(*) FROM host_samples").fetchone()[0] == 2
    peak, mean = store.conn.execute("SELECT peak_gpu_memory, mean_gpu_util FROM trials WHERE id = ?",
                                    (trial_id,)).fetchone()
    assert peak == 5 * 2**30 and mean == 60.0


def test_nvml_failing_mid_run_is_recorded_once_and_never_raises(tmp_path: Path) -> None:
    store, study_id, trial_id = make_store(tmp_path)
    nvml = FakeNvml(1)
    sampler = UsageSampler(store, study_id, LocalExecutor(), ResourceMonitor(nvml, cache_s=0, retry_s=3600))
    sampler.sample({})
    nvml.fail("GPU is lost")
    sampler.sample({})
    sampler.sample({})
    store.flush()
    events = [e.message for e in store.events(study_id, kinds=("gpu_readings",))]
    assert events == ["GPU readings available", "GPU readings unavailable: GPU is lost"]
    last = store.conn.execute("SELECT util FROM gpu_samples ORDER BY id DESC LIMIT 1").fetchone()
    assert last[0] is None  # NA, not a stale number


def test_a_ray_executor_reports_node_gpus_and_no_local_trial_usage(tmp_path: Path) -> None:
    store, study_id, trial_id = make_store(tmp_path)

    class Cluster:  # the executor interface's part that sampling uses
        places_gpus = True

        def gpu_readings(self):
            from hpotui.engine.machine.resources import GpuReading
            return {"node-b": [GpuReading(index=0, name="H100", util_percent=55.0)]}

    sampler = UsageSampler(store, study_id, Cluster(), ResourceMonitor(FakeNvml(0), cache_s=0))
    sampler.sample({trial_id: (1, os.getpid(), "0")})
    rows = store.conn.execute("SELECT host, gpu, name, util FROM gpu_samples").fetchall()
    assert [tuple(r) for r in rows] == [("node-b", 0, "H100", 55.0)]
