"""`hpotui plan` through the real CLI.

ASHA pruning and a NaN trial freeing its slot run in-process in tests/test_loop_multifidelity.py;
real ASHA / Hyperband studies run in tests/test_tpe.py and tests/test_hyperband_resume.py."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.conftest import run_cli


def test_plan_reproduces_the_hyperband_paper_table(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("")
    (tmp_path / "hb.yaml").write_text(textwrap.dedent("""
        name: hb
        command: python t.py --lr {lr} --epochs {max_resource}
        objective: {metric: val_acc, mode: max}
        budget: {max_trials: 143, max_parallel: 4}
        scheduler: {type: hyperband, min_resource: 1, max_resource: 81, reduction_factor: 3}
        space:
          lr: {type: loguniform, low: 1e-4, high: 1}
    """))
    result = run_cli("plan", "hb.yaml", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["scheduler"] == "hyperband" and plan["total_trials"] == 143
    table = {b["s"]: [(r["n"], r["resource"]) for r in b["rungs"]] for b in plan["brackets"]}
    assert table[4] == [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)]
    assert table[3] == [(34, 3), (11, 9), (3, 27), (1, 81)]
    assert table[2] == [(15, 9), (5, 27), (1, 81)]
    assert table[1] == [(8, 27), (2, 81)]
    assert table[0] == [(5, 81)]
    assert not (tmp_path / "hpotui.db").exists()  # plan runs nothing
