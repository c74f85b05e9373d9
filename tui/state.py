"""What the study screen remembers per study across re-attaches: sort, filter, search and view.

Why a file of our own under the XDG state folder and not the study database: the database may
be read-only (a colleague's finished study), and a preference of one viewer is not part of the
study's record. The file is small JSON keyed by the database's real path and the study name;
every failure to read or write it is swallowed into "nothing remembered", because a view
preference must never stop the interface (the screen says once when it could not save).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

MAX_ENTRIES = 200
KEYS = ("sort", "descending", "status", "text", "view", "log_y", "metric")


def state_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "hpotui" / "tui-state.json"


def _key(db_path: str, study: str) -> str:
    return f"{Path(db_path).resolve()}::{study}"


def _read_all(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load(db_path: str, study: str) -> dict[str, Any]:
    """The remembered view of ``study`` in ``db_path`` (only known keys), or an empty mapping."""
    entry = _read_all(state_file()).get(_key(db_path, study))
    if not isinstance(entry, dict):
        return {}
    return {k: v for k, v in entry.items() if k in KEYS}


def save(db_path: str, study: str, values: Mapping[str, Any]) -> str | None:
    """Remember ``values``; returns why it could not (a line to show once), or None."""
    path = state_file()
    data = _read_all(path)
    key = _key(db_path, study)
    data.pop(key, None)
    data[key] = {k: v for k, v in values.items() if k in KEYS}
    while len(data) > MAX_ENTRIES:  # oldest first: dicts keep insertion order
        data.pop(next(iter(data)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tui-state-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError as exc:
        return f"could not remember this view in {path} ({exc.strerror or exc})"
    return None
