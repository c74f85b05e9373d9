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

Conditional spaces are asked define-by-run: the unconditional parameters through ``ask``, then
each active conditional one in dependency order (``TPESampler(group=True)`` keeps a model per
branch). Several objectives (``objective:`` as a list) make an Optuna multi-objective study
(MOTPE): a finished trial is told the last reported value of each objective; pruned ones are
told PRUNED without values (MOTPE ranks them after every completed trial). An ``invalid``
trial (it printed ``@hpotui {"invalid": "why"}``) is told PRUNED without values too, so TPE
puts it in its "bad" group and steers away, where FAIL would make it forget the region.

With an early-stopping scheduler (asha, hyperband, median) and one objective, the model is
fit on one rung, the highest with enough results (the BOHB rule, :mod:`engine.search.rung_model`):
the Optuna study is rebuilt from those rung observations whenever the chosen rung or its
number of results changes, instead of learning every pruned trial's last value.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ..database.records import EARLY_STOPPED_STATUSES, INVALID_STATUSES, TrialStatus
from ..errors import UserError
from ..space_file.conditions import dependency_order, fits, is_active, is_conditional
from ..space_file.space import Param, Space
from .rung_model import RungObservations, rungs_for
from .sampler_base import Sampler, quantise

RETRY_STATUSES = frozenset({TrialStatus.FAILED})
PRUNED_STATUSES = EARLY_STOPPED_STATUSES


def _import_optuna() -> Any:
    try:
        import optuna  # optional: the tpe extra; make_sampler's caller reports its absence
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
                                   step=None if param.log else param.step)  # Optuna has no log + step: we snap


def _rung_observations(space: Space) -> RungObservations | None:
    """The BOHB rule's bookkeeping with an early-stopping scheduler and one objective, else None."""
    if space.scheduler.type == "fifo" or len(space.objectives or (space.objective,)) > 1:
        return None
    return RungObservations(rungs_for(space.scheduler), len(space.params))


