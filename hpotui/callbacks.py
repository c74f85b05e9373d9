"""Ready callbacks: a framework's logged metrics become ``@hpotui`` lines the moment they exist.

* Keras 3: ``model.fit(..., callbacks=[HpotuiKerasCallback()])`` reports each epoch's logs (what
  ``History`` records), after the epoch's validation.
* PyTorch Lightning (``lightning`` or ``pytorch_lightning``): ``Trainer(callbacks=[HpotuiLightningCallback()])``
  reports every validation's metrics as it ends and each epoch's training metrics as the epoch
  closes (after ``LightningModule.on_train_epoch_end``, so metrics logged there are in it).
* Hugging Face ``Trainer``: ``Trainer(..., callbacks=[HpotuiTransformersCallback()])`` reports
  every log and evaluation (what ``trainer.state.log_history`` records).

No pruning code belongs in the trial: the engine reads the lines and stops a trial itself (its
scheduler, or the health checks on a NaN). The step is the number of epochs completed, as the
framework counts them (Keras's "Epoch 3/10" is epoch 3; Lightning's CSV ``epoch`` column counts
from 0, so its row ``epoch=2`` is epoch 3 here; Hugging Face's fractional ``epoch`` is kept).

Why the odd shape: this one file must work in two places. Installed with hpotui it is
``from hpotui.callbacks import HpotuiKerasCallback``; in a training environment without hpotui
(hpotui installed with pipx / uv tool) ``hpotui helpers DIR`` copies it there as
``hpotui_callbacks.py`` and it is ``from hpotui_callbacks import HpotuiKerasCallback``. So it
imports nothing of hpotui and only the standard library at import time; each class is built on
first use (module ``__getattr__``), so importing the module never imports a framework, and using
the Keras callback never imports Lightning or transformers. The engine never imports this file.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Callable, Iterable, Mapping

PREFIX = "@hpotui "  # the metric-line contract (README: "Reporting metrics from a trial")


def emit(epoch: float | None, metrics: Mapping[str, Any], file: Any = None, step_name: str = "epoch") -> None:
    """Print one metric line of the numeric ``metrics`` at ``epoch`` (or at ``step_name``); flushed at once.

    Values that are not one number (strings, lists, tensors of many elements) are left out, so a
    framework's bookkeeping entries never make the engine reject the line. NaN and infinities are
    written as ``NaN`` / ``Infinity``, which the engine reads back as such.
    """
    payload: dict[str, float] = {}
    if epoch is not None:
        payload[step_name] = epoch
    for name, value in metrics.items():
        number = scalar(value)
        if number is not None and name not in ("epoch", "step"):
            payload[str(name)] = number
    if len(payload) <= (epoch is not None):
        return  # nothing numeric to say
    stream = file if file is not None else sys.stdout
    stream.write(PREFIX + json.dumps(payload, allow_nan=True) + "\n")
    stream.flush()


def scalar(value: Any) -> float | None:
    """One float out of a Python number, a numpy scalar or a one-element tensor; else None."""
    if isinstance(value, bool) or isinstance(value, str):
        return None
    if isinstance(value, (int, float)):
        return _float(value)
    size = getattr(value, "numel", None) or getattr(value, "size", None)
    count = size() if callable(size) else size
    if count == 1 and hasattr(value, "item"):  # torch tensors, numpy arrays and scalars
        item = value.item()
        return None if isinstance(item, bool) else _float(item) if isinstance(item, (int, float)) else None
    return None


def _float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        return math.inf if value > 0 else -math.inf


# -- Keras 3 ---------------------------------------------------------------------------------------------

def _keras_callback() -> type:
    import keras

    class HpotuiKerasCallback(keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        """Reports each epoch's logs (train and ``val_`` metrics, as ``History`` keeps them) as epoch N."""

        def __init__(self, file: Any = None) -> None:
            super().__init__()
            self._file = file

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            emit(epoch + 1, logs or {}, self._file)

    return HpotuiKerasCallback


# -- PyTorch Lightning -----------------------------------------------------------------------------------

