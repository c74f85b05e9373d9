"""Invalid configurations: a trial prints ``@hpotui {"invalid": "why"}`` and exits.

Some configurations cannot run at all (a batch that does not fit, heads that do not divide the
width): the trial says so instead of crashing. Like Determined's ``InvalidHP``, such a trial is
recorded ``invalid`` with the reason, does not count toward ``max_trials`` or the failure streak,
and the sampler is told (TPE steers away from the region) and asked for another configuration.
A study whose trials are all invalid would never end, so launching pauses after
``INVALID_STREAK_LIMIT`` invalid trials in a row.
"""

from __future__ import annotations

import json

from ..database.records import TrialStatus
from ..reading.metricline import PREFIX

INVALID_STATUS = TrialStatus.INVALID
INVALID_STREAK_LIMIT = 100


def invalid_reason(line: str) -> str | None:
    """The reason of an ``@hpotui {"invalid": "why"}`` line, else None (cheap for every other line)."""
    if not line.startswith(PREFIX) or '"invalid"' not in line:
        return None
    try:
        payload = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    if not isinstance(payload, dict) or "invalid" not in payload:
        return None
    reason = payload["invalid"]
    text = reason if isinstance(reason, str) else json.dumps(reason)
    return (text.strip() or "the trial said its configuration is invalid")[:300]
