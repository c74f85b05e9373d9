"""What the real study loop makes of what trials print and log, in this process: curves, warnings,
streaks of trials that never report, metric files, the scheduler's view of a repeated step, long lines.

Scripted trials (engine/executors/fake.py) write into their real stdout.log / metric files and the
engine reads them through its real readers; export and status are the CLI's own, run in this process.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from hpotui.engine.cli import main as hpotui
from hpotui.engine.executors.fake import Call, FakeTrial, Run, Say, Step
from tests.inproc import InProcessRun, launch


def space(name: str, *, trials: int = 1, parallel: int = 1, extra: str = "") -> str:
    return f"""
        name: {name}
        command: python t.py {{x}}
        objective: {{metric: val_acc, mode: max}}
        budget: {{max_trials: {trials}, max_parallel: {parallel}}}
        space:
          x: {{type: uniform, low: 0, high: 1}}
        """ + extra


def lines(*texts: str) -> list[Step]:
    return [Say(t) for t in texts]


def cli(capsys: pytest.CaptureFixture[str], run: InProcessRun, *args: str) -> str:
    """`hpotui ARGS --db FILE` in this process; its stdout (exit code 0 asserted)."""
    capsys.readouterr()
    assert hpotui([*args, "--db", str(run.store.path)]) == 0
    return capsys.readouterr().out


def test_curves_export_one_point_per_step_last_value_wins_and_best_follows_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    printed = "\n".join("@hpotui " + line for line in [
        '{"epoch": 2, "val_acc": 0.9}', '{"epoch": 2, "val_acc": 0.6}', '{"epoch": 1, "val_acc": 0.5}',
        '{"epoch": 3, "val_acc": 0.55, "loss": NaN}', '{"epoch": 4, "loss": Infinity}'])
    run = launch(tmp_path, space("curves"), lambda t: [Say(printed)])  # all at once, before the engine looks
    assert run.code == 0, run.out
    [trial] = json.loads(cli(capsys, run, "export", "curves", "--format", "json"))["trials"]
    assert "curves" not in trial and Path(trial["trial_dir"]).is_absolute() and Path(trial["trial_dir"]).is_dir()
    assert trial["best"] == 0.6  # epoch 2's value is its last one, 0.6; the 0.9 it replaced is not the best
    text = cli(capsys, run, "export", "curves", "--format", "json", "--curves")
    curves = json.loads(text)["trials"][0]["curves"]
    assert curves["val_acc"] == [[1.0, 0.5], [2.0, 0.6], [3.0, 0.55]]
    assert math.isnan(curves["loss"][0][1]) and curves["loss"][1] == [4.0, math.inf]
    assert re.search(r"3\.0,\s*NaN", text) and re.search(r"4\.0,\s*Infinity", text)


def test_what_was_never_read_is_said_in_status_export_and_headless_output(tmp_path: Path) -> None:
    run = launch(tmp_path, space("silent", trials=2, extra="""
        metrics:
          regex: {val_acc: 'val acc {number}', epoch: 'epoch (\\d+)'}
          csv: "{trial_dir}/metrics.csv"
        """), lambda t: lines("epoch 1 accuracy 0.5"))
    assert run.code == 0, run.out
    assert "never reported the objective val_acc" in run.out
    warnings = run.export()["study"]["warnings"]
    joined = "\n".join(warnings)
    assert "2 trials (1, 2) finished without reporting the objective val_acc" in joined
    assert "metrics.regex.val_acc never matched the output of 2 trials (1, 2)" in joined
    assert "metrics.csv never appeared for 2 trials (1, 2)" in joined
    status = run.status()
    assert all(f"warning: {w}" in status for w in warnings)
    assert {e.data["problem"] for e in run.events("not_read")} == {"no_objective", "never_matched", "never_appeared"}


def test_ten_trials_in_a_row_without_the_objective_pause_launching_and_name_the_pattern(tmp_path: Path) -> None:
    run = launch(tmp_path, space("broken", trials=30, parallel=2,
                                 extra="metrics: {regex: {val_acc: 'val acc: {number}'}}\n"),
                 lambda t: lines("val_accuracy=0.5"))
    assert run.code == 1, run.out[-2000:]
    finished = sum(1 for t in run.trials() if t.status == "completed")
    assert 10 <= finished <= 11  # the tenth pauses launching; one more may already be running
    reason = run.study_row().pause_reason or ""
    assert "10 trials in a row finished without reporting the objective val_acc" in reason
    assert "metrics.regex.val_acc never matched" in reason
    assert reason in run.status()


def test_a_nan_in_a_csv_read_after_the_trial_exited_marks_it_diverged(tmp_path: Path) -> None:
    def script(trial: FakeTrial) -> list[Step]:  # written and gone before the engine's first look at the file
        return [Call(lambda: (trial.trial_dir / "m.csv").write_text("epoch,val_acc,train_loss\n1,0.5,1.2\n2,,nan\n"))]

    run = launch(tmp_path, space("nancsv", extra='metrics: {csv: "{trial_dir}/m.csv"}\n'), script)
    assert run.code == 0, run.out
    [trial] = json.loads(export_curves(run))["trials"]
    assert trial["status"] == "diverged" and "nan" in trial["flags"]
    assert trial["curves"]["val_acc"] == [[1.0, 0.5]]  # the empty cell is not a value


def export_curves(run: InProcessRun) -> str:
    from hpotui.engine.outputs.export import export_json

    return export_json(run.store, run.study_row(), curves=True)


def test_the_scheduler_judges_a_step_by_its_last_value(tmp_path: Path) -> None:
    run = launch(tmp_path, space("rung", extra="scheduler: {type: asha, resource: epoch, min_resource: 1, "
                                               "max_resource: 3, reduction_factor: 3}\n"),
                 lambda t: lines(*(f'@hpotui {{"epoch": {e}, "val_acc": {a}}}'
                                   for e, a in ((1, 0.9), (1, 0.2), (2, 0.3), (3, 0.4)))))
    assert run.code == 0, run.out
    [event] = run.events("scheduler")
    assert event.data["value"] == 0.2 and event.data["step"] == 1, event.message


def test_a_line_longer_than_the_cap_keeps_its_metrics_and_is_said(tmp_path: Path) -> None:
    run = launch(tmp_path, space("longline", extra="""
        logs: {max_line_kb: 1}
        metrics: {regex: {epoch: 'epoch (\\d+)', val_acc: 'val acc {number}'}}
        """), lambda t: [Say("epoch 1 " + "x" * 5000 + " val acc 0.25 ", end=""),  # a 5 KB line still being written
                         Run(polls=5), Say("y" * 3000 + " val acc 0.5")])
    assert run.code == 0, run.out
    record = json.loads(export_curves(run))
    assert record["trials"][0]["curves"]["val_acc"] == [[1.0, 0.5]]  # the line's last value, read past the cap
    assert any("longer than logs.max_line_kb was read in parts in 1 trial (1)" in w
               for w in record["study"]["warnings"]), record["study"]["warnings"]


def test_regex_metrics_from_an_unchangeable_script(tmp_path: Path) -> None:
    run = launch(tmp_path, """
        name: plain
        command: python plain.py {x}
        objective: {metric: val_acc, mode: max}
        budget: {max_trials: 1, max_parallel: 1}
        metrics: {regex: {epoch: 'epoch ([0-9]+)', val_acc: 'val acc: ([0-9.eE+-]+)', train_loss: 'loss: ([0-9.]+)'}}
        space:
          x: {type: uniform, low: 0, high: 1}
        """, lambda t: lines(*(f"epoch {e} train loss: {1 / e:.3f} val acc: {0.3 * e:.2f}" for e in range(1, 4))))
    assert run.code == 0, run.out
    [trial] = run.export()["trials"]
    assert trial["best"] == pytest.approx(0.9) and trial["resource"] == 3
    assert trial["last"] == {"val_acc": pytest.approx(0.9), "train_loss": pytest.approx(0.333)}
