"""Charts a user can read: distinct colours in 256-colour terminals, every series visible without
colour, log axes on constant / zero / negative series, no negative accuracy axis, whole epochs."""

from __future__ import annotations

from rich.color import Color, ColorSystem

from hpotui.tui.widgets.curve_chart import COLORS, SCATTER_MARKERS, Series, render_chart, x_ticks, y_limits


def test_compare_colours_stay_distinct_when_a_256_colour_terminal_downgrades_them():
    eight_bit = {Color.from_rgb(*c).downgrade(ColorSystem.EIGHT_BIT).number for c in COLORS}
    assert len(eight_bit) == len(COLORS)


def test_without_colour_every_series_keeps_its_own_marks():
    series = [Series(f"#{i}", [1, 2, 3, 4], [1.0 + i, 2.0 + i, 2.5 + i, 2.8 + i]) for i in range(4)]
    body = render_chart(series, 60, 14, color=False).plain.split("\n", 1)[1]
    assert "•" in body and "+" in body and "x" in body  # each series' own marks, drawn over the first's line


def test_log_axis_on_constant_zero_and_negative_series_never_fails():
    constant = render_chart([Series("acc", [1, 2, 3], [0.1, 0.1, 0.1])], 40, 10, log_y=True).plain
    assert "0.1" in constant
    mixed = render_chart([Series("loss", [1, 2, 3], [0.0, -2.0, 4.0])], 40, 10, log_y=True).plain
    assert "2 values ≤ 0 not drawn" in mixed
    nothing = render_chart([Series("loss", [1, 2], [0.0, -1.0])], 40, 10, log_y=True).plain
    assert "no value above zero" in nothing


def test_axes_stay_where_the_data_is():
    low, high = y_limits([0.1, 0.1, 0.1], log_y=False)
    assert 0 <= low < 0.1 < high
    assert y_limits([0.0, 0.5], log_y=False)[0] == 0.0
    assert x_ticks([1, 2, 3, 4, 5], 40)[1] == ["1", "2", "3", "4", "5"]
    assert x_ticks([0.5, 1.5], 40) is None  # fractional steps: plotext's own ticks


def test_scatter_marks_the_top_trials_in_their_own_shape():
    text = render_chart([Series("trials", [1, 2, 3], [0.2, 0.3, 0.4]), Series("top 1", [3], [0.4])], 40, 10,
                        lines=False, color=False).plain
    assert SCATTER_MARKERS[1] in text.split("\n", 1)[1]
