"""SQL about events, commands and clones is spoken only by the store (the writer) and its read side.

Everyone else (the TUI's reader, export, status, the loop) asks :mod:`engine.database.store_read` or the
Store, and gets the record vocabulary back. Read with ``ast`` from every string in engine/ and tui/,
so a query written anywhere else fails here before the two sides can drift apart again.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {Path("engine/database/store.py"), Path("engine/database/store_read.py")}
TABLES = r"(events|commands|clones)"
SQL = re.compile(rf"\b(from|into|update|join|table)\s+{TABLES}\b|\bname\s*=\s*'{TABLES}'", re.IGNORECASE)
SQL_WORD = re.compile(r"\b(select|insert|update|delete|create|where)\b", re.IGNORECASE)


def _sql_strings(source: str) -> list[str]:
    """String constants (f-string parts included) that read as SQL naming one of the three tables."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value) \
                and SQL_WORD.search(node.value):
            found.append(node.value)
    return found


def test_only_the_store_and_its_read_side_query_events_commands_and_clones() -> None:
    offenders = {}
    for top in ("engine", "tui"):
        for path in sorted((REPO / top).rglob("*.py")):
            relative = path.relative_to(REPO)
            if relative not in ALLOWED and (hits := _sql_strings(path.read_text())):
                offenders[str(relative)] = hits
    assert offenders == {}


def test_the_scan_sees_a_query_in_a_string_or_an_f_string_and_ignores_prose() -> None:
    assert _sql_strings('conn.execute("SELECT data FROM events WHERE trial_id = ?")')
    assert _sql_strings('conn.execute(f"SELECT id FROM commands WHERE study_id = {x}")')
    assert _sql_strings('q = "SELECT 1 FROM sqlite_master WHERE type = \'table\' AND name = \'clones\'"')
    assert not _sql_strings('"""Requests from the interface to the engine, through the database\'s commands table."""')
    assert not _sql_strings('say("clones waiting in the queue; select one from the list")')
