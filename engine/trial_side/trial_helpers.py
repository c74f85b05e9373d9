"""``hpotui helpers DIR``: copy the trial-side helpers into a training environment without hpotui.

People who install hpotui as a tool in its own environment (``pipx install`` / ``uv tool
install``) run trials with their training environment's python, where ``import hpotui`` fails,
and ``python -c 'import hpotui'`` cannot even find the files to copy. The ``hpotui`` command can:
it writes ``hpotui_report.py`` (``from hpotui_report import report``) and ``hpotui_callbacks.py``
(the Keras / Lightning / transformers callbacks) next to the training script. Both files import
only the standard library (and the framework a callback is for), never hpotui.

The copies are prefixed ``hpotui_`` so they never clash with a project's own ``report.py`` or
``callbacks.py``; a file of that name that is not an hpotui copy is never overwritten.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import UserError

# copy name -> (module to copy, how a training script imports the copy)
HELPERS: dict[str, tuple[str, str]] = {
    "hpotui_report.py": ("hpotui.engine.trial_side.report", "from hpotui_report import report"),
    "hpotui_callbacks.py": ("hpotui.callbacks", "from hpotui_callbacks import HpotuiKerasCallback, "
                            "HpotuiLightningCallback or HpotuiTransformersCallback"),
}


def _source(module: str) -> Path:
    """The file of an installed module, found without importing it (nor any framework)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, module  # both ship in the hpotui distribution
    return Path(spec.origin)


def copy_helpers(folder: str) -> list[str]:
    """Write the helpers into ``folder``; returns one line per file for the user."""
    target = Path(folder)
    if not target.is_dir():
        raise UserError(f"{folder}: no such folder; pass the folder that holds your training script")
    lines = []
    for name, (module, usage) in HELPERS.items():
        text = _source(module).read_text(encoding="utf-8")
        path = target / name
        if path.exists() and not _is_hpotui_copy(path):
            raise UserError(f"{path}: exists and is not an hpotui helper; move it away or pass another folder")
        path.write_text(text, encoding="utf-8")
        lines.append(f"wrote {path}  ({usage})")
    return lines


def _is_hpotui_copy(path: Path) -> bool:
    """An earlier copy of one of the helpers (same first docstring line as some version of it)."""
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:200]
    except OSError:
        return False
    return head.startswith(('"""The trial-side helper', '"""Ready callbacks'))
