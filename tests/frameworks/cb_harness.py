"""Run the callback trainers (tests/frameworks/trainers/cb_*.py) as real hpotui trials.

A study is the real CLI (`hpotui launch --headless`) in a subprocess, with a real SQLite file that
the test reads while the trials run. Each study is a two-point grid: ``poison: 0`` trains and
waits at each epoch's gate until the test has seen that epoch in the database; ``poison: 1``
trains on NaN inputs for 100 times as many epochs and never gets a gate opened, so it ends
early only if the engine stops it.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tests.conftest import cli_env

TRAINERS = Path(__file__).parent / "trainers"
TERMINAL = ("completed", "failed", "pruned", "diverged", "stopped", "interrupted")


@dataclass
class Study:
    name: str
    workdir: Path
    db: Path
    proc: subprocess.Popen[str]

    def trial_dir(self, number: int) -> Path:
        return self.workdir / "hpotui_runs" / self.name / str(number)

    def finish(self, timeout: float = 240) -> tuple[str, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"the study did not finish in {timeout}s:\n{out[-3000:]}\n{err[-3000:]}")
        return out, err


def launch(workdir: Path, trainer: str, objective: str, *, lr: float, epochs: int, poisons: tuple[int, ...] = (0, 1),
           standalone: bool = False, extra_args: str = "", env: dict[str, str] | None = None) -> Study:
    """Copy the trainer beside a space file in ``workdir`` and start the study headless."""
    for name in ("cb_common.py", "digits_data.py", trainer):
        shutil.copy(TRAINERS / name, workdir / name)
    name = Path(trainer).stem.replace("_", "-")
    space = workdir / f"{name}.yaml"
    space.write_text(textwrap.dedent(f"""\
        name: {name}
        command: python {trainer} --lr {{lr}} --epochs {epochs} --poison {{poison}} --standalone {int(standalone)}
                 --record {{trial_dir}}/record.json --gate {{trial_dir}}/gate {extra_args}
        objective: {{metric: {objective}, mode: max}}
        search: {{algorithm: grid}}
        budget: {{max_trials: {len(poisons)}, max_parallel: {len(poisons)}}}
        space:
          lr: {{type: choice, values: [{lr}]}}
          poison: {{type: choice, values: [{", ".join(map(str, poisons))}]}}
        """))
    db = workdir / "hpotui.db"
    environment = cli_env({"KERAS_BACKEND": "torch", **(env or {})})
    proc = subprocess.Popen([sys.executable, "-m", "hpotui.engine.cli", "launch", str(space), "--headless",
                             "--db", str(db)], cwd=workdir, env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return Study(name, workdir, db, proc)


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows, or none while the engine has not created the file or its tables yet."""
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return []


def trial_number(study: Study, poison: int) -> int | None:
    for number, params in query(study.db, "SELECT number, params FROM trials ORDER BY number"):
        if json.loads(params).get("poison") == poison:
            return int(number)
    return None


def status(study: Study, number: int) -> str | None:
    rows = query(study.db, "SELECT status FROM trials WHERE number = ?", number)
    return rows[0][0] if rows else None


def recorded(study: Study, number: int) -> dict[float, dict[str, float]]:
    """step -> {metric: value} as the database holds it (NaN is stored as NULL); a repeat is an error."""
    rows = query(study.db, "SELECT m.step, m.name, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id "
                           "WHERE t.number = ? ORDER BY m.id", number)
    result: dict[float, dict[str, float]] = {}
    for step, name, value in rows:
        assert name not in result.get(step, {}), f"{name} recorded twice at step {step}"
        result.setdefault(step, {})[name] = math.nan if value is None else value
    return result


def arrival_times(study: Study, number: int) -> dict[float, float]:
    """step -> when the engine read the first metric of that step."""
    rows = query(study.db, "SELECT m.step, MIN(m.time) FROM metrics m JOIN trials t ON t.id = m.trial_id "
                           "WHERE t.number = ? GROUP BY m.step", number)
    return {step: at for step, at in rows}


def wait_for(condition: Callable[[], Any], what: str, study: Study, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        if study.proc.poll() is not None:
            out, err = study.proc.communicate()
            raise AssertionError(f"the study ended while waiting for {what}:\n{out[-3000:]}\n{err[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def walk_epochs(study: Study, number: int, epochs: int, expected_names: set[str]) -> dict[str, float]:
    """For each epoch: wait until the database holds its metrics while the trial still runs (it
    waits at the gate), then open the gate. Values that only arrive at exit never get here.
    Returns when each epoch was first seen in the database (polled every 50 ms)."""
    seen: dict[str, float] = {}
    for epoch in range(1, epochs + 1):
        wait_for(lambda: expected_names <= set(recorded(study, number).get(float(epoch), {})),
                 f"epoch {epoch}'s {sorted(expected_names)} in the database", study)
        seen[str(epoch)] = time.time()
        assert status(study, number) == "running"  # the trial is held at its gate: it has not ended
        (study.trial_dir(number) / f"gate.{epoch}").touch()
    return seen


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_equal_records(database: dict[float, dict[str, float]], framework: dict[float, dict[str, float]]) -> None:
    """Every value of every epoch, exactly (the metric line prints floats in full: repr precision)."""
    assert sorted(database) == sorted(framework)
    for step, values in framework.items():
        assert sorted(database[step]) == sorted(values), f"step {step}"
        for name, value in values.items():
            assert same(database[step][name], value), f"step {step} {name}: {database[step][name]!r} != {value!r}"


def stopped_for_nan(study: Study, number: int, epochs_it_would_run: int) -> dict[str, Any]:
    """The poisoned trial: diverged, with a nan flag, long before its last epoch."""
    final = status(study, number)
    assert final == "diverged", f"the NaN trial ended {final}"
    flags = query(study.db, "SELECT e.message FROM events e JOIN trials t ON t.id = e.trial_id "
                            "WHERE t.number = ? AND e.kind = 'flag'", number)
    assert any(m.startswith("nan at ") for (m,) in flags), flags
    steps = recorded(study, number)
    assert steps and max(steps) <= 2 < epochs_it_would_run
    return {"flag": flags[0][0], "last_step": max(steps)}


def latencies(study: Study, number: int, reported_at: dict[str, float]) -> list[float]:
    """Seconds from the trial printing an epoch's report to the engine reading it."""
    arrived = arrival_times(study, number)
    return [arrived[float(epoch)] - at for epoch, at in reported_at.items() if float(epoch) in arrived]
