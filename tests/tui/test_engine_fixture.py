"""The reader against a real engine run: what the TUI looks for is what the study loop writes.

A headless ASHA study of a tiny pure-Python trainer (some configurations crash with a traceback):
pruned trials must get rung markers and a reason with the cut-off, a failed trial its exit code
and stderr tail, the finished study the reason it ended — read through the TUI's own reader.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.conftest import run_cli
from hpotui.tui.data import StudyReader

TRAINER = """
import json, sys
lr = float(sys.argv[1])
if lr > 0.8:
    raise SystemExit("ValueError: lr too high for this toy")
for epoch in range(1, 10):
    print("@hpotui " + json.dumps({"epoch": epoch, "val_acc": min(1.0, lr * epoch)}), flush=True)
"""
SPACE = """
name: real
command: python trainer.py {lr}
objective: {metric: val_acc, mode: max}
search: {algorithm: grid}
budget: {max_trials: 9, max_parallel: 1, failure_streak: 9}
scheduler: {type: asha, resource: epoch, min_resource: 1, max_resource: 9, reduction_factor: 3}
space:
  lr: {type: choice, values: [0.5, 0.4, 0.3, 0.05, 0.02, 0.01, 0.9, 0.03, 0.04]}
"""


def test_reader_finds_what_a_real_engine_recorded(tmp_path: Path):
    (tmp_path / "trainer.py").write_text(textwrap.dedent(TRAINER))
    (tmp_path / "real.yaml").write_text(textwrap.dedent(SPACE))
    db = tmp_path / "h.db"
    result = run_cli("launch", "real.yaml", "--headless", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    reader = StudyReader(str(db))
    view = reader.study_view(1)
    pruned = [t for t in view.trials if t.status == "pruned"]
    assert pruned, [t.status for t in view.trials]
    assert all(reader.cutoffs(t.id) for t in pruned)  # rung markers come from the engine's scheduler events
    assert all("cut-off" in t.reason for t in pruned)
    [failed] = [t for t in view.trials if t.status == "failed"]
    failure = reader.failure(failed.id)
    assert failure is not None and failure.exit_code == 1 and "lr too high" in failure.stderr_tail
    assert view.end_reason.startswith(("budget", "every configuration"))
    assert all(t.best is None or t.last is None or t.best >= t.last for t in view.trials)
