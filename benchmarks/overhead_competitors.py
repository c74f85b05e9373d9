"""Ray Tune and Syne Tune (local backend) running N trivial trials two at a time; prints one JSON line.

Run as a separate process so each library's import and start-up land in its own measured wall
time, as a user would experience them. ``setup_s`` is the library start-up (``ray.init`` /
building the tuner) and ``run_s`` the tuning itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

SYNE_TRIAL = """
from argparse import ArgumentParser
from syne_tune import Reporter
parser = ArgumentParser()
parser.add_argument("--x", type=float)
args, _ = parser.parse_known_args()
Reporter()(loss=args.x)
"""


def run_syne(trials: int, work: Path) -> dict:
    start = time.time()
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend import LocalBackend
    from syne_tune.config_space import uniform
    from syne_tune.optimizer.baselines import RandomSearch

    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    script = work / "syne_trial.py"
    script.write_text(SYNE_TRIAL)
    os.environ["SYNETUNE_FOLDER"] = str(work / "syne")
    tuner = Tuner(trial_backend=LocalBackend(entry_point=str(script)),
                  scheduler=RandomSearch({"x": uniform(0.0, 1.0)}, metrics=["loss"], random_seed=0),
                  stop_criterion=StoppingCriterion(max_num_trials_finished=trials - 1), n_workers=2,
                  sleep_time=0.01,  # its default is 5 s per poll: give it its best case
                  save_tuner=False, print_update_interval=3600, results_update_interval=3600)
    ready = time.time()
    tuner.run()
    end = time.time()
    return {"setup_s": ready - start, "run_s": end - ready, "total_s": end - start,
            "started": tuner.tuning_status.num_trials_started}


def run_ray(trials: int, work: Path) -> dict:
    start = time.time()
    import ray
    from ray import tune

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)

    def trainable(config: dict) -> None:
        tune.report({"loss": config["x"]})

    tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(0.0, 1.0)},
                       tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=2),
                       run_config=tune.RunConfig(storage_path=str(work / "ray"), verbose=0))
    ready = time.time()
    results = tuner.fit()
    end = time.time()
    rss = _tree_rss_mb()
    ray.shutdown()
    return {"setup_s": ready - start, "run_s": end - ready, "total_s": end - start, "started": len(results),
            "rss_mb": rss}


def _tree_rss_mb() -> float | None:
    """RSS of this process and every descendant (Ray's raylet, GCS and workers), in MB."""
    try:
        import psutil
    except ImportError:
        return None
    me = psutil.Process()
    total = 0
    for p in [me, *me.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tool", choices=("ray", "syne"))
    parser.add_argument("trials", type=int)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix=f"hpotui-bench-{args.tool}-") as tmp:
        result = (run_ray if args.tool == "ray" else run_syne)(args.trials, Path(tmp))
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
