"""Coarse-to-fine stages: refine known studies from a real store, and the CLI round trip."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from hpotui.engine.database.store import Store
from hpotui.engine.errors import UserError
from hpotui.engine.search.refine import param_spans, refine_space, refine_study, stage_name
from hpotui.engine.space_file.space import load_space, parse_space

REPO = Path(__file__).resolve().parents[1]

SPACE = """\
# the user's comment
name: coarse
command: python train.py --lr {lr} --dropout {dropout} --width {width} --batch {batch} --epochs 2
workdir: .
objective: {metric: val_acc, mode: max}
search: {algorithm: random, seed: 3}
budget: {max_trials: 20, max_parallel: 2, max_time: 10m}
space:
  lr:      {type: loguniform, low: 1e-5, high: 1}
  dropout: {type: uniform, low: 0.0, high: 0.5}
  width:   {type: int, low: 16, high: 512}
  batch:   {type: choice, values: [32, 64, 128, 256]}
"""


def build_study(tmp_path: Path, trials: list[tuple[dict, float]], *, text: str = SPACE, name: str = "coarse",
                db: str = "hpotui.db") -> tuple[Store, object]:
    """A finished study in a real store: the rows `hpotui launch` would have left behind."""
    space_file = tmp_path / "coarse.yaml"
    space_file.write_text(text)
    store = Store(tmp_path / db)
    study = store.create_study(name=name, objective_metric="val_acc", objective_mode="max",
                               space_file=str(space_file), space_yaml=text,
                               space_json=json.dumps({"base_dir": str(tmp_path)}), parent_id=None, max_parallel=2,
                               headless=True)
    for i, (params, value) in enumerate(trials):
        row = store.add_trial(study_id=study.id, params=params, argv=[], trial_dir="", stdout_path="",
                              stderr_path="", sample_index=i, rerun_of=None, seed=None)
        store.buffer_progress(row.id, stdout_offset=0, stderr_offset=0, reports=2, last_step=2, best_value=value,
                              best_step=2)
        store.finish_trial(row.id, "completed", exit_code=0, reason=None)
    return store, study


def trial(lr: float, dropout: float = 0.25, width: int = 128, batch: int = 64) -> dict:
    return {"lr": lr, "dropout": dropout, "width": width, "batch": batch}


def space_of(text: str = SPACE, base: Path = Path(".")):
    return parse_space(yaml.safe_load(text), "coarse.yaml", base)


def test_log_range_narrows_to_the_top_span_in_log_space(tmp_path: Path):
    lrs = [3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 5e-3, 3e-2, 1e-1]
    results = [(trial(lr), -(math.log10(lr) + 2.7) ** 2) for lr in lrs]  # best near 2e-3
    store, study = build_study(tmp_path, results)
    result = refine_study(store, study, top=3, output=None)
    new = load_space(result.path)
    lr = new.param("lr")
    # top 3 are 1e-3, 2e-3, 5e-3: span 0.7 decades; margin max(0.07, 5 % of 5 decades = 0.25) each side
    assert 1e-3 / 10 ** 0.26 < lr.low < 1e-3 and 5e-3 < lr.high < 5e-3 * 10 ** 0.26
    assert lr.log and lr.type == "loguniform"
    assert math.log10(lr.high / lr.low) < 1.3  # from five decades to about one
    assert "space.lr: [1e-5, 1] -> [" in result.summary


def test_linear_int_and_choice_parameters(tmp_path: Path):
    results = [
        (trial(1e-3, dropout=0.10, width=100, batch=64), 0.95),
        (trial(1e-3, dropout=0.20, width=200, batch=128), 0.94),
        (trial(1e-3, dropout=0.15, width=150, batch=64), 0.93),
        (trial(1e-3, dropout=0.45, width=480, batch=256), 0.50),
        (trial(1e-3, dropout=0.01, width=20, batch=32), 0.40),
    ]
    store, study = build_study(tmp_path, results)
    result = refine_study(store, study, top=3, output=str(tmp_path / "next.yaml"))
    new = load_space(tmp_path / "next.yaml")
    dropout, width, batch = new.param("dropout"), new.param("width"), new.param("batch")
    # span 0.10..0.20, margin max(0.01, 0.025) = 0.025
    assert (dropout.low, dropout.high) == pytest.approx((0.075, 0.225))
    assert (width.low, width.high) == (75.0, 225.0)  # span 100..200, margin max(10, 24.8), floor/ceil
    raw = yaml.safe_load((tmp_path / "next.yaml").read_text())
    assert isinstance(raw["space"]["width"]["low"], int) and raw["space"]["width"]["type"] == "int"
    assert batch.values == (64, 128)  # the values the top 3 used, in the original order
    assert "space.batch: [32, 64, 128, 256] -> [64, 128]" in result.summary


def test_other_keys_are_kept_and_the_parent_and_stage_name_recorded(tmp_path: Path):
    store, study = build_study(tmp_path, [(trial(1e-3), 0.9), (trial(1e-2), 0.8)])
    result = refine_study(store, study, top=2, output=None)
    assert result.path == tmp_path / "coarse.stage2.yaml"  # next to the original space file
    raw = yaml.safe_load(result.path.read_text())
    assert raw["name"] == "coarse-stage2" and raw["parent"] == "coarse"
    assert raw["search"] == {"algorithm": "random", "seed": 3, "warm_start": ["coarse"]}  # learns from its parent
    assert raw["budget"]["max_time"] == "10m"
    assert raw["objective"] == {"metric": "val_acc", "mode": "max"}
    assert list(raw)[:3] == ["name", "parent", "command"]
    assert result.path.read_text().startswith("# Stage 2 of study coarse")
    # the default file is never overwritten: a second refine writes beside it
    again = refine_study(store, study, top=2, output=None)
    assert again.path == tmp_path / "coarse.stage2-2.yaml" and result.path.exists()


def test_one_finished_trial_still_gives_a_usable_range(tmp_path: Path):
    store, study = build_study(tmp_path, [(trial(1e-3, dropout=0.3, width=64, batch=128), 0.9)])
    result = refine_study(store, study, top=5, output=None)
    new = load_space(result.path)
    lr, dropout, width = new.param("lr"), new.param("dropout"), new.param("width")
    assert lr.low < 1e-3 < lr.high and math.log10(lr.high / lr.low) == pytest.approx(0.5, abs=0.01)
    assert dropout.low < 0.3 < dropout.high and dropout.high - dropout.low == pytest.approx(0.05)
    assert width.low < 64 < width.high
    assert new.param("batch").values == (128,)
    assert "only 1 finished" in result.summary


def test_an_int_range_that_would_collapse_stays_open(tmp_path: Path):
    text = SPACE.replace("{type: int, low: 16, high: 512}", "{type: int, low: 1, high: 4}")
    results = [(trial(1e-3, width=2), 0.9), (trial(1e-3, width=2), 0.8)]
    raw, _ = refine_space(space_of(text), results, top=2)
    assert (raw["space"]["width"]["low"], raw["space"]["width"]["high"]) == (1, 3)
    parse_space(raw, "next.yaml", Path("."))  # low < high: the parser accepts it


def test_boundary_warning_widens_that_side_instead_of_narrowing(tmp_path: Path):
    text = SPACE.replace("high: 1}", "high: 0.01}")  # lr in [1e-5, 1e-2], and bigger is better
    lrs = [math.exp(math.log(1e-5) + (i + 0.5) / 12 * math.log(1e3)) for i in range(12)]
    results = [(trial(lr, dropout=0.2 + 0.01 * (i % 3)), math.log10(lr)) for i, lr in enumerate(lrs)]
    store, study = build_study(tmp_path, results, text=text)
    result = refine_study(store, study, top=3, output=None)
    new = load_space(result.path)
    lr, dropout = new.param("lr"), new.param("dropout")
    assert lr.high == pytest.approx(0.1)  # one decade past the old upper bound
    assert lr.low > 1e-3  # the lower side still narrows to the top trials
    assert 0.15 < dropout.low < dropout.high < 0.25  # no warning there: narrowed as usual
    assert result.warnings and result.warnings[0].startswith("lr: best trials at the upper edge of [1e-5, 0.01]")
    assert "widened upward" in result.summary and "boundary warnings" in result.summary


def test_linear_widening_stops_at_the_parameters_own_limits():
    text = SPACE.replace("dropout: {type: uniform, low: 0.0, high: 0.5}", "dropout: {type: uniform, low: 0.05, high: 0.5}")
    results = [(trial(1e-3, dropout=0.05 + 0.45 * i / 11), -i) for i in range(12)]  # low dropout is best
    raw, changes = refine_space(space_of(text), results, top=3)
    assert raw["space"]["dropout"]["low"] == 0.0  # widened downward, but not below 0
    assert any(c.key == "space.dropout" and "widened downward" in c.text for c in changes)
    results = [(trial(1e-3, dropout=0.5 * i / 11), -i) for i in range(12)]  # no dropout is best
    raw, changes = refine_space(space_of(SPACE), results, top=3)
    assert raw["space"]["dropout"]["low"] == 0.0 and raw["space"]["dropout"]["high"] < 0.15  # narrowed, no warning
    assert not any("widen" in c.text for c in changes)
    results = [(trial(1e-3, width=16 + 44 * i), i) for i in range(12)]  # width 500 best: upper edge
    raw, _ = refine_space(space_of(SPACE), results, top=3)
    assert raw["space"]["width"]["high"] == 512 + 248  # half the old width past the old bound


def test_budget_and_epochs_scale_with_the_resource_scale():
    text = SPACE.replace("--epochs 2", "--epochs {max_resource} --warmup-epochs 2").replace(
        "space:\n", "scheduler: {type: asha, min_resource: 1, max_resource: 9}\nspace:\n")
    results = [(trial(1e-3), 0.9), (trial(2e-3), 0.8)]
    raw, changes = refine_space(space_of(text), results, top=2, resource_scale=3)
    assert raw["scheduler"]["max_resource"] == 27 and raw["scheduler"]["min_resource"] == 1
    assert raw["budget"]["max_trials"] == 7  # ceil(20 / 3)
    assert "--warmup-epochs 2" in raw["command"]  # not an epoch count of the training
    raw, changes = refine_space(space_of(SPACE), results, top=2, resource_scale=3)
    assert raw["command"].endswith("--epochs 6")
    assert any(c.key == "command" and c.after == "--epochs 6" for c in changes)
    raw, _ = refine_space(space_of(SPACE), results, top=2)
    assert raw["budget"]["max_trials"] == 10 and raw["command"].endswith("--epochs 2")  # halved, epochs kept
    listed = SPACE.replace("command: python train.py --lr {lr} --dropout {dropout} --width {width} --batch {batch} "
                           "--epochs 2", "command: [python, train.py, '{lr}', '{dropout}', '{width}', '{batch}', "
                           "'--num_epochs=4']")
    raw, _ = refine_space(space_of(listed), results, top=2, resource_scale=2.5)
    assert raw["command"][-1] == "--num_epochs=10"


def test_stage_names_count_up():
    assert stage_name("digits", 2) == "digits-stage2"
    assert stage_name("digits-stage2", 3) == "digits-stage3"
    raw, _ = refine_space(space_of(), [(trial(1e-3), 1.0)], top=1, parent="digits-stage2")
    assert raw["name"] == "digits-stage3" and raw["parent"] == "digits-stage2"


def test_the_dialog_gets_spans_scatter_and_can_set_bounds_by_hand():
    results = [(trial(lr), -abs(math.log10(lr) + 3)) for lr in (1e-4, 1e-3, 1e-2, 1e-1)]
    spans = {s.param.name: s for s in param_spans(space_of(), results, top=2)}
    lr = spans["lr"]
    assert len(lr.points) == 4 and lr.points[0] == (1e-3, 0.0)  # best first
    assert lr.span == (1e-4, 1e-3) and lr.warnings == ()
    assert lr.proposed["low"] < 1e-4 and lr.proposed["high"] > 1e-3
    assert spans["batch"].proposed == {"values": [64]}
    raw, changes = refine_space(space_of(), results, top=2, bounds={"lr": (2e-4, 5e-3), "batch": [64, 128]})
    assert raw["space"]["lr"] == {"type": "loguniform", "low": 2e-4, "high": 5e-3}
    assert raw["space"]["batch"]["values"] == [64, 128]
    assert any(c.key == "space.lr" and "set by hand" in c.text for c in changes)


def test_a_study_without_finished_values_cannot_be_refined(tmp_path: Path):
    store, study = build_study(tmp_path, [(trial(1e-3), math.nan)])
    with pytest.raises(UserError, match="no finished trial with a val_acc value"):
        refine_study(store, study, top=3, output=None)


def test_output_in_another_folder_keeps_the_workdir(tmp_path: Path):
    store, study = build_study(tmp_path, [(trial(1e-3), 0.9)])
    other = tmp_path / "elsewhere"
    result = refine_study(store, study, top=1, output=str(other / "next.yaml"))
    assert load_space(result.path).workdir == tmp_path.resolve()


# -- the CLI, end to end -------------------------------------------------------------------------------
TRAINER = """
import json, math, sys
lr, epochs = float(sys.argv[1]), int(sys.argv[sys.argv.index("--epochs") + 1])
for epoch in range(1, epochs + 1):
    acc = (1 - 0.5 ** epoch) * math.exp(-(math.log10(lr) + 2) ** 2)
    print("@hpotui " + json.dumps({"epoch": epoch, "val_acc": acc}), flush=True)
