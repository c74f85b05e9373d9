"""Health detectors on real trainings, and the PyTorch update-ratio helper.

A small MLP learns sklearn's 8x8 digits on the CPU (about 0.02 s an epoch on one thread). Each
epoch goes the whole way a trial's report goes: ``hpotui.engine.trial_side.report.report`` writes the ``@hpotui``
line, ``engine.reading.metricline`` parses it back (NaN and Infinity included), and the monitor sees the
values the study loop would see. The loop kills a trial at a stopping flag; here training stops.

Note for the sample trainer: cross-entropy on a shallow ReLU MLP does not reach NaN at any
learning rate tried (0.5 to 20): the first epoch explodes, the ReLUs die and the loss sticks near
ln(10). A squared-error loss on the same network reaches Infinity/NaN within two epochs at lr 20.
"""

from __future__ import annotations

import io
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("sklearn.datasets")

from hpotui.engine.flags.health import Flag, HealthConfig, HealthMonitor, status_for  # noqa: E402
from hpotui.engine.reading.metricline import Report, parse_metric_line  # noqa: E402
from hpotui.engine.trial_side.report import report  # noqa: E402
from hpotui.engine.trial_side.torch_health import UpdateRatioTracker  # noqa: E402

nn = torch.nn


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on a busy 2-core box make these tiny trainings 20x slower, not faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class Digits:
    x: torch.Tensor  # 1797 x 64 pixel values 0..16
    y: torch.Tensor
    train: torch.Tensor  # indices
    val: torch.Tensor


@pytest.fixture(scope="module")
def digits() -> Digits:
    data = datasets.load_digits()
    order = torch.randperm(len(data.target), generator=torch.Generator().manual_seed(0))
    return Digits(torch.tensor(data.data, dtype=torch.float32), torch.tensor(data.target), order[:1400], order[1400:])


def train(d: Digits, *, optimizer: str, lr: float, epochs: int, seed: int = 0, loss: str = "ce", momentum: float = 0.9,
          weight_decay: float = 0.0, pixel_scale: float = 16.0, n_train: int = 1400, label_noise: float = 0.0,
          width: int = 64, last_layer_scale: float = 1.0, eval_first: bool = False) -> Iterator[Report]:
    """Train an MLP and yield each epoch's report as the engine parses it from the trial's stdout."""
    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    x = d.x / pixel_scale
    labels = d.y.clone()
    if label_noise:
        flip = torch.rand(len(labels), generator=order) < label_noise
        labels[flip] = torch.randint(0, 10, (int(flip.sum()),), generator=order)
    train_idx = d.train[:n_train]
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
    with torch.no_grad():
        model[2].weight.mul_(last_layer_scale)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if loss == "ce":
            return nn.functional.cross_entropy(out, y)
        return nn.functional.mse_loss(out, nn.functional.one_hot(y, 10).float())

    def evaluate() -> dict[str, float]:
        with torch.no_grad():
            out = model(x[d.val])
            return {"val_loss": loss_fn(out, d.y[d.val]).item(),
                    "val_acc": (out.argmax(1) == d.y[d.val]).float().mean().item()}

    tracker = UpdateRatioTracker(model)
    reports = 0

    def line(epoch: int, **metrics: float) -> Report:
        nonlocal reports
        out = io.StringIO()
        report(epoch, file=out, **metrics)
        parsed = parse_metric_line(out.getvalue().rstrip("\n"), reports)
        assert isinstance(parsed, Report), out.getvalue()
        reports += 1
        return parsed

    if eval_first:
        yield line(0, **evaluate())
    for epoch in range(1, epochs + 1):
        batch_order = train_idx[torch.randperm(len(train_idx), generator=order)]
        total = correct = seen = 0.0
        for start in range(0, len(batch_order), 64):
            batch = batch_order[start:start + 64]
            out = model(x[batch])
            value = loss_fn(out, labels[batch])
            opt.zero_grad()
            value.backward()
            tracker.before_step()
            opt.step()
            tracker.after_step()
            total += value.item() * len(batch)
            correct += (out.argmax(1) == labels[batch]).sum().item()
            seen += len(batch)
        yield line(epoch, train_loss=total / seen, train_acc=correct / seen, **evaluate(), **tracker.epoch_metrics())


