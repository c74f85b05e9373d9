"""Start-up of ``hpotui status``: wall time against a bare ``python -c pass``, and what it imports.

``hpotui`` must not pay for torch, textual, pandas or numpy when it does not need them; the
import list comes from ``-X importtime`` of the same command.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import PYTHON, Figure, median, say, table, trial_env

HEAVY = ("torch", "textual", "rich", "pandas", "numpy", "sqlite_utils", "optuna", "plotext")


def _wall(argv: list[str], cwd: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=trial_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        times.append(time.perf_counter() - t0)
    return median(times)


def measure(repeats: int) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="hpotui-bench-startup-") as tmp:
        work = Path(tmp)
        code = ("import sys; from tests.tui.bigdb import make_study_db; "
                "make_study_db(sys.argv[1], name='demo', trials=50, steps=10)")
        subprocess.run([PYTHON, "-c", code, str(work / "h.db")], cwd=Path(__file__).resolve().parents[1],
                       env=trial_env(), check=True, capture_output=True)
        status = [PYTHON, "-m", "hpotui.engine.cli", "status", "--db", str(work / "h.db")]
        say(f"startup: hpotui status x{repeats}")
        floor = _wall([PYTHON, "-c", "pass"], work, repeats)
        ours = _wall(status, work, repeats)
        detail = _wall([*status, "demo"], work, repeats)
        trace = subprocess.run([PYTHON, "-X", "importtime", *status[1:]], cwd=work, env=trial_env(),
                               capture_output=True, text=True, check=True).stderr
        loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in trace.splitlines() if "|" in line}
        heavy = [m for m in HEAVY if m in loaded]
    return [
        Figure("0", "`hpotui status` wall (study list) / `python -c pass`",
               f"{ours * 1000:.0f} ms / {floor * 1000:.0f} ms", "", f"+{(ours - floor) * 1000:.0f} ms"),
        Figure("0", "`hpotui status STUDY` wall (50 trials)", f"{detail * 1000:.0f} ms"),
        Figure("0", "heavy modules imported by `hpotui status`", ", ".join(heavy) or "none", "", "",
               "no torch / textual", not any(m in heavy for m in ("torch", "textual"))),
    ]


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    figures = measure(5 if args.quick else 15)
    print(table(figures))
    return figures


if __name__ == "__main__":
    main()
