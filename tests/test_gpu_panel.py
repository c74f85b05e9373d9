"""The GPU panel: claimed versus used memory, other users' memory, and the age of old readings.

The database is written by the engine's own sampler (UsageSampler with the GPU placer's sharing
columns, the fake NVML and a real claims folder); the panel is read by the TUI's reader and shown
by the real app under Pilot.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from hpotui.engine.executors.local import LocalExecutor
from hpotui.engine.gpus.gpu_memory import GIB
from hpotui.engine.machine.resources import ResourceMonitor
from hpotui.engine.machine.resources_nvml import FakeGpu
from hpotui.engine.machine.usage import UsageSampler
from hpotui.tui.data import StudyReader
from hpotui.tui.widgets.gpu_panel import render_resources
from tests.test_gpu_placer import add, make


@pytest.fixture
def sampled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, float]]:
    """One GPU with a 30 GiB trial using 8 GiB and a colleague's 6 GiB job; one GPU free."""
    monkeypatch.setenv("HPOTUI_CLAIMS_DIR", str(tmp_path / "claims"))
    trial = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        gpus = [FakeGpu(memory_used=14 * GIB, processes={trial.pid: 8 * GIB, 4_000_000: 6 * GIB}), FakeGpu()]
        store, study, placer, nvml = make(tmp_path, {"gpu_memory": "30GiB"}, gpus)
        row = add(store, study, placer, {"lr": 0.1, "batch": 32})
        store.mark_running(row.id, pid=trial.pid, pgid=trial.pid, proc_create_time=0.0, git_commit=None)
        placer.started(row, trial.pid, None)
        sampler = UsageSampler(store, study.id, LocalExecutor(), ResourceMonitor(nvml, cache_s=0))
        sampler.gpu_sharing = placer.sharing_columns
        sampler.sample({row.id: (row.number, trial.pid, row.gpus)})
        when = store.conn.execute("SELECT MAX(time) FROM gpu_samples").fetchone()[0]
        store.close()
        yield tmp_path / "h.db", when
    finally:
        trial.kill()
        trial.wait()


def test_claimed_used_and_other_memory_per_gpu(sampled: tuple[Path, float]) -> None:
    db, when = sampled
    text = render_resources(StudyReader(str(db), clock=lambda: when + 2).resources(), 100).plain
    lines = text.splitlines()
    assert lines[0].startswith("GPU0 ") and "14.0G/80.0G" in lines[0] and "p#1" in lines[0]
    assert lines[1].strip() == "claimed 30.0G/80.0G by 1 trial (all engines) · used 14.0G · other 6.0G"
    assert lines[2].startswith("GPU1 ") and lines[2].rstrip().endswith("free")
    assert "last reading" not in text


def test_old_readings_show_their_age_instead_of_passing_for_live(sampled: tuple[Path, float]) -> None:
    db, when = sampled
    text = render_resources(StudyReader(str(db), clock=lambda: when + 600).resources(), 100).plain
    assert text.splitlines()[0] == "last reading 10m00s ago, not live (no engine is sampling this box)"



@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_app_shows_claims_in_the_gpu_view(sampled: tuple[Path, float]) -> None:
    from hpotui.tui.app import HpotuiApp
    from tests.tui.conftest import wait_until

    db, when = sampled
    app = HpotuiApp(str(db), "p", clock=lambda: when + 1, refresh_s=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: getattr(app.screen, "view", None) is not None, what="the study screen")
        await pilot.press("g")
        panel = app.screen.query_one("#gpu-panel")
        await wait_until(pilot, lambda: "claimed 30.0G/80.0G" in str(panel.render()), what="the claims line")
        assert "other 6.0G" in str(panel.render())
