"""The real NVML path on a real NVIDIA GPU, with real CUDA trials started by PyTorch.

Skipped as a whole, with the NVML error as the reason, where ``pynvml.nvmlInit()`` fails
(CI, laptops, this project's development machine). What the fake NVML cannot prove is
checked here: our readings agree with NVML, a trial placed through CUDA_VISIBLE_DEVICES
lands on the GPU we chose, its memory is attributed to it, and a real CUDA OOM is
recognised.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from hpotui.engine.gpus.placement import check_request, place_trial, trial_gpu_env
from hpotui.engine.machine.resources import GpuReading, ResourceMonitor, is_cuda_oom
from hpotui.engine.space_file.space import Resources

pynvml = pytest.importorskip("pynvml")
GIB = 1024 ** 3


def _nvml_problem() -> str | None:
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - any failure means: no GPU to test on
        return str(exc) or exc.__class__.__name__
    try:
        return None if pynvml.nvmlDeviceGetCount() > 0 else "NVML lists no devices"
    finally:
        pynvml.nvmlShutdown()


PROBLEM = _nvml_problem()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(PROBLEM is not None, reason=f"no NVIDIA GPU (NVML: {PROBLEM})")]

# A trial: take 1 GiB on its (only visible) GPU, say which GPU it is, then keep the GPU busy.
TRIAL = textwrap.dedent("""
    import sys, time
    import torch
    if not torch.cuda.is_available():
        print("no-cuda", flush=True)
        sys.exit(0)
    block = torch.empty(1024 ** 3, dtype=torch.uint8, device="cuda")
    a = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    uuid = getattr(torch.cuda.get_device_properties(0), "uuid", "")
    print("ready", torch.cuda.device_count(), uuid, flush=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        a = (a @ a).clamp_(-1, 1)
    torch.cuda.synchronize()
""")

OOM = textwrap.dedent("""
    import sys
    import torch
    if not torch.cuda.is_available():
        print("no-cuda", flush=True)
        sys.exit(0)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.empty(2 * total, dtype=torch.uint8, device="cuda")
""")


@pytest.fixture
def monitor() -> Iterator[ResourceMonitor]:
    m = ResourceMonitor(cache_s=0)
    yield m
    m.close()


def test_readings_agree_with_nvml(monitor: ResourceMonitor) -> None:
    pynvml.nvmlInit()
    try:
        count = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        names = [pynvml.nvmlDeviceGetName(h) for h in handles]
        totals = [pynvml.nvmlDeviceGetMemoryInfo(h).total for h in handles]
    finally:
        pynvml.nvmlShutdown()
    readings = monitor.gpus()
    assert monitor.available() and monitor.unavailable_reason is None
    assert [g.index for g in readings] == list(range(count))
    assert [g.name for g in readings] == [n.decode() if isinstance(n, bytes) else n for n in names]
    assert [g.memory_total_bytes for g in readings] == totals
    for g in readings:
        assert g.uuid and g.uuid.startswith(("GPU-", "MIG-"))
        assert g.util_percent is not None and 0 <= g.util_percent <= 100
        assert g.memory_used_bytes is not None and 0 <= g.memory_used_bytes <= g.memory_total_bytes  # type: ignore[operator]
        assert g.temperature_c is None or 0 < g.temperature_c < 120
        assert g.power_w is None or 0 < g.power_w < 2000
    print(f"\nGPU readings: {readings}")


def test_requests_are_checked_against_the_real_gpu_count(monitor: ResourceMonitor) -> None:
    readings = monitor.gpus()
    assert check_request(Resources(gpus_per_trial=1), readings) is None
    too_many = check_request(Resources(gpus_per_trial=len(readings) + 1), readings)
    assert too_many is not None and f"this machine has {len(readings)}" in too_many


def _start_trial(placed: tuple[int, ...]) -> subprocess.Popen[str]:
    env = {**os.environ, **trial_gpu_env(placed), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", TRIAL], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_a_placed_trial_runs_on_its_gpu_and_its_usage_is_attributed(monitor: ResourceMonitor) -> None:
    before = monitor.gpus()
    placed = place_trial(before, Resources(gpus_per_trial=1, avoid_busy=False), claims=[])
    assert placed is not None and len(placed) == 1
    (index,) = placed
    proc = _start_trial(placed)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if line[:1] == ["no-cuda"]:
            pytest.skip("this PyTorch build has no CUDA")
        assert line[:2] == ["ready", "1"], proc.stderr.read() if proc.stderr else line  # sees exactly one GPU
        seen_uuid = line[2].lower().removeprefix("gpu-") if len(line) > 2 else ""
        if len(seen_uuid) == 36:  # torch's text for the uuid differs between versions: check when it is one
            assert (before[index].uuid or "").lower().endswith(seen_uuid)  # CUDA's GPU 0 is the one we chose

        def gpu_memory_grew() -> bool:
            now = monitor.gpus()[index].memory_used_bytes or 0
            return now - (before[index].memory_used_bytes or 0) >= GIB
        assert _wait(gpu_memory_grew, 30)

        usage = {}

        def attributed() -> bool:
            usage.update(monitor.trial_usage({"t1": proc.pid}, gpus={"t1": placed}))
            u = usage["t1"]
            return (u.gpu_memory_bytes or 0) >= GIB and (u.gpu_util_percent or 0) >= 50
        if not _wait(attributed, 30):
            nvml_pids = set(monitor.gpu_processes().get(index, {}))
            if nvml_pids and not any(os.path.exists(f"/proc/{pid}") for pid in nvml_pids):
                pytest.skip(f"NVML's pids {sorted(nvml_pids)} are from another pid namespace (container)")
            pytest.fail(f"trial usage never showed the GPU: {usage.get('t1')}, NVML processes {nvml_pids}")
        u = usage["t1"]
        assert u.gpu_indices == placed and u.rss_bytes and proc.pid in u.pids
        print(f"\nplaced on GPU {index}: {monitor.gpus()[index]}\ntrial usage: {u}")

        # a second whole-GPU trial must not land on the GPU this one holds
        again = place_trial(monitor.gpus(), Resources(gpus_per_trial=1, avoid_busy=False), claims=[(index, 1.0)])
        assert again is None or index not in again
        # and a colleague's trial (no claim) makes the GPU busy for avoid_busy
        foreign: GpuReading = monitor.gpus()[index]
        assert place_trial([foreign], Resources(gpus_per_trial=1, busy_util_percent=50), claims=[]) is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_real_cuda_out_of_memory_is_recognised() -> None:
    result = subprocess.run([sys.executable, "-c", OOM], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **trial_gpu_env((0,))})
    if result.stdout.startswith("no-cuda"):
        pytest.skip("this PyTorch build has no CUDA")
    assert result.returncode != 0
    assert is_cuda_oom(result.stderr[-4000:]), result.stderr[-2000:]


# --- sharing: a packed study of the digits trainer, and a real OOM beside a neighbour -------------------

SHARED_OOM_TRIAL = textwrap.dedent("""
    import sys, time
    import torch
    total = torch.cuda.get_device_properties(0).total_memory
    block = torch.empty(int(0.6 * total), dtype=torch.uint8, device="cuda")  # two of these cannot share a GPU
    torch.cuda.synchronize()
    time.sleep(float(sys.argv[1]))
    print('@hpotui {"epoch": 1, "val_acc": 0.5}', flush=True)
""")


def _launch(tmp_path: Path, space: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    from tests.conftest import cli_env

    (tmp_path / "s.yaml").write_text(textwrap.dedent(space))
    db = tmp_path / "h.db"
    env = cli_env({"HPOTUI_CLAIMS_DIR": str(tmp_path / "claims")})
    result = subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "launch", "s.yaml", "--headless",
                             "--db", str(db)], cwd=tmp_path, env=env, text=True, capture_output=True, timeout=540)
    return result, db


def test_a_packed_digits_study_runs_on_cuda_and_says_where_each_trial_went(tmp_path: Path) -> None:
    trainer = Path(__file__).resolve().parents[1] / "sample_spaces" / "train_digits.py"
    result, db = _launch(tmp_path, f"""
        name: digits-packed
        command: python {trainer} --lr {{lr}} --width {{width}} --batch-size 64 --epochs 40
        objective: {{metric: val_acc, mode: max}}
        search: {{algorithm: random, seed: 0}}
        budget: {{max_trials: 8, max_parallel: 4}}
        resources: {{gpu_memory: 1GiB, avoid_busy: false}}
        space:
          lr: {{type: loguniform, low: 1e-3, high: 0.1}}
          width: {{type: int, low: 64, high: 512, log: true}}
    """)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT number, status, gpus, gpu_fraction, gpu_memory, peak_gpu_memory FROM trials").fetchall()
    started = [json.loads(d).get("placement") for (d,) in conn.execute("SELECT data FROM events WHERE kind = 'started'")]
    samples = conn.execute("SELECT gpu, memory_used, memory_total, claimed_memory, claimed_trials, other_memory "
                           "FROM gpu_samples ORDER BY id DESC LIMIT 8").fetchall()
    print("\ntrials (number, status, gpus, fraction, claimed, peak):", rows)
    print("placements:", started)
    print("GPU samples (gpu, used, total, claimed, claimed trials, other):", samples)
    assert all(status == "completed" and gpus for _, status, gpus, *_ in rows)
    assert all(memory == GIB for *_, memory, _ in rows)
    assert any(p and " 1 trial," not in p for p in started)  # at least one GPU held several trials at once
    assert "on cuda" in (tmp_path / "hpotui_runs" / "digits-packed" / "1" / "stdout.log").read_text()


def test_a_real_oom_beside_a_neighbour_runs_again_alone(tmp_path: Path) -> None:
    (tmp_path / "hog.py").write_text(SHARED_OOM_TRIAL)
    result, db = _launch(tmp_path, """
        name: hog
        command: python hog.py {hold}
        objective: {metric: val_acc, mode: max}
        budget: {max_trials: 2, max_parallel: 2}
        resources: {gpus_per_trial: 0.5, gpus: [0], avoid_busy: false}
        space:
          hold: {type: uniform, low: 8, high: 9}
    """)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = sqlite3.connect(db).execute("SELECT id, status, rerun_of, gpu_fraction, status_reason FROM trials").fetchall()
    print("\ntrials (id, status, rerun_of, fraction, reason):", rows)
    failed = [r for r in rows if r[1] == "failed"]
    assert len(failed) == 1 and "out of memory" in (failed[0][4] or "").lower()
    rerun = [r for r in rows if r[2] == failed[0][0]]
    assert rerun and rerun[0][1] == "completed" and rerun[0][3] == 1.0
