"""Trial health: metric reports in, flags out.

A flag is a named symptom from the training guides (NaN loss, divergence, a flat loss, a first
loss far from ln(classes), over- and under-fitting, an update/weight ratio far from ~1e-3) with
the step it was seen at, the value that showed it and a one-line hint. Some flags stop the trial
(``stop_on``, by default ``nan`` and ``divergence``) so a hopeless trial frees its GPU at once.

Everything here is pure: no I/O, no clock, no SQL. The study loop feeds every report through
:meth:`HealthMonitor.observe` (up to 64 trials at a time, every report), so each call costs
O(window) with a window of a handful of reports, never O(history). On resume the loop can replay a
trial's recorded reports through ``observe`` to rebuild the state; the replay raises the same
flags again, which the loop discards because it already recorded them.

False positives are defects: a healthy run must raise nothing. That is why the detectors compare
medians and short means instead of single reports, why "flat" means flat *beyond the measured
noise*, and why the thresholds are generous; tests/test_torch_health.py checks real healthy
trainings raise no flag at all.
"""

from __future__ import annotations

import difflib
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..database.records import TrialStatus
from .study_starts import StudyStarts

KINDS = ("nan", "divergence", "not_learning", "initial_loss", "overfitting", "underfitting", "update_ratio")
STATUS_FOR_STOP = TrialStatus.DIVERGED  # a trial stopped by `nan` or `divergence`
STATUS_FOR_OTHER_STOP = TrialStatus.PRUNED  # a trial stopped by a flag the user added to stop_on (not_learning, ...)
STATUS_RUNNING = TrialStatus.RUNNING  # a flag that only hints leaves the trial running

HEAD = 3  # reports whose median is a loss's "initial value" (robust to a first-epoch explosion)
TAIL = 3  # reports averaged as a series' "current value"
NOISE_WINDOW = 10  # reports a series keeps to measure its report-to-report noise
NOISE_SIGMAS = 5  # a rise of val loss must beat this many times that noise (its best is a lucky low)
FAR = 1.5  # "far outside" the update-ratio band: beyond a bound by this factor
CHANCE_MARGIN = 0.05  # accuracy within 5% of the way from chance to perfect still counts as chance
LEARNED_FRACTION = 0.5  # a loss below half of ln(C) has clearly learned something
ACCURACY_RISE = 0.02  # an accuracy up this much (and beyond its noise) is learning, whatever the loss does
BEHIND_FRACTION = 0.5  # an accuracy below half of where the study's other trials start is far behind


@dataclass(frozen=True)
class HealthConfig:
    """The ``health:`` section of the space file; every default is tuned for no false positives."""

    train_loss: str = "train_loss"
    val_loss: str = "val_loss"
    train_acc: str = "train_acc"
    val_acc: str = "val_acc"
    num_classes: int | None = None
    stop_on: tuple[str, ...] = ("nan", "divergence")
    ignore: tuple[str, ...] = ()
    divergence_factor: float = 3.0  # loss above factor x its best (and above where it started)
    divergence_warmup: float = 0.0  # no divergence verdict up to this step (learning-rate warm-up)
    not_learning_patience: int = 5  # reports before a flat loss is called not learning
    not_learning_tolerance: float = 0.02  # "flat": moved less than 2% of its initial value
    initial_loss_factor: float = 1.5  # first loss above 1.5 x ln(C) (or below ln(C)/1.5 at step 0)
    overfitting_gap: float = 0.15  # train minus val accuracy
    overfitting_rise: float = 0.2  # val loss 20% above its best while train loss falls
    overfitting_patience: int = 3  # reports the gap or the rise must last
    underfitting_accuracy: float = 0.6  # "poor": train and val accuracy below this
    underfitting_patience: int = 5  # reports of flat, poor accuracy
    underfitting_tolerance: float = 0.05  # "flat": train accuracy gained less than this over the window
    update_ratio_metric: str = "update_ratio"
    update_ratio_low: float = 1e-4
    update_ratio_high: float = 1e-2
    update_ratio_patience: int = 5  # consecutive reports far (1.5x) outside [low, high]
    update_ratio_warmup: float = 5.0  # no "too high" up to this step: early updates are naturally large

    def stops(self, kind: str) -> bool:
        return kind in self.stop_on

    def watches(self, kind: str) -> bool:
        return kind not in self.ignore


