"""hpotui's engine: decides and runs trials, owns the SQLite study file.

Never imports textual or rich (tests/test_import_hygiene.py keeps it so): the engine must
start fast and run detached from any terminal.
"""

from .trial_side.report import report

__all__ = ["report"]
