"""PyTorch Lightning: a LightningModule with self.log, HpotuiLightningCallback and a CSVLogger
(the record the test compares against); the default progress bar off, as on a headless box.

``--package pytorch_lightning`` runs the same module under the older package name.
"""

import sys

package = "pytorch_lightning" if "--package=pytorch_lightning" in sys.argv else "lightning.pytorch"
sys.argv = [a for a in sys.argv if not a.startswith("--package=")]

import importlib  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")  # num_workers / logging-interval advice

from cb_common import arguments, callbacks_module, digits, epochs, finish, gate  # noqa: E402

args = arguments()
L = importlib.import_module(package)
callbacks = callbacks_module(bool(args.standalone))
from torch import nn  # noqa: E402


class Digits(L.LightningModule):
    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self.net(x)
        self.log("val_loss", nn.functional.cross_entropy(out, y))
        self.log("val_acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class Gate(L.Callback):
    """After ours: the epoch's training metrics are reported when the next epoch starts."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch:
            gate(args, trainer.current_epoch)

    def on_train_end(self, trainer, pl_module):
        gate(args, trainer.current_epoch)


L.seed_everything(0, verbose=False)
x, y, vx, vy = digits(bool(args.poison))
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)),
                                     batch_size=64, shuffle=True)
val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(vx), torch.tensor(vy)), batch_size=150)
logger = L.loggers.CSVLogger(args.record and args.record + ".csvlogs" or "csvlogs", name="", version=0)
trainer = L.Trainer(max_epochs=epochs(args), accelerator="cpu", logger=logger, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[callbacks.HpotuiLightningCallback(), Gate()])
trainer.fit(Digits(args.lr), loader, val)
finish(args, {"csv": str(logger.log_dir) + "/metrics.csv",
              "callback_metrics": {k: float(v) for k, v in trainer.callback_metrics.items()}})
