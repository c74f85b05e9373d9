"""A training script that knows nothing about hpotui: it prints ordinary progress lines.

It stands for the legacy script you cannot (or would rather not) change. Each epoch it
prints ``epoch 3 train loss: 0.41 val acc: 0.87``; ``regex.yaml`` tells hpotui how to read
the numbers out of those lines (``metrics: {regex: ...}``) instead of ``@hpotui`` lines.

What it trains is real but tiny, in pure Python so it starts in milliseconds: a linear
least-squares classifier fitted by full-batch gradient descent on a fixed synthetic two-class
problem whose features have very different scales. Gradient descent on that loss is stable
only below ``lr = 2 / largest curvature`` (about 0.4 here); above it the loss grows
geometrically (about 1e6 by epoch 5 at ``lr=1``, and on to ``inf``/``nan`` for larger rates or
longer runs) while accuracy collapses, as a diverging real model's would.
"""

from __future__ import annotations

import argparse
import random
import sys

FEATURE_SCALES = (2.5, 1.5, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25)
N_TRAIN, N_VAL = 300, 200


def make_data(n: int, rng: random.Random) -> list[tuple[list[float], float]]:
    """Points whose label is the sign of a fixed noisy linear rule (same rule for every split)."""
    rule = [1.0, -0.5, 0.8, 0.0, 1.5, -1.0, 2.0, 0.5]
    rows = []
    for _ in range(n):
        x = [rng.gauss(0.0, s) for s in FEATURE_SCALES]
        score = sum(w * v for w, v in zip(rule, x)) + rng.gauss(0.0, 0.5)
        rows.append((x, 1.0 if score > 0 else -1.0))
    return rows


def loss_and_accuracy(w: list[float], data: list[tuple[list[float], float]]) -> tuple[float, float]:
    total, correct = 0.0, 0
    for x, y in data:
        pred = sum(wi * xi for wi, xi in zip(w, x))
        total += (pred - y) * (pred - y) / 2  # (not **: that raises OverflowError instead of inf)
        correct += (pred > 0) == (y > 0)
    return total / len(data), correct / len(data)


def gradient_step(w: list[float], data: list[tuple[list[float], float]], lr: float, l2: float) -> list[float]:
    grad = [l2 * wi for wi in w]
    for x, y in data:
        err = sum(wi * xi for wi, xi in zip(w, x)) - y
        for i, xi in enumerate(x):
            grad[i] += err * xi / len(data)
    return [wi - lr * gi for wi, gi in zip(w, grad)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="tiny legacy-style trainer with plain log lines")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--l2", type=float, default=0.0, help="ridge penalty")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="initial weights (the data is fixed)")
    args = parser.parse_args(argv)

    data_rng = random.Random(1234)
    train, val = make_data(N_TRAIN, data_rng), make_data(N_VAL, data_rng)
    init_rng = random.Random(args.seed)
    w = [init_rng.gauss(0.0, 0.1) for _ in FEATURE_SCALES]
    print(f"starting training: lr={args.lr} l2={args.l2} epochs={args.epochs}", flush=True)
    for epoch in range(1, args.epochs + 1):
        w = gradient_step(w, train, args.lr, args.l2)
        train_loss, _ = loss_and_accuracy(w, train)
        _, val_acc = loss_and_accuracy(w, val)
        print(f"epoch {epoch} train loss: {train_loss:.4g} val acc: {val_acc:.4f}", flush=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
