"""Out of GPU memory: a packed trial runs again alone, once; alone it stays failed; a storm pauses packing.

Trials allocate on the scripted fake box (tests/gpu_box.py); one that does not fit prints PyTorch's
``torch.OutOfMemoryError: CUDA out of memory. Tried to allocate ...`` traceback and exits with 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.gpu_box import FakeGpu, box_env, events, finish, launch, make_box, space_file, trials


def export(db: Path, study: str, env: dict[str, str]) -> dict:
    result = subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "export", study, "--format", "json",
                             "--db", str(db)], env=env, text=True, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def status(db: Path, study: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "status", study, "--db", str(db)],
                            env=env, text=True, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_packed_trial_out_of_memory_runs_again_alone_and_is_linked_to_its_first_attempt(tmp_path: Path) -> None:
    make_box(tmp_path, [FakeGpu()])  # one 80 GiB GPU; two half-GPU trials of 50 GiB cannot both fit
    env = box_env(tmp_path)
    space = space_file(tmp_path, "pack", gib=50, resources="{gpus_per_trial: 0.5}", trials=2, parallel=2,
                       hold=(1.0, 1.5))
    out = finish(launch(space, tmp_path / "h.db", env))
    rows = trials(tmp_path / "h.db")
    assert [r["status"] for r in rows].count("completed") == 2 and len(rows) == 3, out
    first = next(r for r in rows if r["status"] == "failed")
    rerun = next(r for r in rows if r["rerun_of"] == first["id"])
    assert rerun["status"] == "completed" and rerun["gpu_fraction"] == 1.0 and first["gpu_fraction"] == 0.5
    assert "CUDA out of memory" in first["status_reason"] and first["exit_code"] == 1
    assert "runs again alone on a whole GPU" in out
    record = export(tmp_path / "h.db", "pack", env)
    by_id = {t["id"]: t for t in record["trials"]}
    assert "oom" in by_id[first["number"]]["flags"]
    assert by_id[rerun["number"]]["rerun_of"] == first["number"]
    assert record["study"]["status"] == "completed"
    text = status(tmp_path / "h.db", "pack", env)
    assert (f"  oom rerun: trial {rerun['number']} reruns trial {first['number']} alone on a whole GPU "
            f"(out of GPU memory while sharing GPU 0): completed") in text
    assert f"  flags: trial {first['number']}: oom" in text


def test_out_of_memory_alone_stays_failed_with_its_flag_and_hint(tmp_path: Path) -> None:
    make_box(tmp_path, [FakeGpu()])
    env = box_env(tmp_path)
    space = space_file(tmp_path, "alone", gib=90, resources="{gpus_per_trial: 1}", trials=1, parallel=1)
    finish(launch(space, tmp_path / "h.db", env))
    rows = trials(tmp_path / "h.db")
    assert [r["status"] for r in rows] == ["failed"]  # no rerun: it had the GPU to itself
    flags = [e for e in events(tmp_path / "h.db", "flag") if e["data"].get("flag") == "oom"]
    assert len(flags) == 1 and "lower the batch size" in flags[0]["data"]["hint"]


def test_on_oom_fail_keeps_a_packed_trial_failed(tmp_path: Path) -> None:
    make_box(tmp_path, [FakeGpu()])
    env = box_env(tmp_path)
    space = space_file(tmp_path, "nofail", gib=50, resources="{gpus_per_trial: 0.5, on_oom: fail}", trials=2,
                       parallel=2, hold=(1.0, 1.5))
    finish(launch(space, tmp_path / "h.db", env))
    rows = trials(tmp_path / "h.db")
    assert sorted(r["status"] for r in rows) == ["completed", "failed"] and all(r["rerun_of"] is None for r in rows)
    assert events(tmp_path / "h.db", "oom_retry") == []


def test_an_oom_storm_pauses_packing_not_the_study(tmp_path: Path) -> None:
    make_box(tmp_path, [FakeGpu()])  # 90 GiB never fits: every packed trial fails
    env = box_env(tmp_path)
    space = space_file(tmp_path, "storm", gib=90, resources="{gpus_per_trial: 0.5}", trials=5, parallel=2,
                       hold=(0.1, 0.2))
    proc = launch(space, tmp_path / "h.db", env)
    out = finish(proc)
    paused = events(tmp_path / "h.db", "packing_paused")
    assert len(paused) == 1 and "new trials get a whole GPU each" in paused[0]["message"], out
    after = [r for r in trials(tmp_path / "h.db") if r["created_at"] > paused[0]["time"]]
    assert after and all(r["gpu_fraction"] == 1.0 for r in after)  # still launching, one per GPU
    record = export(tmp_path / "h.db", "storm", env)
    assert record["study"]["status"] == "completed"
    assert events(tmp_path / "h.db", "failure_storm") == []  # launching itself never paused
    assert "packing paused: the last 3 packed trials ran out of GPU memory" in status(tmp_path / "h.db", "storm", env)


def test_a_trial_that_cannot_start_gives_its_gpu_back(tmp_path: Path) -> None:
    make_box(tmp_path, [FakeGpu()])
    env = box_env(tmp_path)
    (tmp_path / "s.yaml").write_text(f"""
name: nostart
command: [{tmp_path / 'missing-program'}, "{{x}}"]
objective: {{metric: val_acc, mode: max}}
budget: {{max_trials: 3, max_parallel: 1, failure_streak: 10}}
resources: {{gpus_per_trial: 1}}
space:
  x: {{type: uniform, low: 0, high: 1}}
""")
    proc = launch(tmp_path / "s.yaml", tmp_path / "h.db", env)
    proc.communicate(timeout=120)
    rows = trials(tmp_path / "h.db")
    assert [r["status"] for r in rows] == ["failed"] * 3  # each found the GPU free again: no leaked claim
    assert list((tmp_path / "claims").glob("user-*/*.json")) == []


def test_auto_runs_alone_until_measured_then_packs_by_the_measured_peak(tmp_path: Path) -> None:
    from hpotui.engine.gpus.gpu_memory import GIB, with_margin

    make_box(tmp_path, [FakeGpu()])
    env = box_env(tmp_path)
    space = space_file(tmp_path, "auto", gib=20, resources="{gpu_memory: auto}", trials=3, parallel=3,
                       hold=(6.0, 6.5))  # longer than the 5 s between usage samples: a peak gets measured
    finish(launch(space, tmp_path / "h.db", env))
    first, second, third = trials(tmp_path / "h.db")
    assert first["gpu_fraction"] == 1.0 and first["peak_gpu_memory"] == 20 * GIB  # alone: nothing measured yet
    assert second["gpu_memory"] == third["gpu_memory"] == with_margin(20 * GIB)
    assert second["created_at"] >= first["finished_at"]
    assert third["created_at"] < second["finished_at"]  # packed side by side on the one GPU
    assert all(t["status"] == "completed" for t in (first, second, third))
