"""Competitor workers: Optuna (RDB on SQLite, JournalStorage) and MLflow reporting as fast as they can.

Each worker is a separate process (as trials are), imports its library before a barrier so
import time is not counted, reports one value per call for at most ``--seconds``, and prints one
JSON line: how many values it reported, its own start/end wall times and per-call durations.
A report call returning is the moment its value is visible to other readers, so the call's
duration is its report-to-visible latency.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable


def _optuna_reporter(kind: str, target: str, study_name: str) -> Callable[[float, int], None]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _optuna_storage(kind, target)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trial = study.ask()
    return lambda value, step: trial.report(value, step)


def _optuna_storage(kind: str, target: str) -> Any:
    import optuna

    if kind == "optuna-sqlite":
        return optuna.storages.RDBStorage(f"sqlite:///{target}", engine_kwargs={"connect_args": {"timeout": 60}})
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(target))


def _mlflow_reporter(target: str) -> Callable[[float, int], None]:
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(f"sqlite:///{target}")
    mlflow.set_experiment("bench")
    run = mlflow.start_run()
    client = mlflow.tracking.MlflowClient()
    run_id = run.info.run_id
    return lambda value, step: client.log_metric(run_id, "loss", value, step=step)


def prepare(kind: str, target: str, study_name: str) -> None:
    """Create the study / database once, before the workers start (schema set-up is not reporting)."""
    if kind.startswith("optuna"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.create_study(study_name=study_name, storage=_optuna_storage(kind, target), load_if_exists=True)
    else:
        import logging

        import mlflow

        logging.getLogger("mlflow").setLevel(logging.ERROR)
        logging.getLogger("alembic").setLevel(logging.ERROR)
        mlflow.set_tracking_uri(f"sqlite:///{target}")
        mlflow.set_experiment("bench")


def worker(kind: str, target: str, study_name: str, values: int, seconds: float, go: Path) -> None:
    report = _mlflow_reporter(target) if kind == "mlflow" else _optuna_reporter(kind, target, study_name)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    durations: list[float] = []
    start = time.time()
    stop_at = start + seconds
    count = 0
    clock = time.perf_counter
    while count < values:
        t0 = clock()
        report(1.0 / (count + 1), count)
        durations.append(clock() - t0)
        count += 1
        if count % 8 == 0 and time.time() >= stop_at:
            break
    end = time.time()
    print(json.dumps({"count": count, "start": start, "end": end, "durations": durations}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("prepare", "worker"))
    parser.add_argument("kind", choices=("optuna-sqlite", "optuna-journal", "mlflow"))
    parser.add_argument("target")
    parser.add_argument("--study", default="bench")
    parser.add_argument("--values", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--go", default="")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    if args.mode == "prepare":
        prepare(args.kind, args.target, args.study)
    else:
        worker(args.kind, args.target, args.study, args.values, args.seconds, Path(args.go))


if __name__ == "__main__":
    main()
