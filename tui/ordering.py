"""Which trials the table shows, in which order: status filter, the ``/`` search, sort by any column.

Kept apart from the reader because these are pure functions of the trials already read: the
table re-filters and re-sorts without touching the database, and the tests need no file.
"""

from __future__ import annotations

import math
from operator import attrgetter
from typing import Any, Callable, Collection, Sequence

from ..engine.database.records import FAILURE_STATUSES, INVALID_STATUSES, TrialStatus
from .trial_info import TrialInfo

STATUS_FILTERS: tuple[str | None, ...] = (None, TrialStatus.RUNNING, TrialStatus.COMPLETED, TrialStatus.PRUNED,
                                          TrialStatus.FAILED, TrialStatus.STOPPED, TrialStatus.QUEUED,
                                          TrialStatus.INVALID)
"""What the filter key cycles through; ``failed`` also shows diverged trials (both are failures), ``invalid``
the configurations a trial refused (not failures: they never count toward ``max_trials``)."""
FILTER_GROUPS: dict[str, Collection[str]] = {TrialStatus.FAILED: FAILURE_STATUSES,
                 TrialStatus.RUNNING: (TrialStatus.RUNNING, "paused", "gone", "unwatched")}  # + shown-only states
BASE_SORTS = ("number", "status", "last", "best", "step", "flags", "gpu", "run", "eta")
"""Sort keys of the fixed columns; a parameter column sorts as ``param:NAME``."""
STATUS_ORDER = {s: i for i, s in enumerate((TrialStatus.RUNNING, "paused", "unwatched", "gone", TrialStatus.QUEUED,
                                            TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.STOPPED,
                                            TrialStatus.INTERRUPTED, *INVALID_STATUSES, TrialStatus.DIVERGED,
                                            TrialStatus.FAILED))}


def param_sort(name: str) -> str:
    return f"param:{name}"


def sort_label(sort: str) -> str:
    """What the header and messages call a sort key: ``param:lr`` reads ``lr``."""
    return sort.split(":", 1)[1] if sort.startswith("param:") else sort


def status_matches(trial: TrialInfo, status: str | None) -> bool:
    if status is None:
        return True
    return trial.shown_status in FILTER_GROUPS.get(status, (status,)) or trial.status == status


def text_matches(trial: TrialInfo, query: str) -> bool:
    """The ``/`` search: every word must match the trial's number, its status or one ``name=value``.

    ``12`` or ``#12`` is trial 12; a status word (``pruned``) matches the status; anything else is
    looked for in the parameters as written on screen (``lr=0.01``, ``adam``, ``width=64``) and
    in the flags (``nan``).
    """
    words = query.lower().split()
    if not words:
        return True
    texts = [f"{k}={_param_text(v)}".lower() for k, v in trial.params.items()]
    texts += [f.lower() for f in trial.flags]
    return all(_word_matches(trial, word, texts) for word in words)


def _word_matches(trial: TrialInfo, word: str, texts: Sequence[str]) -> bool:
    bare = word.lstrip("#")
    if bare.isdigit() and int(bare) == trial.number:
        return True
    if word.startswith("#"):
        return False  # "#12" means trial 12 and nothing else
    if trial.shown_status.startswith(word) or trial.status.startswith(word):
        return True
    return any(word in t for t in texts)


def _param_text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _none_last(value: Any) -> tuple[int, Any]:
    """Missing values sort after present ones in either direction of the number."""
    if value is None:
        return (1, 0)
    if isinstance(value, bool):
        return (0, (0, int(value)))
    if isinstance(value, (int, float)):
        return (0, (0, float(value)))
    return (0, (1, str(value)))


def sort_key(sort: str, mode: str) -> Callable[[TrialInfo], Any]:
    """Key for ``sort``: best-first for the objective, most-advanced-first for step / run, by number otherwise."""
    sign = -1.0 if mode == "max" else 1.0
    if sort.startswith("param:"):
        name = sort_label(sort)
        return lambda t: (_none_last(t.params.get(name)), t.number)
    keys: dict[str, Callable[[TrialInfo], Any]] = {
        "best": lambda t: (_finite(t.best) is None, sign * (_finite(t.best) or 0.0), t.number),
        "last": lambda t: (_finite(t.last) is None, sign * (_finite(t.last) or 0.0), t.number),
        "status": lambda t: (STATUS_ORDER.get(t.shown_status, 99), t.number),
        "step": lambda t: (-(t.last_step or 0.0), t.number),
        "run": lambda t: (-(t.run_s or 0.0), t.number),
        "eta": lambda t: (t.eta_s is None, t.eta_s or 0.0, t.number),
        "flags": lambda t: (-len(t.flags), t.number),
        "gpu": lambda t: (t.gpus is None, t.gpus or "", t.number),
    }
    return keys.get(sort, lambda t: (t.pending, t.number))  # clones not started yet come after the trials


def ordered(trials: Sequence[TrialInfo], *, status: str | None, text: str, sort: str, descending: bool,
            mode: str) -> list[TrialInfo]:
    if status is None and not text.strip():
        shown = list(trials)  # the usual case, on every refresh of a 10,000-trial study: no per-trial test
    else:
        shown = [t for t in trials if status_matches(t, status) and text_matches(t, text)]
    shown.sort(key=_BY_NUMBER if sort not in BASE_SORTS[1:] and not sort.startswith("param:")
               else sort_key(sort, mode), reverse=descending)
    return shown


_BY_NUMBER = attrgetter("pending", "number")  # C-speed key for the default order (clones waiting last)


def pin_row(order: list[int], trial_id: int | None, row: int) -> list[int]:
    """``order`` with ``trial_id`` moved to ``row``: the trial under the cursor stays where the eye is.

    A live refresh re-sorts (a trial sorted by status changes status); without this, the row a
    user is looking at would slide away under the next key press.
    """
    if trial_id is None or trial_id not in order or not 0 <= row < len(order):
        return order
    out = [t for t in order if t != trial_id]
    out.insert(row, trial_id)
    return out
