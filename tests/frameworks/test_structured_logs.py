"""Structured logs as metric sources, read while the trial runs: Lightning's CSVLogger (metrics.csv)
and a torch ``SummaryWriter`` loop (metrics.tensorboard).

The framework's own record is the file itself: the test reads the CSV with the csv module and the
event file with TensorBoard's EventAccumulator, and every value the engine recorded must equal it
(CSV: exactly; event files: float32 exactly), one point per epoch, landed while the trial ran; a
NaN run must end diverged.
"""

from __future__ import annotations

import csv
import importlib.util
import statistics
from pathlib import Path

import pytest

from tests.frameworks.reading_lab import StudyRun, assert_curves_match, run_study


def _needs(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


def _arrived_while_running(run: StudyRun, case: str) -> None:
    trial = run.by_case(case)
    assert trial.status == "completed", run.output[-3000:]
    record = run.record(trial)
    assert not record["timed_out"], f"{case}: epochs {record['timed_out']} never reached the database while running"
    latencies = run.latencies(trial)
    print(f"{run.name} {case}: {len(latencies)} epochs, latency median {statistics.median(latencies):.3f}s max {max(latencies):.3f}s")


def _lightning_csv(path: Path) -> dict[str, dict[str, float]]:
    """Lightning's metrics.csv as the framework wrote it: per epoch, every non-empty cell."""
    epochs: dict[str, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cells = {k: float(v) for k, v in row.items() if v not in ("", None) and k not in ("epoch", "step")}
            epochs.setdefault(f"{float(row['epoch']):g}", {}).update(cells)
    return epochs


@_needs("lightning", "torch")
def test_lightning_csv_logger(tmp_path: Path) -> None:
    names = {"val_loss": "val_loss", "val_acc": "val_acc", "train_loss": "train_loss"}
    run = run_study(tmp_path, "lightning-csv", "pb_lightning.py", ["logger=csv", "logger=csv,poison=1"],
                    metrics={"csv": "{trial_dir}/csv/version_0/metrics.csv"},
                    # Lightning logs an epoch's on_epoch train_loss after the epoch-end callbacks (where the
                    # trainer waits): the gate waits for the val metrics, the comparison covers all three.
                    objective={"metric": "val_acc", "mode": "max"}, gate_metrics=("val_loss", "val_acc"),
                    first_epoch=0)
    _arrived_while_running(run, "logger=csv")
    trial = run.by_case("logger=csv")
    record = _lightning_csv(Path(trial.trial_dir) / "csv" / "version_0" / "metrics.csv")
    assert assert_curves_match(run.curves(trial), record, names, decimals=12) == 9
    assert run.by_case("logger=csv,poison=1").status == "diverged"


@_needs("tensorboard", "torch")
def test_summary_writer_loop(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    names = {"train_loss": "train_loss", "val_loss": "val_loss", "val_acc": "val_acc"}
    run = run_study(tmp_path, "tensorboard", "sl_tensorboard.py", ["epochs=3", "epochs=3,poison=1"],
                    metrics={"tensorboard": "{trial_dir}/tb"},
                    objective={"metric": "val_acc", "mode": "max"}, gate_metrics=tuple(names))
    _arrived_while_running(run, "epochs=3")
    trial = run.by_case("epochs=3")
    events = EventAccumulator(str(Path(trial.trial_dir) / "tb"))
    events.Reload()
    record: dict[str, dict[str, float]] = {}
    for tag in events.Tags()["scalars"]:
        for scalar in events.Scalars(tag):
            record.setdefault(f"{scalar.step:g}", {})[tag] = scalar.value
    assert assert_curves_match(run.curves(trial), record, names, decimals=12) == 9
    assert run.by_case("epochs=3,poison=1").status == "diverged"


@_needs("keras", "torch")
def test_keras_csv_logger(tmp_path: Path) -> None:
    names = {"loss": "loss", "accuracy": "accuracy", "val_loss": "val_loss", "val_accuracy": "val_accuracy"}
    run = run_study(tmp_path, "keras-csv", "pb_keras.py", ["logger=csv,verbose=0", "logger=csv,verbose=0,poison=1"],
                    metrics={"csv": "{trial_dir}/keras.csv"}, objective={"metric": "val_accuracy", "mode": "max"},
                    gate_metrics=tuple(names), first_epoch=0)
    _arrived_while_running(run, "logger=csv,verbose=0")
    trial = run.by_case("logger=csv,verbose=0")
    # Keras' History and its CSV hold the same numbers (the CSV with repr's precision)
    assert assert_curves_match(run.curves(trial), run.record(trial)["record"], names, significant=12) == 12
    assert run.by_case("logger=csv,verbose=0,poison=1").status == "diverged"