# -- parsing the space file's `health:` section ---------------------------------------------------------

_NAMES = ("train_loss", "val_loss", "train_acc", "val_acc", "update_ratio_metric")
_FLAG_LISTS = ("stop_on", "ignore")
# key -> (whole number?, accepted?, what is required, example value)
_NUMBERS: dict[str, tuple[bool, Callable[[float], bool], str, str]] = {
    "divergence_factor": (False, lambda v: v > 1, "must be above 1", "3"),
    "divergence_warmup": (False, lambda v: v >= 0, "must be 0 or more", "2"),
    "not_learning_patience": (True, lambda v: v >= 3, "must be at least 3 reports", "5"),
    "not_learning_tolerance": (False, lambda v: 0 < v < 1, "must be a fraction between 0 and 1", "0.02"),
    "initial_loss_factor": (False, lambda v: v > 1, "must be above 1", "1.5"),
    "overfitting_gap": (False, lambda v: 0 < v <= 1, "must be an accuracy difference between 0 and 1", "0.15"),
    "overfitting_rise": (False, lambda v: v > 0, "must be above 0 (a fraction: 0.2 is 20%)", "0.2"),
    "overfitting_patience": (True, lambda v: v >= 1, "must be at least 1 report", "3"),
    "underfitting_accuracy": (False, lambda v: 0 < v <= 1, "must be an accuracy between 0 and 1", "0.6"),
    "underfitting_patience": (True, lambda v: v >= 2, "must be at least 2 reports", "5"),
    "underfitting_tolerance": (False, lambda v: 0 < v < 1, "must be an accuracy change between 0 and 1", "0.05"),
    "update_ratio_low": (False, lambda v: v > 0, "must be above 0", "1e-4"),
    "update_ratio_high": (False, lambda v: v > 0, "must be above 0", "1e-2"),
    "update_ratio_patience": (True, lambda v: v >= 1, "must be at least 1 report", "5"),
    "update_ratio_warmup": (False, lambda v: v >= 0, "must be 0 or more", "5"),
}
HEALTH_KEYS = _NAMES + _FLAG_LISTS + ("num_classes",) + tuple(_NUMBERS)


def parse_health(raw: Any, fail: Callable[..., Exception]) -> HealthConfig:
    """Validate the ``health:`` mapping; ``fail(key_path, problem, fix)`` builds the error to raise.

    Numbers may be written as strings (PyYAML reads ``1e-3`` as a string), so "1e-3" is accepted.
    """
    if raw is None:
        return HealthConfig()
    if not isinstance(raw, dict):
        raise fail("health", f"expected a mapping, got {_show(raw)}",
                   "write health: {num_classes: 10, stop_on: [nan, divergence]}")
    _check_known_keys(raw, fail)
    values = _metric_names(raw, fail)
    for key in _FLAG_LISTS:
        if key in raw:
            values[key] = _flag_list(raw[key], f"health.{key}", fail)
    if raw.get("num_classes") is not None:
        values["num_classes"] = _num_classes(raw["num_classes"], fail)
    values.update(_thresholds(raw, fail))
    config = HealthConfig(**values)
    _check_consistent(config, fail)
    return config


def _check_known_keys(raw: dict[Any, Any], fail: Callable[..., Exception]) -> None:
    """An unknown key is most often a typo of a known one: name the closest, never ignore it."""
    for key in raw:
        if key not in HEALTH_KEYS:
            close = difflib.get_close_matches(str(key), HEALTH_KEYS, n=1)
            fix = f"did you mean {close[0]!r}?" if close else "allowed keys: " + ", ".join(HEALTH_KEYS)
            raise fail(f"health.{key}", "unknown key", fix)


def _metric_names(raw: dict[Any, Any], fail: Callable[..., Exception]) -> dict[str, Any]:
    """The metric names the detectors read (``loss``, ``val_acc`` ...): non-empty strings, stripped."""
    values: dict[str, Any] = {}
    for key in _NAMES:
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key].strip():
                raise fail(f"health.{key}", f"expected a metric name, got {_show(raw[key])}",
                           f"write {key}: {getattr(HealthConfig, key)}")
            values[key] = raw[key].strip()
    return values


