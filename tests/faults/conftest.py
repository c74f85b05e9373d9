"""Fault-injection fixtures: real trial scripts, real space files, the real CLI as subprocesses.

Everything a fault test needs to stage a study in ``tmp_path`` and then look at it the way a user
would afterwards: the engine's exit code and output, the database (through fresh read-only
connections, never held open), the trial log files, and which processes are still alive.
Nothing here imports the engine's loop: the engine under test always runs as ``python -m hpotui.engine.cli``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest
import yaml

from tests.conftest import cli_env

REPO = Path(__file__).resolve().parents[2]
PREFIX = "@hpotui "


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long fault-injection loops (run in CI with a smaller count)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The default run skips the long loops; `-m slow` or HPOTUI_SLOW=1 runs them."""
    if "slow" in (config.getoption("markexpr", "") or "") or os.environ.get("HPOTUI_SLOW") == "1":
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow: run with `-m slow` or HPOTUI_SLOW=1")
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


def kill_count(default: int = 4) -> int:
    """How many random engine kills the kill/resume loop makes (HPOTUI_FAULT_KILLS; the slow run uses 20)."""
    return int(os.environ.get("HPOTUI_FAULT_KILLS", default))


engine_env = cli_env  # the environment of a user's shell: this venv's python first on PATH, the repo importable


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll until ``predicate`` returns something truthy; fail the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}")


