"""GPU memory sizes: the ``gpu_memory`` request, its units, and what ``gpu_memory: auto`` learns.

Why a module of its own: the space file, placement, the engine and the reports all speak about
"12 GiB"; one parser and one formatter keep them saying the same thing. The ``auto`` estimate
is a pure function over the study's finished trials (parameters and recorded peak GPU memory),
so it is tested without processes.

What "similar configurations" means for ``auto``: the finished trials with a recorded peak
that share every ``choice`` parameter value with the new trial (batch size, model family:
the values memory depends on most) are the candidates; when none does (a batch size not tried
yet), the estimate is the largest peak measured so far, plus the margin. Among the candidates the :data:`AUTO_NEIGHBOURS` nearest in the numeric parameters (each
scaled to its range, log-scaled where the space says log) count, and the estimate is the
largest of their peaks plus a margin (:data:`AUTO_MARGIN` of it, at least
:data:`AUTO_MARGIN_MIN_BYTES`). No measurement yet: no estimate, which placement turns into
one trial per GPU.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

KIB, MIB, GIB, TIB = 1024, 1024 ** 2, 1024 ** 3, 1024 ** 4
UNITS = {"b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
         "kib": KIB, "mib": MIB, "gib": GIB, "tib": TIB}
AUTO = "auto"
AUTO_NEIGHBOURS = 3
AUTO_MARGIN = 0.2
AUTO_MARGIN_MIN_BYTES = 512 * MIB
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]+)\s*$")


def parse_memory(text: Any) -> int:
    """``"12GiB"``, ``"12GB"``, ``"12000MiB"``, ``"1.5 TiB"`` -> bytes; raises ValueError with the fix.

    A bare number is refused rather than guessed: 12 could mean GiB to one user and bytes
    to the next, and a wrong guess packs trials onto a GPU they do not fit.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"expected a size such as 12GiB, got {text!r}")
    match = _SIZE.match(str(text))
    if match is None:
        raise ValueError(f"expected a size with a unit such as 12GiB, 12GB or 12000MiB, got {text!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit not in UNITS:
        raise ValueError(f"unknown unit {match.group(2)!r} in {text!r}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB")
    size = int(number * UNITS[unit])
    if size <= 0:
        raise ValueError(f"a GPU memory request must be more than 0, got {text!r}")
    return size


def gib(size: float | None) -> str:
    """Bytes as GiB with at most one decimal: ``17.5``; NA for unknown."""
    if size is None:
        return "NA"
    value = size / GIB
    return f"{value:.1f}".rstrip("0").rstrip(".") if value < 100 else f"{value:.0f}"


def with_margin(peak: int) -> int:
    """What to claim for a trial measured at ``peak`` bytes."""
    return int(peak + max(AUTO_MARGIN * peak, AUTO_MARGIN_MIN_BYTES))


def estimate_memory(params: Mapping[str, Any], measured: Iterable[tuple[Mapping[str, Any], int]],
                    space_params: Sequence[Any]) -> int | None:
    """Bytes to claim for a trial with ``params``, from ``measured`` (params, peak bytes) of finished trials.

    ``space_params`` are the space's :class:`engine.space_file.space.Param` objects (type, low, high,
    log). ``None`` when nothing has been measured yet.
    """
    known = _measured(measured)
    if not known:
        return None
    same = _same_choices(params, known, [p.name for p in space_params if p.type == "choice"])
    if not same:  # a choice value never measured (a bigger batch?): the largest peak seen, to be safe
        return with_margin(max(peak for _, peak in known))
    numeric = [p for p in space_params if p.type != "choice"]  # conditional parameters may be absent: far
    same.sort(key=lambda item: _distance(params, item[0], numeric))
    return with_margin(max(peak for _, peak in same[:AUTO_NEIGHBOURS]))  # the nearest few, the largest of them


def _measured(measured: Iterable[tuple[Mapping[str, Any], int]]) -> list[tuple[Mapping[str, Any], int]]:
    return [(p, int(peak)) for p, peak in measured if peak and peak > 0]


def _same_choices(params: Mapping[str, Any], known: list[tuple[Mapping[str, Any], int]],
                  choices: Sequence[str]) -> list[tuple[Mapping[str, Any], int]]:
    return [(p, peak) for p, peak in known if all(p.get(name) == params.get(name) for name in choices)]


def _distance(a: Mapping[str, Any], b: Mapping[str, Any], numeric: Sequence[Any]) -> float:
    total = 0.0
    for p in numeric:
        x, y = a.get(p.name), b.get(p.name)
        if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
            total += 1.0
            continue
        total += (_scaled(float(x), p) - _scaled(float(y), p)) ** 2
    return total


def _scaled(value: float, param: Any) -> float:
    if getattr(param, "low", None) is None or getattr(param, "high", None) is None:
        return value  # a parameter without a range: compared as it is
    low, high = float(param.low), float(param.high)
    if getattr(param, "log", False) or param.type == "loguniform":
        if value <= 0 or low <= 0:
            return 0.0
        value, low, high = math.log(value), math.log(low), math.log(high)
    return 0.0 if high == low else (value - low) / (high - low)
