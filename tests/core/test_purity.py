"""The core decides and does no I/O: none of its modules imports a clock, the OS, a process or the store."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "engine" / "core"
FORBIDDEN = {"os", "signal", "sqlite3", "subprocess", "time", "selectors", "shutil", "psutil", "socket"}
FORBIDDEN_PROJECT = {"store", "runner", "executors", "liveness", "resources", "trial_logs", "usage", "gpu_placer"}


def test_no_core_module_imports_io() -> None:
    found = []
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(path.name, a.name) for a in node.names if a.name.split(".")[0] in FORBIDDEN]
            elif isinstance(node, ast.ImportFrom) and node.module:
                top = node.module.split(".")[0]
                if (node.level == 0 and top in FORBIDDEN) or (node.level == 2 and FORBIDDEN_PROJECT & set(node.module.split("."))):
                    found.append((path.name, node.module))
    assert found == []


def test_importing_the_core_loads_no_store_process_or_gpu_module() -> None:
    """Transitively too: what the core imports (space, health, schedulers...) pulls in no I/O side.

    A fresh interpreter, because this test session has long imported everything.
    """
    import subprocess
    import sys

    probe = ("import sys, hpotui.engine.core.study_core\n"
             "io = ('psutil', 'sqlite3', 'sqlite_utils', 'pynvml', 'torch')\n"
             "ours = ('store', 'store_read', 'runner', 'executors', 'liveness', 'trial_logs', 'usage', 'gpu_placer',\n"
             "        'gpu_claims', 'resources', 'process_tree', 'dbfile')\n"
             "print(' '.join(sorted(m for m in sys.modules if m in io or any(\n"
             "    m == 'hpotui.engine.' + o or m.startswith('hpotui.engine.' + o + '.') for o in ours))))\n")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
