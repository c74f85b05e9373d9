"""The executor port: both executors declare their capabilities and implement every required member."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpotui.engine.executors.base import Executor, TrialProcess
from hpotui.engine.executors.local import LocalExecutor
from hpotui.engine.executors.ray import RayExecutor

REQUIRED = ("start", "adopt", "poll", "request_stop", "enforce_deadline", "reap_group", "pause", "resume", "shutdown")


@pytest.mark.parametrize(("executor", "name", "places_gpus", "outlives_engine"),
                         [(LocalExecutor, "local", False, True), (RayExecutor, "ray", True, False)])
def test_each_executor_declares_what_the_loop_reads(executor: type, name: str, places_gpus: bool,
                                                    outlives_engine: bool) -> None:
    assert Executor in executor.__mro__  # the loop is typed against it
    assert (executor.name, executor.places_gpus, executor.outlives_engine) == (name, places_gpus, outlives_engine)


@pytest.mark.parametrize("executor", [LocalExecutor, RayExecutor])
def test_each_executor_implements_every_required_member(executor: type) -> None:
    inherited = [member for member in REQUIRED if getattr(executor, member) is getattr(Executor, member)]
    assert inherited == []


def test_a_third_executor_gets_the_optional_members_as_not_supported(tmp_path: Path) -> None:
    class Queue(Executor):
        name, places_gpus, outlives_engine = "queue", False, False

        def start(self, trial_id: int, argv: list[str], *, cwd: Path, env: dict[str, str], stdout_path: Path,
                  stderr_path: Path) -> TrialProcess:
            return TrialProcess(trial_id, 0, 0, 0.0, stdout_path, stderr_path)

    queue = Queue()
    proc = queue.start(1, ["true"], cwd=tmp_path, env={}, stdout_path=tmp_path / "o", stderr_path=tmp_path / "e")
    assert proc.trial_id == 1 and proc.final_status is None
    assert queue.take_placed() == []
    assert queue.watch_descendants(True) is False
    assert queue.end_leftovers(str(tmp_path)) == 0
    assert queue.gpu_readings() == {}
    assert queue.sweep() is None
