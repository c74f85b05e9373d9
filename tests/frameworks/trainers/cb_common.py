"""What the callback trainers share: arguments, the bundled digits data, the record and the gate.

Each trainer is written the way its framework's docs show, plus three test hooks: ``--record``
(the framework's own record of every epoch, written as JSON once training ends), ``--gate G`` (once epoch N's metrics are reported, wait for the file ``G.N``
before training on: the test opens it only after it found epoch N in the database, so values that
arrived an epoch late, or only at exit, fail the test instead of passing slowly) and ``--poison``
(NaN inputs: the loss is NaN from the first batch; a poisoned run trains 100 times longer, so
only the engine's stop can end it early).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from digits_data import digits  # noqa: F401  (re-exported for the trainers)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--poison", type=int, default=0, help="1: NaN inputs")
    parser.add_argument("--record", default="")
    parser.add_argument("--gate", default="")
    parser.add_argument("--standalone", type=int, default=0,
                        help="1: hpotui is not importable; use the copied hpotui_callbacks.py")
    return parser.parse_args()


def callbacks_module(standalone: bool) -> Any:
    """``hpotui.callbacks`` as installed, or the copy beside this script with hpotui made unimportable."""
    if standalone:
        sys.modules["hpotui"] = None  # type: ignore[assignment]  # any `import hpotui` now fails
        import hpotui_callbacks

        return hpotui_callbacks
    from hpotui import callbacks

    return callbacks


REPORTED_AT: dict[str, float] = {}  # epoch -> when its report was printed (for the latency figure)


def epochs(args: argparse.Namespace) -> int:
    return args.epochs * (100 if args.poison else 1)


def gate(args: argparse.Namespace, epoch: float) -> None:
    """Called right after the hpotui callback reported ``epoch``: note the time, then wait for ``G.N``."""
    REPORTED_AT[f"{epoch:g}"] = time.time()
    if args.gate:
        opened = f"{args.gate}.{epoch:g}"
        deadline = time.monotonic() + 300
        while not os.path.exists(opened) and time.monotonic() < deadline:
            time.sleep(0.02)


def finish(args: argparse.Namespace, record: Any) -> None:
    """Write the framework's own record of the run and the report times."""
    if args.record:
        Path(args.record).write_text(json.dumps({"record": record, "reported_at": REPORTED_AT}, allow_nan=True))
