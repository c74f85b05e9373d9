"""Shared fixtures: real trial scripts, real space files, the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Every run ends with the in-process / subprocess split of its test time (tests/timing_split.py)."""
    from tests.timing_split import TimingSplit

    if not config.pluginmanager.has_plugin("hpotui-timing-split"):
        config.pluginmanager.register(TimingSplit(), "hpotui-timing-split")


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user's shell would have: this venv's bin first, so `python` has our packages."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("HPOTUI_DB", None)
    env.update(extra or {})
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpotui.engine.cli", *args], cwd=cwd, env=cli_env(), text=True,
                          capture_output=True, timeout=timeout, **kwargs)


def start_cli(*args: str, cwd: Path, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hpotui.engine.cli", *args], cwd=cwd, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


TOY_TRAINER = """
import json, sys, time
lr = float(sys.argv[1]); epochs = int(sys.argv[2]); delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
loss = 2.3
for epoch in range(1, epochs + 1):
    time.sleep(delay)
    loss = loss * (1 - min(lr, 0.9) * 0.5)
    acc = 1 - loss / 2.3
    print("@hpotui " + json.dumps({"epoch": epoch, "train_loss": loss, "val_loss": loss * 1.1,
                                   "train_acc": acc, "val_acc": acc * 0.95}), flush=True)
    print(f"epoch {epoch} done", flush=True)
"""


@pytest.fixture
def toy_study(tmp_path: Path):
    """Write the toy trainer and return a function that writes a space file around it."""
    (tmp_path / "toy.py").write_text(textwrap.dedent(TOY_TRAINER))

    def make(body: str = "", *, name: str = "toy", trials: int = 4, parallel: int = 2, epochs: int = 3,
             delay: float = 0.05, extra: str = "") -> Path:
        text = body or f"""
name: {name}
command: python toy.py {{lr}} {epochs} {delay}
objective: {{metric: val_acc, mode: max}}
search: {{algorithm: random, seed: 0}}
budget: {{max_trials: {trials}, max_parallel: {parallel}}}
space:
  lr: {{type: loguniform, low: 1e-3, high: 1}}
{extra}"""
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return make
