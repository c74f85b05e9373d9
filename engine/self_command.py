"""The argv that starts hpotui's own CLI in a new process, immune to the user's files.

``python -m hpotui.engine.cli`` puts the working directory first on ``sys.path``; a user's
``hpotui.py`` (or a stray ``hpotui/`` folder) there would then shadow the installed package. The
detached engine and the refine dialog's next stage are started from the user's project folder,
so they start through ``-c`` with the working directory removed from the path before anything of
hpotui's is imported. (``python -P`` does the same, but only from Python 3.11.)
"""

from __future__ import annotations

import sys

_BOOT = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
         "sys.argv[0] = 'hpotui'; from hpotui.engine.cli import main; sys.exit(main())")


def hpotui_command(*args: str) -> list[str]:
    """``[python, -c, BOOT, *args]``: the CLI with ``args``, as the installed ``hpotui`` would run it."""
    return [sys.executable, "-c", _BOOT, *args]
