"""hpotui: hyperparameter search launched and watched from the terminal of a GPU box.

The import name is ``hpotui`` so that nothing collides with a user's own ``engine.py`` or
``tui.py`` (DETR, DeiT, MAE and many others ship an ``engine.py``). The folders ``engine/`` and
``tui/`` at the repository root become ``hpotui.engine`` and ``hpotui.tui`` through the
package-dir mapping in ``pyproject.toml``.

``from hpotui import report`` is the trial-side helper that prints the metric line.
"""

from .engine.trial_side.report import report

__all__ = ["report"]
