"""Search efficiency: best val_acc reached per epoch spent, for our schedulers and the competitors'.

    python benchmarks/search_efficiency.py --quick        # 10 seeds (Ray Tune 3), a few minutes on 2 cores
    python benchmarks/search_efficiency.py                # 20 seeds (Ray Tune 10)
    python benchmarks/search_efficiency.py --only mf2     # only the workloads whose title says mf2
    python benchmarks/search_efficiency.py --regenerate   # re-run the real trainer to rebuild the curve cache

Why a tabular benchmark: a fair comparison gives every method the same workload and the same
budget, and a meaningful one repeats over many seeds. Training for real inside every method run
would cost hours and mix scheduler quality with machine noise, so the real digits trainer
(``sample_spaces/train_digits.py``) runs once per configuration for ``max_resource`` epochs,
its per-epoch ``val_acc`` curves are cached in ``benchmarks/curves/digits.json`` (configurations
drawn from ``sample_spaces/asha.yaml``'s space), and each method "trains" a configuration by
reading the curve of the nearest cached configuration (distance in the unit cube, log-scaled where
the parameter is log). Every method asks its own sampler for configurations in the same space
and is mapped through the same table, so samplers that model the space (TPE) are not handicapped.

The second workload is synthetic, so it is unbounded and cheap: parametric learning curves
``acc(e) = final - (final - 0.1) · exp(-speed · e)`` plus noise, over the same space. The optimum
learning rate rises with the batch size; higher learning rates learn faster but plateau lower
(the trap for early stopping: the leaders at epoch 1 are not the leaders at epoch 27); dropout
slows learning but helps the plateau; learning rates past a batch-dependent threshold diverge:
the curve falls to chance and ends (the digits trainer exits at a NaN loss the same way). The
noise is seeded by the benchmark seed, so each seed is a fresh instance of the workload.

The third and fourth workloads are analytic multi-fidelity benchmark functions from the ``mf2``
package (Hartmann6 and Park91A, each with a cheap low fidelity that is only partly faithful to
the high one), turned into epoch curves whose early epochs rank configurations by the low
fidelity and whose last epoch is the high fidelity (:class:`MultiFidelityFunction`): nothing to
download, and a different kind of trap from the synthetic curves. Optional: without ``mf2``
these rows are skipped with a note; so are Optuna's, Ray Tune's and DEHB's (``pip install
dehb``), none of which the test suite needs.

Every method run gets the same budget of epochs (``--budget-trials`` full trials' worth) and
``--workers`` trials at a time. The simulation is an event queue: each epoch takes one time unit,
a worker that frees up starts the next configuration at once, so ASHA's asynchronous promotions
happen in the order they would on a real box. Our schedulers are driven as the engine drives
them (``on_trial_start``, ``on_result`` per epoch with the objective, stop on STOP,
``on_trial_end``; the sampler observes each finished trial's best value and status).
Optuna runs through ask/tell with its own samplers and ``HyperbandPruner`` in the same event
queue. ASHA + TPE runs twice: with the BOHB rule (the model fit on the highest rung with
``d + 3`` results, what ``search.algorithm: tpe`` with a scheduler now does) and with the rule
before it (every trial's last value; pruned trials told PRUNED), so the change is measured.
DEHB runs through its ask / tell in the same event queue: each ask is a configuration and a
fidelity, trained from scratch to that many epochs. Ray Tune's ``ASHAScheduler`` runs for real (its trainable reads the same curves, for the
same configurations our fifo-random and asha draw, and calls ``tune.report`` per epoch); a
stopper ends the experiment once it has received the budget's worth of epoch results.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import heapq
import itertools
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpotui.engine.schedulers import Action, make_scheduler
from hpotui.engine.search.sampling import RandomSampler
from hpotui.engine.space_file.space import Param, Space, load_space

REPO = Path(__file__).resolve().parents[1]
SPACE_FILE = REPO / "sample_spaces" / "asha.yaml"
TRAINER = REPO / "sample_spaces" / "train_digits.py"
CURVES = Path(__file__).with_name("curves") / "digits.json"
REPORT = Path(__file__).with_name("SEARCH_EFFICIENCY.md")
METRIC = "val_acc"
TABLE_SEED = 2024  # the cached configurations' sampler seed: not one of the benchmark seeds
CHECKPOINTS = (0.25, 0.5, 1.0)
RAY_CPUS = 2  # Ray is started with this many CPUs; each trial takes RAY_CPUS / workers of them


def say(text: str) -> None:
    """Progress on stderr, so stdout stays the tables."""
    print(text, file=sys.stderr, flush=True)


def max_resource(space: Space) -> int:
    return int(space.scheduler.max_resource or 27)


def seeded(space: Space, seed: int) -> Space:
    return dataclasses.replace(space, search=dataclasses.replace(space.search, seed=seed))


# -- workloads ---------------------------------------------------------------------------------------------


class Workload(Protocol):
    name: str

    def curve(self, config: dict[str, Any]) -> list[float]:
        """The objective after each epoch; shorter than max_resource when the trial ends early (diverged)."""


def unit(param: Param, value: Any) -> float:
    """The value's position in its range, 0..1 (log-scaled for log parameters, index for choices)."""
    if param.type == "choice":
        return param.values.index(value) / max(1, len(param.values) - 1)
    low, high, x = float(param.low), float(param.high), float(value)  # type: ignore[arg-type]
    if param.log:
        low, high, x = math.log(low), math.log(high), math.log(x)
    return (x - low) / (high - low) if high > low else 0.0


