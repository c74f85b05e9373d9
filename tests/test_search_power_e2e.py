"""Several objectives and a conditional space, through the real CLI.

Invalid trials, warm starts and the two-objective records in detail run in-process in
tests/test_loop_budget.py and tests/test_loop_search.py; a refined stage warm-started from its parent
runs for real in tests/test_refine.py."""

from __future__ import annotations

import csv
import io
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

TOY = """
import json, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
x = float(args.get("--x", 0.5)); kind = args.get("--kind", "a")
if "--invalid-above" in args and x > float(args["--invalid-above"]):
    print("@hpotui " + json.dumps({"invalid": f"x={x:.3f} is too large for this model"}), flush=True)
    sys.exit(0)
for epoch in (1, 2):
    acc = x * epoch / 2 + (0.05 if kind == "b" else 0.0)
    print("@hpotui " + json.dumps({"epoch": epoch, "acc": acc, "size": x ** 2 + (0.5 if kind == "b" else 0.0)}),
          flush=True)
"""


def study_file(tmp_path: Path, name: str, body: str) -> Path:
    (tmp_path / "toy.py").write_text(textwrap.dedent(TOY))
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def export(tmp_path: Path, study: str, db: Path, fmt: str = "json") -> str:
    done = run_cli("export", study, "--format", fmt, "--db", str(db), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def dominated(a: dict, others: list[dict]) -> bool:
    """a is dominated when another trial has acc >= and size <= with one strictly better (acc max, size min)."""
    return any(o["acc"] >= a["acc"] and o["size"] <= a["size"] and (o["acc"] > a["acc"] or o["size"] < a["size"])
               for o in others)


def test_two_objectives_export_the_list_and_mark_the_pareto_front(tmp_path: Path) -> None:
    pytest.importorskip("optuna")  # Optuna's multi-objective TPE, told each trial's last values
    path = study_file(tmp_path, "mo", """
    name: mo
    command: python toy.py --x {x} --kind {kind}
    objective:
      - {metric: acc, mode: max}
      - {metric: size, mode: min}
    search: {algorithm: tpe, seed: 1}
    budget: {max_trials: 8, max_parallel: 2}
    space:
      x:    {type: uniform, low: 0.1, high: 1}
      kind: {type: choice, values: [a, b]}
    """)
    db = tmp_path / "mo.db"
    done = run_cli("launch", str(path), "--headless", "--db", str(db), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pareto front of acc (max), size (min)" in done.stdout

    record = json.loads(export(tmp_path, "mo", db))
    assert record["study"]["objective"] == [{"metric": "acc", "mode": "max"}, {"metric": "size", "mode": "min"}]
    trials = record["trials"]
    assert len(trials) == 8 and all(isinstance(t["pareto"], bool) for t in trials)
    lasts = [t["last"] for t in trials]
    for t in trials:
        assert t["pareto"] == (not dominated(t["last"], [o for o in lasts if o is not t["last"]]))
    front = {t["id"] for t in trials if t["pareto"]}
    assert front

    rows = list(csv.DictReader(io.StringIO(export(tmp_path, "mo", db, "csv"))))
    assert {int(r["id"]) for r in rows if r["pareto"] == "yes"} == front
    markdown = export(tmp_path, "mo", db, "md")
    assert "| pareto |" in markdown and "Objective: acc (max), size (min)" in markdown

    status = run_cli("status", "mo", "--db", str(db), cwd=tmp_path).stdout
    assert f"pareto front of acc (max), size (min): {len(front)} of 8 completed trials" in status
    for number in front:
        assert f"  trial {number} " in status


def test_a_real_conditional_study_passes_only_each_optimizers_own_flag(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    shutil.copy(REPO / "sample_spaces" / "train_digits.py", tmp_path / "train_digits.py")
    text = (REPO / "sample_spaces" / "conditional.yaml").read_text()
    text = text.replace("max_trials: 12", "max_trials: 4").replace("--epochs 6", "--epochs 2")
    text = text.replace("algorithm: tpe, seed: 0", "algorithm: random, seed: 3")
    path = tmp_path / "conditional.yaml"
    path.write_text(text)
    db = tmp_path / "c.db"
    done = run_cli("launch", str(path), "--headless", "--db", str(db), cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = json.loads(export(tmp_path, "digits-conditional", db))["trials"]
    assert len(trials) == 4 and all(t["status"] == "completed" for t in trials)
    optimizers = set()
    for t in trials:
        optimizer = t["params"]["optimizer"]
        optimizers.add(optimizer)
        argv = t["argv"]
        if optimizer == "sgd":
            assert "momentum" in t["params"] and "beta2" not in t["params"]
            assert "--momentum" in argv and not any(a.startswith("--beta2") for a in argv)
        else:
            assert "beta2" in t["params"] and "momentum" not in t["params"]
            assert f"--beta2={t['params']['beta2']}" in argv and "--momentum" not in argv
        assert t["resource"] == 2 and 0.0 <= t["last"]["val_acc"] <= 1.0  # each trained its 2 epochs
        log = (tmp_path / "hpotui_runs" / "digits-conditional" / str(t["id"]) / "stdout.log").read_text()
        knob = f"beta2={t['params']['beta2']:g}" if optimizer == "adam" else f"momentum={t['params']['momentum']:g}"
        assert f"{optimizer} {knob} " in log  # the trainer ran the optimiser it was given, with its own knob
    assert optimizers == {"sgd", "adam"}


def test_the_sample_spaces_parse_with_their_conditions_and_objectives() -> None:
    from hpotui.engine.space_file.space import load_space

    conditional = load_space(REPO / "sample_spaces" / "conditional.yaml")
    assert conditional.param("momentum").when == (("optimizer", ("sgd",)),)
    assert conditional.param("beta2").when == (("optimizer", ("adam",)),)
    two = load_space(REPO / "sample_spaces" / "two_objectives.yaml")
    assert [(o.metric, o.mode) for o in two.objectives] == [("val_acc", "max"), ("size_mb", "min")]
