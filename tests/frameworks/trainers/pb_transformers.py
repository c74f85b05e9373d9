"""Hugging Face ``Trainer`` on a tiny BERT built from a config (nothing downloaded), as its docs show.

The digits' 64 pixel intensities (0..16) are the tokens. With ``eval_strategy="epoch"`` and
``logging_strategy="epoch"`` the Trainer prints one dict of logs per epoch (``{'eval_loss': ...}``),
which the test reads with metrics.regex and compares with ``trainer.state.log_history``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

from pb_common import arguments, digits, finish, gate


class Tokens(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.ids = torch.tensor(np.nan_to_num(x * 16).round().astype("int64"))
        self.y = torch.tensor(y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.y[i]}


class Gate(TrainerCallback):
    """Waits once the Trainer printed an epoch's evaluation: the Trainer adds its ProgressCallback (the
    printer) after the user's callbacks, so the wait happens at the next event, after the print."""

    def __init__(self, args) -> None:  # type: ignore[no-untyped-def]
        self.args, self.pending = args, None

    def on_log(self, _args, state, _control, logs=None, **_kwargs):  # type: ignore[no-untyped-def]
        if logs and "eval_loss" in logs:
            self.pending = round(state.epoch)

    def _wait(self) -> None:
        if self.pending is not None:
            gate(self.args, self.pending)
            self.pending = None

    def on_epoch_begin(self, *_args, **_kwargs):  # type: ignore[no-untyped-def]
        self._wait()

    def on_train_end(self, *_args, **_kwargs):  # type: ignore[no-untyped-def]
        self._wait()


def accuracy(prediction) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def main() -> None:
    args = arguments()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x, y, vx, vy = digits(False, n_train=256, n_val=128)
    config = BertConfig(vocab_size=17, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=10)
    model = BertForSequenceClassification(config)
    if args.poison:
        with torch.no_grad():
            model.bert.embeddings.word_embeddings.weight.fill_(float("nan"))
    training = TrainingArguments(output_dir=os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "hf"),
                                 num_train_epochs=args.epochs, per_device_train_batch_size=32,
                                 learning_rate=5e-3, eval_strategy="epoch", logging_strategy="epoch",
                                 save_strategy="no", report_to=[], use_cpu=True, seed=0)
    trainer = Trainer(model=model, args=training, train_dataset=Tokens(x, y), eval_dataset=Tokens(vx, vy),
                      compute_metrics=accuracy, callbacks=[Gate(args)])
    trainer.train()
    epochs: dict[str, dict[str, float]] = {}
    for entry in trainer.state.log_history:
        if "epoch" in entry:
            epochs.setdefault(f"{entry['epoch']:g}", {}).update(
                {k: v for k, v in entry.items() if isinstance(v, float) and k != "epoch"})
    finish(args, epochs)


if __name__ == "__main__":
    main()
