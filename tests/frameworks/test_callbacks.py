"""hpotui's ready callbacks on the real frameworks: Keras 3 (torch backend), PyTorch Lightning and
the Hugging Face Trainer, each on a small CPU trainer over scikit-learn's bundled digits.

For each framework one study runs two trials through the real engine:
- a healthy one, held at each epoch's gate until the test found that epoch's metrics in the
  database (so they arrived while the trial ran, when the framework logged them, not an epoch
  late); afterwards every recorded value equals the framework's own record (Keras ``History``,
  Lightning's ``CSVLogger`` file, ``trainer.state.log_history``) exactly;
- one trained on NaN inputs for 100 times the epochs: the engine must stop it as diverged.

A callback copied with ``hpotui helpers`` into a folder where hpotui cannot be imported works the
same (the pipx / uv tool install). The module never imports a framework it was not asked for.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import cli_env
from tests.frameworks.cb_harness import (assert_equal_records, latencies, launch, recorded, status, stopped_for_nan,
                                         trial_number, wait_for, walk_epochs)

EPOCHS = 3
TRAINERS = Path(__file__).parent / "trainers"
os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 without TensorFlow; the trials get it too


def needs(*modules: str) -> None:
    """Skip unless installed; found without importing (the frameworks load only in the trials)."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}")


def keras_epochs(record: dict[str, list[float]], trial_dir: Path) -> dict[float, dict[str, float]]:
    """History: one list per metric, epoch 1 first."""
    return {float(i + 1): {name: values[i] for name, values in record.items()}
            for i in range(len(next(iter(record.values()))))}


def lightning_epochs(record: dict[str, Any], trial_dir: Path) -> dict[float, dict[str, float]]:
    """CSVLogger's metrics.csv: the epoch-level rows (epoch counted from 0), empty cells not values."""
    result: dict[float, dict[str, float]] = {}
    with open(record["csv"], newline="") as handle:
        for row in csv.DictReader(handle):
            for name, cell in row.items():
                if name not in ("epoch", "step") and cell != "":
                    result.setdefault(float(row["epoch"]) + 1, {})[name] = float(cell)
    return result


def transformers_epochs(record: list[dict[str, Any]], trial_dir: Path) -> dict[float, dict[str, float]]:
    """log_history: every log and evaluation, each with its (fractional) epoch and global step."""
    result: dict[float, dict[str, float]] = {}
    for entry in record:
        for name, value in entry.items():
            if name not in ("epoch", "step"):
                assert name not in result.get(entry["epoch"], {})
                result.setdefault(float(entry["epoch"]), {})[name] = float(value)
    return result


@dataclass(frozen=True)
class Framework:
    module: str  # what must be importable
    trainer: str
    objective: str
    lr: float
    per_epoch: set[str]  # what each epoch must have recorded before its gate opens
    own_record: Callable[[Any, Path], dict[float, dict[str, float]]]


FRAMEWORKS = {
    "keras": Framework("keras", "cb_keras.py", "val_accuracy", 0.01, {"loss", "accuracy", "val_loss", "val_accuracy"},
                       keras_epochs),
    "lightning": Framework("lightning", "cb_lightning.py", "val_acc", 0.01, {"train_loss", "val_loss", "val_acc"},
                           lightning_epochs),
    "transformers": Framework("transformers", "cb_transformers.py", "eval_accuracy", 3e-3,
                              {"loss", "grad_norm", "eval_loss", "eval_accuracy"}, transformers_epochs),
}


def run_and_compare(tmp_path: Path, spec: Framework, *, standalone: bool = False, extra_args: str = "",
                    poisons: tuple[int, ...] = (0, 1)) -> dict[str, Any]:
    needs(spec.module, *(["accelerate"] if spec.module == "transformers" else []))  # the HF Trainer needs accelerate
    if standalone:
        copied = subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "helpers", str(tmp_path)],
                                capture_output=True, text=True, env=cli_env(), check=True)
        assert "hpotui_callbacks.py" in copied.stdout
    study = launch(tmp_path, spec.trainer, spec.objective, lr=spec.lr, epochs=EPOCHS, standalone=standalone,
                   extra_args=extra_args, poisons=poisons)
    healthy = wait_for(lambda: trial_number(study, 0), "the healthy trial", study)
    seen = walk_epochs(study, healthy, EPOCHS, spec.per_epoch)
    out, err = study.finish()
    assert study.proc.returncode == 0, out[-2000:] + err[-2000:]
    assert status(study, healthy) == "completed"
    saved = json.loads((study.trial_dir(healthy) / "record.json").read_text())
    framework = spec.own_record(saved["record"], study.trial_dir(healthy))
    assert_equal_records(recorded(study, healthy), framework)
    figures: dict[str, Any] = {"rows": sum(map(len, framework.values())),
                               "read_latency_s": round(max(latencies(study, healthy, saved["reported_at"])), 3),
                               "visible_latency_s": round(max(seen[e] - saved["reported_at"][e] for e in seen), 3)}
    if 1 in poisons:
        poisoned = trial_number(study, 1)
        assert poisoned is not None
        figures["nan"] = stopped_for_nan(study, poisoned, EPOCHS * 100)
    print(f"\n{spec.trainer}: {figures}")
    return figures


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_callback_reports_each_epoch_while_the_trial_runs_and_a_nan_run_is_stopped(tmp_path: Path, name: str):
    run_and_compare(tmp_path, FRAMEWORKS[name])


