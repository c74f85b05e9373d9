"""The engine's GPU placer in process: a real Store, a real claims folder, the fake NVML.

What the loop asks of it: place a trial (registry lock, claim written), learn ``gpu_memory: auto``
from the study's own recorded peaks, and describe every GPU for the samples the GPU panel reads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hpotui.engine.database.store import Store
from hpotui.engine.gpus.gpu_claims import ClaimRegistry
from hpotui.engine.gpus.gpu_memory import GIB, with_margin
from hpotui.engine.gpus.gpu_placer import GpuPlacer
from hpotui.engine.machine.resources import ResourceMonitor
from hpotui.engine.machine.resources_nvml import FakeGpu, FakeNvml
from hpotui.engine.space_file.space import parse_space
from tests.store_rows import bare_study

SPACE = {"name": "p", "command": "python t.py {lr} {batch}", "objective": {"metric": "a", "mode": "max"},
         "budget": {"max_trials": 20, "max_parallel": 4},
         "space": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1},
                   "batch": {"type": "choice", "values": [32, 256]}}}


@pytest.fixture
def claims_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HPOTUI_CLAIMS_DIR", str(tmp_path / "claims"))
    return tmp_path / "claims"


def make(tmp_path: Path, resources: dict, gpus: list[FakeGpu]) -> tuple[Store, Any, GpuPlacer, FakeNvml]:
    space = parse_space(dict(SPACE, resources=resources), "p.yaml", tmp_path)
    store = Store(tmp_path / "h.db")
    study = bare_study(store, "p")
    nvml = FakeNvml(gpus)
    monitor = ResourceMonitor(nvml, cache_s=0)
    return store, study, GpuPlacer(store, study, space, lambda: monitor, lambda _text: None), nvml


def add(store: Store, study: Any, placer: GpuPlacer, params: dict, rerun_of: int | None = None) -> Any:
    def insert(picker: Any) -> Any:
        return store.add_trial(study_id=study.id, params=params, argv=["x"], trial_dir="d", stdout_path="o",
                               stderr_path="e", sample_index=None, rerun_of=rerun_of, seed=None, gpu_picker=picker)

    row = placer.insert(insert, params, rerun_of)
    if row is not None:
        placer.placed(row)
    return row


def test_each_placement_writes_a_host_wide_claim_and_an_end_removes_it(tmp_path: Path, claims_dir: Path) -> None:
    store, study, placer, _ = make(tmp_path, {"gpu_memory": "30GiB"}, [FakeGpu(), FakeGpu()])
    rows = [add(store, study, placer, {"lr": 0.1, "batch": 32}) for _ in range(5)]
    assert [r.gpus for r in rows[:4]] == ["0", "0", "1", "1"] and rows[4] is None  # two 30 GiB per 80 GiB GPU
    assert placer.note_waiting() == ("waiting for 30 GiB on one GPU: GPU 0 20 GiB free (2 trials, 60 of 80 GiB "
                                     "claimed); GPU 1 20 GiB free (2 trials, 60 of 80 GiB claimed)")
    registry = ClaimRegistry.open(claims_dir)
    assert sorted(c.trial_number for c in registry.claims()) == [1, 2, 3, 4]
    assert {c.memory_bytes for c in registry.claims()} == {30 * GIB}
    store.finish_trial(rows[0].id, "completed", exit_code=0, reason=None)
    placer.ended(rows[0], "completed")
    assert sorted(c.trial_number for c in registry.claims()) == [2, 3, 4]
    assert add(store, study, placer, {"lr": 0.1, "batch": 32}).gpus == "0"


def test_another_engines_claims_in_the_folder_keep_this_one_off(tmp_path: Path, claims_dir: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    store_a, study_a, placer_a, _ = make(tmp_path / "a", {"gpus_per_trial": 1}, [FakeGpu(), FakeGpu()])
    store_b, study_b, placer_b, _ = make(tmp_path / "b", {"gpus_per_trial": 0.5}, [FakeGpu(), FakeGpu()])
    assert add(store_a, study_a, placer_a, {"lr": 0.1, "batch": 32}).gpus == "0"
    assert add(store_b, study_b, placer_b, {"lr": 0.1, "batch": 32}).gpus == "1"  # a different database file
    assert add(store_a, study_a, placer_a, {"lr": 0.1, "batch": 32}) is None
    assert placer_a.note_waiting() == "waiting for 1 GPU: GPU 0 1 claimed by running trials; GPU 1 0.5 claimed by running trials"


def test_auto_runs_one_per_gpu_until_measured_then_packs_by_the_peak(tmp_path: Path, claims_dir: Path) -> None:
    store, study, placer, _ = make(tmp_path, {"gpu_memory": "auto"}, [FakeGpu()])
    first = add(store, study, placer, {"lr": 0.01, "batch": 32})
    assert first.gpu_fraction == 1.0
    assert add(store, study, placer, {"lr": 0.01, "batch": 32}) is None  # nothing measured: whole GPU each
    store.set_trial_usage(first.id, 10 * GIB, 90.0)  # what the usage sampler records at the end
    store.finish_trial(first.id, "completed", exit_code=0, reason=None)
    placer.ended(first, "completed")
    estimate = with_margin(10 * GIB)
    assert placer.effective_resources({"lr": 0.02, "batch": 32}, None).gpu_memory == estimate
    packed = [add(store, study, placer, {"lr": 0.02, "batch": 32}) for _ in range(7)]
    assert sum(1 for r in packed if r is not None) == int(80 * GIB // estimate)  # 6 of 12 GiB on 80 GiB
    assert packed[0].gpu_fraction == pytest.approx(estimate / (80 * GIB))


def test_sample_columns_say_claimed_used_and_other(tmp_path: Path, claims_dir: Path) -> None:
    trial = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        gpu = FakeGpu(memory_used=14 * GIB, processes={trial.pid: 8 * GIB, 4_000_000: 6 * GIB})
        store, study, placer, _ = make(tmp_path, {"gpu_memory": "30GiB"}, [gpu, FakeGpu()])
        row = add(store, study, placer, {"lr": 0.1, "batch": 32})
        placer.started(row, trial.pid, None)
        columns = placer.sharing_columns(placer._monitor().gpus())
    finally:
        trial.kill()
        trial.wait()
    assert columns[0] == {"claimed_memory": 30 * GIB, "claimed_trials": 1, "other_memory": 6 * GIB}
    assert columns[1] == {"claimed_memory": 0, "claimed_trials": 0, "other_memory": 0}


def test_after_resume_a_decided_oom_rerun_is_queued_and_still_runs_alone(tmp_path: Path, claims_dir: Path) -> None:
    store, study, placer, _ = make(tmp_path, {"gpus_per_trial": 0.5}, [FakeGpu()])
    first = add(store, study, placer, {"lr": 0.1, "batch": 32})
    add(store, study, placer, {"lr": 0.2, "batch": 32})  # its neighbour on GPU 0
    store.finish_trial(first.id, "failed", exit_code=1, reason="exit code 1: torch.OutOfMemoryError: CUDA out of memory")
    tail = "Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
    assert placer.oom_retry(store.trial(first.id), "failed", tail) is True
    placer.ended(first, "failed")
    resumed = GpuPlacer(store, study, placer.space, placer._monitor, lambda _text: None)  # a new engine
    queued = resumed.pending_reruns(store.trials(study.id), rerun_done=set())
    assert [t.id for t in queued] == [first.id]
    assert resumed.effective_resources(first.params, first.id).gpus_per_trial == 1
    assert resumed.pending_reruns(store.trials(study.id), rerun_done={first.id}) == []


def test_a_database_from_before_gpu_sharing_gains_its_columns(tmp_path: Path) -> None:
    import sqlite3

    from hpotui.engine.database import store as store_module

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    store_module._migration_1(store_module._sqlite_utils().Database(conn))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.schema_version() == store_module.SCHEMA_VERSION
    trial_columns = {r[1] for r in store.conn.execute("PRAGMA table_info(trials)")}
    sample_columns = {r[1] for r in store.conn.execute("PRAGMA table_info(gpu_samples)")}
    assert "gpu_memory" in trial_columns
    assert {"claimed_memory", "claimed_trials", "other_memory"} <= sample_columns
