"""A trial only ever reads output it wrote: fresh folders, new files, never a planted link.

Issue 14 items 1 and 4: a deleted (or second) database in the same project folder reuses trial
numbers, and a shared project folder lets someone else pre-create ``hpotui_runs/<study>/<n>/``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from hpotui.engine.reading.logtail import LogTail
from tests.faults.conftest import Lab, counting_study

NOBODY = 65534


def _launch(lab: Lab, name: str, epochs: int = 3) -> None:
    space = counting_study(lab, name, max_trials=2, max_parallel=1, epochs=epochs, delay=0.0)
    result = lab.hpotui("launch", str(space), "--headless", timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr


def _forget_database(lab: Lab) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(lab.db) + suffix).unlink(missing_ok=True)


def test_a_study_run_again_after_its_database_is_gone_never_reads_the_old_logs(lab: Lab) -> None:
    _launch(lab, "again")
    old_log = lab.run_dir("again") / "1" / "stdout.log"
    old_bytes = old_log.read_bytes()
    _forget_database(lab)

    _launch(lab, "again")
    trials = lab.trials("again")
    assert [t["reports"] for t in trials] == [3, 3]  # its own three epochs, not the old run's three more
    assert all(Path(t["stdout_path"]).parent.name != str(t["number"]) for t in trials)
    assert old_log.read_bytes() == old_bytes  # the old run's log is left as it was
    for t in trials:  # every recorded value was printed by this trial, into its own file
        printed = [json.loads(line[len("@hpotui "):])["uid"] for line in
                   Path(t["stdout_path"]).read_text().splitlines() if line.startswith("@hpotui ")]
        recorded = [r[0] for r in lab.query("SELECT value FROM metrics WHERE trial_id = ? AND name = 'uid' "
                                            "ORDER BY id", t["id"])]
        assert recorded == printed
    notes = [e["message"] for e in lab.events("again", "trial_folder")]
    assert len(notes) == 2 and "already exists" in notes[0] and "writes to" in notes[0]


def test_a_planted_link_in_a_trial_folder_is_never_followed(lab: Lab) -> None:
    victim = lab.root / "victim.txt"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    planted = lab.run_dir("plant") / "1"
    planted.mkdir(parents=True)
    (planted / "stdout.log").symlink_to(victim)
    (planted / "stderr.log").symlink_to(victim)

    _launch(lab, "plant")
    assert victim.read_text() == "precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644  # not chmod-ed through the link
    first = lab.trials("plant")[0]
    assert first["status"] == "completed" and first["reports"] == 3
    assert Path(first["stdout_path"]).parent != planted
    assert not Path(first["stdout_path"]).is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's folder needs root")
def test_a_trial_folder_another_user_made_is_refused_and_cannot_read_the_trial(lab: Lab) -> None:
    planted = lab.run_dir("foreign") / "1"
    planted.mkdir(parents=True, mode=0o777)
    (planted / "stdout.log").touch(mode=0o666)
    for path in (planted, planted / "stdout.log"):
        os.chown(path, NOBODY, NOBODY)

    _launch(lab, "foreign")
    assert (planted / "stdout.log").read_bytes() == b""  # the foreigner's file got none of the output
    first = lab.trials("foreign")[0]
    assert first["status"] == "completed" and Path(first["stdout_path"]).parent != planted
    assert os.stat(Path(first["stdout_path"]).parent).st_uid == os.geteuid()


def test_parent_folders_that_others_can_write_are_named_in_a_warning(lab: Lab) -> None:
    runs = lab.db.parent / "hpotui_runs"
    runs.mkdir()
    runs.chmod(0o777)
    space = counting_study(lab, "open", max_trials=1, max_parallel=1, epochs=1, delay=0.0)
    result = lab.hpotui("launch", str(space), "--headless", timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{runs} is writable by others (mode 777)" in result.stdout
    assert any(str(runs) in e["message"] for e in lab.events("open", "folder_mode"))


def test_a_log_replaced_by_a_link_is_not_read_on_reopen(tmp_path: Path) -> None:
    """What a resumed engine does when a trial's log became a link while no engine watched it."""
    elsewhere = tmp_path / "elsewhere.log"
    elsewhere.write_text('@hpotui {"val_acc": 1.0}\n')
    log = tmp_path / "stdout.log"
    log.symlink_to(elsewhere)
    tail = LogTail(log)
    assert tail.read_lines(final=True) == []
    assert tail.refused and "stdout.log" in tail.refused
    tail.close()


def test_a_planted_engine_log_link_is_refused_with_one_line(lab: Lab) -> None:
    victim = lab.root / "victim.txt"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    lab.run_dir("bg").mkdir(parents=True)
    (lab.run_dir("bg") / "engine.log").symlink_to(victim)
    space = counting_study(lab, "bg", max_trials=1, max_parallel=1, epochs=1, delay=0.0)
    result = lab.hpotui("launch", str(space), timeout=60)  # interactive: the engine detaches, logging there
    assert result.returncode == 2, result.stdout + result.stderr
    assert "engine.log: cannot be the engine's log" in result.stderr and "Traceback" not in result.stderr
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_a_study_folder_that_is_a_file_is_one_line_and_exit_2(lab: Lab) -> None:
    (lab.db.parent / "hpotui_runs").mkdir()
    (lab.run_dir("blocked")).write_text("not a folder\n")
    space = counting_study(lab, "blocked", max_trials=1, max_parallel=1, epochs=1, delay=0.0)
    result = lab.hpotui("launch", str(space), "--headless", timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{lab.run_dir('blocked')}: cannot hold trial folders" in result.stderr
    assert "Traceback" not in result.stderr
