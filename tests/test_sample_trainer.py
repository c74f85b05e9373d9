"""The samples a new user runs first: they must really train, really diverge, and parse.

Each trainer runs for real as a subprocess (about 2 s each, nearly all of it ``import torch``)
and its output goes through the engine's own metric-line and regex parsers, so a change on
either side of the ``@hpotui`` contract shows up here.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpotui.engine.reading.metricline import Report, RegexMetrics, parse_metric_line
from hpotui.engine.space_file.space import load_space

SAMPLES = Path(__file__).resolve().parent.parent / "sample_spaces"
METRICS = {"train_loss", "train_acc", "val_loss", "val_acc", "size_mb"}


def run_sample(args: list[str], env: dict[str, str] | None = None,
               prelude: str = "") -> subprocess.CompletedProcess[str]:
    """Run a sample script the way the engine does: its own process, cwd = the space folder."""
    script = args[0]
    code = f"{prelude}import runpy, sys; sys.argv = {args!r}; runpy.run_path({script!r}, run_name='__main__')"
    return subprocess.run([sys.executable, "-c", code], cwd=SAMPLES, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def reports(stdout: str) -> list[Report]:
    parsed = [parse_metric_line(line, i) for i, line in enumerate(stdout.splitlines())]
    metric_lines = [p for p in parsed if p is not None]
    assert all(isinstance(p, Report) for p in metric_lines), metric_lines
    return metric_lines  # type: ignore[return-value]


def test_sane_config_learns_reports_every_epoch_and_saves_a_checkpoint(tmp_path: Path) -> None:
    trial_dir = tmp_path / "trial-7"
    done = run_sample(["train_digits.py", "--lr", "0.05", "--width", "128", "--batch-size", "64",
                       "--dropout", "0.1", "--epochs", "3"], env={"HPOTUI_TRIAL_DIR": str(trial_dir)})
    assert done.returncode == 0, done.stderr
    lines = reports(done.stdout)
    assert [r.step for r in lines] == [1.0, 2.0, 3.0]
    for r in lines:
        assert set(r.values) == METRICS
        assert all(math.isfinite(v) for v in r.values.values())
        assert 0.0 <= r.values["train_acc"] <= 1.0 and 0.0 <= r.values["val_acc"] <= 1.0
    assert lines[-1].values["val_acc"] > 0.8
    assert lines[-1].values["train_loss"] < lines[0].values["train_loss"]
    assert (trial_dir / "model.pt").stat().st_size > 1000


def test_top_of_the_quick_lr_range_diverges_to_nan_and_stops() -> None:
    quick = load_space(SAMPLES / "quick.yaml")
    top_lr = quick.param("lr").high
    done = run_sample(["train_digits.py", "--lr", repr(top_lr), "--width", "512", "--batch-size", "32",
                       "--dropout", "0.1", "--epochs", "4"])
    assert done.returncode == 0, done.stderr
    assert "NaN" in done.stdout  # written as Python's json writes it, which the engine reads back
    lines = reports(done.stdout)
    losses = [r.values["train_loss"] for r in lines]
    assert math.isnan(losses[-1])
    assert len(lines) < 4  # it stops after the epoch that went NaN instead of burning the rest
    assert "diverged" in done.stderr


def test_runs_without_hpotui_installed_and_accepts_float_epochs() -> None:
    # sys.modules["hpotui"] = None makes `import hpotui` fail, as in a bare training env; the
    # engine may render an int-valued resource such as {max_resource} as "2.0".
    done = run_sample(["train_digits.py", "--epochs", "2.0", "--width", "32"],
                      prelude="import sys; sys.modules['hpotui'] = None; ")
    assert done.returncode == 0, done.stderr
    lines = reports(done.stdout)
    assert [r.step for r in lines] == [1.0, 2.0]
    assert all(set(r.values) == METRICS for r in lines)


def test_plain_logger_lines_are_read_by_the_regex_space() -> None:
    space = load_space(SAMPLES / "regex.yaml")
    good = run_sample(["plain_logger.py", "--lr", "0.1", "--epochs", "12"])
    diverging = run_sample(["plain_logger.py", "--lr", repr(space.param("lr").high), "--epochs", "12"])
    assert good.returncode == 0 and diverging.returncode == 0
    assert not any(line.startswith("@hpotui") for line in good.stdout.splitlines())

    def curves(stdout: str) -> dict[str, dict[float, float]]:
        reader = RegexMetrics(space.metric_regex)
        found: dict[str, dict[float, float]] = {}
        for line in stdout.splitlines():
            for r in reader.parse(line):
                for name, value in r.values.items():
                    found.setdefault(name, {})[r.step] = value
        return found

    good_curves, bad_curves = curves(good.stdout), curves(diverging.stdout)
    assert set(good_curves) == {"train_loss", "val_acc"}
    assert sorted(good_curves["val_acc"]) == [float(e) for e in range(1, 13)]
    assert good_curves["val_acc"][12.0] > 0.8
    assert good_curves["train_loss"][12.0] < good_curves["train_loss"][1.0]
    assert bad_curves["train_loss"][12.0] > 1e6 * bad_curves["train_loss"][1.0]


@pytest.mark.parametrize("name", ["quick", "digits", "asha", "grid", "regex"])
def test_every_sample_space_parses_and_names_a_script_that_exists(name: str) -> None:
    space = load_space(SAMPLES / f"{name}.yaml")
    assert space.command[0] == "python"
    assert (space.workdir / space.command[1]).is_file()
    assert space.objective.metric == "val_acc" and space.objective.mode == "max"
