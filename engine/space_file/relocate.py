"""Finding a study's project folder again after it moved (``hpotui resume`` on a renamed checkout).

A study remembers the folder its space file was in (``base_dir``; the command's ``workdir`` is
relative to it) and, since this module, the folder its database was in (``db_dir``). When the
remembered folder is gone, the project most likely moved with its database: the same relative
place beside the database's new folder is tried, then the database's folder itself when it holds
the space file. Otherwise ``--workdir NEW_FOLDER`` says where it is now, and the message says so.
A folder found or given is stored back, so a detached engine and later resumes use it too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import UserError


def project_folder(store: Any, study: Any, given: str | None) -> Path:
    """The folder that ``workdir:`` of ``study``'s space file is relative to, now."""
    stored = store.space_json(study.id)
    remembered = Path(stored.get("base_dir") or Path(study.space_file).parent)
    if given is not None:
        folder = Path(given).resolve()
        if not folder.is_dir():
            raise UserError(f"--workdir: {folder} is not a folder; pass the folder the study's space file is in now")
    elif remembered.is_dir():
        return remembered
    else:
        found = _moved_with_database(store, stored, remembered, study)
        if found is None:
            raise UserError(f"{study.space_file}: the project folder of study {study.name!r}, {remembered}, is gone "
                            f"(moved or renamed?); resume it with `hpotui resume {study.name} --workdir NEW_FOLDER` "
                            "(the folder its space file is in now)")
        folder = found
    store.set_space_json(study.id, dict(stored, base_dir=str(folder), db_dir=str(store.path.resolve().parent)))
    return folder


def _moved_with_database(store: Any, stored: dict[str, Any], remembered: Path, study: Any) -> Path | None:
    """The project folder at the same place relative to the database, or the database's own folder."""
    here = store.path.resolve().parent
    old_db_dir = stored.get("db_dir")
    if old_db_dir:
        beside = (here / os.path.relpath(remembered, old_db_dir)).resolve()
        if beside.is_dir():
            return beside
    if (here / Path(study.space_file).name).is_file():
        return here
    return None