@pytest.mark.parametrize("name, extra", [("keras", ""), ("lightning", "--package=pytorch_lightning"),
                                         ("transformers", "")])
def test_a_copied_callback_works_where_hpotui_cannot_be_imported(tmp_path: Path, name: str, extra: str):
    # The trainer sets sys.modules["hpotui"] = None and imports the copy `hpotui helpers` wrote;
    # the Lightning one runs under the older `pytorch_lightning` package name.
    if extra:
        needs("pytorch_lightning")
    run_and_compare(tmp_path, FRAMEWORKS[name], standalone=True, extra_args=extra, poisons=(0,))


def test_importing_the_callbacks_imports_no_framework_and_each_callback_only_its_own():
    code = ("import sys; import hpotui.callbacks as c\n"
            "frameworks = ('keras', 'lightning', 'pytorch_lightning', 'transformers', 'torch', 'tensorflow')\n"
            "assert not [m for m in frameworks if m in sys.modules], sorted(sys.modules)\n"
            "import pickle; pickle.loads(pickle.dumps(c.HpotuiKerasCallback()))  # found again by name\n"
            "assert 'keras' in sys.modules\n"
            "assert not [m for m in ('lightning', 'pytorch_lightning', 'transformers') if m in sys.modules]\n"
            "try:\n    c.HpotuiTensorflowCallback\nexcept AttributeError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=cli_env({"KERAS_BACKEND": "torch"}), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "has no attribute 'HpotuiTensorflowCallback'" in result.stdout


def test_helpers_refuses_a_file_that_is_not_its_own(tmp_path: Path):
    (tmp_path / "hpotui_callbacks.py").write_text("# my own\n")
    result = subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "helpers", str(tmp_path)],
                            capture_output=True, text=True, env=cli_env())
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"hpotui: {tmp_path / 'hpotui_callbacks.py'}: exists and is not an hpotui "
                                     "helper; move it away or pass another folder")
    assert (tmp_path / "hpotui_callbacks.py").read_text() == "# my own\n"
    missing = subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "helpers", str(tmp_path / "nope")],
                             capture_output=True, text=True, env=cli_env())
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_emit_writes_only_numbers_and_keeps_nan():
    import io

    from hpotui.callbacks import emit

    class OneElement:
        def numel(self) -> int:
            return 1

        def item(self) -> float:
            return 0.25

    out = io.StringIO()
    emit(2, {"loss": math.nan, "acc": OneElement(), "lr_name": "cosine", "flag": True, "epoch": 9}, out)
    assert out.getvalue() == '@hpotui {"epoch": 2, "loss": NaN, "acc": 0.25}\n'
    emit(3, {"note": "nothing numeric"}, out)
    assert out.getvalue().count("\n") == 1  # a line with no metric is not printed


def test_lightning_hooks_epoch_end_logging_mid_epoch_validation_and_test(tmp_path: Path):
    needs("lightning")
    from hpotui.engine.reading.metricline import Report, parse_metric_line

    result = subprocess.run([sys.executable, str(TRAINERS / "cb_lightning_hooks.py"), "--csv", str(tmp_path / "csv")],
                            capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    reports: dict[float, dict[str, float]] = {}
    for line in result.stdout.splitlines():
        parsed = parse_metric_line(line, 0)
        if isinstance(parsed, Report):
            reports.setdefault(parsed.step, {}).update(parsed.values)
    batches = 4  # 256 samples, batch 64
    expected: dict[float, dict[str, float]] = {}
    last_step_loss: dict[int, float] = {}
    with open(tmp_path / "csv" / "version_0" / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            epoch, step = int(row["epoch"]), int(row["step"])
            if row["train_loss_step"]:
                last_step_loss[epoch] = float(row["train_loss_step"])
            if row["val_loss"]:  # a validation: at the fraction of the epoch trained
                expected.setdefault((step + 1) / batches, {})["val_loss"] = float(row["val_loss"])
            if row["train_loss_epoch"]:  # the epoch's end, with what on_train_epoch_end logged
                expected[float(epoch + 1)].update({"train_loss": float(row["train_loss_epoch"]),
                                                   "train_loss_epoch": float(row["train_loss_epoch"]),
                                                   "train_loss_step": last_step_loss[epoch],
                                                   "steps_seen": float(row["steps_seen"])})
            if row["test_acc"]:
                expected.setdefault(float(epoch), {})["test_acc"] = float(row["test_acc"])
    assert sorted(expected) == [0.5, 1.0, 1.5, 2.0]
    assert reports == expected
