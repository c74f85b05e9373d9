"""Fixtures for the TUI tests: a deterministic study file, UTC clocks, and a wait helper."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Awaitable, Callable

import pytest

from tests.tui.bigdb import FIXED_NOW, make_study_db


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch):
    """Times on screen are local times; snapshots must not depend on where the tests run."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    time.tzset()


@pytest.fixture(autouse=True)
def _private_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Remembered views go to a folder of this test, never the user's own ~/.local/state."""
    folder = tmp_path_factory.mktemp("xdg-state")
    monkeypatch.setenv("XDG_STATE_HOME", str(folder))
    return folder


@pytest.fixture
def demo_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A relative path inside a temporary working directory: the study list shows it, snapshots pin it."""
    monkeypatch.chdir(tmp_path)
    make_study_db(tmp_path / "demo.db")
    return Path("demo.db")


@pytest.fixture
def finished_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    make_study_db(tmp_path / "done.db", name="done", finished=True)
    return Path("done.db")


def fixed_clock() -> float:
    return FIXED_NOW


async def wait_until(pilot, condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Let the app run until ``condition()`` holds; fails the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


@pytest.fixture
def anyio_backend() -> str:
    """Pilot tests are async; anyio's pytest plugin (installed with httpx/textual deps) runs them on asyncio."""
    return "asyncio"
