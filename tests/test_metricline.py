"""The `@hpotui {json}` line contract: numbers in, junk rejected, never an exception."""

from __future__ import annotations

import math

from hpotui.engine.reading.metricline import RegexMetrics, Rejected, Report, parse_metric_line


def test_plain_line_is_not_a_report() -> None:
    assert parse_metric_line("epoch 3: loss 0.4", 0) is None
    assert parse_metric_line("@hpotuiX {}", 0) is None


def test_epoch_is_the_step_and_values_are_floats() -> None:
    r = parse_metric_line('@hpotui {"epoch": 3, "train_loss": 0.41, "val_loss": 0.52, "val_acc": 0.87}', 0)
    assert isinstance(r, Report)
    assert r.step == 3 and r.values == {"train_loss": 0.41, "val_loss": 0.52, "val_acc": 0.87}


def test_step_key_then_report_count() -> None:
    assert parse_metric_line('@hpotui {"step": 120, "loss": 1}', 0).step == 120
    assert parse_metric_line('@hpotui {"loss": 1}', 4).step == 5


def test_nan_and_infinities_are_recorded_as_such() -> None:
    r = parse_metric_line('@hpotui {"epoch": 2, "train_loss": NaN, "a": Infinity, "b": -Infinity}', 0)
    assert math.isnan(r.values["train_loss"])
    assert r.values["a"] == math.inf and r.values["b"] == -math.inf


def test_junk_lines_are_rejected_with_a_reason() -> None:
    for line in ['@hpotui {"epoch": 1', "@hpotui [1, 2]", "@hpotui nonsense", "@hpotui " + "[" * 5000 + "]" * 5000]:
        result = parse_metric_line(line, 0)
        assert isinstance(result, Rejected) and result.reason


def test_non_numeric_values_are_dropped_not_fatal() -> None:
    r = parse_metric_line('@hpotui {"epoch": 1, "acc": 0.5, "note": "hi", "nested": {"a": 1}, "flag": true}', 0)
    assert r.values == {"acc": 0.5}
    assert set(r.ignored) == {"note", "nested", "flag"}


def test_oversized_line_is_rejected() -> None:
    assert isinstance(parse_metric_line('@hpotui {"x": "' + "a" * 100_000 + '"}', 0, max_bytes=1000), Rejected)


def test_resource_key_other_than_epoch() -> None:
    r = parse_metric_line('@hpotui {"epoch": 2, "iteration": 400, "val_acc": 0.5}', 0, resource_key="iteration")
    assert r.step == 2 and r.resource == 400


def test_regex_metrics_for_unchangeable_scripts() -> None:
    regex = RegexMetrics((("epoch", r"epoch ([0-9]+)"), ("val_acc", r"val acc: ([0-9.eE+-]+)")))
    assert regex.parse("epoch 3 starting") == []
    [report] = regex.parse("val acc: 0.875")
    assert report.step == 3 and report.values == {"val_acc": 0.875}


def test_regex_step_pattern_applies_to_its_own_line_whatever_the_order() -> None:
    regex = RegexMetrics((("val_acc", r"val acc: ([0-9.]+)"), ("epoch", r"epoch ([0-9]+)")))
    [first] = regex.parse("epoch 1 val acc: 0.5")
    [second] = regex.parse("epoch 2 val acc: 0.7")
    assert (first.step, second.step) == (1, 2)


def test_regex_counting_goes_on_after_a_resume() -> None:
    regex = RegexMetrics((("val_acc", r"val acc: ([0-9.]+)"),))
    regex.resume({"val_acc": 4}, 4.0)
    [report] = regex.parse("val acc: 0.9")
    assert report.step == 5  # not 1 again: the first four are already recorded
