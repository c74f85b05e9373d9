"""A project folder that moved between a crash and `resume`, and `export -o` to places it cannot write.

A moved project resumes: found beside its database's new folder, or told with `--workdir`, and
the message that cannot find it offers exactly that. An export that cannot be written is one
line and exit 2, never a traceback.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.faults.conftest import Lab, counting_study, wait_for


def _crash_mid_study(lab: Lab, name: str) -> None:
    """Launch, let a trial or two record, then kill -9 the engine and its trials (a power cut)."""
    space = counting_study(lab, name, max_trials=3, max_parallel=1, epochs=15, delay=0.02)
    engine = lab.start("launch", str(space), "--headless")
    wait_for(lambda: len(lab.metric_values(name, "uid")) >= 20, what="first trial recorded")
    engine.signal(signal.SIGKILL)
    engine.popen.wait()
    for trial in lab.trials(name):
        if trial["pgid"]:
            try:
                os.killpg(trial["pgid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def project(tmp_path: Path):
    root = tmp_path / "project"
    root.mkdir()
    the_lab = Lab(root=root, db=root / "hpotui.db")
    yield the_lab
    the_lab.cleanup()


def test_a_project_moved_with_its_database_resumes_from_the_new_folder(project: Lab) -> None:
    _crash_mid_study(project, "moved")
    new_root = project.root.parent / "renamed project"
    shutil.move(str(project.root), str(new_root))
    project.root, project.db = new_root, new_root / "hpotui.db"
    result = project.hpotui("resume", "moved", "--headless", timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    statuses = [t["status"] for t in project.trials("moved")]
    assert statuses.count("completed") == 3, statuses
    assert not (project.root.parent / "project").exists(), "nothing was recreated at the old place"


def test_a_project_moved_away_from_its_database_says_how_and_resumes_with_workdir(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    lab = Lab(root=code, db=tmp_path / "dbs" / "hpotui.db")
    try:
        _crash_mid_study(lab, "apart")
        shutil.move(str(code), str(tmp_path / "code-v2"))
        lab.root = tmp_path  # the shell is somewhere else now
        result = lab.hpotui("resume", "apart", "--headless")
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "--workdir" in lines[0] and "Traceback" not in result.stderr
        lab.root = tmp_path / "code-v2"
        result = lab.hpotui("resume", "apart", "--headless", "--workdir", str(lab.root), timeout=120)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr
        assert [t["status"] for t in lab.trials("apart")].count("completed") == 3
    finally:
        lab.cleanup()


@pytest.mark.parametrize("where", ["missing-folder", "a-folder", "dev-full"])
def test_export_to_a_place_it_cannot_write_is_one_line(lab: Lab, where: str) -> None:
    space = counting_study(lab, "out", max_trials=1, max_parallel=1, epochs=2, delay=0.0)
    assert lab.hpotui("launch", str(space), "--headless").returncode == 0
    if where == "dev-full" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    target = {"missing-folder": lab.root / "no" / "such" / "out.json", "a-folder": lab.root,
              "dev-full": Path("/dev/full")}[where]
    result = lab.hpotui("export", "out", "-o", str(target))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(target) in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not (lab.root / "no").exists()
