"""One rule for every study name, wherever it comes from: --name, name: in the file, a refined stage.

A study name becomes a folder under hpotui_runs/ and a line of `hpotui status`; a name that
climbs out of the folder, is absolute, holds a newline or is too long for the file system must
be refused before anything is created: one line naming where it came from, exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpotui.engine.search.refine import stage_name
from hpotui.engine.space_file.names import MAX_NAME_LENGTH, name_problem
from tests.faults.conftest import Lab, counting_study

BAD_NAMES = ["../../x", "/abs/path", "..", ".", "a/b", "x" * 300, "two\nlines", "tab\there", "bell\x07", "",
             "-leading-dash", "a..b"]


def _outside_files(lab: Lab, before: set[Path]) -> set[Path]:
    return {p for p in lab.root.parent.rglob("*") if not str(p).startswith(str(lab.root))} - before


@pytest.mark.parametrize("bad", BAD_NAMES, ids=lambda n: repr(n[:12]))
def test_a_bad_name_on_the_command_line_is_refused_before_anything_is_created(lab: Lab, bad: str) -> None:
    space = counting_study(lab, "named", max_trials=1, max_parallel=1, epochs=1, delay=0.0)
    before = {p for p in lab.root.parent.rglob("*") if not str(p).startswith(str(lab.root))}
    result = lab.hpotui("launch", str(space), "--headless", "--name", bad)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--name" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not lab.query("SELECT * FROM studies")
    assert not (lab.root / "hpotui_runs").exists() or not any((lab.root / "hpotui_runs").iterdir())
    assert not _outside_files(lab, before)
    assert not Path("/abs/path").exists()


@pytest.mark.parametrize("bad", ["x" * 300, "two\nlines", "../up"], ids=["long", "newline", "dotdot"])
def test_a_bad_name_in_the_space_file_is_refused_the_same_way(lab: Lab, bad: str) -> None:
    space = counting_study(lab, "named", max_trials=1, max_parallel=1, epochs=1, delay=0.0)
    data = yaml.safe_load(space.read_text(encoding="utf-8"))
    data["name"] = bad
    space.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = lab.hpotui("launch", str(space), "--headless")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "name" in lines[0] and str(space) in lines[0], result.stderr
    assert not lab.query("SELECT * FROM studies")


def test_a_name_at_the_limit_runs_and_its_next_stages_fit_the_rule(lab: Lab) -> None:
    name = "n" * MAX_NAME_LENGTH
    space = counting_study(lab, "named", max_trials=1, max_parallel=1, epochs=1, delay=0.0)
    assert lab.hpotui("launch", str(space), "--headless", "--name", name).returncode == 0
    again = lab.hpotui("launch", str(space), "--headless", "--name", name)  # recorded as name-2
    assert again.returncode == 0, again.stderr
    names = [r["name"] for r in lab.query("SELECT name FROM studies ORDER BY id")]
    assert names[0] == name and names[1].startswith(name[:50]) and all(name_problem(n) is None for n in names)
    for stage in (2, 10, 999):
        assert name_problem(stage_name(name, stage)) is None
    assert {r["status"] for r in lab.query("SELECT status FROM studies")} == {"completed"}


def test_a_bad_name_written_into_the_database_by_hand_is_never_run(lab: Lab) -> None:
    """An older hpotui or a sqlite3 shell could have stored one: resume refuses it rather than escape."""
    import sqlite3

    space = counting_study(lab, "named", max_trials=2, max_parallel=1, epochs=1, delay=0.0)
    assert lab.hpotui("launch", str(space), "--headless").returncode == 0
    conn = sqlite3.connect(lab.db)
    conn.execute("UPDATE studies SET name = '../../escaped', status = 'interrupted'")
    conn.execute("UPDATE trials SET status = 'interrupted'")
    conn.commit()
    conn.close()
    result = lab.hpotui("resume", "../../escaped", "--headless")
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (lab.root.parent.parent / "escaped").exists()
