"""Run a real framework's trainer under a real engine and watch its values land in the database.

One study per framework: a grid over one ``case`` choice (``verbose=2``, ``poison=1``, ...). While
the engine runs, the lab polls the SQLite file; once every expected metric of epoch N is recorded
for a running trial it opens that trial's gate ``N`` (the trainer waits there right after printing
epoch N), notes when it saw the row (report-to-database latency) and that the trial was still
running. A value that arrives an epoch late, or only at exit, keeps the gate shut: the trainer
gives up after a while and says so in its record, and the test fails.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TRAINERS = Path(__file__).parent / "trainers"


@dataclass
class TrialSeen:
    number: int
    case: str
    status: str = ""
    trial_dir: str = ""
    opened: dict[str, float] = field(default_factory=dict)  # epoch -> when all its metrics were in the db
    opened_while_running: bool = True


@dataclass
class StudyRun:
    db: Path
    name: str
    code: int
    output: str
    trials: dict[int, TrialSeen]
    export: dict[str, Any]

    def record(self, trial: TrialSeen) -> dict[str, Any]:
        return json.loads((Path(trial.trial_dir) / "record.json").read_text())

    def curves(self, trial: TrialSeen) -> dict[str, list[list[float]]]:
        entry = next(t for t in self.export["trials"] if t["id"] == trial.number)
        return entry["curves"]

    def by_case(self, case: str) -> TrialSeen:
        return next(t for t in self.trials.values() if t.case == case)

    def row_count(self, trial: TrialSeen) -> int:
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute("SELECT COUNT(*) FROM metrics m JOIN trials t ON t.id = m.trial_id "
                                "WHERE t.number = ?", (trial.number,)).fetchone()[0]
        finally:
            conn.close()

    def latencies(self, trial: TrialSeen) -> list[float]:
        printed = self.record(trial)["printed_at"]
        return [trial.opened[e] - printed[e] for e in trial.opened if e in printed]


def run_study(tmp_path: Path, name: str, trainer: str, cases: list[str], metrics: dict[str, Any],
              objective: dict[str, str], gate_metrics: tuple[str, ...], first_epoch: int = 1,
              timeout: float = 240, extra: dict[str, Any] | None = None) -> StudyRun:
    """Launch the study headless and run the gate keeper until the engine exits."""
    space = {
        "name": name,
        "command": [sys.executable, str(TRAINERS / trainer), "--case", "{case}", "--record",
                    "{trial_dir}/record.json", "--gate", "{trial_dir}/gate"],
        "workdir": str(tmp_path),
        "objective": objective,
        "search": {"algorithm": "grid"},
        "budget": {"max_trials": len(cases), "max_parallel": 2},
        "space": {"case": {"type": "choice", "values": cases}},
        "metrics": metrics,
        **(extra or {}),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    db = tmp_path / "hpotui.db"
    env = dict(os.environ, PYTHONPATH=str(TRAINERS) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               KERAS_BACKEND="torch", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    engine = subprocess.Popen([sys.executable, "-m", "hpotui.engine.cli", "--db", str(db), "launch", str(path),
                               "--headless"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    trials: dict[int, TrialSeen] = {}
    deadline = time.monotonic() + timeout
    while engine.poll() is None and time.monotonic() < deadline:
        if db.exists():
            _open_gates(db, trials, gate_metrics, first_epoch)
        time.sleep(0.03)
    if engine.poll() is None:
        engine.kill()
    output = engine.communicate()[0]
    _open_gates(db, trials, gate_metrics, first_epoch)  # final statuses
    exported = subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "--db", str(db), "export", name,
                               "--format", "json", "--curves"], capture_output=True, text=True, env=env)
    assert exported.returncode == 0, exported.stderr
    return StudyRun(db, name, engine.returncode, output, trials, json.loads(exported.stdout))


def _open_gates(db: Path, trials: dict[int, TrialSeen], gate_metrics: tuple[str, ...], first_epoch: int) -> None:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        rows = conn.execute("SELECT id, number, status, trial_dir, params FROM trials").fetchall()
        for trial_id, number, status, trial_dir, params in rows:
            seen = trials.setdefault(trial_id, TrialSeen(number, json.loads(params)["case"]))
            seen.status, seen.trial_dir = status, trial_dir
            if status != "running":
                continue
            epoch = first_epoch + len(seen.opened)
            names = {r[0] for r in conn.execute("SELECT name FROM metrics WHERE trial_id = ? AND step = ?",
                                                (trial_id, float(epoch)))}
            if set(gate_metrics) <= names:
                seen.opened[str(epoch)] = time.time()
                Path(trial_dir, f"gate.{epoch}").touch()
        conn.close()
    except sqlite3.OperationalError:
        return  # the engine is creating the file: look again in a moment


def printed(value: float, *, decimals: int | None = None, significant: int | None = None) -> float:
    """How far a printed value may be from the exact one: half a unit of its last printed digit."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    if decimals is not None:
        return 0.5 * 10 ** -decimals * 1.0001
    assert significant is not None
    return 0.5 * 10 ** (math.floor(math.log10(abs(value))) - significant + 1) * 1.0001


def assert_curves_match(curves: dict[str, list[list[float]]], record: dict[str, dict[str, float]],
                        names: dict[str, str], **precision: int) -> int:
    """Every recorded epoch of every metric equals the framework's record to the printed precision,
    and the database holds no step the framework did not record (no fake row). Returns rows checked."""
    checked = 0
    for ours, theirs in names.items():
        points = {f"{step:g}": value for step, value in curves.get(ours, [])}
        expected = {epoch: values[theirs] for epoch, values in record.items() if theirs in values}
        assert set(points) == set(expected), f"{ours}: steps {sorted(points)} recorded, {sorted(expected)} expected"
        for epoch, exact in expected.items():
            assert abs(points[epoch] - exact) <= printed(exact, **precision), \
                f"{ours} epoch {epoch}: recorded {points[epoch]}, the framework has {exact}"
            checked += 1
    return checked
