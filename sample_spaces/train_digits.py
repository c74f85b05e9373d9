"""A real, small PyTorch trainer for hpotui's sample searches: an MLP on scikit-learn's digits.

Why this shape:

* The data is the 8x8 digits set that ships inside scikit-learn (1797 images, no download),
  so the sample runs on an offline GPU box. We read the bundled ``digits.csv.gz`` directly
  (exactly what ``sklearn.datasets.load_digits`` reads) because importing ``sklearn.datasets``
  costs about 1.2 s per trial; if the file is not where we expect, we fall back to
  ``load_digits``.
* The train/val split is fixed (seed 0, independent of ``--seed``) so every trial of a study is
  scored on the same validation images.
* Plain SGD with momentum 0.9 (no gradient clipping; see :class:`MomentumSGD`): learning
  rates around 1e-2..1e-1 learn to >95 % val_acc in a few epochs, rates from ~0.3 up blow
  up (losses in the hundreds to 1e20s, or ``NaN``) within the first epochs, and rates near
  1e-5 barely move. That spread is what the health detector
  and the TUI are meant to show, so it is honest rather than staged.
* ``--optimizer adam`` (with ``--beta2``) instead of the default SGD (with ``--momentum``, 0.9):
  the conditional sample space (``sample_spaces/conditional.yaml``) searches each optimiser's
  own knob only where it exists. Adam is written out too (:class:`Adam`), for the same reason.
* One metric line per epoch: ``@hpotui {"epoch", "train_loss", "train_acc", "val_loss",
  "val_acc", "size_mb"}`` (``size_mb``: the float32 weights, the second objective of
  ``sample_spaces/two_objectives.yaml``), NaN written as ``NaN``. The script does not need hpotui installed: it uses
  ``hpotui.engine.trial_side.report.report`` when importable and otherwise prints the same line itself.
* When the training loss stops being finite the script reports that epoch and exits 0:
  a model whose weights are NaN cannot recover, further epochs only burn the GPU, and
  classifying the trial as ``diverged`` is the engine's job (it reads the NaN), not the
  exit code's.
* Trials run side by side on few cores, so torch uses one thread unless ``--threads`` says
  otherwise; the GPU is used when the engine gave one (``CUDA_VISIBLE_DEVICES``).
* If ``HPOTUI_TRIAL_DIR`` is set, the final ``state_dict`` is saved there as ``model.pt``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

SPLIT_SEED = 0
VAL_FRACTION = 0.2
MOMENTUM = 0.9

try:
    from hpotui import report
except ImportError:  # hpotui not installed in this environment: print the same line ourselves

    def report(step: int | None = None, /, **metrics: float) -> None:
        payload = ({"epoch": step} if step is not None else {}) | metrics
        print("@hpotui " + json.dumps(payload, allow_nan=True), flush=True)


def whole_number(text: str) -> int:
    """Accept ``27`` and ``27.0``: the engine may render an int-valued resource as a float."""
    value = float(text)
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="sgd (default) or adam")
    parser.add_argument("--momentum", type=float, default=MOMENTUM, help="SGD momentum (default 0.9)")
    parser.add_argument("--beta2", type=float, default=0.999, help="Adam's second-moment decay (default 0.999)")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout after each hidden layer")
    parser.add_argument("--width", type=whole_number, default=128, help="units per hidden layer")
    parser.add_argument("--hidden-layers", type=whole_number, default=2, help="number of hidden layers")
    parser.add_argument("--batch-size", type=whole_number, default=64)
    parser.add_argument("--epochs", type=whole_number, default=20)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="weight init and batch order (not the split)")
    parser.add_argument("--threads", type=whole_number, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.lr <= 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    if not 0.0 <= args.momentum < 1.0:
        parser.error(f"--momentum must be in [0, 1), got {args.momentum}")
    if not 0.0 < args.beta2 < 1.0:
        parser.error(f"--beta2 must be in (0, 1), got {args.beta2}")
    return args


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images (1797, 64) and labels (1797,) from the copy bundled with scikit-learn."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if bundled.is_file():
            table = np.loadtxt(bundled, delimiter=",")
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data, digits.target.astype(np.int64)


def split_and_standardise(images: np.ndarray, labels: np.ndarray, device: torch.device):
    """Fixed seeded split; mean/std from the training part only (no peeking at val)."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_val = int(round(len(labels) * VAL_FRACTION))
    val_idx, train_idx = order[:n_val], order[n_val:]
    mean = images[train_idx].mean(axis=0)
    std = images[train_idx].std(axis=0)
    std[std == 0] = 1.0  # some border pixels are always 0
    x = ((images - mean) / std).astype(np.float32)

    def tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(x[idx]).to(device), torch.from_numpy(labels[idx]).to(device)

    return tensors(train_idx), tensors(val_idx)


