"""A finished study as a colleague sees it: in a folder they cannot write, its -wal and -shm gone.

As root nothing is read-only, so the reader then runs without the capabilities that let root
ignore file modes (``setpriv``, as tests/faults/test_foreign_db.py does); otherwise the folder is
simply made read-only for us. Not by switching to ``nobody``: that user may not even reach the
checkout (a clone in a ``mktemp -d`` folder is 0700), and unreadable code is not what is tested.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

@contextmanager
def readonly_copy(db: Path, folder_name: str) -> Iterator[Path]:
    """``db`` checkpointed and copied into a fresh read-only folder named ``folder_name``."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    base = Path(tempfile.mkdtemp(prefix="hpotui-ro-"))
    os.chmod(base, 0o755)
    folder = base / folder_name
    folder.mkdir()
    target = folder / "hpotui.db"
    shutil.copy(db, target)
    os.chmod(target, 0o444)
    assert not Path(str(target) + "-wal").exists() and not Path(str(target) + "-shm").exists()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        yield target
    finally:
        folder.chmod(stat.S_IRWXU)
        shutil.rmtree(base, ignore_errors=True)


def as_reader(argv: list[str]) -> list[str]:
    """``argv`` run so that it cannot write the folder (as root: without DAC override, so modes apply)."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        import pytest

        pytest.skip("running as root without setpriv: nothing is read-only for root")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *argv]
