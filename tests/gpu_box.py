"""A scripted GPU box for the engine tests: the file-backed fake NVML and a trial that allocates on it.

Every engine started with :func:`box_env` reads the same simulated GPUs (``HPOTUI_FAKE_NVML``) and
the same host-wide claims folder (``HPOTUI_CLAIMS_DIR``). The trial script "allocates" device
memory through :func:`hpotui.engine.machine.resources_nvml.fake_cuda_allocate`, which refuses what does
not fit beside what live processes hold; refused, the trial prints the traceback PyTorch prints
and exits with 1, as an uncaught ``torch.OutOfMemoryError`` does. So an oversubscribed GPU shows
up exactly as it would on real hardware: as a trial failed with CUDA out of memory.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from hpotui.engine.machine.resources_nvml import GIB, FakeGpu, write_fake_box
from tests.conftest import cli_env

FAKE_TRIAL = textwrap.dedent('''
    """Allocate GIB on the first visible (fake) GPU, hold it HOLD seconds, report, free."""
    import json, os, sys, time
    from pathlib import Path

    from hpotui.engine.machine.resources_nvml import GIB, fake_allocations, fake_cuda_allocate, fake_cuda_free

    TRACEBACK = [
        "Traceback (most recent call last):",
        f'  File "{__file__}", line 14, in <module>',
        "    logits = model(batch)",
        "             ^^^^^^^^^^^^",
        '  File "/opt/conda/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1736, in _wrapped_call_impl',
        "    return self._call_impl(*args, **kwargs)",
        '  File "/opt/conda/lib/python3.11/site-packages/torch/nn/modules/linear.py", line 125, in forward',
        "    return F.linear(input, self.weight, self.bias)",
        "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    ]
    box = Path(os.environ["HPOTUI_FAKE_NVML"])
    want, hold = float(sys.argv[1]), float(sys.argv[2])
    gpu = int(os.environ["CUDA_VISIBLE_DEVICES"].split(",")[0])
    print("loading the model", flush=True)
    if not fake_cuda_allocate(box, gpu, int(want * GIB)):
        total = json.loads((box / "gpus.json").read_text())[gpu]["memory_total"] / GIB
        held = sum(fake_allocations(box).get(gpu, {}).values()) / GIB
        last = (f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {want:.2f} GiB. GPU 0 has a total "
                f"capacity of {total:.2f} GiB of which {max(0.0, total - held):.2f} GiB is free. Process {os.getpid()} "
                "has 0 bytes memory in use. Of the allocated memory 0 bytes is allocated by PyTorch, and 0 bytes is "
                "reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting "
                "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for "
                "Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")
        sys.stderr.write("\\n".join(TRACEBACK + [last]) + "\\n")
        sys.stderr.flush()
        sys.exit(1)  # the exit status of an uncaught exception, as torch.OutOfMemoryError gives
    time.sleep(hold)
    print("@hpotui " + json.dumps({"epoch": 1, "val_acc": 1.0 / (1.0 + want)}), flush=True)
    fake_cuda_free(box)
''')


def make_box(folder: Path, gpus: list[FakeGpu]) -> Path:
    """The simulated GPUs and the fake trial script in ``folder``."""
    write_fake_box(folder / "box", gpus)
    (folder / "fake_trial.py").write_text(FAKE_TRIAL)
    (folder / "fake_trial.py").chmod(0o644)
    return folder / "box"


def box_env(folder: Path, claims: Path | None = None) -> dict[str, str]:
    return cli_env({"HPOTUI_FAKE_NVML": str(folder / "box"),
                    "HPOTUI_CLAIMS_DIR": str(claims if claims is not None else folder / "claims")})


def space_file(folder: Path, name: str, *, gib: float, resources: str, trials: int, parallel: int,
               hold: tuple[float, float] = (0.2, 0.6), extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        command: python {folder / 'fake_trial.py'} {gib} {{hold}}
        objective: {{metric: val_acc, mode: max}}
        search: {{algorithm: random, seed: {len(name)}}}
        budget: {{max_trials: {trials}, max_parallel: {parallel}, failure_streak: 50}}
        resources: {resources}
        space:
          hold: {{type: uniform, low: {hold[0]}, high: {hold[1]}}}
        {extra}
    """))
    path.chmod(0o644)
    return path


def launch(space: Path, db: Path, env: dict[str, str], prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen([*prefix, sys.executable, "-m", "hpotui.engine.cli", "launch", str(space), "--headless",
                             "--db", str(db)], cwd=db.parent, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"engine exit {proc.returncode}\n{out}\n{err}"
    return out


def trials(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM trials ORDER BY id")]
    finally:
        conn.close()


def events(db: Path, kind: str | None = None) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM events ORDER BY id").fetchall()
    finally:
        conn.close()
    result = [dict(r, data=json.loads(r["data"] or "{}")) for r in rows]
    return [e for e in result if kind is None or e["kind"] == kind]


def overlapping_on_a_gpu(dbs: list[Path], capacity: dict[str, float]) -> list[str]:
    """Moments where the claims of trials of all ``dbs`` on one GPU added up to more than it has.

    A trial holds its GPU from the moment it is recorded (placement) until it is finished.
    ``capacity`` maps "gpu" to 1.0 (fractions) or to its bytes (gpu_memory trials).
    """
    spans = []
    for db in dbs:
        for t in trials(db):
            for gpu in (t["gpus"] or "").split(","):
                if gpu:
                    size = t["gpu_memory"] if "bytes" in capacity else (t["gpu_fraction"] or 1.0)
                    spans.append((t["created_at"], t["finished_at"], gpu, size, f"{db.name}#{t['number']}"))
    problems = []
    for start, _, gpu, _, who in spans:
        held = [s for s in spans if s[2] == gpu and s[0] <= start < s[1]]
        total = sum(s[3] for s in held)
        if total > capacity.get("bytes", capacity.get("fraction", 1.0)) * (1 + 1e-9):
            problems.append(f"GPU {gpu} at {who}: {[s[4] for s in held]} hold {total}")
    return problems


__all__ = ["GIB", "FakeGpu", "make_box", "box_env", "space_file", "launch", "finish", "trials", "events",
           "overlapping_on_a_gpu"]