def _num_classes(value: Any, fail: Callable[..., Exception]) -> int:
    """``num_classes`` sets the chance-level loss ``ln(C)``, so it must be a whole count of 2 or more."""
    number = _number(value, "health.num_classes", fail)
    if number != int(number) or number < 2:
        raise fail("health.num_classes", f"expected a whole number of classes >= 2, got {_show(value)}",
                   "write num_classes: 10")
    return int(number)


def _thresholds(raw: dict[Any, Any], fail: Callable[..., Exception]) -> dict[str, Any]:
    """Each detector threshold present in ``raw``, checked against its own range (``_NUMBERS``)."""
    values: dict[str, Any] = {}
    for key, (whole, accepted, requirement, example) in _NUMBERS.items():
        if key not in raw:
            continue
        number = _number(raw[key], f"health.{key}", fail)
        if whole and number != int(number):
            raise fail(f"health.{key}", f"expected a whole number, got {_show(raw[key])}", f"write {key}: {example}")
        if not accepted(number):
            raise fail(f"health.{key}", f"{requirement}, got {_show(raw[key])}", f"write {key}: {example}")
        values[key] = int(number) if whole else number
    return values


def _check_consistent(config: HealthConfig, fail: Callable[..., Exception]) -> None:
    """Settings valid one by one but contradictory together: an empty update-ratio band, or a
    flag both stopping trials and ignored."""
    if config.update_ratio_low >= config.update_ratio_high:
        raise fail("health.update_ratio_low", f"update_ratio_low ({config.update_ratio_low:g}) must be below "
                   f"update_ratio_high ({config.update_ratio_high:g})", "swap or fix the bounds")
    both = [kind for kind in config.stop_on if kind in config.ignore]
    if both:
        raise fail("health.stop_on", f"{both[0]!r} is also under ignore, so it could never stop a trial",
                   f"remove {both[0]} from stop_on or from ignore")


def _flag_list(value: Any, key: str, fail: Callable[..., Exception]) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise fail(key, f"expected a list of flag names, got {_show(value)}", "write e.g. [nan, divergence]")
    kinds: list[str] = []
    for i, item in enumerate(items):
        if item not in KINDS:
            close = difflib.get_close_matches(str(item), KINDS, n=1)
            fix = f"did you mean {close[0]!r}?" if close else "use some of " + ", ".join(KINDS)
            raise fail(f"{key}[{i}]", f"unknown flag {_show(item)}", fix)
        if item not in kinds:
            kinds.append(item)
    return tuple(kinds)


def _number(value: Any, key: str, fail: Callable[..., Exception]) -> float:
    result: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            result = None
    if result is None:
        raise fail(key, f"expected a number, got {_show(value)}", "write a number such as 3 or 1e-3")
    if not math.isfinite(result):
        raise fail(key, f"expected a finite number, got {_show(value)}", "write a finite number such as 3 or 1e-3")
    return result


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- flags ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Flag:
    """One symptom seen in one trial: recorded as an event, shown as a badge with its hint."""

    kind: str
    step: float
    value: float | None
    hint: str
    stop: bool
    metric: str = ""  # what ``value`` is, e.g. "train_loss" or "train_acc - val_acc"
    step_name: str = "epoch"

    @property
    def message(self) -> str:
        """One line, e.g. ``nan at epoch 4: train_loss = nan — lower the learning rate, ...``."""
        where = f"{self.kind} at {self.step_name} {_fmt(self.step)}"
        if self.metric and self.value is not None:
            return f"{where}: {self.metric} = {_fmt(self.value)} — {self.hint}"
        return f"{where}: {self.hint}"


def status_for(flag: Flag) -> str:
    """The trial status a flag leads to.

    ``nan`` and ``divergence`` mean the run blew up: ``diverged``. Any other flag the user put under
    ``stop_on`` (say ``not_learning``) stopped a run that was not blowing up, so it is ``pruned``,
    like a trial the scheduler stopped early; a hint-only flag leaves the trial ``running``.
    """
    if not flag.stop:
        return STATUS_RUNNING
    return STATUS_FOR_STOP if flag.kind in ("nan", "divergence") else STATUS_FOR_OTHER_STOP


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


# -- per-trial state ------------------------------------------------------------------------------------

