"""Space files built to hurt: alias bombs, duplicate keys, values that validate late or never.

Each one must end at validation, before anything touches the database: one line on stderr
naming the file and the key, exit code 2, no traceback, and in well under a second of work.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time

import yaml

from tests.faults.conftest import Lab

BOMB = textwrap.dedent("""\
    name: bomb
    command: python x.py {lr}
    objective: {metric: val_acc, mode: max}
    a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
    i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
    budget: {max_trials: *i, max_parallel: 1}
    space: {lr: {type: uniform, low: 0, high: 1}}
    """)


def _refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one-line, exit-2 refusal a user must see; returns the line."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _valid_space(lab: Lab, **changes: object) -> dict:
    lab.write_trial("x.py", "print('@hpotui {\"epoch\": 1, \"val_acc\": 0.5}')\n")
    data: dict = {"name": "ok", "command": "python x.py {lr}", "objective": {"metric": "val_acc", "mode": "max"},
                  "budget": {"max_trials": 2, "max_parallel": 1},
                  "space": {"lr": {"type": "uniform", "low": 0.0, "high": 1.0}}}
    data.update(changes)
    return data


def test_an_alias_bomb_is_refused_at_once_with_one_line(lab: Lab) -> None:
    assert len(BOMB) < 1024
    path = lab.root / "bomb.yaml"
    path.write_text(BOMB, encoding="utf-8")
    for command in (["launch", str(path), "--headless"], ["plan", str(path)]):
        started = time.monotonic()
        result = lab.hpotui(*command, timeout=30)
        assert time.monotonic() - started < 15
        line = _refused(result, str(path), "alias")
        assert len(line) < 300
    assert not lab.query("SELECT * FROM studies")


def test_an_alias_that_contains_itself_is_refused(lab: Lab) -> None:
    path = lab.root / "loop.yaml"
    path.write_text("name: loop\nspace: &s {lr: *s}\n", encoding="utf-8")
    _refused(lab.hpotui("plan", str(path)), str(path))


def test_a_key_written_twice_is_refused_naming_the_key(lab: Lab) -> None:
    text = yaml.safe_dump(_valid_space(lab), sort_keys=False)
    path = lab.root / "dup.yaml"
    path.write_text(text.replace("max_parallel: 1", "max_parallel: 1\n  max_trials: 50"), encoding="utf-8")
    line = _refused(lab.hpotui("launch", str(path), "--headless"), str(path), "max_trials", "duplicate")
    assert "line" in line
    assert not lab.query("SELECT * FROM studies")


def test_merge_keys_still_work(lab: Lab) -> None:
    """`<<: *defaults` then an override is the YAML way to share settings, not a duplicate."""
    path = lab.root / "merge.yaml"
    path.write_text(textwrap.dedent("""\
        name: merged
        command: python x.py {lr}
        objective: {metric: val_acc, mode: max}
        budget: {<<: {max_trials: 7, max_parallel: 1}, max_trials: 3}
        space: {lr: {type: uniform, low: 0, high: 1}}
        """), encoding="utf-8")
    result = lab.hpotui("plan", str(path), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert '"total_trials": 3' in result.stdout


def test_a_line_limit_of_zero_or_less_is_refused(lab: Lab) -> None:
    for value in (0, -1):
        path = lab.root / f"lines{value}.yaml"
        path.write_text(yaml.safe_dump(_valid_space(lab, logs={"max_line_kb": value})), encoding="utf-8")
        _refused(lab.hpotui("launch", str(path), "--headless"), str(path), "logs.max_line_kb")
    assert not lab.query("SELECT * FROM studies")


def test_a_uniform_over_the_whole_double_range_is_refused(lab: Lab) -> None:
    path = lab.root / "wide.yaml"
    space = {"lr": {"type": "uniform", "low": -1.7e308, "high": 1.7e308}}
    path.write_text(yaml.safe_dump(_valid_space(lab, space=space)), encoding="utf-8")
    _refused(lab.hpotui("launch", str(path), "--headless"), str(path), "space.lr")
    assert not lab.query("SELECT * FROM studies")


def test_hyperband_plan_for_a_trillion_trials_returns(lab: Lab) -> None:
    path = lab.root / "hb.yaml"
    data = _valid_space(lab, budget={"max_trials": 10**12, "max_parallel": 4},
                        scheduler={"type": "hyperband", "max_resource": 81, "reduction_factor": 3})
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    started = time.monotonic()
    result = lab.hpotui("plan", str(path), "--format", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    plan = json.loads(result.stdout)
    assert plan["total_trials"] == 10**12
    # 143 trials per full Hyperband iteration (the paper's table): the deal repeats every 143 trials.
    weights = (81, 34, 15, 8, 5)
    iterations, remainder = divmod(10**12, sum(weights))
    from hpotui.engine.schedulers.rungs import deal_counts

    expected = [iterations * w + extra for w, extra in zip(weights, deal_counts(weights, remainder))]
    assert [b["rungs"][0]["n"] for b in plan["brackets"]] == expected
