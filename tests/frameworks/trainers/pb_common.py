"""What the progress-bar and structured-log trainers share: arguments, digits, the gate, the record.

Each trainer is written the way its framework's docs show, with three test hooks: ``--record F``
(the framework's own record of every epoch, written as JSON when training ends), ``--gate G``
(once epoch N's metrics are printed or logged, wait for the file ``G.N`` before training on: the
test creates it only after it found epoch N in the database, so a value that arrives an epoch
late, or only at exit, fails the test) and ``--poison 1`` (NaN inputs: the loss is NaN from the
first batch, and the run is 100 times longer, so only the engine's stop ends it early).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from digits_data import digits  # noqa: F401  (re-exported for the trainers)

PRINTED_AT: dict[str, float] = {}  # epoch -> when its metrics were printed (the latency figure)
TIMED_OUT: list[str] = []  # epochs whose gate the test never opened (their values never arrived)
GATE_WAIT_S = 40


def arguments(extra: tuple[str, ...] = ()) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--poison", type=int, default=0)
    parser.add_argument("--record", default="")
    parser.add_argument("--gate", default="")
    parser.add_argument("--case", default="", help="key=value,... (the study's one choice parameter)")
    for name in extra:
        parser.add_argument(f"--{name}", default="")
    args = parser.parse_args()
    for item in filter(None, args.case.split(",")):
        key, _, value = item.partition("=")
        setattr(args, key, int(value) if key in ("epochs", "poison") else value)
    if args.poison:
        args.epochs *= 100
    return args


def gate(args: argparse.Namespace, epoch: float) -> None:
    """Epoch ``epoch`` is printed: note the time, then wait (at most GATE_WAIT_S) for the test's ``G.N``."""
    PRINTED_AT[f"{epoch:g}"] = time.time()
    if args.gate:
        opened = f"{args.gate}.{epoch:g}"
        deadline = time.monotonic() + GATE_WAIT_S
        while not os.path.exists(opened):
            if time.monotonic() > deadline:
                TIMED_OUT.append(f"{epoch:g}")
                return
            time.sleep(0.02)


def finish(args: argparse.Namespace, record: Any) -> None:
    if args.record:
        Path(args.record).write_text(json.dumps({"record": record, "printed_at": PRINTED_AT,
                                                   "timed_out": TIMED_OUT}, allow_nan=True))
