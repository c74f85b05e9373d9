"""gpu_memory: sizes with units in the space file, and what `gpu_memory: auto` learns from a study."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpotui.engine.gpus.gpu_memory import AUTO_MARGIN_MIN_BYTES, GIB, MIB, estimate_memory, parse_memory, with_margin
from hpotui.engine.space_file.space import Param, SpaceError, parse_space
from tests.conftest import run_cli

BASE = {"name": "m", "command": "python t.py {lr} {batch}", "objective": {"metric": "a", "mode": "max"},
        "budget": {"max_trials": 2, "max_parallel": 1},
        "space": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1}, "batch": {"type": "choice", "values": [32, 256]}}}


@pytest.mark.parametrize("text, size", [("12GiB", 12 * GIB), ("12GB", 12 * 10 ** 9), ("12000MiB", 12000 * MIB),
                                        ("1.5 TiB", int(1.5 * 1024 * GIB)), ("17.5gib", int(17.5 * GIB))])
def test_sizes_with_units(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["12", 12, "12 parsecs", "-1GiB", "0GiB", "GiB", True, None])
def test_sizes_without_a_known_unit_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_memory(text)


def resources(raw: dict) -> object:
    return parse_space(dict(BASE, resources=raw), "s.yaml", Path(".")).resources


def test_space_file_gpu_memory_and_on_oom() -> None:
    r = resources({"gpu_memory": "12GiB"})
    assert (r.gpu_memory, r.gpus_per_trial, r.on_oom) == (12 * GIB, 1, "retry_alone")
    assert resources({"gpu_memory": "auto", "on_oom": "fail"}).gpu_memory == "auto"
    assert resources({"gpus_per_trial": 0.5}).on_oom == "retry_alone"


@pytest.mark.parametrize("raw, message", [
    ({"gpu_memory": 12}, "s.yaml: resources.gpu_memory: expected a size with a unit such as 12GiB"),
    ({"gpu_memory": "12GiB", "gpus_per_trial": 0.5}, "s.yaml: resources.gpu_memory: packs trials of one GPU each"),
    ({"on_oom": "retry"}, "s.yaml: resources.on_oom: unknown value 'retry'"),
])
def test_bad_gpu_memory_names_the_file_key_and_fix(raw: dict, message: str) -> None:
    with pytest.raises(SpaceError) as caught:
        resources(raw)
    assert str(caught.value).startswith(message)


def test_bad_gpu_memory_at_launch_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("name: m\ncommand: python t.py {lr}\nobjective: {metric: a, mode: max}\n"
                                     "budget: {max_trials: 1, max_parallel: 1}\nresources: {gpu_memory: 12}\n"
                                     "space:\n  lr: {type: uniform, low: 0, high: 1}\n")
    result = run_cli("launch", "s.yaml", "--headless", "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "resources.gpu_memory" in result.stderr
    assert "Traceback" not in result.stderr


PARAMS = (Param("lr", "loguniform", 1e-4, 1.0, log=True), Param("width", "int", 16, 1024, log=True),
          Param("batch", "choice", values=(32, 256)))


def test_auto_has_no_estimate_until_something_is_measured() -> None:
    assert estimate_memory({"lr": 0.1, "width": 64, "batch": 32}, [], PARAMS) is None
    assert estimate_memory({"lr": 0.1, "width": 64, "batch": 32}, [({"lr": 0.1}, 0)], PARAMS) is None


def test_auto_uses_the_same_choices_and_the_nearest_numbers_plus_a_margin() -> None:
    measured = [({"lr": 0.01, "width": 64, "batch": 32}, 4 * GIB),
                ({"lr": 0.02, "width": 70, "batch": 32}, 5 * GIB),
                ({"lr": 0.03, "width": 60, "batch": 32}, 3 * GIB),
                ({"lr": 0.01, "width": 1000, "batch": 32}, 30 * GIB),   # far in width: not a neighbour
                ({"lr": 0.01, "width": 64, "batch": 256}, 40 * GIB)]    # another batch size: not similar
    assert estimate_memory({"lr": 0.015, "width": 64, "batch": 32}, measured, PARAMS) == with_margin(5 * GIB)
    assert estimate_memory({"lr": 0.015, "width": 64, "batch": 256}, measured, PARAMS) == with_margin(40 * GIB)
    # no trial with this batch size measured yet: the largest peak of the study, to be safe
    assert estimate_memory({"lr": 0.01, "width": 900, "batch": 128}, measured, PARAMS) == with_margin(40 * GIB)


def test_margin_is_a_fifth_or_half_a_gib() -> None:
    assert with_margin(10 * GIB) == 12 * GIB
    assert with_margin(1 * GIB) == GIB + AUTO_MARGIN_MIN_BYTES