"""


def hpotui(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("HPOTUI_DB", None)
    return subprocess.run([sys.executable, "-m", "hpotui.engine.cli", *args, "--db", str(cwd / "t.db")], cwd=cwd, env=env,
                          text=True, capture_output=True, timeout=120, check=False)


def test_refine_then_launch_runs_a_linked_stage(tmp_path: Path):
    (tmp_path / "toy.py").write_text(TRAINER)
    (tmp_path / "toy.yaml").write_text(textwrap.dedent("""\
        name: toy
        command: python toy.py {lr} --epochs 2
        objective: {metric: val_acc, mode: max}
        search: {algorithm: random, seed: 1}
        budget: {max_trials: 6, max_parallel: 2}
        space:
          lr: {type: loguniform, low: 1e-4, high: 1}
        """))
    first = hpotui("launch", "toy.yaml", "--headless", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    refined = hpotui("refine", "toy", "--top", "3", "--resource-scale", "2", "-o", "f.yaml", cwd=tmp_path)
    assert refined.returncode == 0, refined.stderr
    assert "space.lr: [0.0001, 1] -> [" in refined.stdout and "--epochs 2 -> --epochs 4" in refined.stdout
    space = load_space(tmp_path / "f.yaml")
    assert space.parent == "toy" and space.name == "toy-stage2" and space.budget.max_trials == 3
    second = hpotui("launch", "f.yaml", "--headless", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    status = hpotui("status", "toy-stage2", cwd=tmp_path)
    assert "stage 2, parent toy" in status.stdout
    store = Store(tmp_path / "t.db")
    child = store.study("toy-stage2")
    assert child.parent_id == store.study("toy").id and child.stage == 2
    lr = space.param("lr")
    assert all(lr.low <= t.params["lr"] <= lr.high for t in store.trials(child.id))
    assert [t.last_step for t in store.trials(child.id)] == [4.0] * 3  # twice the epochs of stage 1


def test_refine_cli_rejects_a_bad_top_in_one_line(tmp_path: Path):
    build_study(tmp_path, [(trial(1e-3), 0.9)], db="t.db")
    done = hpotui("refine", "coarse", "--top", "0", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--top" in done.stderr


def test_a_stepped_range_snaps_outward_to_its_step_grid():
    text = SPACE.replace("dropout: {type: uniform, low: 0.0, high: 0.5}",
                         "dropout: {type: uniform, low: 0.0, high: 0.5, step: 0.05}")
    results = [(trial(1e-3, dropout=d), v) for d, v in ((0.15, 0.9), (0.2, 0.8), (0.45, 0.1))]
    raw, _ = refine_space(space_of(text), results, top=2)
    spec = raw["space"]["dropout"]
    assert (spec["low"], spec["high"], spec["step"]) == (0.1, 0.25, 0.05)  # 0.15..0.2 +- 0.025, outward
    assert parse_space(raw, "next.yaml", Path(".")).param("dropout").step == 0.05
