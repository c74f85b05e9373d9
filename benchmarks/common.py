"""What every benchmark shares: the environment trials run in, space files, statistics, the table.

Each benchmark returns a list of :class:`Figure`; ``run_all.py`` prints them as one Markdown table
so the README and ``RESULTS.md`` show exactly what a rerun prints.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
VENV_BIN = str(Path(PYTHON).parent)


@dataclass(frozen=True)
class Figure:
    """One measured number, the competitor's number from the same run, and how they compare."""

    bench: str
    what: str
    ours: str
    competitor: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None  # None: no target for this figure

    def row(self) -> str:
        verdict = "" if self.met is None else ("yes" if self.met else "**no**")
        return f"| {self.bench} | {self.what} | {self.ours} | {self.competitor} | {self.ratio} | {self.target} | {verdict} |"


TABLE_HEAD = ("| # | measured | hpotui | competitor (same run) | ratio | target | met |\n"
              "|---|---|---|---|---|---|---|")


def table(figures: list[Figure]) -> str:
    return "\n".join([TABLE_HEAD, *(f.row() for f in figures)])


def say(text: str) -> None:
    """Progress on stderr, so stdout stays the figures."""
    print(text, file=sys.stderr, flush=True)


def trial_env() -> dict[str, str]:
    """The environment of a user's shell in this venv: ``python`` and ``hpotui`` resolve to it."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("HPOTUI_DB", None)
    return env


@dataclass(frozen=True)
class Checkout:
    """Whose engine a benchmark runs: this tree's, or another checkout's (an older commit, to
    measure a change back to back in one run: ``benchmarks/compare.py``).

    ``module`` is the CLI module (``engine.cli`` before the package was named ``hpotui``) and
    ``path`` what goes on PYTHONPATH so that it, and nothing of this tree, is imported.
    """

    root: Path
    module: str
    path: str

    @classmethod
    def this(cls) -> "Checkout":
        return cls(REPO, "hpotui.engine.cli", str(REPO))

    @classmethod
    def at(cls, root: Path, scratch: Path) -> "Checkout":
        """Another checkout; ``scratch`` (an empty folder) holds the package layout a newer one needs.

        The ``hpotui`` package maps its ``engine/`` and ``tui/`` folders in (a package-dir mapping
        that only this tree's editable install knows), so for another checkout a package folder is
        laid out in ``scratch``: its own ``hpotui/*.py`` plus links to its ``engine`` and ``tui``.
        """
        root = root.resolve()
        if not (root / "hpotui" / "__init__.py").exists():
            return cls(root, "engine.cli", str(root))
        package = scratch / "hpotui"
        package.mkdir(parents=True, exist_ok=True)
        for source in (root / "hpotui").glob("*.py"):
            (package / source.name).write_bytes(source.read_bytes())
        for sub in ("engine", "tui"):
            (package / sub).symlink_to(root / sub, target_is_directory=True)
        return cls(root, "hpotui.engine.cli", str(scratch))

    @property
    def cli(self) -> list[str]:
        return [PYTHON, "-m", self.module]

    def env(self) -> dict[str, str]:
        """:func:`trial_env` with only this checkout on PYTHONPATH (this tree: as before)."""
        env = trial_env()
        if self.root != REPO:
            env["PYTHONPATH"] = self.path
        return env


def write_space(directory: Path, *, name: str, command: str, trials: int, parallel: int,
                metric: str = "loss", mode: str = "min", extra: str = "") -> Path:
    """A space file with one dummy parameter ``x`` (every trial must receive some parameter)."""
    text = f"""
    name: {name}
    command: {command}
    objective: {{metric: {metric}, mode: {mode}}}
    search: {{algorithm: random, seed: 0}}
    budget: {{max_trials: {trials}, max_parallel: {parallel}}}
    space:
      x: {{type: uniform, low: 0, high: 1}}
    """
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(text) + textwrap.dedent(extra))
    return path


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def fmt_rate(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M/s"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k/s"
    return f"{x:.0f}/s"


def fmt_ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def fmt_ratio(ours: float, theirs: float, *, higher_is_better: bool = True) -> str:
    """How many times better we are (``N x``); n/a when either side is missing."""
    if math.isnan(ours) or math.isnan(theirs) or ours <= 0 or theirs <= 0:
        return "n/a"
    r = ours / theirs if higher_is_better else theirs / ours
    return f"{r:.0f}x" if r >= 10 else f"{r:.2f}x"


def has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
