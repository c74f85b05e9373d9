"""How a trial gets its parameters besides its command line: HPOTUI_PARAMS, or a file when too big.

Linux caps one environment string at MAX_ARG_STRLEN (32 pages, 128 KiB): past about 4,300
parameters the JSON in ``HPOTUI_PARAMS`` no longer fits, and every start would fail with a
misleading "Argument list too long". Above :data:`MAX_ENV_BYTES` the parameters go to
``params.json`` in the trial's own (fresh, owner-only) folder instead, and ``HPOTUI_PARAMS_FILE``
names it; ``HPOTUI_PARAMS`` is then left out, so a trial never reads a truncated set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_ENV_BYTES = 100 * 1024  # well under the kernel's 128 KiB, leaving room for the "HPOTUI_PARAMS=" name
PARAMS_FILE = "params.json"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def params_environment(params: dict[str, Any], trial_dir: Path) -> dict[str, str]:
    """``{"HPOTUI_PARAMS": json}``, or ``{"HPOTUI_PARAMS_FILE": path}`` with the file written first."""
    text = json.dumps(params)
    data = text.encode("utf-8")
    if len(data) <= MAX_ENV_BYTES:
        return {"HPOTUI_PARAMS": text}
    path = trial_dir / PARAMS_FILE
    fd = os.open(path, _CREATE, 0o600)  # the folder is new and ours: an existing name is never reused
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return {"HPOTUI_PARAMS_FILE": str(path)}
