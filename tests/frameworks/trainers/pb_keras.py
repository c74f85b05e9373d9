"""Keras 3 on the torch backend, `model.fit` as its docs show: default progress bar or verbose=2,
optionally with ``keras.callbacks.CSVLogger`` (``--logger csv``, read with metrics.csv).

The test reads the printed lines with metrics.regex (or the CSV) and compares them with ``History``.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402

from pb_common import arguments, digits, finish, gate  # noqa: E402


class Gate(keras.callbacks.Callback):
    """Waits at the start of the next epoch (and at the end): the bar has printed the epoch by then."""

    def __init__(self, args) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.args = args

    def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
        if epoch:
            gate(self.args, epoch - self.base)  # Keras prints epochs from 1: index N-1 ended is "Epoch N"

    def on_train_end(self, logs=None):  # type: ignore[no-untyped-def]
        gate(self.args, self.params["epochs"] - self.base)

    @property
    def base(self) -> int:
        return 1 if self.args.logger == "csv" else 0  # CSVLogger's epoch column counts from 0


def main() -> None:
    args = arguments(("verbose", "logger"))
    keras.utils.set_random_seed(0)
    x, y, vx, vy = digits(bool(args.poison))
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    verbose = {} if args.verbose in ("", "auto") else {"verbose": int(args.verbose)}
    callbacks = [Gate(args)]
    if args.logger == "csv":
        callbacks.insert(0, keras.callbacks.CSVLogger(os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "keras.csv")))
    history = model.fit(x, y, validation_data=(vx, vy), epochs=args.epochs, batch_size=32,
                        callbacks=callbacks, **verbose)
    first = 0 if args.logger == "csv" else 1
    finish(args, {str(i + first): {k: v[i] for k, v in history.history.items()} for i in range(len(history.epoch))})


if __name__ == "__main__":
    main()
