"""The one rule for a study name, wherever the name comes from.

A study name becomes a folder (``hpotui_runs/<name>/``), a line of ``hpotui status`` and an
argument of ``hpotui resume``; the same rule holds for ``name:`` in a space file, ``--name``
on the command line, a refined or cloned stage's name, and a name found in the database.
Letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, never ``..``, at most
:data:`MAX_NAME_LENGTH` characters: so no ``/``, no absolute path, no control character or
newline, and always room for the ``-2`` / ``-stage3`` suffixes within the file system's 255.
"""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NAME_FIX = (f"use 1 to {MAX_NAME_LENGTH} letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(no '/', no '..')")


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a study name, or None when it can."""
    if not isinstance(name, str) or not name:
        return "a study name must be a non-empty string"
    if len(name) > MAX_NAME_LENGTH:
        return f"the study name is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    if not _NAME.fullmatch(name) or ".." in name:
        return f"{shown_name(name)} is not a usable study name"
    return None


def shown_name(name: str, limit: int = 40) -> str:
    """A name as a one-line message may show it: quoted, control characters escaped, cut short."""
    text = repr(name[:limit])
    return text + ("..." if len(name) > limit else "")
