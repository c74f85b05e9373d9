"""A study with thousands of parameters: past the kernel's per-string limit they travel in a file.

Linux refuses an environment string over 128 KiB (MAX_ARG_STRLEN) with "Argument list too long";
at about 4,300 parameters HPOTUI_PARAMS is that big. The trial then gets HPOTUI_PARAMS_FILE
naming params.json in its own folder instead, and every trial runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.faults.conftest import Lab

READER = """
    import json, os, sys
    if "HPOTUI_PARAMS_FILE" in os.environ:
        with open(os.environ["HPOTUI_PARAMS_FILE"], encoding="utf-8") as f:
            params = json.load(f)
        how = "file"
    else:
        params = json.loads(os.environ["HPOTUI_PARAMS"])
        how = "env"
    assert [float(a) for a in sys.argv[1:]] == [params[f"p{i}"] for i in range(len(sys.argv) - 1)]
    print("@hpotui " + json.dumps({"epoch": 1, "val_acc": len(params), "file": int(how == "file")}), flush=True)
"""


def _study(lab: Lab, name: str, count: int) -> Path:
    lab.write_trial("reader.py", READER)
    space = {f"p{i}": {"type": "uniform", "low": 0.0, "high": 1.0} for i in range(count)}
    return lab.write_space(name, command=["python", "reader.py", *[f"{{p{i}}}" for i in range(count)]],
                           space=space, algorithm="random", max_trials=2, max_parallel=2)


def test_five_thousand_parameters_reach_the_trial_through_a_file(lab: Lab) -> None:
    result = lab.hpotui("launch", str(_study(lab, "wide", 5000)), "--headless", timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    trials = lab.trials("wide")
    assert [t["status"] for t in trials] == ["completed", "completed"], [t["status_reason"] for t in trials]
    assert lab.metric_values("wide", "val_acc") == [5000.0, 5000.0]
    assert lab.metric_values("wide", "file") == [1.0, 1.0]
    for t in trials:
        written = json.loads((Path(t["trial_dir"]) / "params.json").read_text(encoding="utf-8"))
        assert written == json.loads(t["params"])


def test_a_few_parameters_still_come_in_the_environment(lab: Lab) -> None:
    result = lab.hpotui("launch", str(_study(lab, "narrow", 3)), "--headless", timeout=120)
    assert result.returncode == 0, result.stderr
    assert lab.metric_values("narrow", "file") == [0.0, 0.0]
    assert not any((Path(t["trial_dir"]) / "params.json").exists() for t in lab.trials("narrow"))
