"""Benchmark 2, per-trial overhead: many trivial trials two at a time, against the floor.

The floor is the same trial processes run by ``xargs -P 2``: what it costs just to start them.
hpotui's figure is the whole ``hpotui launch --headless`` command (start-up, database, every trial
recorded, the final summary) as a user times it. Syne Tune's local backend and Ray Tune run the
same trivial workload (a script / function reporting one value) two at a time; Syne Tune's trial
script imports its reporter, so its ratio is over the floor of *its* script, as the issue's
1.10x figure is. Their runs use fewer trials (they take seconds each), said in the table.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import PYTHON, Checkout, Figure, has_module, median, say, table, trial_env, write_space
from benchmarks.overhead_competitors import SYNE_TRIAL

TINY = 'import sys\nprint(\'@hpotui {"loss": %s}\' % sys.argv[1])\n'


def floor_seconds(script: Path, trials: int, *, arg_prefix: str = "") -> float:
    """Wall time of ``xargs -P 2`` running the trial script ``trials`` times (output to /dev/null)."""
    args = "".join(f"{arg_prefix}{(i + 0.5) / trials:.6f}\n" for i in range(trials))
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", "2", "-n", "2" if arg_prefix else "1", PYTHON, str(script)], input=args.encode(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=trial_env(), check=True,
                   cwd=script.parent)
    return time.perf_counter() - start


def hpotui_seconds(work: Path, trials: int, run: int | str,
                   checkout: Checkout | None = None) -> tuple[float, float, float]:
    """(whole command, first trial start to last trial end, engine CPU seconds) for one headless study.

    ``checkout``: another checkout's engine (``benchmarks/compare.py``), else this one's.
    """
    checkout = checkout or Checkout.this()
    space = write_space(work, name=f"overhead{run}", command="python tiny.py {x}", trials=trials, parallel=2)
    db = work / f"h{run}.db"
    start = time.perf_counter()
    engine = subprocess.Popen([*checkout.cli, "launch", str(space), "--headless", "--db", str(db)],
                              cwd=work, env=checkout.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched, cpu = psutil.Process(engine.pid), math.nan
    while engine.poll() is None:
        try:
            t = watched.cpu_times()  # the engine's own time; its trials are children, not counted
            cpu = t.user + t.system
        except psutil.Error:
            pass
        time.sleep(0.05)
    total = time.perf_counter() - start
    if engine.returncode != 0:
        tail = engine.stderr.read().decode()[-500:] if engine.stderr is not None else ""
        raise RuntimeError(f"hpotui exited {engine.returncode}: {tail}")
    import sqlite3

    with sqlite3.connect(db) as conn:
        first, last, finished = conn.execute(
            "SELECT MIN(started_at), MAX(finished_at), SUM(status = 'completed') FROM trials").fetchone()
    if finished != trials:
        raise RuntimeError(f"only {finished} of {trials} trials completed")
    return total, last - first, cpu


def competitor(tool: str, trials: int) -> dict | None:
    module = "ray" if tool == "ray" else "syne_tune"
    if not has_module(module):
        say(f"  {tool}: skipped ({module} is not installed)")
        return None
    script = str(Path(__file__).with_name("overhead_competitors.py"))
    start = time.perf_counter()
    done = subprocess.run([PYTHON, script, tool, str(trials)], capture_output=True, text=True, timeout=900,
                          env=trial_env(), cwd=tempfile.gettempdir())  # their backends drop files (std.out) in cwd
    wall = time.perf_counter() - start
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        say(f"  {tool}: failed ({done.stderr.strip().splitlines()[-1:] or done.returncode})")
        return None
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_s"] = wall
    return result


def measure(trials: int, competitor_trials: int, repeats: int, tools: tuple[str, ...]) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="hpotui-bench-overhead-") as tmp:
        work = Path(tmp)
        (work / "tiny.py").write_text(TINY)
        floors, totals, loops, cpus = [], [], [], []
        for r in range(repeats):  # interleaved, so a busy moment hits both sides
            say(f"overhead: {trials} trivial trials, 2 at a time (run {r + 1}/{repeats})")
            floors.append(floor_seconds(work / "tiny.py", trials))
            total, loop, cpu = hpotui_seconds(work, trials, r)
            totals.append(total)
            loops.append(loop)
            cpus.append(cpu)
            say(f"  floor {floors[-1]:.2f}s, hpotui {total:.2f}s (trials span {loop:.2f}s, engine CPU {cpu:.2f}s)")
        floor, total, loop, cpu = median(floors), median(totals), median(loops), median(cpus)
        per_trial_ms = (total - floor) / trials * 1000
        figures = [
            Figure("2", f"{trials} trivial trials, 2 at a time: wall / xargs -P 2 floor",
                   f"{total:.2f}s / {floor:.2f}s = {total / floor:.2f}x", "", "", "<=1.1x floor",
                   total / floor <= 1.1),
            Figure("2", "overhead per trial (whole command, start-up included)", f"{per_trial_ms:.1f} ms",
                   "", "", "", None),
            Figure("2", "first trial start to last trial end / floor", f"{loop:.2f}s = {loop / floor:.2f}x",
                   "", "", "", None),
            Figure("2", "engine CPU per trial (start-up included)", f"{cpu / trials * 1000:.1f} ms", "", "", "",
                   None),
        ]
        ours_ratio = total / floor
        if "syne" in tools:
            (work / "syne_trial.py").write_text(SYNE_TRIAL)
            say(f"  syne tune: {competitor_trials} trials")
            syne = competitor("syne", competitor_trials)
            if syne:
                syne_floor = floor_seconds(work / "syne_trial.py", competitor_trials, arg_prefix="--x\n")
                ratio = syne["process_s"] / syne_floor
                say(f"    {syne['process_s']:.2f}s over its floor {syne_floor:.2f}s ({syne['started']} started)")
                figures.append(Figure("2", f"Syne Tune local backend, {competitor_trials} trials: wall / its floor", "",
                                      f"{syne['process_s']:.2f}s / {syne_floor:.2f}s = {ratio:.2f}x",
                                      f"{ratio / ours_ratio:.2f}x" if ours_ratio > 0 else "n/a"))
            else:
                figures.append(Figure("2", "Syne Tune local backend", "", "not installed / failed"))
        if "ray" in tools:
            say(f"  ray tune: {competitor_trials} trials")
            ray = competitor("ray", competitor_trials)
            if ray:
                our_floor = floor_seconds(work / "tiny.py", competitor_trials)
                ratio = ray["process_s"] / our_floor
                rss = f", {ray['rss_mb']:.0f} MB RSS" if ray.get("rss_mb") else ""
                say(f"    {ray['process_s']:.2f}s (ray.init {ray['setup_s']:.1f}s){rss}")
                figures.append(Figure("2", f"Ray Tune, {competitor_trials} trials: wall / xargs floor", "",
                                      f"{ray['process_s']:.2f}s / {our_floor:.2f}s = {ratio:.2f}x{rss}",
                                      f"{ratio / ours_ratio:.2f}x" if ours_ratio > 0 else "n/a"))
            else:
                figures.append(Figure("2", "Ray Tune", "", "not installed / failed"))
        return figures


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--no-competitors", action="store_true")
    args = parser.parse_args(argv)
    tools = () if args.no_competitors else ("syne", "ray")
    if args.quick:
        figures = measure(args.trials or 60, 12, 1, tools)
    else:
        figures = measure(args.trials or 200, 40, 3, tools)
    print(table(figures))
    return figures


if __name__ == "__main__":
    main()