def build_model(width: int, hidden_layers: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    inputs = 64
    for _ in range(hidden_layers):
        layers += [nn.Linear(inputs, width), nn.ReLU(), nn.Dropout(dropout)]
        inputs = width
    layers.append(nn.Linear(inputs, 10))
    return nn.Sequential(*layers)


class MomentumSGD:
    """SGD with heavy-ball momentum, the same update as ``torch.optim.SGD(momentum=m)``.

    Written out because constructing any ``torch.optim`` optimiser imports ``torch._dynamo``,
    which costs about 1.3 s of start-up per trial on a CPU box -- a third of a quick trial.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float, weight_decay: float) -> None:
        self.params, self.lr, self.momentum, self.weight_decay = params, lr, momentum, weight_decay
        self.buffers = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for p, buf in zip(self.params, self.buffers):
            if p.grad is None:
                continue
            grad = p.grad.add(p, alpha=self.weight_decay) if self.weight_decay else p.grad
            buf.mul_(self.momentum).add_(grad)
            p.add_(buf, alpha=-self.lr)


class Adam:
    """Adam (Kingma & Ba), the same update as ``torch.optim.Adam(betas=(0.9, beta2), eps=1e-8)``.

    Hand-written like :class:`MomentumSGD`, to keep ``torch._dynamo`` out of every trial's start-up.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, beta2: float, weight_decay: float,
                 beta1: float = 0.9, eps: float = 1e-8) -> None:
        self.params, self.lr, self.beta1, self.beta2, self.eps = params, lr, beta1, beta2, eps
        self.weight_decay = weight_decay
        self.first = [torch.zeros_like(p) for p in params]
        self.second = [torch.zeros_like(p) for p in params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        correction1 = 1 - self.beta1 ** self.steps
        correction2 = 1 - self.beta2 ** self.steps
        for p, m, v in zip(self.params, self.first, self.second):
            if p.grad is None:
                continue
            grad = p.grad.add(p, alpha=self.weight_decay) if self.weight_decay else p.grad
            m.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
            v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            denominator = (v / correction2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denominator, value=-self.lr / correction1)


def make_optimiser(args: argparse.Namespace, params: list[torch.Tensor]) -> MomentumSGD | Adam:
    if args.optimizer == "adam":
        return Adam(params, args.lr, args.beta2, args.weight_decay)
    return MomentumSGD(params, args.lr, args.momentum, args.weight_decay)


def train_epoch(model, optimiser: MomentumSGD | Adam, x, y, batch_size: int, generator: torch.Generator) -> tuple[float, float]:
    """One pass over shuffled batches; returns (mean loss, accuracy) over the epoch."""
    model.train()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    order = torch.randperm(len(y), generator=generator).to(x.device)
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for start in range(0, len(y), batch_size):
        idx = order[start:start + batch_size]
        logits = model(x[idx])
        loss = loss_fn(logits, y[idx])
        optimiser.zero_grad()
        (loss / len(idx)).backward()
        optimiser.step()
        total_loss += loss.detach()
        correct += (logits.detach().argmax(dim=1) == y[idx]).sum()
    return total_loss.item() / len(y), correct.item() / len(y)


@torch.no_grad()
def evaluate(model, x, y) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    return loss, (logits.argmax(dim=1) == y).float().mean().item()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    (x_train, y_train), (x_val, y_val) = split_and_standardise(*load_digits_arrays(), device)
    model = build_model(args.width, args.hidden_layers, args.dropout).to(device)
    optimiser = make_optimiser(args, list(model.parameters()))
    size_mb = sum(p.numel() for p in model.parameters()) * 4 / 1e6  # float32 weights
    knob = f"beta2={args.beta2:g}" if args.optimizer == "adam" else f"momentum={args.momentum:g}"
    print(f"train_digits: {len(y_train)} train / {len(y_val)} val images on {device}, {args.optimizer} {knob} "
          f"lr={args.lr:g} width={args.width} dropout={args.dropout:g} batch={args.batch_size}", flush=True)

    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        train_loss, train_acc = train_epoch(model, optimiser, x_train, y_train, args.batch_size, generator)
        val_loss, val_acc = evaluate(model, x_val, y_val)
        report(epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
               size_mb=round(size_mb, 6))
        if not math.isfinite(train_loss):
            print(f"train_digits: training loss is {train_loss} at epoch {epoch}; stopping (diverged)",
                  file=sys.stderr, flush=True)
            break
    print(f"train_digits: {epoch} epochs in {time.perf_counter() - started:.2f} s", flush=True)

    trial_dir = os.environ.get("HPOTUI_TRIAL_DIR")
    if trial_dir:
        Path(trial_dir).mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), Path(trial_dir) / "model.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
