"""Optional PyTorch helper for training scripts: gradient norm and update/weight ratio.

The guides' rule of thumb: each optimizer step should change the weights by about 1e-3 of their
size (``||w_after - w_before|| / ||w||``). Far below (1e-4) the learning rate is too low to get
anywhere; far above (1e-2) it is too high and training bounces. The engine's ``update_ratio``
flag watches the value this helper reports.

Usage in a training script::

    tracker = UpdateRatioTracker(model)
    for epoch in range(1, epochs + 1):
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            tracker.before_step()      # after backward (and after gradient clipping / unscale_)
            optimizer.step()
            tracker.after_step()
        report(epoch, train_loss=..., val_acc=..., **tracker.epoch_metrics())

Like ``engine/trial_side/report.py`` this file depends on nothing else in hpotui, so it can be copied next
to a training script. torch is imported only when a tracker is made: importing this module from
the engine (or from a process without torch) costs nothing.
"""

from __future__ import annotations

import math
from typing import Any, Iterable


class UpdateRatioTracker:
    """Measures ``grad_norm`` and ``update_ratio`` around each optimizer step.

    ``every`` measures one step in ``every`` (the snapshot copies all the weights once per measured
    step: on a large model, measure every 10th step). Mixed precision: call ``before_step`` after
    ``scaler.unscale_(optimizer)``, or ``grad_norm`` is the scaled norm.
    """

    def __init__(self, model_or_params: Any, every: int = 1) -> None:
        import torch  # only here: the engine never needs torch

        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self._torch = torch
        source: Iterable[Any] = model_or_params.parameters() if hasattr(model_or_params, "parameters") \
            else model_or_params
        self.params = [p for p in source if p.requires_grad]
        if not self.params:
            raise ValueError("no trainable parameters to track (all have requires_grad=False?)")
        self.every = every
        self._calls = 0
        self._before: list[Any] | None = None
        self._grad_norm = math.nan
        self._norm_sum = 0.0
        self._log_ratio_sum = 0.0
        self._steps = 0

    def before_step(self) -> None:
        """Call right before ``optimizer.step()``: reads the gradients and keeps a copy of the weights."""
        self._calls += 1
        if (self._calls - 1) % self.every:
            self._before = None
            return
        torch = self._torch
        with torch.no_grad():
            grads = [p.grad.detach() for p in self.params if p.grad is not None]
            self._grad_norm = _global_norm(torch, grads) if grads else 0.0
            self._before = [p.detach().clone() for p in self.params]

    def after_step(self) -> dict[str, float]:
        """Call right after ``optimizer.step()``; returns this step's ``grad_norm`` and ``update_ratio``.

        Returns an empty dict on the steps that ``every`` skips.
        """
        if self._before is None:
            return {}
        torch = self._torch
        with torch.no_grad():
            update = _global_norm(torch, [p.detach() - b for p, b in zip(self.params, self._before)])
            weight = _global_norm(torch, [p.detach() for p in self.params])
        self._before = None
        ratio = update / weight if weight > 0 else math.inf
        self._steps += 1
        self._norm_sum += self._grad_norm
        self._log_ratio_sum += math.log(ratio) if ratio > 0 or math.isnan(ratio) else -math.inf
        return {"grad_norm": self._grad_norm, "update_ratio": ratio}

    def epoch_metrics(self) -> dict[str, float]:
        """Averages since the last call (then starts over), ready for ``report(epoch, **...)``.

        ``grad_norm`` is the arithmetic mean; ``update_ratio`` the geometric mean, because the ratio
        lives on a log scale (one huge early step must not make a whole epoch look "too high").
        Empty when no step was measured.
        """
        if not self._steps:
            return {}
        result = {"grad_norm": self._norm_sum / self._steps,
                  "update_ratio": math.exp(self._log_ratio_sum / self._steps)}
        self._steps, self._norm_sum, self._log_ratio_sum = 0, 0.0, 0.0
        return result


def _global_norm(torch: Any, tensors: list[Any]) -> float:
    """L2 norm of all tensors together, in float32 whatever their dtype, with one device sync."""
    device = tensors[0].device  # a model split over devices: gather the per-tensor norms on one
    norms = torch.stack([torch.linalg.vector_norm(t.float()).to(device) for t in tensors])
    return float(torch.linalg.vector_norm(norms).item())
