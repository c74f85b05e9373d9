"""PyTorch Lightning as its docs show: a LightningModule logging with ``self.log(..., prog_bar=True)``.

``--bar tqdm`` uses Lightning's TQDMProgressBar (read with metrics.regex), ``--bar default`` keeps
Lightning's default (the rich bar when rich is installed, which prints nothing useful to a file);
``--logger csv`` adds a CSVLogger under the trial folder (read with metrics.csv).
"""

from __future__ import annotations

import os

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from pb_common import arguments, digits, finish, gate


class Digits(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

    def training_step(self, batch, _index):  # type: ignore[no-untyped-def]
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _index):  # type: ignore[no-untyped-def]
        x, y = batch
        out = self.net(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(out, y), prog_bar=True)
        self.log("val_acc", (out.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=0.2)


class Record(Callback):
    """The trainer's own logged metrics per epoch, and the gate once the bar has shown them."""

    def __init__(self, args) -> None:  # type: ignore[no-untyped-def]
        self.args, self.epochs = args, {}

    def on_train_epoch_end(self, trainer, _module):  # type: ignore[no-untyped-def]
        self.epochs[str(trainer.current_epoch)] = {k: float(v) for k, v in trainer.logged_metrics.items()}
        gate(self.args, trainer.current_epoch)


def main() -> None:
    args = arguments(("bar", "logger"))
    L.seed_everything(0, verbose=False)
    x, y, vx, vy = digits(bool(args.poison))
    train = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y))
    val = torch.utils.data.TensorDataset(torch.tensor(vx), torch.tensor(vy))
    record = Record(args)
    callbacks = ([TQDMProgressBar()] if args.bar == "tqdm" else []) + [record]  # the gate after the bar
    logger = False
    if args.logger == "csv":
        from lightning.pytorch.loggers import CSVLogger

        # Lightning writes the CSV every 100 steps by default: flushing each step makes it grow as it trains.
        logger = CSVLogger(os.environ["HPOTUI_TRIAL_DIR"], name="csv", flush_logs_every_n_steps=1)
    trainer = L.Trainer(max_epochs=args.epochs, callbacks=callbacks, logger=logger, enable_checkpointing=False,
                        enable_model_summary=False, log_every_n_steps=1)
    trainer.fit(Digits(), torch.utils.data.DataLoader(train, batch_size=64),
                torch.utils.data.DataLoader(val, batch_size=300))
    finish(args, record.epochs)


if __name__ == "__main__":
    main()