@dataclass
class DigitsTable:
    """The cached real curves; a configuration trains as the nearest cached one did."""

    params: tuple[Param, ...]
    configs: list[dict[str, Any]]
    curves: list[list[float]]
    name: str = "digits (real trainer, cached curves)"
    _points: list[tuple[float, ...]] = field(default_factory=list)
    _memo: dict[tuple, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._points = [self._unit(c) for c in self.configs]

    def _unit(self, config: dict[str, Any]) -> tuple[float, ...]:
        return tuple(unit(p, config[p.name]) for p in self.params)

    def nearest(self, config: dict[str, Any]) -> int:
        key = tuple(config[p.name] for p in self.params)
        if key not in self._memo:
            x = self._unit(config)
            self._memo[key] = min(range(len(self._points)),
                                  key=lambda i: sum((a - b) ** 2 for a, b in zip(x, self._points[i])))
        return self._memo[key]

    def curve(self, config: dict[str, Any]) -> list[float]:
        return self.curves[self.nearest(config)]

    @property
    def best(self) -> float:
        return max(x for c in self.curves for x in c if not math.isnan(x))


@dataclass
class SyntheticCurves:
    """Parametric learning curves over the digits space (see the module docstring for the shape)."""

    seed: int
    epochs: int
    name: str = "synthetic learning curves"

    def curve(self, config: dict[str, Any]) -> list[float]:
        rng = random.Random(f"{self.seed}:{sorted(config.items())}")
        u = math.log10(config["lr"])
        b = math.log2(config["batch_size"] / 64)
        w = math.log2(config["width"] / 128)
        dropout = config["dropout"]
        best_u = -1.6 + 0.3 * b  # larger batches want larger learning rates
        final = (0.985 - 0.05 * (u - best_u) ** 2 - 0.004 * (w - 1) ** 2 - 0.12 * (dropout - 0.3) ** 2
                 + rng.gauss(0, 0.01))
        final = min(max(final, 0.1), 0.99)
        speed = 0.5 * 10 ** (0.8 * (u - best_u)) * (64 / config["batch_size"]) ** 0.5 * (1 - 0.8 * dropout)
        diverge_u = -0.5 + 0.3 * b + rng.gauss(0, 0.15)
        diverge_at = max(1, round(6 - 8 * (u - diverge_u))) if u > diverge_u else None
        values = []
        for e in range(1, self.epochs + 1):
            if diverge_at is not None and e >= diverge_at:
                values.append(0.1 + abs(rng.gauss(0, 0.01)))  # chance level, then the trial ends
                break
            acc = final - (final - 0.1) * math.exp(-speed * e) + rng.gauss(0, 0.004)
            values.append(min(max(acc, 0.0), 1.0))
        return values


def import_mf2() -> Any:
    """The ``mf2`` package (multi-fidelity benchmark functions), or None when it is not installed.

    mf2 2022.6 reads its own version through ``pkg_resources``, which setuptools >= 81 no longer
    ships; a stand-in answering that one call is installed when the real module is missing.
    (Note: mf2's wheel also installs a top-level ``tests`` package into site-packages.)
    """
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import importlib.metadata
        import types

        shim = types.ModuleType("pkg_resources")
        shim.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        import mf2
    except ImportError:
        return None
    return mf2


def mf2_space(function: Any, base: Space) -> Space:
    """The function's box as a space (one uniform parameter per input), with the digits study's scheduler."""
    from hpotui.engine.space_file.space import parse_space

    params = {f"x{i}": {"type": "uniform", "low": float(lo), "high": float(hi)}
              for i, (lo, hi) in enumerate(zip(function.l_bound, function.u_bound))}
    raw = {"name": f"mf2-{function.name.lower()}", "command": "f " + " ".join(f"{{{n}}}" for n in params),
           "objective": {"metric": METRIC, "mode": "max"}, "search": {"algorithm": "random", "seed": 0},
           "budget": {"max_trials": 12, "max_parallel": 4}, "space": params,
           "scheduler": {"type": "asha", "min_resource": base.scheduler.min_resource,
                         "max_resource": base.scheduler.max_resource,
                         "reduction_factor": base.scheduler.reduction_factor}}
    return parse_space(raw, f"mf2:{function.name}", REPO)


@dataclass
class MultiFidelityFunction:
    """An mf2 function (minimised) turned into epoch curves whose early epochs rank by its low fidelity.

    At epoch ``e`` of ``E`` a configuration reports ``-(w·high + (1 - w)·(low + offset))`` with
    ``w = e / E``, plus noise of 0.5 % of the high fidelity's range: it ends at ``-high(x)``, and
    ``offset`` (the largest ``high - low`` over 2000 random points, so never below 0) makes every
    earlier epoch look worse than the last, as training does; which configurations lead early is
    decided by the cheap, only partly faithful low fidelity. Seeded per benchmark seed.
    """

    function: Any
    seed: int
    epochs: int
    name: str = ""
    offset: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        import numpy as np

        x = np.random.default_rng(TABLE_SEED).uniform(self.function.l_bound, self.function.u_bound,
                                                      (2000, self.function.ndim))
        high, low = self.function.high(x), self.function.low(x)
        self.offset = max(0.0, float(np.max(high - low)))
        self.noise = 0.005 * float(np.max(high) - np.min(high))
        self.name = f"mf2 {self.function.name} ({self.function.ndim}-d, low fidelity ranks the early epochs)"

    def curve(self, config: dict[str, Any]) -> list[float]:
        import numpy as np

        x = np.array([[config[f"x{i}"] for i in range(self.function.ndim)]])
        high, low = float(self.function.high(x)[0]), float(self.function.low(x)[0]) + self.offset
        rng = random.Random(f"{self.seed}:{sorted(config.items())}")
        values = []
        for e in range(1, self.epochs + 1):
            w = e / self.epochs
            y = max(w * high + (1 - w) * low, high) + abs(rng.gauss(0, self.noise)) * (1 - w)
            values.append(-y + rng.gauss(0, self.noise) * 0.1)
        return values


# -- the curve cache ---------------------------------------------------------------------------------------------


def trainer_argv(config: dict[str, Any], epochs: int) -> list[str]:
    return [sys.executable, str(TRAINER), "--lr", repr(config["lr"]), "--dropout", repr(config["dropout"]),
            "--width", str(config["width"]), "--batch-size", str(config["batch_size"]),
            "--epochs", str(epochs), "--seed", "0", "--threads", "1"]


def train_once(config: dict[str, Any], epochs: int) -> list[float]:
    """Run the real trainer and read its ``@hpotui`` lines; the curve ends at the first non-finite value
    (kept as NaN: the epoch was spent, but the engine never shows a NaN objective to a scheduler)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run(trainer_argv(config, epochs), capture_output=True, text=True, env=env, cwd=REPO,
                          check=True, timeout=600)
    curve: list[float] = []
    for line in done.stdout.splitlines():
        if line.startswith("@hpotui "):
            value = json.loads(line[len("@hpotui "):]).get(METRIC)
            if value is None or not math.isfinite(value):
                curve.append(math.nan)
                break
            curve.append(round(float(value), 4))
    return curve


def regenerate(space: Space, size: int, parallel: int) -> None:
    """Train ``size`` configurations of the space for max_resource epochs and write the cache."""
    epochs = max_resource(space)
    sampler = RandomSampler(seeded(space, TABLE_SEED))
    configs = [sampler.suggest(i) for i in range(size)]
    say(f"training {size} configurations x {epochs} epochs, {parallel} at a time ...")
    started = time.monotonic()
    curves: list[list[float]] = [[] for _ in configs]
    with ThreadPoolExecutor(parallel) as pool:
        for i, curve in enumerate(pool.map(lambda c: train_once(c, epochs), configs)):
            curves[i] = curve
            if (i + 1) % 10 == 0:
                say(f"  {i + 1}/{size} ({time.monotonic() - started:.0f}s)")
    wall = time.monotonic() - started
    head = {
        "about": "per-epoch val_acc of the real digits trainer, one row per configuration; "
                 "read by benchmarks/search_efficiency.py",
        "generated": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python benchmarks/search_efficiency.py --regenerate"
                   + (f" --table-size {size}" if size != 150 else ""),
        "trainer": " ".join(["python sample_spaces/train_digits.py", "--lr {lr} --dropout {dropout} --width {width}",
                             f"--batch-size {{batch_size}} --epochs {epochs} --seed 0 --threads 1"]),
        "space_file": str(SPACE_FILE.relative_to(REPO)),
        "sampler": f"engine.search.sampling.RandomSampler, seed {TABLE_SEED}, indices 0..{size - 1}",
        "machine": f"{platform.node()}: {os.cpu_count()} cores, {parallel} trainers at a time",
        "wall_s": round(wall, 1),
        "epochs": epochs,
        "metric": METRIC,
    }
    rows = [json.dumps({"config": c, METRIC: [None if math.isnan(x) else x for x in v]})
            for c, v in zip(configs, curves)]
    body = json.dumps(head, indent=1)[:-2] + ',\n "rows": [\n' + ",\n".join(rows) + "\n ]\n}\n"
    CURVES.parent.mkdir(parents=True, exist_ok=True)
    CURVES.write_text(body)
    say(f"wrote {CURVES} ({len(body) // 1024} KiB) in {wall:.0f}s")


def load_table(space: Space) -> DigitsTable:
    data = json.loads(CURVES.read_text())
    return DigitsTable(space.params, [r["config"] for r in data["rows"]],
                       [[math.nan if x is None else x for x in r[METRIC]] for r in data["rows"]])


# -- methods driven in the event queue ----------------------------------------------------------------------------


class Method(Protocol):
    def start(self, index: int) -> dict[str, Any]:
        """A worker is free: the configuration of trial ``index``."""

    def report(self, index: int, epoch: int, value: float) -> bool:
        """The trial finished ``epoch`` with objective ``value``; True to stop it."""

    def end(self, index: int, best: float | None, best_epoch: int | None, status: str) -> None:
        """The trial left running: completed, diverged, pruned, or cut by the budget (``stopped``)."""


class Ours:
    """One of our schedulers with our random (or TPE) sampler, called the way ``engine/study.py`` calls them."""

    def __init__(self, space: Space, kind: str, sampler: str = "random", rung_rule: bool = True) -> None:
        spec = dataclasses.replace(space.scheduler, type=kind)
        self.scheduler = make_scheduler(spec, METRIC, "max")
        if sampler == "tpe":
            from hpotui.engine.search.tpe import TpeSampler

            # Without the rung rule: the sampler as it was before it (every trial's best value, pruned ones
            # told PRUNED at the step they reached, Optuna's default start-up), which is what TPE with fifo is.
            model_spec = spec if rung_rule else dataclasses.replace(spec, type="fifo")
            self.sampler: Any = TpeSampler(dataclasses.replace(space, scheduler=model_spec))
        else:
            self.sampler = RandomSampler(space)
        self.params: dict[int, dict[str, Any]] = {}
        self.curves: dict[int, list[tuple[float, float]]] = {}

    def start(self, index: int) -> dict[str, Any]:
        self.params[index] = self.sampler.suggest(index)
        self.scheduler.on_trial_start(index)
        self.curves[index] = []
        return self.params[index]

    def report(self, index: int, epoch: int, value: float) -> bool:
        self.curves[index].append((float(epoch), value))
        return self.scheduler.on_result(index, float(epoch), value).action == Action.STOP

    def end(self, index: int, best: float | None, best_epoch: int | None, status: str) -> None:
        self.scheduler.on_trial_end(index)
        curve = self.curves.pop(index, [])
        if status != "stopped":  # cut by the budget: the run is over, nothing left to learn for
            self.sampler.observe(index, self.params[index], best, status=status, step=best_epoch, curve=curve)


class Dehb:
    """DEHB (Awad, Mallik & Hutter 2021: differential evolution + Hyperband) through its ask / tell.

    Each ask is a configuration and a fidelity (epochs); the trial trains from scratch to that
    fidelity, reporting every epoch (charged to the budget like everyone's), and DEHB is told
    the objective at its fidelity (DEHB minimises: told the negated value).
    """

    def __init__(self, space: Space, seed: int, output: str) -> None:
        import ConfigSpace as CS
        from dehb import DEHB
        from loguru import logger

        logger.disable("dehb")  # DEHB logs every bracket (and a checkpoint warning) through loguru on stderr
        self.params = space.params
        cs = CS.ConfigurationSpace(seed=seed)
        for p in space.params:
            if p.type == "choice":
                cs.add(CS.Categorical(p.name, list(p.values)))
            elif p.type == "int":
                cs.add(CS.Integer(p.name, (int(p.low), int(p.high)), log=p.log))  # type: ignore[arg-type]
            else:
                cs.add(CS.Float(p.name, (float(p.low), float(p.high)), log=p.log))  # type: ignore[arg-type]
        spec = space.scheduler
        self.dehb = DEHB(cs=cs, f=None, dimensions=len(space.params), min_fidelity=spec.min_resource,
                         max_fidelity=spec.max_resource, eta=spec.reduction_factor, n_workers=1, seed=seed,
                         output_path=tempfile.mkdtemp(dir=output))  # its checkpoints, one folder per run
        self.jobs: dict[int, dict[str, Any]] = {}
        self.last: dict[int, float] = {}

    def start(self, index: int) -> dict[str, Any]:
        job = self.dehb.ask()
        self.jobs[index] = job
        config = dict(job["config"])
        for p in self.params:
            if p.type == "int":
                config[p.name] = int(config[p.name])
        return config

    def report(self, index: int, epoch: int, value: float) -> bool:
        self.last[index] = value
        return epoch >= round(self.jobs[index]["fidelity"])

    def end(self, index: int, best: float | None, best_epoch: int | None, status: str) -> None:
        job = self.jobs.pop(index)
        value = self.last.pop(index, None)
        if status == "stopped":
            return
        fitness = -value if value is not None and math.isfinite(value) else 1e9  # diverged: the worst
        self.dehb.tell(job, {"fitness": fitness, "cost": float(job["fidelity"])})


class OptunaAskTell:
    """An Optuna study driven by ask/tell: its sampler, its pruner, our event queue."""

    def __init__(self, space: Space, seed: int, sampler: str, pruner: bool) -> None:
        import optuna

        from hpotui.engine.search.tpe import distribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        spec = space.scheduler
        samplers = {"random": lambda: optuna.samplers.RandomSampler(seed=seed),
                    "tpe": lambda: optuna.samplers.TPESampler(seed=seed)}
        chosen_pruner = (optuna.pruners.HyperbandPruner(min_resource=int(spec.min_resource),
                                                        max_resource=int(spec.max_resource or 27),
                                                        reduction_factor=int(spec.reduction_factor))
                         if pruner else optuna.pruners.NopPruner())
        self.optuna = optuna
        # A fixed name: HyperbandPruner deals trials to brackets by a hash of the study name and trial number,
        # so an auto-generated (random) name would make every run different.
        self.study = optuna.create_study(study_name=f"search-efficiency-{seed}", direction="maximize",
                                         sampler=samplers[sampler](), pruner=chosen_pruner)
        self.distributions = {p.name: distribution(optuna, p) for p in space.params}
        self.trials: dict[int, Any] = {}

    def start(self, index: int) -> dict[str, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.trials[index] = self.study.ask(self.distributions)
        return dict(self.trials[index].params)

    def report(self, index: int, epoch: int, value: float) -> bool:
        trial = self.trials[index]
        trial.report(value, epoch)
        return trial.should_prune()

    def end(self, index: int, best: float | None, best_epoch: int | None, status: str) -> None:
        trial = self.trials.pop(index)
        if status == "stopped":
            return
        if status == "pruned":
            self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, best if best is not None else None,
                            state=None if best is not None else self.optuna.trial.TrialState.FAIL)


# -- one run ----------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One method on one seed: the best objective after each epoch that improved it."""

    trace: list[tuple[int, float]]  # (epochs spent, best so far), ascending
    epochs: int
    trials: int

    def best_at(self, epochs: float) -> float:
        best = math.nan
        for spent, value in self.trace:
            if spent > epochs + 1e-9:
                break
            best = value
        return best

    def first_reach(self, target: float) -> int | None:
        return next((spent for spent, value in self.trace if value >= target - 1e-12), None)


@dataclass
class _Live:
    curve: list[float]
    done: int = 0
    best: float | None = None
    best_epoch: int | None = None


def simulate(workload: Workload, method: Method, budget: int, workers: int, max_resource: int) -> Run:
    """Run ``method`` on ``workload`` until ``budget`` epochs are spent, ``workers`` trials at a time.

    An epoch is charged when it starts, so no method ever exceeds the budget; when the budget is
    gone, running trials finish the epoch they are in and are cut there. Simultaneous events are
    handled in the order they were scheduled, which keeps every run deterministic.
    """
    queue: list[tuple[int, int, int]] = []  # (time the epoch ends, order, trial)
    order = itertools.count()
    live: dict[int, _Live] = {}
    charged = spent = 0
    best = -math.inf
    trace: list[tuple[int, float]] = []
    trials = 0

    def begin_epoch(now: int, index: int) -> bool:
        nonlocal charged
        if charged >= budget:
            return False
        charged += 1
        heapq.heappush(queue, (now + 1, next(order), index))
        return True

    def launch(now: int) -> None:
        nonlocal trials
        if charged >= budget:
            return
        index = trials
        trials += 1
        live[index] = _Live(workload.curve(method.start(index)))
        begin_epoch(now, index)

    for _ in range(workers):
        launch(0)
    while queue:
        now, _, index = heapq.heappop(queue)
        trial = live[index]
        trial.done += 1
        spent += 1
        value = trial.curve[trial.done - 1]
        if math.isnan(value):  # the engine never passes a NaN objective to a scheduler
            stop = False
        else:
            if trial.best is None or value > trial.best:
                trial.best, trial.best_epoch = value, trial.done
            if value > best:
                best = value
                trace.append((spent, value))
            stop = method.report(index, trial.done, value)
        if trial.done >= len(trial.curve) or stop:
            status = "pruned" if stop else ("completed" if len(trial.curve) >= max_resource else "diverged")
            method.end(index, trial.best, trial.best_epoch, status)
            del live[index]
            launch(now)
        elif not begin_epoch(now, index):
            method.end(index, trial.best, trial.best_epoch, "stopped")
            del live[index]
    assert spent == budget, (spent, budget)
    return Run(trace, spent, trials)


# -- Ray Tune ------------------------------------------------------------------------------------------------------


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Ray prints experiment boxes and worker logs on fds 1 and 2; our tables must stay readable."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def run_ray_asha(curves: list[list[float]], space: Space, budget: int, workers: int, storage: str,
                 name: str) -> Run:
    """Ray Tune's ASHAScheduler over the trials whose curves are ``curves`` (in launch order)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.stopper import Stopper

    class EpochBudget(Stopper):
        """Counts every epoch result the driver receives and ends the experiment at the budget."""

        def __init__(self) -> None:
            self.results: list[tuple[str, float]] = []

        def __call__(self, trial_id: str, result: dict) -> bool:
            self.results.append((trial_id, float(result[METRIC])))
            return False

        def stop_all(self) -> bool:
            return len(self.results) >= budget

    def trainable(config: dict) -> None:
        for epoch, value in enumerate(curves[config["index"]], start=1):
            time.sleep(0.005)  # every epoch costs the same small time, as in the event queue
            if math.isnan(value):
                return  # the trainer exits at a NaN loss; nothing to rank
            tune.report({"epoch": epoch, METRIC: value})

    spec = space.scheduler
    stopper = EpochBudget()
    scheduler = ASHAScheduler(time_attr="epoch", metric=METRIC, mode="max", max_t=int(spec.max_resource or 27),
                              grace_period=int(spec.min_resource), reduction_factor=spec.reduction_factor)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": RAY_CPUS / workers}),
        param_space={"index": tune.grid_search(list(range(len(curves))))},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=workers, reuse_actors=True),
        run_config=tune.RunConfig(stop=stopper, verbose=0, storage_path=storage, name=name))
    with quiet_fds():
        tuner.fit()
    trace: list[tuple[int, float]] = []
    best = -math.inf
    for spent, (_, value) in enumerate(stopper.results[:budget], start=1):
        if value > best:
            best = value
            trace.append((spent, value))
    counted = stopper.results[:budget]
    return Run(trace, len(counted), len({t for t, _ in counted}))


# -- the comparison ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """A method run in the event queue: its row name and how to build it for a space and a seed."""

    name: str
    make: Callable[[Space, int], Method]


def contenders(with_optuna: bool, dehb_output: str | None = None) -> list[Contender]:
    ours = [
        Contender("fifo-random", lambda s, seed: Ours(seeded(s, seed), "fifo")),
        Contender("asha", lambda s, seed: Ours(seeded(s, seed), "asha")),
        Contender("hyperband", lambda s, seed: Ours(seeded(s, seed), "hyperband")),
        Contender("median", lambda s, seed: Ours(seeded(s, seed), "median")),
    ]
    dehb = [Contender("DEHB", lambda s, seed: Dehb(s, seed, dehb_output))] if dehb_output else []
    if not with_optuna:
        return ours + dehb
    return ours + [
        Contender("asha + tpe (ours, BOHB rule: fit on the highest full rung)",
                  lambda s, seed: Ours(seeded(s, seed), "asha", "tpe")),
        Contender("asha + tpe (ours, before: every trial's last value)",
                  lambda s, seed: Ours(seeded(s, seed), "asha", "tpe", rung_rule=False)),
        Contender("optuna random + HyperbandPruner", lambda s, seed: OptunaAskTell(s, seed, "random", True)),
        Contender("optuna TPE + HyperbandPruner", lambda s, seed: OptunaAskTell(s, seed, "tpe", True)),
        Contender("optuna TPE (no pruner)", lambda s, seed: OptunaAskTell(s, seed, "tpe", False)),
    ] + dehb


def importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


@dataclass
class Result:
    name: str
    runs: dict[int, Run]  # seed -> run


def compare(space: Space, make_workload: Callable[[int], Workload], seeds: list[int], ray_seeds: list[int],
            budget: int, workers: int, with_optuna: bool, storage: str | None, notes: list[str],
            dehb_output: str | None = None) -> list[Result]:
    """Every contender on every seed; Ray Tune on ``ray_seeds`` when ``storage`` (its results folder) is given."""
    chosen = contenders(with_optuna, dehb_output)
    results = [Result(c.name, {}) for c in chosen] + ([Result("ray tune ASHAScheduler", {})]
                                                      if storage is not None and ray_seeds else [])
    for seed in seeds:
        workload = make_workload(seed)
        for contender, result in zip(chosen, results):
            result.runs[seed] = simulate(workload, contender.make(space, seed), budget, workers, max_resource(space))
        if storage is not None and seed in ray_seeds:
            sampler = RandomSampler(seeded(space, seed))  # the configurations our fifo-random and asha draw
            curves = [workload.curve(sampler.suggest(i)) for i in range(budget)]
            try:
                results[-1].runs[seed] = run_ray_asha(curves, space, budget, workers, storage,
                                                      f"{re.sub(r'[^A-Za-z0-9]+', '-', workload.name)[:40]}-{seed}")
            except Exception as exc:  # noqa: BLE001 (a broken Ray install must not hide the other rows)
                notes.append(f"Ray Tune failed on {workload.name}, seed {seed}: {type(exc).__name__}: {exc}"[:300])
                storage = None
    ray_runs = results[-1].runs if results[-1].name.startswith("ray") else {}
    if ray_runs and len(ray_runs) < len(seeds):  # Ray ran fewer seeds: our asha on the same ones, side by side
        asha = next(r for r in results if r.name == "asha")
        results.append(Result(f"asha, on Ray Tune's {len(ray_runs)} seeds", {s: asha.runs[s] for s in ray_runs}))
    return results


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def _median_spread(values: list[float]) -> str:
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return "—"
    if len(values) < 4:
        return f"{statistics.median(values):.4f}"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{statistics.median(values):.4f} [{q1:.4f}, {q3:.4f}]"


def reach_ratio(result: Result, reference: Result, budget: int) -> str:
    """Median over seeds of (epochs to first reach fifo-random's final best) / fifo-random's epochs."""
    ratios = []
    for seed, run in result.runs.items():
        target = reference.runs[seed].best_at(math.inf)
        spent = run.first_reach(target)
        ratios.append(math.inf if spent is None else spent / reference.runs[seed].epochs)
    reached = sum(1 for r in ratios if math.isfinite(r))
    middle = statistics.median(ratios)
    shown = "never" if math.isinf(middle) else f"{middle:.2f}"
    return f"{shown} ({reached}/{len(ratios)} seeds)"


def table(results: list[Result], budget: int) -> str:
    reference = results[0]
    head = ["method", "seeds", "epochs spent", "trials started",
            *(f"best at {int(c * 100)}% (mean ± std)" for c in CHECKPOINTS),
            "final best: median [25th, 75th percentile]",
            "epochs to reach random's final best (median ratio)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in results:
        runs = list(result.runs.values())
        if not runs:
            continue
        epochs = statistics.mean(r.epochs for r in runs)
        cells = [result.name, str(len(runs)), f"{epochs:.0f}", f"{statistics.mean(r.trials for r in runs):.1f}",
                 *(_mean_std([r.best_at(c * budget) for r in runs]) for c in CHECKPOINTS),
                 _median_spread([r.best_at(math.inf) for r in runs]),
                 reach_ratio(result, reference, budget)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 seeds, Ray Tune 3 (default 20 and 10)")
    parser.add_argument("--only", help="run only the workloads whose title contains this text (e.g. mf2)")
    parser.add_argument("--seeds", type=int, help="seeds per method (at least 5 for the report)")
    parser.add_argument("--ray-seeds", type=int, help="seeds for Ray Tune (the slow one)")
    parser.add_argument("--budget-trials", type=int, default=12,
                        help="budget per method run, in full trials' worth of epochs (default 12)")
    parser.add_argument("--workers", type=int, default=4, help="trials running at a time (default 4)")
    parser.add_argument("--no-ray", action="store_true", help="skip Ray Tune")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {REPORT.name}")
    parser.add_argument("--regenerate", action="store_true", help="re-run the real trainer to rebuild the cache")
    parser.add_argument("--table-size", type=int, default=150, help="configurations in a regenerated cache")
    parser.add_argument("--parallel", type=int, default=2, help="trainers at a time while regenerating")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    started = time.monotonic()
    space = load_space(SPACE_FILE)
    epochs = max_resource(space)
    if args.regenerate or not CURVES.exists():
        regenerate(space, args.table_size, args.parallel)
    seeds = list(range(args.seeds or (10 if args.quick else 20)))
    ray_count = args.ray_seeds if args.ray_seeds is not None else (3 if args.quick else 10)
    budget = args.budget_trials * epochs
    notes: list[str] = []
    with_optuna = importable("optuna")
    if not with_optuna:
        notes.append("Optuna is not installed: its rows are skipped (pip install optuna).")
    use_ray = not args.no_ray and ray_available()
    if not args.no_ray and not use_ray:
        notes.append("Ray Tune is not installed: its row is skipped (pip install 'ray[tune]').")
    if args.no_ray:
        notes.append("Ray Tune skipped (--no-ray).")
    with_dehb = importable("dehb") and importable("ConfigSpace")
    if not with_dehb:
        notes.append("DEHB is not installed: its row is skipped (pip install dehb).")
    table_data = load_table(space)
    workloads: list[tuple[str, Space, Callable[[int], Workload]]] = [
        (table_data.name, space, lambda seed: table_data),
        ("synthetic learning curves", space, lambda seed: SyntheticCurves(seed, epochs)),
    ]
    mf2 = import_mf2()
    if mf2 is None:
        notes.append("mf2 is not installed: its multi-fidelity functions are skipped (pip install mf2).")
    else:
        for function in (mf2.hartmann6, mf2.park91a):
            workloads.append((MultiFidelityFunction(function, 0, epochs).name, mf2_space(function, space),
                              lambda seed, f=function: MultiFidelityFunction(f, seed, epochs)))
    if args.only:
        workloads = [w for w in workloads if args.only in w[0]]
    sections = []
    with tempfile.TemporaryDirectory(prefix="hpotui-se-ray-") as storage, \
            tempfile.TemporaryDirectory(prefix="hpotui-se-dehb-") as dehb_output:
        if use_ray:
            import ray

            with quiet_fds():
                ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            for title, workload_space, make in workloads:
                t0 = time.monotonic()
                results = compare(workload_space, make, seeds, seeds[:ray_count], budget, args.workers, with_optuna,
                                  storage if use_ray else None, notes, dehb_output if with_dehb else None)
                text = table(results, budget)
                extra = (f" Best value anywhere in the table: {table_data.best:.4f} "
                         f"({len(table_data.curves)} configurations)." if make(0) is table_data else "")
                section = (f"### {title}\n\nBudget {budget} epochs per run ({args.budget_trials} full trials of "
                           f"{epochs} epochs), {args.workers} trials at a time.{extra}\n\n{text}\n")
                print(section, flush=True)
                say(f"{title}: {time.monotonic() - t0:.0f}s")
                sections.append(section)
        finally:
            if use_ray:
                import ray

                with quiet_fds():
                    ray.shutdown()
    for note in notes:
        print(f"note: {note}")
    command = " ".join(["python benchmarks/search_efficiency.py", *(sys.argv[1:] if argv is None else argv)])
    wall = time.monotonic() - started
    report = (f"# Search efficiency\n\n`{command}` ({time.strftime('%Y-%m-%d %H:%M')}, {wall:.0f}s; "
              f"{platform.node()}: {os.cpu_count()} cores).\n\n" + "\n".join(sections)
              + "".join(f"\nNote: {n}\n" for n in notes) + READING)
    if not args.no_write:
        REPORT.write_text(report)
        say(f"written to {REPORT} ({wall:.0f}s in all)")
    return report


READING = """
### How to read it

- Every run of every method gets the same budget of epochs and the same number of trials at a
  time; "best" is the highest val_acc any trial reported up to that point (any epoch).
- The digits rows read the real trainer's cached curves (`benchmarks/curves/digits.json`):
  a configuration trains as the nearest cached one did, for every method alike.
- The synthetic rows are a harder test for early stopping: there the leaders after one epoch are
  often not the leaders after 27 (high learning rates learn fast and plateau lower; dropout learns
  slowly and ends higher), and each seed is a fresh instance of the workload.
- "epochs to reach random's final best": per seed, the epochs the method needed to first match
  what fifo-random (same seed) had at the end of its budget, divided by that budget; the median
  over seeds, "never" when the method missed it on more than half of them. Below 1 means the
  method found random search's answer with less compute. Our random-sampled methods and Ray Tune
  see the same configurations in the same order for a seed; Optuna's samplers draw their own.
- Ray Tune runs for real (actors, its own event loop) with the same curves; its epoch count is
  the results its driver received before the stopper ended the experiment at the budget.
- "final best": per seed the best value at the end of the budget; the median over seeds and the
  25th-75th percentiles. The mf2 rows report the negated function value (higher is better).
- DEHB trains every configuration it asks for from scratch to the fidelity it names (that is
  DEHB's design, no checkpoint reuse), so its epochs buy fewer distinct evaluations at the top.
- "asha + tpe (ours, BOHB rule ...)" is what `search.algorithm: tpe` with `scheduler: asha` now
  runs; "(before ...)" is the same sampler told every trial's last value, the previous rule.
"""


if __name__ == "__main__":
    main()
