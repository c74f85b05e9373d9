"""``search.algorithm: tpe``: Optuna's TPE sampler behind our Sampler interface (ask / tell).

We do not write a TPE: Optuna's is tested and maintained, and it already knows what to do with
pruned trials, which is what makes TPE + ASHA / Hyperband work (the BOHB idea: the model learns
from every trial, the scheduler stops the bad ones early). Optuna is an optional extra
(``pip install 'hpotui[tpe]'``); without it the study fails before it starts, in one line.

How our trials reach the model:

* ``suggest(index)`` asks Optuna for a trial and remembers it under ``index``; asking the same
  index again returns the same configuration.
* ``observe(index, params, value, status=..., step=...)`` tells it:
  ``value`` None (or NaN / infinite), or status ``failed`` -> FAIL (the model ignores it: a crash
  says nothing about the configuration); status ``pruned`` or ``stopped`` -> PRUNED, with the
  trial's best value reported at ``step`` (the resource it reached, 0 if unknown), which TPE ranks
  after every completed trial and among pruned ones by how far they got, then by value;
  anything else -> COMPLETE with ``value`` (the trial's best objective).
* an index this sampler never asked (a study resumed by a new engine, a re-run of an interrupted
  trial) is added as a finished trial with its parameters, so the loop can replay history by
  calling ``observe`` for each finished trial before the first ``suggest``.

Deterministic for a seed (``search.seed``) given the same order of calls; with parallel trials the
order trials finish in is part of that order. ``constant_liar`` keeps parallel asks apart.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from .errors import UserError
from .sampling import Sampler, quantise
from .space import Param, Space

RETRY_STATUSES = ("failed",)
PRUNED_STATUSES = ("pruned", "stopped")


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        return None
    return optuna


def distribution(optuna: Any, param: Param) -> Any:
    """Our parameter as an Optuna distribution (same bounds, scale and step)."""
    d = optuna.distributions
    if param.type == "choice":
        return d.CategoricalDistribution(param.values)
    if param.type == "int":
        return d.IntDistribution(int(param.low), int(param.high), log=param.log)  # type: ignore[arg-type]
    with warnings.catch_warnings():  # a step that does not divide the range: Optuna trims high, as we do
        warnings.simplefilter("ignore")
        return d.FloatDistribution(float(param.low), float(param.high), log=param.log,  # type: ignore[arg-type]
                                   step=param.step)


class TpeSampler(Sampler):
    def __init__(self, space: Space) -> None:
        optuna = _import_optuna()
        if optuna is None:
            where = f"{space.source_file}: " if space.source_file else ""
            raise UserError(f"{where}search.algorithm: tpe needs Optuna; pip install 'hpotui[tpe]'")
        self.optuna = optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "Trial 3 finished" line per trial
        self.params = space.params
        self.distributions = {p.name: distribution(optuna, p) for p in space.params}
        with warnings.catch_warnings():  # multivariate / constant_liar are "experimental" in older Optuna
            warnings.simplefilter("ignore")
            sampler = optuna.samplers.TPESampler(seed=space.search.seed, multivariate=True, constant_liar=True,
                                                 warn_independent_sampling=False)
        direction = "maximize" if space.objective.mode == "max" else "minimize"
        self.study = optuna.create_study(direction=direction, sampler=sampler)
        self._pending: dict[int, Any] = {}  # index -> optuna Trial asked and not yet told
        self._asked: dict[int, dict[str, Any]] = {}

    def suggest(self, index: int) -> dict[str, Any]:
        if index in self._asked:
            return dict(self._asked[index])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask(self.distributions)
        params = {p.name: self._ours(p, trial.params[p.name]) for p in self.params}
        self._pending[index] = trial
        self._asked[index] = params
        return dict(params)

    @staticmethod
    def _ours(param: Param, value: Any) -> Any:
        if param.type == "choice":
            return value
        if param.type == "int":
            return int(value)
        return quantise(param, float(value))

    def observe(self, index: int, params: dict[str, Any], value: float | None, *, status: str | None = None,
                step: float | None = None) -> None:
        state, told_value = self._state(value, status)
        trial = self._pending.pop(index, None)
        if trial is None:
            trial = self._pending_with(params)
        if trial is None:
            self._add_finished(params, state, told_value, step)
            return
        states = self.optuna.trial.TrialState
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if state == states.PRUNED:
                trial.report(told_value, int(step or 0))
                self.study.tell(trial, state=state)
            elif state == states.COMPLETE:
                self.study.tell(trial, told_value)
            else:
                self.study.tell(trial, state=state)

    def _state(self, value: float | None, status: str | None) -> tuple[Any, float | None]:
        states = self.optuna.trial.TrialState
        if value is None or not math.isfinite(value) or status in RETRY_STATUSES:
            return states.FAIL, None
        if status in PRUNED_STATUSES:
            return states.PRUNED, float(value)
        return states.COMPLETE, float(value)

    def _pending_with(self, params: dict[str, Any]) -> Any:
        """The asked trial with exactly these parameters (the loop may not know the index)."""
        for index, asked in self._asked.items():
            if index in self._pending and asked == params:
                return self._pending.pop(index)
        return None

    def _add_finished(self, params: dict[str, Any], state: Any, value: float | None, step: float | None) -> None:
        """A trial this sampler never asked: record it so the model learns from history too."""
        if state == self.optuna.trial.TrialState.FAIL:
            return  # a failure carries nothing the model uses
        if set(params) != set(self.distributions):
            return
        kwargs: dict[str, Any] = {"params": {n: params[n] for n in self.distributions},
                                  "distributions": self.distributions, "state": state}
        if state == self.optuna.trial.TrialState.PRUNED:
            kwargs["intermediate_values"] = {int(step or 0): value}
        else:
            kwargs["value"] = value
        try:
            frozen = self.optuna.trial.create_trial(**kwargs)
        except (ValueError, TypeError):
            return  # outside this space (e.g. a refined stage replaying its parent): not this model's business
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study.add_trial(frozen)
