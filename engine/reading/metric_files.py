"""Structured logs as metric sources: a CSV a trial appends to, a folder of TensorBoard event files.

Training code often logs through its framework's own writer (Lightning's and Keras' CSVLogger,
pandas, ``SummaryWriter``) and prints nothing hpotui could read. The space file names the
files instead::

    metrics:
      csv: "{trial_dir}/csv/version_0/metrics.csv"
      tensorboard: "{trial_dir}/tb"
      step: epoch            # optional: the column / tag that is the step

The engine reads them while the trial runs, as they grow, and once more when it ends; rows
become reports exactly like ``@hpotui`` lines (health checks, schedulers, curves). The step is
the ``epoch`` column or tag when there is one, else the file's own step (a ``step`` column, the
row number, the event's step); ``step:`` names another. Empty CSV cells are not values.

Exactly once: each source remembers how many rows (CSV) or events (TensorBoard) it turned into
reports. A re-adopted trial's sources start again from the top and skip every row the database
already holds (same metric, step and value), so nothing is recorded twice after a resume, even
when a framework rewrote its CSV with a new column in between.

TensorBoard files are read with TensorBoard's own loader (``event_file_loader``, the one its
server uses), an optional extra: ``pip install 'hpotui[tensorboard]'``.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..space_file.param import BUILTIN_PLACEHOLDERS, PLACEHOLDER, format_value
from .metricline import Report

STEP_KEYS = ("epoch", "step")
TENSORBOARD_EXTRA = "pip install 'hpotui[tensorboard]'"


@dataclass(frozen=True)
class MetricFilesSpec:
    csv: str | None = None
    tensorboard: str | None = None
    step: str | None = None  # the column / tag that is the step (default: epoch, else the file's own)


def parse_metric_files(raw: Any, fail: Callable[..., Exception], params: Iterable[str]) -> MetricFilesSpec | None:
    """``metrics.csv`` / ``metrics.tensorboard`` / ``metrics.step`` of the space file (None when absent)."""
    if not isinstance(raw, dict) or not any(k in raw for k in ("csv", "tensorboard", "step")):
        return None
    names = set(params) | set(BUILTIN_PLACEHOLDERS)
    paths = {key: _path_template(raw.get(key), key, fail, names) for key in ("csv", "tensorboard")}
    step = _step_name(raw.get("step"), paths, fail)
    if paths["tensorboard"] is not None and importlib.util.find_spec("tensorboard") is None:
        raise fail("metrics.tensorboard", "reading TensorBoard event files needs the tensorboard package",
                   TENSORBOARD_EXTRA)
    return MetricFilesSpec(csv=paths["csv"], tensorboard=paths["tensorboard"], step=step)


def _step_name(step: Any, paths: dict[str, str | None], fail: Callable[..., Exception]) -> str | None:
    if step is not None and (not isinstance(step, str) or not step.strip()):
        raise fail("metrics.step", f"must be a column or tag name, got {step!r}", "write e.g. step: epoch")
    if step is not None and paths["csv"] is None and paths["tensorboard"] is None:
        raise fail("metrics.step", "names the step of a file source, but there is none",
                   'add csv: "..." or tensorboard: "...", or remove step')
    return step


def _path_template(value: Any, key: str, fail: Callable[..., Exception], names: set[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise fail(f"metrics.{key}", f"must be a path, got {value!r}", 'write a path, e.g. csv: "{trial_dir}/metrics.csv"')
    unknown = [n for n in PLACEHOLDER.findall(value) if n not in names]
    if unknown:
        raise fail(f"metrics.{key}", f"placeholder {{{unknown[0]}}} names no parameter",
                   "use a parameter name, {trial_dir}, {trial_id} or {max_resource}")
    return value


def render_path(template: str, values: dict[str, Any], workdir: Path) -> Path:
    """The template with the command's placeholders filled in, relative to the trial's workdir."""
    text = PLACEHOLDER.sub(lambda m: format_value(values[m.group(1)]) if m.group(1) in values else m.group(0),
                           template)
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else workdir / path


def _value_key(value: float) -> float | str:
    return "nan" if math.isnan(value) else value


class _Source:
    """What CSV and TensorBoard sources share: the path, what was seen, and the resume filter."""

    kind = ""

    def __init__(self, path: Path, step_name: str | None, recorded: set[tuple[str, float, Any]] | None) -> None:
        self.path = path
        self.step_name = step_name
        self.appeared = False  # the file / folder existed at some read
        self.rows = 0  # rows (or events) turned into reports so far
        self._recorded = recorded  # (name, step, value) already in the database: a re-adopted trial

    def _report(self, step: float, values: dict[str, float]) -> Report | None:
        if self._recorded is not None:
            values = {k: v for k, v in values.items() if (k, step, _value_key(v)) not in self._recorded}
        if not values:
            return None
        return Report(step=step, values=values, resource=step)

    def describe(self) -> str:
        return f"metrics.{self.kind} {self.path}"


class CsvSource(_Source):
    """A CSV file a trial appends to (or rewrites whole when a new column appears: Lightning)."""

    kind = "csv"

    def __init__(self, path: Path, step_name: str | None = None,
                 recorded: set[tuple[str, float, Any]] | None = None) -> None:
        super().__init__(path, step_name, recorded)
        self._header = b""
        self._offset = 0  # just past the last complete line read
        self._columns: list[str] = []

    def read(self) -> list[Report]:
        try:
            with open(self.path, "rb") as f:
                self.appeared = True
                header = f.readline()
                if not header.endswith(b"\n"):
                    return []
                size = os.fstat(f.fileno()).st_size
                skip = 0
                if header != self._header or size < self._offset:
                    # New file, or rewritten (a new column): read it again, skipping the rows already read.
                    self._header, self._offset, skip = header, len(header), self.rows
                    self._columns = next(csv.reader([header.decode("utf-8", "replace")]), [])
                    self.rows = 0
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # complete lines only: the trial may be mid-write
        if end <= 0:
            return []
        self._offset += end
        reports = []
        for index, cells in enumerate(csv.reader(io.StringIO(data[:end].decode("utf-8", "replace")))):
            self.rows += 1
            if index < skip or not cells:
                continue
            report = self._row(cells)
            if report is not None:
                reports.append(report)
        return reports

    def _step_column(self) -> str | None:
        if self.step_name is not None:
            return self.step_name if self.step_name in self._columns else None
        return next((k for k in STEP_KEYS if k in self._columns), None)

    def _row(self, cells: list[str]) -> Report | None:
        values: dict[str, float] = {}
        for name, cell in zip(self._columns, cells):
            cell = cell.strip()
            if not cell:
                continue  # an empty cell is not a value (Lightning's train and val rows)
            try:
                values[name] = float(cell)
            except ValueError:
                continue  # a timestamp, a note: not a metric
        step_column = self._step_column()
        step = values.get(step_column) if step_column else None
        for key in {*STEP_KEYS, *([step_column] if step_column else [])}:
            values.pop(key, None)
        if step is None or not math.isfinite(step):
            step = float(self.rows)
        return self._report(step, values)


class TensorBoardSource(_Source):
    """A folder of TensorBoard event files (SummaryWriter, Lightning, Keras, Hugging Face).

    A file in a subfolder names its metrics ``<subfolder>/<tag>``: Keras writes ``epoch_loss`` both
    in ``train/`` and in ``validation/``. Point the source at the folder holding the files to get
    bare tags (Lightning: ``.../lightning_logs/version_0``).
    """

    kind = "tensorboard"

    def __init__(self, path: Path, step_name: str | None = None,
                 recorded: set[tuple[str, float, Any]] | None = None) -> None:
        super().__init__(path, step_name, recorded)
        self._loaders: dict[Path, Any] = {}
        self._epoch_at: dict[int, float] = {}  # event step -> the step tag's value there
        self._held: list[tuple[int, str, float]] = []  # scalars waiting for the step tag of their event step
        self._newest = -1  # highest event step seen

    def _is_step_tag(self, tag: str) -> bool:
        name = self.step_name or "epoch"
        return tag == name or tag.endswith("/" + name)  # Hugging Face writes train/epoch

    def read(self, final: bool = False) -> list[Report]:
        if not self.path.is_dir():
            return []
        self.appeared = True
        # optional: tensorboard is needed only for `metrics.tensorboard` (checked when the space is read)
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util

        for file in sorted(self.path.rglob("events.out.tfevents.*")):
            if file not in self._loaders:
                self._loaders[file] = EventFileLoader(str(file))
        for file, loader in self._loaders.items():
            folder = file.parent.relative_to(self.path).as_posix()
            prefix = "" if folder == "." else folder + "/"  # Keras: train/ and validation/ hold the same tags
            for event in loader.Load():
                for tag, number in _scalars(event, tensor_util):
                    tag = prefix + tag
                    self.rows += 1
                    if self._is_step_tag(tag):
                        self._epoch_at[event.step] = number
                    else:
                        self._held.append((event.step, tag, number))
                    self._newest = max(self._newest, event.step)
        return self._resolve(final)

    def _resolve(self, final: bool) -> list[Report]:
        """Scalars whose step is known: the step tag at their event step, else the event step itself."""
        by_step: dict[float, dict[str, float]] = {}
        waiting = []
        for event_step, tag, number in self._held:
            if self._epoch_at and event_step not in self._epoch_at and event_step >= self._newest and not final:
                waiting.append((event_step, tag, number))  # its step tag may come in the next write
                continue
            step = self._step_for(event_step)
            by_step.setdefault(step, {})[tag] = number
        self._held = waiting
        reports = [self._report(step, values) for step, values in by_step.items()]
        return [r for r in reports if r is not None]

    def _step_for(self, event_step: int) -> float:
        if not self._epoch_at:
            return float(event_step)
        if event_step in self._epoch_at:
            return self._epoch_at[event_step]
        earlier = [s for s in self._epoch_at if s <= event_step]
        return self._epoch_at[max(earlier)] if earlier else float(event_step)


def _scalars(event: Any, tensor_util: Any) -> Iterable[tuple[str, float]]:
    """(tag, value) of an event's scalar summaries (histograms, images and text are not metrics)."""
    for value in event.summary.value:
        if value.HasField("simple_value"):
            yield value.tag, float(value.simple_value)
        elif value.metadata.plugin_data.plugin_name == "scalars":
            yield value.tag, float(tensor_util.make_ndarray(value.tensor).item())


def open_sources(spec: MetricFilesSpec | None, values: dict[str, Any], workdir: Path,
                 recorded: set[tuple[str, float, Any]] | None = None) -> list[_Source]:
    """The trial's file sources, paths rendered with its placeholders."""
    if spec is None:
        return []
    sources: list[_Source] = []
    if spec.csv:
        sources.append(CsvSource(render_path(spec.csv, values, workdir), spec.step, recorded))
    if spec.tensorboard:
        sources.append(TensorBoardSource(render_path(spec.tensorboard, values, workdir), spec.step, recorded))
    return sources


def read_source(source: _Source, final: bool = False) -> list[Report]:
    if isinstance(source, TensorBoardSource):
        return source.read(final=final)
    assert isinstance(source, CsvSource)
    return source.read()
