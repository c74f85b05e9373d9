"""Keras 3 on the torch backend: model.fit with HpotuiKerasCallback; the record is History."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch  # noqa: E402

torch.set_num_threads(1)

from cb_common import arguments, callbacks_module, digits, epochs, finish, gate  # noqa: E402

args = arguments()
callbacks = callbacks_module(bool(args.standalone))

import keras  # noqa: E402

keras.utils.set_random_seed(0)
x, y, vx, vy = digits(bool(args.poison))
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer=keras.optimizers.Adam(args.lr), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(x, y, validation_data=(vx, vy), epochs=epochs(args), batch_size=64, verbose=0,
                    callbacks=[callbacks.HpotuiKerasCallback(),
                               keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: gate(args, epoch + 1))])
finish(args, history.history)