class _LightningReports:
    """Lightning's hooks, without Lightning's base class (added by :func:`_lightning_callback`).

    ``trainer.callback_metrics`` keeps every metric ever logged, fresh or stale, so each hook
    reports only the metrics of its own phase: a key that first appears during a validation (the
    sanity check included) or a test run belongs to that phase, every other key to training.
    Training metrics are reported when the next epoch starts (or training ends): Lightning calls a
    callback's ``on_train_epoch_end`` before the LightningModule's, which may still log.
    """

    def __init__(self, file: Any = None) -> None:
        super().__init__()
        self._file = file
        self._phase_of: dict[str, str] = {}  # metric name -> "validate" / "test" for evaluation metrics
        self._keys_before: set[str] = set()
        self._batches_done = 0
        self._epoch_to_report: int | None = None

    def _learn_phase(self, trainer: Any, phase: str) -> None:
        for key in trainer.callback_metrics:
            if key not in self._keys_before and key not in self._phase_of:
                self._phase_of[key] = phase

    def _report(self, trainer: Any, epoch: float, keep: Callable[[str], bool]) -> None:
        if trainer.is_global_zero:
            emit(epoch, {k: v for k, v in trainer.callback_metrics.items() if keep(k)}, self._file)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._batches_done = batch_idx + 1

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._report_training(trainer)
        self._batches_done = 0

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._epoch_to_report = trainer.current_epoch + 1

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._report_training(trainer)

    def _report_training(self, trainer: Any) -> None:
        if self._epoch_to_report is not None:
            self._report(trainer, self._epoch_to_report, lambda key: key not in self._phase_of)
            self._epoch_to_report = None

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._keys_before = set(trainer.callback_metrics)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self._learn_phase(trainer, "validate")
        if trainer.sanity_checking:
            return
        self._report(trainer, self._validation_epoch(trainer), lambda key: self._phase_of.get(key) == "validate")

    def _validation_epoch(self, trainer: Any) -> float:
        """Epochs completed when this validation ran: fractional for ``val_check_interval < 1``."""
        fitting = getattr(getattr(trainer, "state", None), "fn", None)
        if str(getattr(fitting, "value", fitting)) != "fit":
            return float(trainer.current_epoch)  # trainer.validate() after fit: nothing more trained
        batches = trainer.num_training_batches
        if not batches or not math.isfinite(batches) or self._batches_done >= batches:
            return trainer.current_epoch + 1
        return trainer.current_epoch + self._batches_done / batches

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._keys_before = set(trainer.callback_metrics)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._learn_phase(trainer, "test")
        self._report(trainer, float(trainer.current_epoch), lambda key: self._phase_of.get(key) == "test")


def _lightning_base() -> type:
    """The Callback of the Lightning the trial already imported (``lightning`` preferred otherwise)."""
    names = ("lightning.pytorch", "pytorch_lightning")
    loaded = [name for name in names if name in sys.modules]
    for name in loaded + [n for n in names if n not in loaded]:
        try:
            module = __import__(name, fromlist=["Callback"])
        except ImportError:
            continue
        return module.Callback  # type: ignore[no-any-return]
    raise ImportError("HpotuiLightningCallback needs PyTorch Lightning: pip install lightning")


def _lightning_callback() -> type:
    base = _lightning_base()
    return type("HpotuiLightningCallback", (_LightningReports, base), {
        "__doc__": "Reports each validation's and each training epoch's logged metrics (see the module doc).",
        "__module__": __name__})


# -- Hugging Face transformers ---------------------------------------------------------------------------

def _transformers_callback() -> type:
    from transformers import TrainerCallback

    class HpotuiTransformersCallback(TrainerCallback):  # type: ignore[misc]
        """Reports every ``Trainer.log`` call (training logs and evaluations, as ``log_history`` keeps
        them) at the fractional epoch it was logged at; only the main process prints."""

        def __init__(self, file: Any = None) -> None:
            super().__init__()
            self._file = file

        def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            epoch = logs.get("epoch", state.epoch)
            if epoch is None:  # no epochs to count (an evaluation before training): the optimizer step
                emit(state.global_step, logs, self._file, step_name="step")
            else:
                emit(epoch, logs, self._file)

    return HpotuiTransformersCallback


_FACTORIES: dict[str, Callable[[], type]] = {
    "HpotuiKerasCallback": _keras_callback,
    "HpotuiLightningCallback": _lightning_callback,
    "HpotuiTransformersCallback": _transformers_callback,
}


def __getattr__(name: str) -> type:
    """Build a callback class on first use, importing only its own framework."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = factory()
    cls.__qualname__ = name  # pickle and Lightning's state_key find it as hpotui.callbacks.<name>
    globals()[name] = cls  # built once
    return cls


def __dir__() -> Iterable[str]:
    return sorted(list(globals()) + list(_FACTORIES))
