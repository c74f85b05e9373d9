"""Reading metrics from output pieces, progress bars and structured log files (no engine, no processes)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from hpotui.engine.reading.logtail import LogTail
from hpotui.engine.reading.metric_files import CsvSource, TensorBoardSource
from hpotui.engine.reading.metricline import NUMBER, RegexMetrics, parse_metric_line


def _feed_output(regex: RegexMetrics, output: str, complete: bool = True) -> list[tuple[float, dict[str, float]]]:
    """Split like the log reader does (newlines and lone carriage returns) and feed every piece."""
    reports = []
    for match in re.finditer(r"([^\r\n]*)(\r\n|\n|\r|$)", output):
        if not match.group(0):
            continue
        reports += regex.feed(match.group(1), ends_line=match.group(2) != "\r")
        reports += regex.flush(1e9)
    reports += regex.finish(complete)
    return [(r.step, r.values) for r in reports]


def _curve(reports: list[tuple[float, dict[str, float]]], name: str) -> dict[float, float]:
    points: dict[float, float] = {}
    for step, values in reports:
        if name in values:
            points[step] = values[name]
    return points


@pytest.mark.parametrize("text", ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-Infinity", "INF", "1e-3",
                                  "-2.5E+04", ".5", "3."])
def test_number_matches_nan_and_the_infinities_in_any_case(text: str) -> None:
    assert re.fullmatch(NUMBER, text)
    [report] = RegexMetrics((("loss", "loss={number}"),)).parse(f"loss={text}")
    value = report.values["loss"]
    assert (math.isnan(value) and "nan" in text.lower()) or value == float(text)


def test_metric_lines_read_bare_and_quoted_nan_and_inf() -> None:
    report = parse_metric_line('@hpotui {"epoch": 2, "loss": nan, "gap": -Inf, "acc": "Infinity"}', 0)
    assert report.step == 2 and math.isnan(report.values["loss"])
    assert report.values["gap"] == -math.inf and report.values["acc"] == math.inf


def test_the_last_match_of_a_line_counts_and_ansi_codes_are_ignored() -> None:
    regex = RegexMetrics((("loss", r"loss: {number}"),))
    [report] = regex.parse("\x1b[1mloss: \x1b[0m0.9 - loss: 0.5 - loss: \x1b[32m0.25\x1b[0m\b\b\b")
    assert report.values == {"loss": 0.25}


def test_a_bar_that_shows_last_epochs_values_until_validation_records_each_epoch_once() -> None:
    """Lightning's TQDM bar: the postfix repeats epoch N-1's val metrics during epoch N."""
    bar = ""
    for epoch, (stale, fresh) in enumerate([(None, 0.5), (0.5, 0.7), (0.7, 0.7)]):
        for batch in range(3):
            bar += f"\rEpoch {epoch}: {batch}/3 [" + (f"val_acc={stale:.3f}]" if stale is not None else "]")
        bar += f"\rEpoch {epoch}: 3/3 [val_acc={fresh:.3f}]"
    regex = RegexMetrics((("epoch", r"Epoch (\d+)"), ("val_acc", "val_acc={number}")))
    reports = _feed_output(regex, bar + "\n")
    # epoch 2 repeats 0.7, and the trial ended on its own: its last step is over, one point per epoch
    assert reports == [(0.0, {"val_acc": 0.5}), (1.0, {"val_acc": 0.7}), (2.0, {"val_acc": 0.7})]


def test_a_trial_stopped_while_its_bar_still_shows_the_last_epoch_adds_no_fake_row() -> None:
    """Lightning's TQDM bar, pruned early in epoch 3: the bar shows epoch 2's values at "Epoch 3"."""
    output = "".join(f"\rEpoch {e}: 9/9 [val_acc={v}]" for e, v in ((1, 0.5), (2, 0.6), (3, 0.6)))
    regex = RegexMetrics((("epoch", r"Epoch (\d+)"), ("val_acc", "val_acc={number}")))
    assert _curve(_feed_output(regex, output, complete=False), "val_acc") == {1.0: 0.5, 2.0: 0.6}


def test_running_values_in_a_bar_end_at_their_last_value_for_the_step() -> None:
    output = "Epoch 1/2\n" + "".join(f"\r{b}/4 - loss: {1 - b / 10:.4f}" for b in range(1, 5)) + " - val_loss: 0.8\n"
    output += "Epoch 2/2\n" + "".join(f"\r{b}/4 - loss: {0.5 - b / 10:.4f}" for b in range(1, 5)) + " - val_loss: 0.4\n"
    regex = RegexMetrics((("epoch", r"Epoch (\d+)/"), ("loss", r"- loss: {number}"), ("val_loss", "val_loss: {number}")))
    reports = _feed_output(regex, output)
    assert _curve(reports, "loss") == {1.0: 0.6, 2.0: 0.1}
    assert _curve(reports, "val_loss") == {1.0: 0.8, 2.0: 0.4}


def test_without_a_step_pattern_each_line_is_one_step_of_each_metric() -> None:
    regex = RegexMetrics((("acc", r"acc {number}"),))
    reports = _feed_output(regex, "acc 0.1 acc 0.2\nnothing\r acc 0.3\racc 0.4\n")
    assert reports == [(1.0, {"acc": 0.2}), (2.0, {"acc": 0.4})]


def test_a_readopted_trial_keeps_the_step_its_output_announced() -> None:
    regex = RegexMetrics((("epoch", r"Epoch (\d+)"), ("val_acc", r"val acc {number}")))
    regex.resume({"val_acc": 2}, 2.0, ("Epoch 1\nval acc 0.5\nEpoch 2\nval acc 0.6\nEpoch 3\n", ""))
    [report] = regex.parse("val acc 0.7")
    assert (report.step, report.values) == (3.0, {"val_acc": 0.7})


def test_log_pieces_split_at_carriage_returns_and_a_still_tail_is_seen_once(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    log.write_bytes(b"start\r\n 1/3 loss=0.9\r 2/3 loss=0.5\r 3/3 val=0.7")
    tail = LogTail(log)
    first = tail.read_pieces()
    assert [(p[0], p[2], p[3]) for p in first] == [  # (text, offset, ends_line, partial, cut)
        ("start", True, False), (" 1/3 loss=0.9", False, False), (" 2/3 loss=0.5", False, False)]
    [still] = tail.read_pieces()  # nothing new: the segment left on screen is handed out as it is
    assert (still[0], still[3], still[1]) == (" 3/3 val=0.7", True, first[-1][1])
    assert tail.read_pieces() == []  # once
    with open(log, "ab") as f:
        f.write(b"\n")
    [done] = tail.read_pieces()
    assert done[:4] == (" 3/3 val=0.7", log.stat().st_size, True, False)


def test_a_piece_longer_than_the_cap_is_read_in_parts_and_its_metrics_kept(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    log.write_bytes(b"x" * 5000 + b" loss=0.123 " + b"y" * 5000 + b" loss=0.456\n")
    tail = LogTail(log, max_line_bytes=1024)
    pieces = []
    while not tail.at_eof or not pieces:
        pieces += tail.read_pieces(final=True, budget=1000)  # the line arrives in pieces
    assert all(p[4] for p in pieces) and len(pieces) > 5 and pieces[-1][2]  # all cut; the last ends the line
    regex = RegexMetrics((("loss", r"loss={number}"),))
    reports = []
    for text, _offset, ends_line, _partial, _cut in pieces:
        reports += regex.feed(text, ends_line=ends_line)
    assert [r.values for r in reports] == [{"loss": 0.456}]  # the line's last value, nothing lost in the cut


def test_csv_source_reads_rows_as_they_are_appended_and_skips_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    source = CsvSource(path)
    assert source.read() == [] and not source.appeared
    path.write_text("epoch,step,train_loss,val_acc\n0,9,,0.5\n0,9,2.1,\n1,19,1.9")  # last line still being written
    assert [(r.step, r.values) for r in source.read()] == [(0.0, {"val_acc": 0.5}), (0.0, {"train_loss": 2.1})]
    with open(path, "a") as f:
        f.write(",nan\n")
    [row] = source.read()  # the row is read whole once it ends: "1,19,1.9,nan"
    assert row.step == 1.0 and row.values["train_loss"] == 1.9 and math.isnan(row.values["val_acc"])


def test_csv_source_reads_each_row_once_when_the_framework_rewrites_the_file_with_a_new_column(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss\n1,0.9\n2,0.8\n")
    source = CsvSource(path)
    assert len(source.read()) == 2
    path.write_text("epoch,loss,val_loss\n1,0.9,\n2,0.8,\n3,0.7,0.75\n")  # Lightning: a new key, file rewritten
    assert [(r.step, r.values) for r in source.read()] == [(3.0, {"loss": 0.7, "val_loss": 0.75})]


def test_csv_source_of_a_readopted_trial_skips_what_the_database_holds(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss\n1,0.9\n2,nan\n3,0.7\n")
    source = CsvSource(path, recorded={("loss", 1.0, 0.9), ("loss", 2.0, "nan")})
    assert [(r.step, r.values) for r in source.read()] == [(3.0, {"loss": 0.7})]


def test_csv_step_column_by_name_else_the_row_number(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("iteration,acc,note\n100,0.5,warm\n200,0.6,\n")
    assert [r.step for r in CsvSource(path).read()] == [1.0, 2.0]
    assert [(r.step, r.values) for r in CsvSource(path, "iteration").read()] == [(100.0, {"acc": 0.5}), (200.0, {"acc": 0.6})]


def test_tensorboard_source_maps_global_steps_to_the_epoch_tag(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    torch_tb = pytest.importorskip("torch.utils.tensorboard")
    writer = torch_tb.SummaryWriter(str(tmp_path / "tb"))
    source = TensorBoardSource(tmp_path / "tb")
    assert source.read() == []  # the folder exists, no scalar yet
    for epoch, global_step in enumerate((9, 19)):
        writer.add_scalar("val_loss", 1.0 / (epoch + 1), global_step)
        writer.add_scalar("epoch", float(epoch), global_step)  # Lightning logs the epoch with every call
    writer.flush()
    got = source.read()
    writer.add_scalar("val_loss", float("nan"), 29)
    writer.add_scalar("epoch", 2.0, 29)
    writer.close()
    got += source.read(final=True)
    assert [(r.step, r.values["val_loss"]) for r in got][:2] == [(0.0, 1.0), (1.0, 0.5)]
    assert got[2].step == 2.0 and math.isnan(got[2].values["val_loss"])


def test_tensorboard_files_in_subfolders_name_their_metrics_by_the_subfolder(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    torch_tb = pytest.importorskip("torch.utils.tensorboard")
    for part, loss in (("train", 0.5), ("validation", 0.7)):  # how Keras' TensorBoard callback writes
        with torch_tb.SummaryWriter(str(tmp_path / "tb" / part)) as writer:
            writer.add_scalar("epoch_loss", loss, 0)
    got = {name: value for r in TensorBoardSource(tmp_path / "tb").read(final=True) for name, value in r.values.items()}
    assert got == {"train/epoch_loss": 0.5, "validation/epoch_loss": pytest.approx(0.7)}


def test_a_word_that_starts_like_inf_or_nan_is_not_a_number() -> None:
    regex = RegexMetrics((("loss", r"loss: {number}"),))
    assert regex.parse("loss: information follows") == [] and regex.parse("loss: nano") == []


def _space_with(metrics: dict, tmp_path: Path):  # type: ignore[no-untyped-def]
    from hpotui.engine.space_file.space import parse_space

    return parse_space({"name": "s", "command": "python t.py {x}", "objective": {"metric": "val_acc", "mode": "max"},
                        "budget": {"max_trials": 1, "max_parallel": 1}, "space": {"x": {"type": "uniform", "low": 0,
                                                                                       "high": 1}},
                        "metrics": metrics}, "s.yaml", tmp_path)


def test_metric_files_in_the_space_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpotui.engine.reading import metric_files
    from hpotui.engine.errors import SpaceError

    space = _space_with({"csv": "{trial_dir}/m.csv", "tensorboard": "tb/{x}", "step": "epoch",
                         "regex": {"val_acc": "acc {number}"}}, tmp_path)
    assert space.metric_files == metric_files.MetricFilesSpec("{trial_dir}/m.csv", "tb/{x}", "epoch")
    assert metric_files.render_path("tb/{x}", {"x": 0.5}, tmp_path) == tmp_path / "tb" / "0.5"
    with pytest.raises(SpaceError, match=r"metrics.csv.*\{lr\} names no parameter"):
        _space_with({"csv": "{lr}.csv"}, tmp_path)
    monkeypatch.setattr(metric_files.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SpaceError) as missing:
        _space_with({"tensorboard": "tb"}, tmp_path)
    assert "pip install 'hpotui[tensorboard]'" in str(missing.value) and "\n" not in str(missing.value)