def watch(reports: Iterator[Report], config: HealthConfig) -> tuple[list[Flag], int]:
    """Feed a training's reports to the monitor; a stopping flag ends the training, as the loop does."""
    monitor = HealthMonitor(config, "val_acc", "max")
    flags: list[Flag] = []
    epochs = 0
    for rep in reports:
        epochs += 1
        new = monitor.observe(7, rep.step, rep.values)
        flags += new
        if any(f.stop for f in new):
            break
    return flags, epochs


CLASSIFIER = HealthConfig(num_classes=10)


# -- runs that must be stopped --------------------------------------------------------------------------

def test_learning_rate_that_diverges_to_nan_is_stopped_at_once(digits):
    reports = train(digits, optimizer="sgd", lr=20.0, momentum=0.0, loss="mse", epochs=10)
    flags, epochs = watch(reports, HealthConfig())
    assert [(f.kind, f.stop) for f in flags] == [("nan", True)]
    assert flags[0].step <= 2 and epochs == flags[0].step  # no further than the report that showed it
    assert not math.isfinite(flags[0].value)
    assert status_for(flags[0]) == "diverged"
    assert flags[0].message.startswith(f"nan at epoch {flags[0].step:g}: ")


def test_loss_that_explodes_is_stopped_before_it_reaches_nan(digits):
    reports = train(digits, optimizer="sgd", lr=20.0, momentum=0.9, loss="mse", epochs=10)
    flags, epochs = watch(reports, HealthConfig())
    assert [(f.kind, f.step, f.stop) for f in flags] == [("divergence", 2.0, True)]
    assert epochs == 2 and math.isfinite(flags[0].value) and flags[0].value > 1e10
    assert status_for(flags[0]) == "diverged"


# -- healthy runs must raise nothing --------------------------------------------------------------------

HEALTHY = {
    "sgd-0.05": dict(optimizer="sgd", lr=0.05),
    "sgd-0.1": dict(optimizer="sgd", lr=0.1),
    "sgd-0.05-l2": dict(optimizer="sgd", lr=0.05, weight_decay=1e-4, eval_first=True),
    "adam-1e-3": dict(optimizer="adam", lr=1e-3),
    "adam-1e-2": dict(optimizer="adam", lr=1e-2),
    "sgd-0.5-squared-error": dict(optimizer="sgd", lr=0.5, loss="mse"),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(HEALTHY))
def test_healthy_settings_raise_no_flag(digits, name, seed):
    flags, epochs = watch(train(digits, epochs=15, seed=seed, **HEALTHY[name]), CLASSIFIER)
    assert [f.message for f in flags] == []  # every flag here would be a false positive
    assert epochs == 15 + HEALTHY[name].get("eval_first", False)


# -- runs with a hint -----------------------------------------------------------------------------------

def test_too_low_a_learning_rate_is_not_learning(digits):
    flags, epochs = watch(train(digits, optimizer="sgd", lr=1e-4, epochs=8), CLASSIFIER)
    assert sorted((f.kind, f.step) for f in flags) == [("not_learning", 5.0), ("update_ratio", 5.0)]
    assert not any(f.stop for f in flags) and epochs == 8
    ratio = next(f for f in flags if f.kind == "update_ratio")
    assert ratio.value < 1e-4 and ratio.hint.endswith("learning rate too low")


def test_a_learning_rate_that_kills_the_network_is_flagged_but_not_stopped(digits):
    # Raw 0..16 pixels and lr 3: the first epoch's loss is in the thousands, then the ReLUs are
    # dead and the model guesses one class: no NaN, so it is a hint, not a stop.
    flags, epochs = watch(train(digits, optimizer="sgd", lr=3.0, momentum=0.0, pixel_scale=1.0, epochs=8), CLASSIFIER)
    kinds = [f.kind for f in flags]
    assert kinds[:2] == ["initial_loss", "not_learning"]
    assert flags[0].step == 1.0 and flags[0].value > 100
    assert "at chance (1/10)" in flags[1].hint
    assert not any(f.stop for f in flags) and epochs == 8