class TpeSampler(Sampler):
    def __init__(self, space: Space) -> None:
        optuna = _import_optuna()
        if optuna is None:
            where = f"{space.source_file}: " if space.source_file else ""
            raise UserError(f"{where}search.algorithm: tpe needs Optuna; pip install 'hpotui[tpe]'")
        self.optuna = optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "Trial 3 finished" line per trial
        self.params = space.params
        self.order = dependency_order(space.params)
        self.distributions = {p.name: distribution(optuna, p) for p in space.params}
        self.unconditional = {p.name: self.distributions[p.name] for p in space.params if not p.when}
        self.objectives = space.objectives or (space.objective,)
        self.directions = ["maximize" if o.mode == "max" else "minimize" for o in self.objectives]
        self.rungs = _rung_observations(space)
        # On a rung the model is fit as soon as it has d + 3 results (BOHB's N_min + 2), not after
        # Optuna's default 10 start-up trials: a rung that qualifies would otherwise be sampled at random.
        startup = {"n_startup_trials": self.rungs.needed} if self.rungs is not None else {}
        with warnings.catch_warnings():  # multivariate / group / constant_liar are "experimental" in older Optuna
            warnings.simplefilter("ignore")
            self.sampler = optuna.samplers.TPESampler(seed=space.search.seed, multivariate=True,
                                                      group=is_conditional(space.params), constant_liar=True,
                                                      warn_independent_sampling=False, **startup)
        self._invalid: list[dict[str, Any]] = []  # re-told after every refit on a rung
        self._fitted: tuple[float, int, int] | None = None
        self.study = self._new_study()
        self._pending: dict[int, Any] = {}  # index -> optuna Trial asked and not yet told
        self._asked: dict[int, dict[str, Any]] = {}

    def _new_study(self) -> Any:
        if len(self.directions) == 1:
            return self.optuna.create_study(direction=self.directions[0], sampler=self.sampler)
        return self.optuna.create_study(directions=self.directions, sampler=self.sampler)

    @property
    def fitted_rung(self) -> float | None:
        """The rung the model was last fit on (None without an early-stopping scheduler)."""
        return self._fitted[0] if self._fitted else None

    def suggest(self, index: int) -> dict[str, Any]:
        if index in self._asked:
            return dict(self._asked[index])
        if self.rungs is not None:
            self._refit()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask(self.unconditional)
            chosen: dict[str, Any] = {}
            for p in self.order:
                if p.name in self.unconditional:
                    chosen[p.name] = trial.params[p.name]
                elif is_active(p, chosen):
                    chosen[p.name] = self._suggest(trial, p)
        params = {p.name: self._ours(p, chosen[p.name]) for p in self.params if p.name in chosen}
        self._pending[index] = trial
        self._asked[index] = params
        return dict(params)

    @staticmethod
    def _suggest(trial: Any, param: Param) -> Any:
        """One conditional parameter, define-by-run (its parents are already chosen)."""
        if param.type == "choice":
            return trial.suggest_categorical(param.name, list(param.values))
        if param.type == "int":
            return trial.suggest_int(param.name, int(param.low), int(param.high), log=param.log)  # type: ignore[arg-type]
        return trial.suggest_float(param.name, float(param.low), float(param.high), log=param.log,  # type: ignore[arg-type]
                                   step=None if param.log else param.step)

    @staticmethod
    def _ours(param: Param, value: Any) -> Any:
        if param.type == "choice":
            return value
        if param.type == "int":
            return int(value)
        return quantise(param, float(value))

    def observe(self, index: int, params: dict[str, Any], value: float | None, *, status: str | None = None,
                step: float | None = None, curve: Sequence[tuple[float, float]] = (),
                last: Mapping[str, float] | None = None) -> None:
        if self.rungs is not None:
            self._observe_on_rungs(index, params, status, curve)
            return
        state, told = self._state(value, status, last)
        trial = self._pending.pop(index, None)
        if trial is None:
            trial = self._pending_with(params)
        if trial is None:
            self._add_finished(params, state, told, step)
            return
        states = self.optuna.trial.TrialState
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if state == states.PRUNED:
                if told is not None:
                    trial.report(told, int(step or 0))
                self.study.tell(trial, state=state)
            elif state == states.COMPLETE:
                self.study.tell(trial, told)
            else:
                self.study.tell(trial, state=state)

    def _state(self, value: float | None, status: str | None, last: Mapping[str, float] | None) -> tuple[Any, Any]:
        """Optuna's state for one finished trial, and what it is told (a value, a list, or None)."""
        states = self.optuna.trial.TrialState
        if status in INVALID_STATUSES:
            return states.PRUNED, None
        if len(self.objectives) > 1:
            return self._state_of_several(status, last)
        if value is None or not math.isfinite(value) or status in RETRY_STATUSES:
            return states.FAIL, None
        if status in PRUNED_STATUSES:
            return states.PRUNED, float(value)
        return states.COMPLETE, float(value)

    def _state_of_several(self, status: str | None, last: Mapping[str, float] | None) -> tuple[Any, Any]:
        states = self.optuna.trial.TrialState
        if status in RETRY_STATUSES:
            return states.FAIL, None
        if status in PRUNED_STATUSES:
            return states.PRUNED, None  # Optuna has no intermediate values with several objectives
        values = [(last or {}).get(o.metric) for o in self.objectives]
        if any(v is None or not math.isfinite(v) for v in values):
            return states.FAIL, None
        return states.COMPLETE, [float(v) for v in values]  # type: ignore[arg-type]

    def _pending_with(self, params: dict[str, Any]) -> Any:
        """The asked trial with exactly these parameters (the loop may not know the index)."""
        for index, asked in self._asked.items():
            if index in self._pending and asked == params:
                return self._pending.pop(index)
        return None

    def _frozen(self, params: Mapping[str, Any], state: Any, value: Any, step: float | None) -> Any:
        """A finished Optuna trial with these parameters, or None when they do not fit this space."""
        names = [p.name for p in self.order if p.name in params]
        if any(n not in self.distributions for n in params):
            return None
        kwargs: dict[str, Any] = {"params": {n: params[n] for n in names},
                                  "distributions": {n: self.distributions[n] for n in names}, "state": state}
        kwargs.update(self._told_as(state, value, step))
        try:
            return self.optuna.trial.create_trial(**kwargs)
        except (ValueError, TypeError):
            return None  # outside this space (a refined stage replaying its parent): not this model's business

    def _told_as(self, state: Any, value: Any, step: float | None) -> dict[str, Any]:
        """``create_trial`` keywords for the result: an intermediate value (pruned), values, or a value."""
        if state == self.optuna.trial.TrialState.PRUNED:
            return {} if value is None else {"intermediate_values": {int(step or 0): value}}
        return {"values": value} if isinstance(value, list) else {"value": value}

    def _add_finished(self, params: dict[str, Any], state: Any, value: Any, step: float | None) -> None:
        """A trial this sampler never asked: record it so the model learns from history too."""
        if state == self.optuna.trial.TrialState.FAIL:
            return  # a failure carries nothing the model uses
        if not fits(self.params, params):
            return
        frozen = self._frozen(params, state, value, step)
        if frozen is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.study.add_trial(frozen)

    # -- the BOHB rule --------------------------------------------------------------------------
    def _observe_on_rungs(self, index: int, params: dict[str, Any], status: str | None,
                          curve: Sequence[tuple[float, float]]) -> None:
        """Keep the curve (or the invalid configuration); the next ``suggest`` refits if the rung data changed."""
        trial = self._pending.pop(index, None) or self._pending_with(params)
        if trial is not None:  # its lie (constant_liar) ends; the rung observations carry what it showed
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trial.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        if not fits(self.params, params) or status in RETRY_STATUSES:
            return
        if status in INVALID_STATUSES:
            self._invalid.append(dict(params))
            return
        assert self.rungs is not None
        self.rungs.add(params, [(r, v) for r, v in curve if math.isfinite(v)])

    def _refit(self) -> None:
        assert self.rungs is not None
        rung = self.rungs.rung_to_fit()
        observed = self.rungs.at(rung)
        key = (rung, len(observed), len(self._invalid))
        if key == self._fitted:
            return
        states = self.optuna.trial.TrialState
        study = self._new_study()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for params, value in observed:
                frozen = self._frozen(params, states.COMPLETE, value, None)
                if frozen is not None:
                    study.add_trial(frozen)
            for params in self._invalid:
                frozen = self._frozen(params, states.PRUNED, None, None)
                if frozen is not None:
                    study.add_trial(frozen)
            for trial in self._pending.values():  # still running: kept apart from new asks (constant_liar)
                study.add_trial(self.optuna.trial.create_trial(
                    params=trial.params, distributions=trial.distributions, state=states.RUNNING))
        self.study, self._fitted = study, key
