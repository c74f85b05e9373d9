"""The space file contract: what parses, and one clear line for each kind of bad file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hpotui.engine.errors import SpaceError
from hpotui.engine.space_file.space import load_space, render_argv

CONTRACT = """
name: digits-mlp
command: python train_digits.py --lr {lr} --dropout {dropout} --width {width} --batch-size {batch_size} --epochs 20
workdir: .
objective: {metric: val_acc, mode: max}
search: {algorithm: random, seed: 0}
budget: {max_trials: 40, max_parallel: 2, max_time: 2h, patience: 15}
resources: {gpus_per_trial: 1}
space:
  lr:         {type: loguniform, low: 1e-5, high: 1}
  dropout:    {type: uniform, low: 0.0, high: 0.7}
  width:      {type: int, low: 16, high: 1024, log: true}
  batch_size: {type: choice, values: [32, 64, 128, 256]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpaceError) as info:
        load_space(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    assert "space.yaml" in message
    return message


def test_contract_example_parses_with_numbers_pyyaml_reads_as_strings(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, CONTRACT))
    assert space.name == "digits-mlp"
    lr = space.param("lr")
    assert (lr.type, lr.low, lr.high, lr.log) == ("loguniform", 1e-5, 1.0, True)  # "1e-5" became a number
    assert space.param("width").log and space.param("width").type == "int"
    assert space.param("batch_size").values == (32, 64, 128, 256)
    assert space.budget.max_time_s == 7200 and space.budget.patience == 15
    assert space.resources.gpus_per_trial == 1
    assert space.workdir == tmp_path.resolve()
    assert space.command[:2] == ("python", "train_digits.py")


@pytest.mark.parametrize("duration, seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400)])
def test_durations(tmp_path: Path, duration: str, seconds: float) -> None:
    space = load_space(write(tmp_path, CONTRACT.replace("max_time: 2h", f"max_time: {duration}")))
    assert space.budget.max_time_s == seconds


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    message = error_of(tmp_path, CONTRACT.replace("max_parallel: 2", "max_paralel: 2"))
    assert "budget.max_paralel" in message and "max_parallel" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, CONTRACT + "objectve: {metric: x}\n")
    assert "objectve" in message and "'objective'" in message


def test_low_not_below_high(tmp_path: Path) -> None:
    message = error_of(tmp_path, CONTRACT.replace("{type: uniform, low: 0.0, high: 0.7}",
                                                  "{type: uniform, low: 0.7, high: 0.7}"))
    assert "space.dropout.low" in message and "below high" in message


def test_loguniform_low_must_be_positive(tmp_path: Path) -> None:
    message = error_of(tmp_path, CONTRACT.replace("low: 1e-5, high: 1", "low: 0, high: 1"))
    assert "space.lr.low" in message and "> 0" in message


def test_placeholder_without_parameter(tmp_path: Path) -> None:
    message = error_of(tmp_path, CONTRACT.replace("--epochs 20", "--epochs {epochs}"))
    assert "{epochs}" in message and "names no parameter" in message


def test_parameter_without_placeholder(tmp_path: Path) -> None:
    message = error_of(tmp_path, CONTRACT.replace("--dropout {dropout} ", ""))
    assert "space.dropout" in message and "{dropout}" in message


def test_empty_choice(tmp_path: Path) -> None:
    message = error_of(tmp_path, CONTRACT.replace("values: [32, 64, 128, 256]", "values: []"))
    assert "space.batch_size.values" in message


def test_unreadable_yaml(tmp_path: Path) -> None:
    message = error_of(tmp_path, "name: x\ncommand: [unclosed\n")
    assert "YAML" in message and "line" in message


def test_missing_required_section(tmp_path: Path) -> None:
    message = error_of(tmp_path, "name: x\ncommand: python a.py\n")
    assert "objective" in message


def test_missing_file_is_a_space_error(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="file not found"):
        load_space(tmp_path / "nope.yaml")


def test_step_quantisation_and_points_are_accepted(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, CONTRACT.replace("{type: uniform, low: 0.0, high: 0.7}",
                                                        "{type: uniform, low: 0.0, high: 0.7, step: 0.1, points: 4}")))
    assert space.param("dropout").step == 0.1 and space.param("dropout").points == 4


def test_command_as_list_and_json_braces_pass_through(tmp_path: Path) -> None:
    text = CONTRACT.replace(
        "command: python train_digits.py --lr {lr} --dropout {dropout} --width {width} --batch-size {batch_size} "
        "--epochs 20",
        """command: [python, t.py, '--cfg={"a": 1}', '--lr={lr}', '{dropout}', '{width}', '{batch_size}', '{trial_dir}']""")
    space = load_space(write(tmp_path, text))
    argv = render_argv(space.command, {"lr": 0.5, "dropout": 0.1, "width": 64, "batch_size": 32,
                                       "trial_dir": "/runs/x 1"})
    assert argv == ["python", "t.py", '--cfg={"a": 1}', "--lr=0.5", "0.1", "64", "32", "/runs/x 1"]


def test_values_never_split_into_more_arguments() -> None:
    argv = render_argv(("prog", "--name", "{name}"), {"name": "a b; rm -rf / $(whoami)\n--evil"})
    assert argv == ["prog", "--name", "a b; rm -rf / $(whoami)\n--evil"]


def test_cli_bad_file_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    path = write(tmp_path, CONTRACT.replace("low: 1e-5, high: 1", "low: 1, high: 1e-5"))
    result = run_cli("launch", str(path), "--headless", "--db", str(tmp_path / "h.db"), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "space.lr.low" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "h.db").exists()