def test_a_bad_initialisation_shows_in_the_loss_before_training(digits):
    reports = train(digits, optimizer="adam", lr=1e-3, last_layer_scale=100.0, eval_first=True, epochs=1)
    flags, _ = watch(reports, CLASSIFIER)
    assert [(f.kind, f.step, f.metric) for f in flags] == [("initial_loss", 0.0, "val_loss")]
    assert flags[0].value > 10 and "check initialisation / labels" in flags[0].hint


def test_memorising_noisy_labels_is_overfitting(digits):
    # 150 samples, half of their labels shuffled, a wide layer: the model learns the noise, train
    # accuracy climbs while held-out accuracy falls back (flagged near epoch 30).
    reports = train(digits, optimizer="adam", lr=2e-3, n_train=150, label_noise=0.5, width=1024, epochs=45)
    flags, epochs = watch(reports, CLASSIFIER)
    assert [(f.kind, f.metric) for f in flags] == [("overfitting", "train_acc - val_acc")]
    assert flags[0].value > 0.15 and not flags[0].stop and epochs == 45
    assert "more regularisation (L2, dropout) or data" in flags[0].hint


# -- the helper itself ----------------------------------------------------------------------------------

def test_update_ratio_is_the_size_of_one_sgd_step_relative_to_the_weights():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = UpdateRatioTracker(model)
    model(torch.randn(8, 5)).pow(2).mean().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    tracker.before_step()
    opt.step()
    step = tracker.after_step()
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert step["grad_norm"] == pytest.approx(grads.norm().item(), rel=1e-5)
    assert step["update_ratio"] == pytest.approx(0.1 * grads.norm().item() / weights.norm().item(), rel=1e-5)


def test_epoch_metrics_average_the_steps_then_start_over():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracker = UpdateRatioTracker(model)
    steps = []
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(16, 4)).pow(2).mean().backward()
        tracker.before_step()
        opt.step()
        steps.append(tracker.after_step())
    epoch = tracker.epoch_metrics()
    assert epoch["grad_norm"] == pytest.approx(sum(s["grad_norm"] for s in steps) / 3)
    assert epoch["update_ratio"] == pytest.approx(math.prod(s["update_ratio"] for s in steps) ** (1 / 3))
    assert tracker.epoch_metrics() == {}  # nothing measured since


def test_every_nth_step_only_is_measured():
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracker = UpdateRatioTracker(model, every=2)
    measured = []
    for _ in range(4):
        opt.zero_grad()
        model(torch.randn(16, 4)).sum().backward()
        tracker.before_step()
        opt.step()
        measured.append(bool(tracker.after_step()))
    assert measured == [True, False, True, False]
    with pytest.raises(ValueError, match="every must be at least 1"):
        UpdateRatioTracker(model, every=0)


def test_frozen_and_unused_parameters():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)  # frozen: not tracked
    unused = nn.Parameter(torch.ones(3))  # trainable but never in the graph: no gradient, no update
    params = [p for p in model.parameters() if p.requires_grad] + [unused]
    opt = torch.optim.SGD(params, lr=0.1)
    tracker = UpdateRatioTracker(params)
    model(torch.randn(8, 4)).sum().backward()
    tracker.before_step()
    opt.step()
    step = tracker.after_step()
    assert math.isfinite(step["grad_norm"]) and 0 < step["update_ratio"] < 1
    with pytest.raises(ValueError, match="no trainable parameters"):
        UpdateRatioTracker([p for p in model[0].parameters() if not p.requires_grad])


def test_importing_the_health_modules_does_not_import_torch():
    code = ("import sys, hpotui.engine.flags.health, hpotui.engine.trial_side.torch_health; "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