class _Series:
    """A short summary of one metric: its first values, its recent values, its robust best."""

    __slots__ = ("name", "count", "head", "recent", "best_level", "first")

    def __init__(self, name: str, window: int) -> None:
        self.name = name
        self.count = 0
        self.first = math.nan
        self.head: list[float] = []
        self.recent: deque[float] = deque(maxlen=max(window, TAIL))
        self.best_level = math.inf

    def add(self, value: float) -> None:
        if self.count == 0:
            self.first = value
        self.count += 1
        if len(self.head) < HEAD:
            self.head.append(value)
        self.recent.append(value)
        self.best_level = min(self.best_level, self.level())

    def level(self) -> float:
        """Median of the last three values: one spike (or one lucky low) does not move it."""
        last = list(self.recent)[-TAIL:]
        return sorted(last)[len(last) // 2] if len(last) != 2 else (last[0] + last[1]) / 2

    def tail_mean(self) -> float:
        last = list(self.recent)[-TAIL:]
        return sum(last) / len(last)

    def initial(self) -> float:
        return sorted(self.head)[len(self.head) // 2]

    def noise(self, n: int) -> float:
        """Spread of one report, from successive differences of the last ``n`` (a trend barely counts)."""
        last = list(self.recent)[-n:]
        diffs = [b - a for a, b in zip(last, last[1:])]
        return math.sqrt(sum(d * d for d in diffs) / (2 * len(diffs))) if diffs else 0.0

    def curvature_noise(self, n: int) -> float:
        """Spread of one report from second differences: blind to a steady rise or fall.

        Used where the trend *is* the signal (a val loss climbing for ten epochs must not count as
        its own noise); white noise of spread s gives second differences of spread s * sqrt(6).
        """
        last = list(self.recent)[-n:]
        second = [a - 2 * b + c for a, b, c in zip(last, last[1:], last[2:])]
        return math.sqrt(sum(d * d for d in second) / (6 * len(second))) if second else 0.0

    def start(self) -> float:
        """Where the series began: its first value, or the median of its first three if higher.

        The first value alone can be low by luck (a per-batch loss); the median alone is too low
        when the first epochs learn most of the task (0.94, 0.53, 0.23 on the digits): a healthy
        SGD run that spiked from 0.10 to 0.69 and recovered must not count as "above its start".
        """
        return max(self.first, self.initial()) if len(self.head) == HEAD else self.first


class _Trial:
    __slots__ = ("id", "raised", "stopped", "series", "accs", "train_accs", "last_train_acc", "last_val_acc",
                 "gap_streak", "val_best", "train_at_val_best", "rise_streak", "ratio_side", "ratio_streak")

    def __init__(self, trial_id: int, acc_window: int) -> None:
        self.id = trial_id
        self.raised: set[str] = set()
        self.stopped = False
        self.series: dict[str, _Series] = {}
        self.accs: dict[str, _Series] = {}  # train / val accuracy as fractions, by metric name
        self.train_accs: deque[float] = deque(maxlen=acc_window)
        self.last_train_acc: float | None = None
        self.last_val_acc: float | None = None
        self.gap_streak = 0
        self.val_best = math.inf
        self.train_at_val_best = math.inf
        self.rise_streak = 0
        self.ratio_side = ""
        self.ratio_streak = 0


class HealthMonitor:
    """Watches every report of every running trial and returns the flags that are new.

    Each kind is raised at most once per trial, and nothing more after a stopping flag (the trial is
    being stopped). Cost per call: O(metrics in the report + a window of a few reports).
    """

    def __init__(self, config: HealthConfig | None, objective_metric: str, objective_mode: str,
                 step_name: str = "epoch") -> None:
        self.config = config if config is not None else HealthConfig()
        self.objective_metric = objective_metric
        self.objective_mode = objective_mode
        self.step_name = step_name
        c = self.config
        # The loss watched for divergence / not_learning: the first of these a trial reports.
        candidates = [c.train_loss, "loss", c.val_loss]
        if objective_mode == "min":
            candidates.append(objective_metric)
        self._loss_names = tuple(dict.fromkeys(candidates))
        self._series_window = max(c.not_learning_patience, NOISE_WINDOW)
        self._acc_window = max(c.not_learning_patience, c.underfitting_patience)
        self._trials: dict[int, _Trial] = {}
        self.starts = StudyStarts(far=c.divergence_factor ** 2)

    def add_start(self, trial_id: int, name: str, value: float) -> None:
        """A trial's first value of a metric, for the study-level checks (the engine hands in the
        trials recorded before it started; the monitor notes every trial it sees itself)."""
        if name in (self.config.train_acc, self.config.val_acc):
            fraction = _accuracy(value)
            if fraction is not None:
                self.starts.add(trial_id, name, fraction)
        elif name in self._loss_names:
            self.starts.add(trial_id, name, value)

    @property
    def start_metrics(self) -> tuple[str, ...]:
        """The metrics whose first values :meth:`add_start` keeps."""
        return self._loss_names + (self.config.train_acc, self.config.val_acc)

    def forget(self, trial_id: int) -> None:
        """The trial ended: drop its state (a no-op for an unknown trial); its first values stay, as
        the reference the study's later trials are compared with."""
        self._trials.pop(trial_id, None)

    def observe(self, trial_id: int, step: float, metrics: Mapping[str, float]) -> list[Flag]:
        trial = self._trials.get(trial_id)
        if trial is None:
            trial = self._trials[trial_id] = _Trial(trial_id, self._acc_window)
        if trial.stopped:
            return []
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._track_accuracies(trial, values)
        flags: list[Flag] = []
        for check in (self._nan, self._losses, self._accuracies, self._update_ratio):
            for flag in check(trial, step, values):
                if flag.kind in trial.raised or not self.config.watches(flag.kind):
                    continue
                trial.raised.add(flag.kind)
                flags.append(flag)
                if flag.stop:
                    trial.stopped = True
                    return flags
        return flags

    # -- detectors (each yields candidate flags; observe keeps the new ones) ----------------------------

    def _flag(self, kind: str, step: float, value: float | None, metric: str, hint: str) -> Flag:
        return Flag(kind=kind, step=step, value=value, hint=hint, stop=self.config.stops(kind), metric=metric,
                    step_name=self.step_name)

    def _is_loss(self, name: str) -> bool:
        return name in (self.config.train_loss, self.config.val_loss) or "loss" in name.lower()

    def _nan(self, trial: _Trial, step: float, values: dict[str, float]) -> Iterable[Flag]:
        for name, value in values.items():
            if not math.isfinite(value) and (name == self.objective_metric or self._is_loss(name)):
                yield self._flag("nan", step, value, name,
                                 "lower the learning rate, clip gradients, or look for log(0) / division by zero")
                return

    def _losses(self, trial: _Trial, step: float, values: dict[str, float]) -> Iterable[Flag]:
        c = self.config
        yield from self._add_losses(trial, step, values)
        watched = next((trial.series[n] for n in self._loss_names if n in trial.series), None)
        if watched is not None and _finite_in(values, watched.name):
            yield from self._early_blowup(trial, step, watched)
            yield from self._divergence(step, watched, values[watched.name])
            yield from self._not_learning_loss(trial, step, watched)
        train, val = trial.series.get(c.train_loss), trial.series.get(c.val_loss)
        if train is not None and val is not None and _finite_in(values, c.val_loss):
            yield from self._overfitting_loss(trial, step, train, val)

    def _add_losses(self, trial: _Trial, step: float, values: dict[str, float]) -> Iterable[Flag]:
        """Each finite loss into its series (a new series notes the study start); initial_loss on the first."""
        c = self.config
        for name in self._loss_names:
            value = values.get(name)
            if value is None or not math.isfinite(value):
                continue
            series = self._observed(trial, trial.series, name, value)
            if series.count == 1 and name in (c.train_loss, c.val_loss, "loss"):
                yield from self._initial_loss(step, series)

    def _early_blowup(self, trial: _Trial, step: float, series: _Series) -> Iterable[Flag]:
        """A run that blew up before its first report: that report is already far above where the
        study's other trials start. Decided at once when it is factor^4 above (1e6 against 2.3),
        or at the next report when it is factor^2 above both the others and the loss it fell back
        to (a first epoch at 50, then 2.3 for ever). A healthy slow trial starts where untrained
        models start and falls from there; it is never factor^2 above its own next reports.
        """
        if series.count > NOISE_WINDOW or step <= self.config.divergence_warmup:
            return  # the signature is in the first reports; later ones are the climb check's
        ceiling = self.starts.ceiling(series.name, trial.id)
        if ceiling is None or ceiling <= 0:
            return
        far, first = self.config.divergence_factor ** 2, series.first
        exploded = first > far * far * ceiling
        after = series.recent[-1] if series.count == 2 else series.level()  # where it fell back to
        fell_back = series.count >= 2 and first > far * ceiling and first > far * after
        if exploded or fell_back:
            yield self._flag("divergence", step, first, series.name,
                             f"its first report is {first / ceiling:.3g}x where the study's other trials start "
                             f"(up to {ceiling:.3g}): it blew up before reporting; lower the learning rate, "
                             "add warm-up or clip gradients")

    def _divergence(self, step: float, series: _Series, value: float) -> Iterable[Flag]:
        """Far above its best and above where it started.

        One report counts when it is factor² above the best (an explosion: 1e8, then 1e15); a
        moderate climb (factor x) must hold for two of the last three reports, so a single noisy
        batch loss never stops a trial. "Above where it started" keeps a loss that merely wobbles
        near a tiny best from counting.
        """
        if step <= self.config.divergence_warmup or series.count < 2:
            return
        factor, best = self.config.divergence_factor, series.best_level

        def above(x: float, times: float) -> bool:
            return x - best > (times - 1) * abs(best)

        if value > series.start() and (above(value, factor * factor) or
                                       (above(value, factor) and above(series.level(), factor))):
            times = f"{value / best:.3g}x its best ({best:.3g})" if best > 0 else f"up from its best {best:.3g}"
            yield self._flag("divergence", step, value, series.name,
                             f"{times} and above where it started; lower the learning rate, add warm-up or clip gradients")

    def _initial_loss(self, step: float, series: _Series) -> Iterable[Flag]:
        classes = self.config.num_classes
        if classes is None:
            return
        expected, factor, value = math.log(classes), self.config.initial_loss_factor, series.first
        if value > factor * expected:
            yield self._flag("initial_loss", step, value, series.name,
                             f"an untrained model gives about ln({classes}) = {expected:.2f}; check initialisation "
                             f"/ labels (or a learning rate that blew up in the first {self.step_name})")
        elif step <= 0 and value < expected / factor:
            yield self._flag("initial_loss", step, value, series.name,
                             f"far below ln({classes}) = {expected:.2f} before any training; check initialisation "
                             "/ labels (labels leaking into the inputs? the wrong loss?)")

    def _not_learning_loss(self, trial: _Trial, step: float, series: _Series) -> Iterable[Flag]:
        """After ``patience`` reports the loss sits where it started, *confidently*: the distance
        moved plus twice the noise is within ``tolerance`` of the start. Noise therefore makes this
        flag rarer, never more frequent; "where it started" is the median of the first three
        reports, so a first epoch that exploded (962, then 2.31 for ever) still reads as flat.

        An accuracy that is climbing overrules a flat loss: cross-entropy near ln(C) barely moves
        while a slow learner's argmax already improves (val_acc 0.20 -> 0.50, loss down 1.2%).
        """
        c = self.config
        if series.count < c.not_learning_patience or self._accuracy_rising(trial):
            return
        initial, current = series.initial(), series.tail_mean()
        if initial == 0:
            return
        if c.num_classes is not None and current < LEARNED_FRACTION * math.log(c.num_classes):
            return  # converged before its first report, not stuck
        moved = abs(current - initial)
        if moved + 2 * series.noise(c.not_learning_patience) <= c.not_learning_tolerance * abs(initial):
            yield self._flag("not_learning", step, current, series.name,
                             f"moved {100 * moved / abs(initial):.1f}% from its initial {initial:.3g} in "
                             f"{series.count} reports; {_NOT_LEARNING_FIX}")

    def _overfitting_loss(self, trial: _Trial, step: float, train: _Series, val: _Series) -> Iterable[Flag]:
        c = self.config
        val_level, train_level = val.level(), train.level()
        if val_level < trial.val_best:
            trial.val_best, trial.train_at_val_best = val_level, train_level
        best = trial.val_best
        # A small validation set makes val loss jump 30% from one epoch to the next, and its best is
        # a lucky low: the rise must beat both the configured fraction and five times the measured
        # noise (from second differences, so that the climb itself does not count as noise).
        margin = max(c.overfitting_rise * abs(best), NOISE_SIGMAS * val.curvature_noise(NOISE_WINDOW))
        if val_level - best > margin and train_level < trial.train_at_val_best:
            trial.rise_streak += 1
        else:
            trial.rise_streak = 0
        if trial.rise_streak >= c.overfitting_patience:
            percent = 100 * (val_level - best) / abs(best) if best else math.inf
            yield self._flag("overfitting", step, val.recent[-1], val.name,
                             f"{percent:.0f}% above its best ({best:.3g}) while {train.name} still falls; "
                             "more regularisation (L2, dropout) or data")

    def _observed(self, trial: _Trial, series_of: dict[str, _Series], name: str, value: float) -> _Series:
        """``value`` added to the trial's series ``name``; a new series notes where the study starts."""
        series = series_of.get(name)
        if series is None:
            series = series_of[name] = _Series(name, self._series_window)
            self.starts.add(trial.id, name, value)
        series.add(value)
        return series

    def _track_accuracies(self, trial: _Trial, values: dict[str, float]) -> None:
        """Accuracy series first (the loss checks ask whether an accuracy is climbing)."""
        for name in (self.config.train_acc, self.config.val_acc):
            fraction = _accuracy(values.get(name))
            if fraction is None:
                continue
            self._observed(trial, trial.accs, name, fraction)

    def _accuracy_rising(self, trial: _Trial) -> bool:
        """Some accuracy climbs: it gained more than 0.02 since it started, and more than
        ``NOISE_SIGMAS - 1`` times its noise measured from second differences (a steady climb of
        1.5 points an epoch is a trend, not noise; a jittery accuracy at chance does not count).
        """
        for series in trial.accs.values():
            if series.count >= HEAD:
                gained = series.tail_mean() - series.initial()
                if gained > max(ACCURACY_RISE, (NOISE_SIGMAS - 1) * series.curvature_noise(NOISE_WINDOW)):
                    return True
        return False

    def _accuracies(self, trial: _Trial, step: float, values: dict[str, float]) -> Iterable[Flag]:
        """Far behind the study (not_learning, no num_classes needed), train/val gap (overfitting),
        chance level (not_learning, needs num_classes), and poor, flat, gap-free accuracy
        (underfitting). Accuracies reported in percent are understood.
        """
        c = self.config
        train, val = _accuracy(values.get(c.train_acc)), _accuracy(values.get(c.val_acc))
        if train is None and val is None:
            return
        yield from self._behind_the_study(trial, step)
        if train is not None:
            trial.last_train_acc = train
            trial.train_accs.append(train)
        if val is not None:
            trial.last_val_acc = val
        if trial.last_train_acc is None or trial.last_val_acc is None:
            return
        gap = trial.last_train_acc - trial.last_val_acc
        if val is not None:
            yield from self._overfitting_gap(trial, step, gap)
        if train is not None:
            yield from self._at_chance_or_underfitting(trial, step, gap)

    def _behind_the_study(self, trial: _Trial, step: float) -> Iterable[Flag]:
        """The last ``patience`` reports flat (within ``underfitting_tolerance``) at under half of
        where the study's learning trials *start* (the upper quartile of the other trials' first
        reports: a wide learning-rate range has many slow starters, and blown-up trials sit at
        chance): they learn, this one does not, whether it never learned or collapsed to chance.
        Only without ``num_classes``; with it, chance is known exactly.
        """
        c = self.config
        if c.num_classes is not None:
            return
        for name, series in trial.accs.items():
            window = list(series.recent)[-c.not_learning_patience:]
            if series.count < c.not_learning_patience or max(window) - min(window) > c.underfitting_tolerance:
                continue
            current = sum(window) / len(window)
            reference = self.starts.quantile(name, trial.id, 0.75)
            if reference is None or current > BEHIND_FRACTION * reference:
                continue
            yield self._flag("not_learning", step, current, name,
                             f"flat at {current:.2f} for {len(window)} reports while the study's learning trials "
                             f"start at {reference:.2f}; {_NOT_LEARNING_FIX}")
            return

    def _overfitting_gap(self, trial: _Trial, step: float, gap: float) -> Iterable[Flag]:
        c = self.config
        trial.gap_streak = trial.gap_streak + 1 if gap > c.overfitting_gap else 0
        if trial.gap_streak >= c.overfitting_patience:
            yield self._flag("overfitting", step, gap, f"{c.train_acc} - {c.val_acc}",
                             f"train/val accuracy gap above {c.overfitting_gap:g} for {trial.gap_streak} reports; "
                             "more regularisation (L2, dropout) or data")

    def _at_chance_or_underfitting(self, trial: _Trial, step: float, gap: float) -> Iterable[Flag]:
        flags = list(self._at_chance(trial, step))
        yield from flags
        if not flags:  # a model at chance is not learning, not under-fitting
            yield from self._underfitting(trial, step, gap)

    def _at_chance(self, trial: _Trial, step: float) -> Iterable[Flag]:
        c = self.config
        accs = list(trial.train_accs)
        if c.num_classes is not None and len(accs) >= c.not_learning_patience and not self._accuracy_rising(trial):
            chance = 1 / c.num_classes
            recent = accs[-c.not_learning_patience:]
            mean = sum(recent) / len(recent)
            if mean <= chance + CHANCE_MARGIN * (1 - chance):
                yield self._flag("not_learning", step, mean, c.train_acc,
                                 f"at chance (1/{c.num_classes}) for {len(recent)} reports; {_NOT_LEARNING_FIX}")

    def _underfitting(self, trial: _Trial, step: float, gap: float) -> Iterable[Flag]:
        c = self.config
        accs = list(trial.train_accs)
        if len(accs) < c.underfitting_patience or "not_learning" in trial.raised:
            return
        window = accs[-c.underfitting_patience:]
        half = len(window) // 2
        gained = sum(window[-half:]) / half - sum(window[:half]) / half
        diffs = [b - a for a, b in zip(window, window[1:])]
        noise = math.sqrt(sum(d * d for d in diffs) / (2 * len(diffs)))
        poor = max(window[-1], trial.last_val_acc or 0.0) < c.underfitting_accuracy
        if poor and gap < c.overfitting_gap and abs(gained) + 2 * noise <= c.underfitting_tolerance:
            yield self._flag("underfitting", step, window[-1], c.train_acc,
                             f"train {window[-1]:.2f} / val {trial.last_val_acc:.2f} accuracy, flat for {len(window)} "
                             "reports; more capacity, less regularisation")

    def _update_ratio(self, trial: _Trial, step: float, values: dict[str, float]) -> Iterable[Flag]:
        """Far outside [low, high] (beyond a bound by a factor of 1.5) for ``patience`` reports in a row.

        Healthy runs start far above 1e-2 (small initial weights, large gradients: 3e-2 to 7e-2
        in the first epochs of the digits MLP) and settle within a few epochs, so "too high" only
        counts after ``update_ratio_warmup``; "too low" counts from the start.
        """
        c = self.config
        ratio = values.get(c.update_ratio_metric)
        if ratio is None:
            return
        side = ""
        if math.isfinite(ratio):
            if ratio > c.update_ratio_high * FAR and step > c.update_ratio_warmup:
                side = "high"
            elif ratio < c.update_ratio_low / FAR:
                side = "low"
        trial.ratio_streak = trial.ratio_streak + 1 if side and side == trial.ratio_side else (1 if side else 0)
        trial.ratio_side = side
        if side and trial.ratio_streak >= c.update_ratio_patience:
            bound, verdict = (c.update_ratio_high, "too high") if side == "high" else (c.update_ratio_low, "too low")
            yield self._flag("update_ratio", step, ratio, c.update_ratio_metric,
                             f"far {'above' if side == 'high' else 'below'} {bound:g} for {trial.ratio_streak} reports "
                             f"(about 1e-3 is healthy); learning rate {verdict}")


_NOT_LEARNING_FIX = ("raise the learning rate, check that gradients reach the weights "
                     "(zero_grad/backward/step order, frozen layers) and that labels match inputs")


def _finite_in(values: dict[str, float], name: str) -> bool:
    return name in values and math.isfinite(values[name])


def _accuracy(value: float | None) -> float | None:
    """Accuracies as fractions: a value above 1 was reported in percent."""
    if value is None or not math.isfinite(value):
        return None
    return value / 100 if value > 1 else value


__all__ = ["KINDS", "STATUS_FOR_STOP", "Flag", "HealthConfig", "HealthMonitor", "parse_health", "status_for"]
