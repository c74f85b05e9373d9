"""Real frameworks' printed progress read with metrics.regex: Keras, Lightning (TQDM and default bar),
Hugging Face Trainer's printed logs and plain tqdm.

Each study runs the framework's own trainer (tests/frameworks/trainers/pb_*.py) under a real
engine. Every recorded epoch value must equal the framework's own record (History,
``trainer.logged_metrics``, ``state.log_history``, the values the loop printed) to the printed
precision, with exactly one point per epoch in the curves export; values must land in the
database while the trial runs (the trainer waits at each epoch until the test saw it); a NaN run
must end diverged.
"""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import pytest

from tests.frameworks.reading_lab import StudyRun, assert_curves_match, run_study


def _needs(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


def _check_healthy(run: StudyRun, case: str, names: dict[str, str], **precision: int) -> int:
    trial = run.by_case(case)
    assert trial.status == "completed", run.output[-3000:]
    record = run.record(trial)
    assert not record["timed_out"], f"{case}: epochs {record['timed_out']} never reached the database while running"
    assert trial.opened_while_running and len(trial.opened) == len(record["record"])
    checked = assert_curves_match(run.curves(trial), record["record"], names, **precision)
    latencies = run.latencies(trial)
    print(f"{run.name} {case}: {checked} values equal ({run.row_count(trial)} rows incl. a bar's revisions), "
          f"latency median {statistics.median(latencies):.3f}s max {max(latencies):.3f}s")
    return checked


def _check_nan(run: StudyRun, case: str) -> None:
    trial = run.by_case(case)
    assert trial.status == "diverged", (trial.status, run.output[-3000:])


@_needs("keras", "torch")
def test_keras_default_bar_and_verbose_2(tmp_path: Path) -> None:
    names = {"loss": "loss", "accuracy": "accuracy", "val_loss": "val_loss", "val_accuracy": "val_accuracy"}
    run = run_study(tmp_path, "keras", "pb_keras.py", ["verbose=auto", "verbose=2", "verbose=auto,poison=1"],
                    metrics={"regex": {"epoch": r"Epoch (\d+)/\d+", **{k: f"- {k}: {{number}}" for k in names}}},
                    objective={"metric": "val_accuracy", "mode": "max"}, gate_metrics=tuple(names))
    for case in ("verbose=auto", "verbose=2"):
        _check_healthy(run, case, names, decimals=4)
    _check_nan(run, "verbose=auto,poison=1")


@_needs("lightning", "torch")
def test_lightning_tqdm_bar_and_its_default_bar(tmp_path: Path) -> None:
    """TQDM bar: val metrics are read from the segment the bar leaves on screen, when it is written
    (not at the next epoch's first refresh), and the last epoch adds no fake row. The default bar
    (rich, installed with hpotui) prints nothing a regex can read: the study says so loudly."""
    names = {"val_loss": "val_loss", "val_acc": "val_acc", "train_loss": "train_loss"}
    run = run_study(tmp_path, "lightning", "pb_lightning.py", ["bar=tqdm", "bar=tqdm,poison=1", "bar=default,gate="],
                    metrics={"regex": {"epoch": r"Epoch (\d+)", **{k: f"{k}={{number}}" for k in names}}},
                    objective={"metric": "val_acc", "mode": "max"}, gate_metrics=tuple(names), first_epoch=0)
    _check_healthy(run, "bar=tqdm", names, significant=3)
    _check_nan(run, "bar=tqdm,poison=1")
    silent = run.by_case("bar=default,gate=")  # nothing to wait for: it prints nothing readable
    assert silent.status == "completed" and not run.curves(silent)
    warnings = run.export["study"]["warnings"]
    assert any(f"({silent.number}) finished without reporting the objective val_acc" in w
               or f", {silent.number}) finished without" in w for w in warnings), warnings
    assert f"trial {silent.number} completed: never reported the objective val_acc" in run.output  # headless
    from tests.conftest import run_cli  # noqa: PLC0415  (the same `hpotui status` a user runs)

    status = run_cli("--db", str(run.db), "status", "lightning", cwd=tmp_path)
    assert "finished without reporting the objective val_acc" in status.stdout, status.stdout


@_needs("transformers", "torch")
def test_huggingface_trainer_printed_logs(tmp_path: Path) -> None:
    names = {"eval_loss": "eval_loss", "eval_accuracy": "eval_accuracy", "loss": "loss"}
    run = run_study(tmp_path, "hf", "pb_transformers.py", ["epochs=3", "epochs=3,poison=1"],
                    metrics={"regex": {"epoch": r"'epoch': '{number}'",
                                       **{k: f"'{k}': '{{number}}'" for k in names}}},
                    objective={"metric": "eval_loss", "mode": "min"}, gate_metrics=("eval_loss", "eval_accuracy"))
    _check_healthy(run, "epochs=3", names, significant=4)
    _check_nan(run, "epochs=3,poison=1")


@_needs("tqdm", "torch")
def test_plain_tqdm_bar_per_epoch_and_one_trange(tmp_path: Path) -> None:
    names = {"val_loss": "val_loss", "val_acc": "val_acc"}
    run = run_study(tmp_path, "tqdm", "pb_tqdm.py", ["style=bars", "style=trange", "style=bars,poison=1"],
                    metrics={"regex": {"epoch": r"epoch[ =](\d+)", "loss": r"\bloss={number}",
                                       **{k: f"{k}={{number}}" for k in names}}},
                    objective={"metric": "val_acc", "mode": "max"}, gate_metrics=tuple(names))
    _check_healthy(run, "style=bars", {**names, "loss": "loss"}, significant=3)
    _check_healthy(run, "style=trange", names, significant=3)
    _check_nan(run, "style=bars,poison=1")
