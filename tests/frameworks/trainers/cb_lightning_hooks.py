"""Lightning's harder cases for HpotuiLightningCallback, run without the engine: a metric logged
in ``LightningModule.on_train_epoch_end`` (after callbacks run), a metric logged on step and on
epoch, validation twice per epoch (``val_check_interval=0.5``) and ``trainer.test`` after fit.
A CSVLogger writes Lightning's own record to ``--csv``.
"""

import argparse
import warnings

import torch

torch.set_num_threads(1)
warnings.filterwarnings("ignore")

import lightning.pytorch as L  # noqa: E402
from torch import nn  # noqa: E402

from hpotui.callbacks import HpotuiLightningCallback  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--csv", required=True)
args = parser.parse_args()


class Module(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(8, 2)
        self.steps = 0

    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        self.steps += 1
        return loss

    def on_train_epoch_end(self):
        self.log("steps_seen", float(self.steps))

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

    def test_step(self, batch, batch_idx):
        self.log("test_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


L.seed_everything(0, verbose=False)
x = torch.randn(256, 8)
data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, (x.sum(1) > 0).long()), batch_size=64)
logger = L.loggers.CSVLogger(args.csv, name="", version=0)
trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=logger, callbacks=[HpotuiLightningCallback()],
                    enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                    log_every_n_steps=1, val_check_interval=0.5)
trainer.fit(Module(), data, data)
trainer.test(trainer.lightning_module, data, verbose=False)
