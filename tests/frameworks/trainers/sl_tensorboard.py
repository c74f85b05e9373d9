"""A PyTorch loop logging with ``torch.utils.tensorboard.SummaryWriter`` (read with metrics.tensorboard)."""

from __future__ import annotations

import os

import torch
from torch.utils.tensorboard import SummaryWriter

from pb_common import arguments, digits, finish, gate


def main() -> None:
    args = arguments()
    torch.manual_seed(0)
    x, y, vx, vy = (torch.tensor(a) for a in digits(bool(args.poison)))
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    writer = SummaryWriter(os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "tb"))
    for epoch in range(1, args.epochs + 1):
        for i in range(0, len(x), 64):
            loss = torch.nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out = net(vx)
            val_loss = torch.nn.functional.cross_entropy(out, vy)
            val_acc = (out.argmax(1) == vy).float().mean()
        writer.add_scalar("train_loss", loss.item(), epoch)
        writer.add_scalar("val_loss", val_loss.item(), epoch)
        writer.add_scalar("val_acc", val_acc.item(), epoch)
        writer.flush()  # what SummaryWriter does every flush_secs; here at once so the test is quick
        gate(args, epoch)
    writer.close()
    finish(args, {})  # the framework's own record is the event file itself


if __name__ == "__main__":
    main()
