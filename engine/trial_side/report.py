"""The trial-side helper: print one ``@hpotui {json}`` line per report.

This file has no imports beyond the standard library and no dependency on the rest of
hpotui, so a training environment without hpotui installed (hpotui as a pipx / uv tool) gets a
copy next to the training script with ``hpotui helpers DIR`` (as ``hpotui_report.py``) and
``from hpotui_report import report``.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

PREFIX = "@hpotui "


def report(step: int | float | None = None, /, *, file: Any = None, **metrics: Any) -> None:
    """Print one metric line; ``step`` (if given) is written as ``epoch``.

    Flushes at once: a trial killed a moment later must still have its last report on disk.
    NaN and infinities are written as ``NaN`` / ``Infinity`` (what the engine parses).
    """
    payload: dict[str, Any] = {}
    if step is not None:
        payload["epoch"] = step
    for name, value in metrics.items():
        if hasattr(value, "item"):  # torch / numpy scalars
            value = value.item()
        payload[name] = value
    stream = file if file is not None else sys.stdout
    stream.write(PREFIX + json.dumps(payload, allow_nan=True, default=_plain) + "\n")
    stream.flush()


def _plain(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def is_finite(value: float) -> bool:
    return math.isfinite(value)