def alive(pid: int) -> bool:
    """True for a live process; a zombie (dead, not yet reaped by init) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass
class Engine:
    """A background engine process whose output goes to a file (a pipe nobody reads could block it)."""

    popen: subprocess.Popen[bytes]
    out_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"engine did not finish in {timeout:g}s; output:\n{self.output()[-3000:]}")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)


@dataclass
class Lab:
    """One scratch folder with a database, trial scripts and space files, driven through the real CLI."""

    root: Path
    db: Path
    engines: list[Engine] = field(default_factory=list)
    _outputs: int = 0

    # -- staging --------------------------------------------------------------------------------
    def write_trial(self, name: str, code: str) -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(code), encoding="utf-8")
        return path

    def write_space(self, name: str = "study", *, command: Any, space: dict[str, Any], max_trials: int,
                    max_parallel: int, algorithm: str = "grid", file: str | None = None,
                    **extra: Any) -> Path:
        data: dict[str, Any] = {
            "name": name, "command": command, "objective": {"metric": "val_acc", "mode": "max"},
            "search": {"algorithm": algorithm, "seed": 0},
            "budget": {"max_trials": max_trials, "max_parallel": max_parallel}, "space": space, **extra}
        path = self.root / (file or f"{name}.yaml")
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    # -- running ---------------------------------------------------------------------------------
    def hpotui(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hpotui.engine.cli", *args, "--db", str(self.db)], cwd=self.root,
                              env=engine_env(), text=True, capture_output=True, timeout=timeout)

    def start(self, *args: str, preexec_fn: Callable[[], None] | None = None) -> Engine:
        """The engine in the background, its own session (like a shell job, so test signals reach only it)."""
        self._outputs += 1
        out_path = self.root / f"engine-{self._outputs}.out"
        with open(out_path, "wb") as out:
            popen = subprocess.Popen([sys.executable, "-m", "hpotui.engine.cli", *args, "--db", str(self.db)],
                                     cwd=self.root, env=engine_env(), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec_fn)
        engine = Engine(popen, out_path)
        self.engines.append(engine)
        return engine

    # -- looking ---------------------------------------------------------------------------------
    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        """One query on a fresh read-only connection (readers never hold a transaction open)."""
        if not self.db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            conn.close()

    def trials(self, study: str) -> list[sqlite3.Row]:
        return self.query("SELECT t.* FROM trials t JOIN studies s ON s.id = t.study_id WHERE s.name = ? "
                          "ORDER BY t.number", study)

    def study_row(self, study: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM studies WHERE name = ?", study)
        return rows[0] if rows else None

    def events(self, study: str, kind: str | None = None) -> list[sqlite3.Row]:
        sql = "SELECT e.* FROM events e JOIN studies s ON s.id = e.study_id WHERE s.name = ?"
        return self.query(sql + (" AND e.kind = ?" if kind else "") + " ORDER BY e.id", study,
                          *([kind] if kind else []))

    def metric_values(self, study: str, name: str) -> list[float]:
        return [r[0] for r in self.query("SELECT m.value FROM metrics m JOIN trials t ON t.id = m.trial_id "
                                         "JOIN studies s ON s.id = t.study_id WHERE s.name = ? AND m.name = ?",
                                         study, name)]

    def run_dir(self, study: str) -> Path:
        return self.db.parent / "hpotui_runs" / study

    def trial_dirs(self, study: str) -> list[Path]:
        root = self.run_dir(study)
        if not root.exists():  # "<n>" or, when that name was taken by something else, "<n>-2" ...
            return []
        return sorted((p for p in root.iterdir() if p.is_dir() and p.name.split("-")[0].isdigit()),
                      key=lambda p: (int(p.name.split("-")[0]), p.name))

    def printed_values(self, study: str, key: str) -> list[float]:
        """Every ``key`` value of every well-formed metric line any trial of ``study`` printed (the truth)."""
        values: list[float] = []
        for trial_dir in self.trial_dirs(study):
            for log in ("stdout.log", "stderr.log"):
                path = trial_dir / log
                if not path.exists():
                    continue
                for line in path.read_bytes().split(b"\n"):
                    text = line.decode("utf-8", errors="replace")
                    if text.startswith(PREFIX):
                        try:
                            payload = json.loads(text[len(PREFIX):])
                        except ValueError:
                            continue
                        if isinstance(payload, dict) and key in payload:
                            values.append(payload[key])
        return values

    def trial_pids(self, study: str) -> list[int]:
        """Every pid any trial of the study wrote to its folder (pid files) or the engine recorded."""
        pids = {r["pid"] for r in self.trials(study) if r["pid"]}
        for trial_dir in self.trial_dirs(study):
            for pid_file in trial_dir.glob("*.pid"):
                text = pid_file.read_text().strip()
                if text.isdigit():
                    pids.add(int(text))
        return sorted(pids)

    def live_trial_pids(self, study: str) -> list[int]:
        return [pid for pid in self.trial_pids(study) if alive(pid) and _is_ours(pid, self.root)]

    def cleanup(self) -> None:
        """Never leave anything running, whatever the test did (only processes started from this lab)."""
        for engine in self.engines:
            if engine.popen.poll() is None:
                engine.popen.kill()
                engine.popen.wait()
        for proc in psutil.process_iter(["pid"]):
            if proc.pid != os.getpid() and _is_ours(proc.pid, self.root):
                try:
                    os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def _is_ours(pid: int, root: Path) -> bool:
    """A process started from this lab: a trial (HPOTUI_TRIAL_DIR under it) or anything working in it."""
    try:
        proc = psutil.Process(pid)
        env = proc.environ()
        return str(root) in env.get("HPOTUI_TRIAL_DIR", "") or proc.cwd().startswith(str(root))
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return False


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    the_lab = Lab(root=tmp_path, db=tmp_path / "hpotui.db")
    try:
        yield the_lab
    finally:
        the_lab.cleanup()


def exactly_once(lab: Lab, study: str, key: str = "uid") -> tuple[int, Counter[float], Counter[float]]:
    """(lines checked, lines missing from the database, lines recorded more than once)."""
    printed = Counter(lab.printed_values(study, key))
    recorded = Counter(lab.metric_values(study, key))
    assert all(n == 1 for n in printed.values()), "the trial script must print each value once"
    return sum(printed.values()), printed - recorded, recorded - printed


# A trial that reports one uniquely-numbered line per epoch and leaves its pid behind.
COUNTING_TRIAL = """
    import json, os, sys, time
    lr = float(sys.argv[1]); epochs = int(sys.argv[2]); delay = float(sys.argv[3])
    number = int(os.environ["HPOTUI_TRIAL_ID"])
    with open(os.path.join(os.environ["HPOTUI_TRIAL_DIR"], "trial.pid"), "w") as f:
        f.write(str(os.getpid()))
    for epoch in range(1, epochs + 1):
        time.sleep(delay)
        print("@hpotui " + json.dumps({"epoch": epoch, "val_acc": lr * epoch / epochs,
                                       "uid": number * 100000 + epoch}), flush=True)
        print(f"epoch {epoch} of trial {number}", flush=True)
"""


def counting_study(lab: Lab, name: str, *, max_trials: int, max_parallel: int, epochs: int, delay: float,
                   **extra: Any) -> Path:
    lab.write_trial("count.py", COUNTING_TRIAL)
    return lab.write_space(name, command=f"python count.py {{lr}} {epochs} {delay}",
                           space={"lr": {"type": "uniform", "low": 0.1, "high": 1.0}}, algorithm="random",
                           max_trials=max_trials, max_parallel=max_parallel, **extra)
