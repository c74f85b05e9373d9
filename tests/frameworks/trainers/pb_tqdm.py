"""A plain PyTorch loop with tqdm, two ways people write it.

``--style bars``: one bar per epoch (``tqdm(total=batches)``, ``update()`` and ``set_postfix(loss=...)``
each batch, the val metrics added to the postfix once the epoch ends, then ``close()``: each
epoch is one line).
``--style trange``: one ``trange`` over the epochs with ``set_postfix`` (the whole run is one line).
"""

from __future__ import annotations

import torch
from tqdm import tqdm, trange

from pb_common import arguments, digits, finish, gate


def main() -> None:
    args = arguments(("style",))
    torch.manual_seed(0)
    x, y, vx, vy = (torch.tensor(a) for a in digits(bool(args.poison)))
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    record: dict[str, dict[str, float]] = {}

    def train_epoch() -> tuple[float, float]:
        with torch.no_grad():
            out = net(vx)
            return float(torch.nn.functional.cross_entropy(out, vy)), float((out.argmax(1) == vy).float().mean())

    if args.style == "trange":
        bar = trange(1, args.epochs + 1)
        for epoch in bar:
            for i in range(0, len(x), 64):
                loss = torch.nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
            val_loss, val_acc = train_epoch()
            bar.set_postfix(epoch=epoch, val_loss=val_loss, val_acc=val_acc)
            record[str(epoch)] = {"val_loss": val_loss, "val_acc": val_acc}
            gate(args, epoch)
    else:
        for epoch in range(1, args.epochs + 1):
            bar = tqdm(total=len(range(0, len(x), 64)), desc=f"epoch {epoch}")
            for i in range(0, len(x), 64):
                loss = torch.nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.update()
                bar.set_postfix(loss=float(loss))
            val_loss, val_acc = train_epoch()
            bar.set_postfix(loss=float(loss), val_loss=val_loss, val_acc=val_acc)
            bar.close()
            record[str(epoch)] = {"loss": float(loss), "val_loss": val_loss, "val_acc": val_acc}
            gate(args, epoch)
    finish(args, record)


if __name__ == "__main__":
    main()
