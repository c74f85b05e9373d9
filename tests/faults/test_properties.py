"""Property-based tests: any space file and any output line ends in a value or a clean error.

A traceback from the space parser is a bad first impression; one from the metric-line parser
would be a trial crashing the engine. Hypothesis generates the inputs nobody would write by hand.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpotui.engine.errors import SpaceError
from hpotui.engine.reading.metricline import PREFIX, Rejected, Report, parse_metric_line
from hpotui.engine.search.sampling import make_sampler
from hpotui.engine.space_file.space import PARAM_TYPES, TOP_KEYS, Space, parse_space, render_argv

EXAMPLES = int(os.environ.get("HPOTUI_HYPOTHESIS_EXAMPLES", 300))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# What YAML can hand the parser: scalars of every kind (numbers as strings too), lists, mappings.
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
           | st.sampled_from(["1e-5", "1e3", "-1", "0", "nan", ".inf", "2h", "90s", "{lr}", "max", "min", "val_acc"]))
yaml_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4), max_leaves=12)
names = st.sampled_from(["lr", "dropout", "width", "batch_size", "trial_id", "1bad", "x y"]) | st.text(max_size=6)
param_specs = st.fixed_dictionaries(
    {"type": st.sampled_from([*PARAM_TYPES, "float", "Choice"]) | scalars},
    optional={"low": scalars, "high": scalars, "log": scalars, "step": scalars, "points": scalars,
              "values": st.lists(scalars, max_size=4) | scalars})


@st.composite
def space_documents(draw: st.DrawFn) -> object:
    """Mostly well-shaped documents with a few parts broken, plus the occasional anything-at-all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(yaml_values)
    space = draw(st.dictionaries(names, param_specs | yaml_values, max_size=3))
    placeholders = " ".join(f"{{{n}}}" for n in space if isinstance(n, str))
    doc: dict = {
        "name": draw(st.sampled_from(["demo", "a b", ""]) | st.text(max_size=8)),
        "command": draw(st.sampled_from([f"python train.py {placeholders}", ["python", "t.py", placeholders],
                                         "python 'unbalanced"]) | yaml_values),
        "objective": draw(st.fixed_dictionaries({"metric": scalars}, optional={"mode": scalars}) | yaml_values),
        "budget": draw(st.fixed_dictionaries({"max_trials": scalars, "max_parallel": scalars},
                                             optional={"max_time": scalars, "patience": scalars}) | yaml_values),
        "space": space,
    }
    for key in draw(st.lists(st.sampled_from([*TOP_KEYS, "spcae", "budjet"]), max_size=3)):
        doc[key] = draw(yaml_values)
    return doc


@SETTINGS
@given(doc=space_documents())
def test_space_parser_ends_in_a_space_or_a_one_line_error(doc: object, tmp_path: Path) -> None:
    try:
        result = parse_space(doc, "space.yaml", tmp_path)
    except SpaceError as exc:
        text = str(exc)
        assert text.startswith("space.yaml: ") and "\n" not in text.strip("\n").split(": ", 1)[0]
        return
    assert isinstance(result, Space)
    assert result.budget.max_trials >= 1 and result.params


metric_payloads = st.dictionaries(st.text(max_size=10), scalars | st.floats() | yaml_values, max_size=6)


@SETTINGS
@given(line=st.text(max_size=300) | st.builds(lambda t: PREFIX + t, st.text(max_size=300))
       | st.builds(lambda d: PREFIX + json.dumps(d), metric_payloads)
       | st.builds(lambda n: PREFIX + "[" * n + "]" * n, st.integers(0, 100_000))
       | st.builds(lambda n: PREFIX + '{"a":' * n + "1" + "}" * n, st.integers(0, 5_000)),
       reports=st.integers(0, 10**6), key=st.sampled_from(["epoch", "step", "batch", ""]))
def test_metric_line_parser_ends_in_a_report_a_rejection_or_nothing(line: str, reports: int, key: str) -> None:
    result = parse_metric_line(line, reports, key, 64 * 1024)
    if not line.startswith(PREFIX):
        assert result is None
        return
    assert isinstance(result, (Report, Rejected))
    if isinstance(result, Rejected):
        assert result.reason and "\n" not in result.reason and len(result.reason) < 300
        return
    assert isinstance(result.step, float) and math.isfinite(result.step)
    assert all(isinstance(k, str) and isinstance(v, float) for k, v in result.values.items())


finite_reports = st.dictionaries(st.text(min_size=1, max_size=10).filter(lambda k: k not in ("epoch", "step")),
                                 st.floats(allow_nan=False) | st.integers(-10**6, 10**6), min_size=1, max_size=6)


@SETTINGS
@given(values=finite_reports, epoch=st.integers(0, 10_000))
def test_every_well_formed_line_is_read_back_exactly(values: dict, epoch: int) -> None:
    result = parse_metric_line(PREFIX + json.dumps({"epoch": epoch, **values}), 0)
    assert isinstance(result, Report)
    assert result.step == epoch
    assert result.values == {k: float(v) for k, v in values.items()}


@SETTINGS
@given(value=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_nan_and_infinity_are_values_not_errors(value: float) -> None:
    result = parse_metric_line(PREFIX + json.dumps({"epoch": 1, "val_loss": value}), 0)
    assert isinstance(result, Report)
    got = result.values["val_loss"]
    assert (math.isnan(got) and math.isnan(value)) or got == value


@SETTINGS
@given(doc=space_documents())
def test_a_parsed_space_always_renders_its_trials_argv(doc: object, tmp_path: Path) -> None:
    """What parses must also launch: every sampled configuration renders into an argv."""
    try:
        space = parse_space(doc, "space.yaml", tmp_path)
    except SpaceError:
        return
    sampler = make_sampler(space)
    for index in range(3):
        params = sampler.suggest(index)
        if params is None:
            break
        argv = render_argv(space.command, dict(params, trial_id=1, trial_dir=str(tmp_path), max_resource=1))
        assert all(isinstance(a, str) for a in argv)


def test_choice_of_infinity_renders(tmp_path: Path) -> None:
    """A choice of infinity parses, so it must also render into an argument (it used to crash the launch)."""
    doc = {"name": "inf", "command": "python t.py {x}", "objective": {"metric": "m"},
           "budget": {"max_trials": 1, "max_parallel": 1}, "space": {"x": {"type": "choice", "values": [math.inf]}}}
    space = parse_space(doc, "space.yaml", tmp_path)
    assert render_argv(space.command, {"x": math.inf, "trial_id": 1, "trial_dir": "d"}) == ["python", "t.py", "inf"]
