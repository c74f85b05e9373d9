"""Read-only queries that turn the study file into immutable snapshots for the screens.

Why a module of its own: every screen asks the same few questions (which studies, which
trials, which curve, which GPU), and each answer must be cheap on a file with 10,000 trials and
5 million metric rows. So the queries here only ever read what is on screen: one trial's
curves through the ``(trial_id, name, step)`` index, the objective's last value only for trials
whose report count changed, flags read incrementally by event id. Everything returned is a
frozen dataclass, so a worker thread can build it and hand it to the UI thread safely.

The connection is opened read-only (``mode=ro``): the TUI never writes through it; requests
to the engine go through :mod:`tui.actions`, a separate writable connection.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from ..engine.liveness import engine_alive
from ..engine.store import StudyRow, connect

STATUS_FILTERS: tuple[str | None, ...] = (None, "running", "completed", "pruned", "failed", "stopped", "queued")
"""What the filter key cycles through; ``failed`` also shows diverged trials (both are failures)."""
SORT_KEYS = ("number", "best", "status", "step", "run")
FILTER_GROUPS = {"failed": ("failed", "diverged")}
ETA_UNKNOWN = None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class StudySummary:
    """One line of the study list."""

    id: int
    name: str
    stage: int
    parent: str | None
    status: str
    counts: Mapping[str, int]
    best: float | None
    objective: str
    mode: str
    engine_alive: bool
    launching_paused: bool

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class TrialInfo:
    """What the trials table and the detail panes know about one trial."""

    id: int
    number: int
    status: str
    params: Mapping[str, Any]
    last: float | None
    best: float | None
    last_step: float | None
    flags: tuple[str, ...]
    gpus: str | None
    started_at: float | None
    finished_at: float | None
    paused: bool
    run_s: float | None
    eta_s: float | None
    stdout_path: str
    stderr_path: str

    @property
    def shown_status(self) -> str:
        return "paused" if self.paused and self.status == "running" else self.status


@dataclass(frozen=True)
class StudyPlan:
    """What the space file promised: used for step/max and the ETA."""

    max_trials: int | None
    max_parallel: int | None
    max_step: float | None
    params: tuple[str, ...]
    ranges: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyView:
    """The study screen's table and header, for one status filter and sort order."""

    study: StudyRow
    alive: bool
    plan: StudyPlan
    trials: tuple[TrialInfo, ...]
    counts: Mapping[str, int]
    best: TrialInfo | None
    eta_s: float | None
    max_step: float | None
    data_version: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Curve:
    name: str
    steps: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class GpuLine:
    host: str
    gpu: int
    name: str
    util: float | None
    memory_used: int | None
    memory_total: int | None
    trials: tuple[str, ...]


@dataclass(frozen=True)
class HostLine:
    host: str
    cpu_percent: float | None
    ram_used: int | None
    ram_total: int | None
    load1: float | None


@dataclass(frozen=True)
class ResourceView:
    gpus: tuple[GpuLine, ...]
    hosts: tuple[HostLine, ...]
    unplaced: tuple[str, ...]


@dataclass(frozen=True)
class FlagLine:
    time: float
    trial_number: int | None
    flag: str
    level: str
    message: str
    hint: str


def downsample(steps: Sequence[float], values: Sequence[float], max_points: int) -> tuple[list[float], list[float]]:
    """Keep the first and last points and each bucket's min and max, so spikes (a NaN's run-up) survive."""
    n = len(steps)
    if n <= max_points or max_points < 4:
        return list(steps), list(values)
    buckets = max(1, max_points // 2)
    size = n / buckets
    xs: list[float] = []
    ys: list[float] = []
    for b in range(buckets):
        lo, hi = int(b * size), min(n, int((b + 1) * size))
        if lo >= hi:
            continue
        seg = range(lo, hi)
        i_min = min(seg, key=values.__getitem__)
        i_max = max(seg, key=values.__getitem__)
        for i in sorted({i_min, i_max}):
            xs.append(steps[i])
            ys.append(values[i])
    if xs[-1] != steps[-1]:
        xs.append(steps[-1])
        ys.append(values[-1])
    return xs, ys


def parse_plan(space_yaml: str, fallback_parallel: int | None) -> StudyPlan:
    """The bits of the stored space file the screens need; a file we cannot read gives an empty plan."""
    try:
        raw = yaml.safe_load(space_yaml) or {}
    except yaml.YAMLError:
        raw = {}
    if not isinstance(raw, dict):
        raw = {}
    budget = raw.get("budget") if isinstance(raw.get("budget"), dict) else {}
    scheduler = raw.get("scheduler") if isinstance(raw.get("scheduler"), dict) else {}
    space = raw.get("space") if isinstance(raw.get("space"), dict) else {}
    max_step = scheduler.get("max_resource")
    return StudyPlan(
        max_trials=budget.get("max_trials") if isinstance(budget.get("max_trials"), int) else None,
        max_parallel=budget.get("max_parallel") if isinstance(budget.get("max_parallel"), int) else fallback_parallel,
        max_step=float(max_step) if isinstance(max_step, (int, float)) else None,
        params=tuple(str(k) for k in space),
        ranges={str(k): _numeric_bounds(v) for k, v in space.items() if isinstance(v, dict)},
    )


def _numeric_bounds(spec: dict[str, Any]) -> dict[str, Any]:
    """YAML reads ``1e-4`` (no dot) as a string; the space parser accepts it, so do we."""
    out = dict(spec)
    for key in ("low", "high"):
        if isinstance(out.get(key), str):
            try:
                out[key] = float(out[key])
            except ValueError:
                pass
    return out


def trial_eta(last_step: float | None, max_step: float | None, step_seconds: float | None) -> float | None:
    """Seconds left for a running trial: the measured time per step times the steps still to go."""
    if last_step is None or max_step is None or step_seconds is None:
        return ETA_UNKNOWN
    return max(0.0, (max_step - last_step) * step_seconds)


def study_eta(running_etas: Iterable[float | None], left_to_start: int, trial_seconds: float | None,
              parallel: int) -> float | None:
    """Seconds until the study ends if it keeps its pace: the running trials, then the rest in waves."""
    given = list(running_etas)
    etas = [e for e in given if e is not None]
    if left_to_start <= 0:
        if len(etas) < len(given):
            return ETA_UNKNOWN  # a running trial has no pace yet
        return max(etas) if etas else 0.0
    if trial_seconds is None:
        return ETA_UNKNOWN
    waves = math.ceil(left_to_start / max(1, parallel))
    return (min(etas) if etas else 0.0) + waves * trial_seconds


class StudyReader:
    """One read-only connection plus the caches that make a refresh of a big study cheap.

    Used from worker threads; a lock serialises queries because workers of different groups
    (table refresh, log tail) may overlap.
    """

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.conn: sqlite3.Connection = connect(path, readonly=True)
        self._lock = threading.Lock()
        self._params: dict[int, dict[str, Any]] = {}
        self._last: dict[int, tuple[int, float | None]] = {}
        self._pace: dict[int, tuple[int, float | None]] = {}
        self._flags: dict[int, tuple[int, dict[int, list[str]]]] = {}
        self._plans: dict[int, StudyPlan] = {}
        self._trials: dict[int, dict[int, TrialInfo]] = {}
        self._open: dict[int, set[int]] = {}

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def data_version(self) -> int:
        """Changes whenever another connection commits; microseconds, no table touched."""
        with self._lock:
            return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def data_version_now(self) -> int | None:
        """``data_version`` for the UI thread's 1 s tick: None (try again next tick) while a worker reads.

        Asked on the UI thread because it costs microseconds, so an idle interface starts no worker
        thread at all; only a changed version (or a resize, or the user) does.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self.conn.execute("PRAGMA data_version").fetchone()[0]
        finally:
            self._lock.release()

    # -- the study list ---------------------------------------------------------------------------
    def studies(self) -> list[StudySummary]:
        with self._lock:
            rows = [StudyRow.from_row(r) for r in self.conn.execute("SELECT * FROM studies ORDER BY id")]
            counts: dict[int, dict[str, int]] = {}
            for sid, status, n in self.conn.execute("SELECT study_id, status, COUNT(*) FROM trials "
                                                    "GROUP BY study_id, status"):
                counts.setdefault(sid, {})[status] = n
            best = {sid: (lo, hi) for sid, lo, hi in self.conn.execute(
                "SELECT study_id, MIN(best_value), MAX(best_value) FROM trials GROUP BY study_id")}
        names = {r.id: r.name for r in rows}
        out = []
        for r in rows:
            lo, hi = best.get(r.id, (None, None))
            out.append(StudySummary(id=r.id, name=r.name, stage=r.stage, parent=names.get(r.parent_id or -1),
                                    status=r.status, counts=counts.get(r.id, {}),
                                    best=_finite(hi if r.objective_mode == "max" else lo),
                                    objective=r.objective_metric, mode=r.objective_mode,
                                    engine_alive=engine_alive(r), launching_paused=r.launching_paused))
        return out

    def study(self, study_id: int) -> StudyRow | None:
        with self._lock:
            row = self.conn.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
        return StudyRow.from_row(row) if row else None

    def study_by_name(self, name: str) -> StudyRow | None:
        with self._lock:
            row = self.conn.execute("SELECT * FROM studies WHERE name = ?", (name,)).fetchone()
        return StudyRow.from_row(row) if row else None

    def plan(self, study: StudyRow) -> StudyPlan:
        plan = self._plans.get(study.id)
        if plan is None:
            plan = self._plans[study.id] = parse_plan(study.space_yaml, study.max_parallel)
        return plan

    # -- the study screen -------------------------------------------------------------------------
    def study_view(self, study_id: int, *, status: str | None = None, sort: str = "number",
                   descending: bool = False) -> StudyView | None:
        """The study's trials, re-reading only rows that can still change (running, queued, new ones).

        A finished trial never changes again (a rerun is a new trial), so after the first read a
        refresh of a 10,000-trial study touches the few dozen live rows plus new flags.
        """
        version = self.data_version()
        study = self.study(study_id)
        if study is None:
            return None
        plan = self.plan(study)
        now = self.clock()
        cache = self._trials.setdefault(study_id, {})
        open_ids = self._open.setdefault(study_id, set())
        columns = ("SELECT id, number, status, params, best_value, last_step, gpus, started_at, finished_at, paused, "
                   "reports, stdout_path, stderr_path FROM trials WHERE study_id = ?")
        with self._lock:
            if cache:
                rows = self.conn.execute(columns + " AND (id > ? OR id IN (SELECT value FROM json_each(?)))",
                                         (study_id, max(cache), json.dumps(sorted(open_ids)))).fetchall()
            else:
                rows = self.conn.execute(columns, (study_id,)).fetchall()
            max_step = plan.max_step
            if max_step is None:
                max_step = self.conn.execute("SELECT MAX(last_step) FROM trials WHERE study_id = ? AND "
                                             "status = 'completed'", (study_id,)).fetchone()[0]
            durations = self.conn.execute(
                "SELECT AVG(finished_at - started_at) FROM trials WHERE study_id = ? AND finished_at IS NOT NULL "
                "AND started_at IS NOT NULL AND status IN ('completed', 'pruned', 'stopped', 'diverged')",
                (study_id,)).fetchone()[0]
        flags, flagged = self._trial_flags(study_id)
        for r in rows:
            tid = r[0]
            cache[tid] = self._trial_info(r, study.objective_metric, max_step, now, tuple(flags.get(tid, ())))
            if r[2] in ("running", "queued") or r[8] is None:
                open_ids.add(tid)
            else:
                open_ids.discard(tid)
        for tid in flagged:
            if tid in cache and cache[tid].flags != tuple(flags.get(tid, ())):
                cache[tid] = replace(cache[tid], flags=tuple(flags[tid]))
        trials = list(cache.values())
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        best = self._best(trials, study.objective_mode)
        finished = sum(n for s, n in counts.items() if s not in ("running", "queued", "interrupted"))
        running = [t for t in trials if t.status == "running"]
        left = (plan.max_trials - finished - len(running)) if plan.max_trials is not None else 0
        eta = None
        if study.status in ("running", "queued"):
            eta = study_eta([t.eta_s for t in running], left, durations,
                            study.max_parallel or plan.max_parallel or 1)
        shown = [t for t in trials if _matches(t, status)]
        shown.sort(key=_sort_key(sort, study.objective_mode), reverse=descending)
        return StudyView(study=study, alive=engine_alive(study), plan=plan, trials=tuple(shown), counts=counts,
                         best=best, eta_s=eta, max_step=max_step, data_version=version)

    def _trial_info(self, r: sqlite3.Row, metric: str, max_step: float | None, now: float,
                    flags: tuple[str, ...]) -> TrialInfo:
        (tid, number, status, params_json, best, last_step, gpus, started, finished, paused, reports, out,
         err) = tuple(r)
        params = self._params.get(tid)
        if params is None:
            params = self._params[tid] = json.loads(params_json or "{}")
        reports = reports or 0
        eta = None
        if status == "running":
            eta = trial_eta(last_step, max_step, self._step_seconds(tid, reports, metric))
        return TrialInfo(id=tid, number=number, status=status, params=params,
                         last=self._last_objective(tid, reports, metric), best=best, last_step=last_step,
                         flags=flags, gpus=gpus, started_at=started, finished_at=finished, paused=bool(paused),
                         run_s=None if started is None else (finished or now) - started, eta_s=eta,
                         stdout_path=out or "", stderr_path=err or "")

    @staticmethod
    def _best(trials: Sequence[TrialInfo], mode: str) -> TrialInfo | None:
        scored = [t for t in trials if _finite(t.best) is not None]
        if not scored:
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=lambda t: t.best)  # type: ignore[arg-type,return-value]

    def _last_objective(self, trial_id: int, reports: int, metric: str) -> float | None:
        """Only re-read when the trial's report count moved: finished trials cost one dict lookup."""
        cached = self._last.get(trial_id)
        if cached is not None and cached[0] == reports:
            return cached[1]
        with self._lock:
            row = self.conn.execute("SELECT value FROM metrics WHERE trial_id = ? AND name = ? "
                                    "ORDER BY step DESC LIMIT 1", (trial_id, metric)).fetchone()
        value = None if row is None else (math.nan if row[0] is None else row[0])
        self._last[trial_id] = (reports, value)
        return value

    def _step_seconds(self, trial_id: int, reports: int, metric: str) -> float | None:
        """Measured seconds per step from the first and last report of the objective (startup excluded)."""
        cached = self._pace.get(trial_id)
        if cached is not None and cached[0] == reports:
            return cached[1]
        with self._lock:
            row = self.conn.execute("SELECT MIN(step), MAX(step), MIN(time), MAX(time) FROM metrics "
                                    "WHERE trial_id = ? AND name = ?", (trial_id, metric)).fetchone()
        pace = None
        if row and row[0] is not None and row[1] > row[0]:
            pace = (row[3] - row[2]) / (row[1] - row[0])
        self._pace[trial_id] = (reports, pace)
        return pace

    def _trial_flags(self, study_id: int) -> tuple[dict[int, list[str]], set[int]]:
        """Flags per trial id, read incrementally; also the ids that got a new flag in this read."""
        last_id, flags = self._flags.get(study_id, (0, {}))
        changed: set[int] = set()
        with self._lock:
            rows = self.conn.execute("SELECT id, trial_id, data FROM events WHERE study_id = ? AND id > ? "
                                     "AND kind = 'flag' ORDER BY id", (study_id, last_id)).fetchall()
        for event_id, trial_id, data in rows:
            last_id = event_id
            try:
                kind = json.loads(data or "{}").get("flag")
            except (ValueError, AttributeError):
                kind = None
            if trial_id is not None and kind and kind not in flags.setdefault(trial_id, []):
                flags[trial_id].append(kind)
                changed.add(trial_id)
        self._flags[study_id] = (last_id, flags)
        return flags, changed

    # -- detail panes ------------------------------------------------------------------------------
    def metric_names(self, trial_ids: Sequence[int]) -> list[str]:
        names: list[str] = []
        with self._lock:
            for tid in trial_ids:
                for (name,) in self.conn.execute("SELECT DISTINCT name FROM metrics WHERE trial_id = ?", (tid,)):
                    if name not in names:
                        names.append(name)
        return names

    def curve(self, trial_id: int, name: str, max_points: int) -> Curve:
        """One metric of one trial, NaN and infinities left out (the health pane reports them)."""
        with self._lock:
            rows = self.conn.execute("SELECT step, value FROM metrics WHERE trial_id = ? AND name = ? ORDER BY step",
                                     (trial_id, name)).fetchall()
        steps = [r[0] for r in rows if r[1] is not None and math.isfinite(r[1])]
        values = [r[1] for r in rows if r[1] is not None and math.isfinite(r[1])]
        xs, ys = downsample(steps, values, max_points)
        return Curve(name, tuple(xs), tuple(ys))

    def cutoffs(self, trial_id: int) -> list[float]:
        """Steps where the scheduler stopped this trial (its 'pruned' events), for the rung markers."""
        with self._lock:
            rows = self.conn.execute("SELECT data FROM events WHERE trial_id = ? AND kind = 'pruned'",
                                     (trial_id,)).fetchall()
        steps = []
        for (data,) in rows:
            try:
                step = json.loads(data or "{}").get("step")
            except (ValueError, AttributeError):
                step = None
            if isinstance(step, (int, float)):
                steps.append(float(step))
        return steps

    def flags(self, study_id: int, limit: int = 200) -> list[FlagLine]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT e.time, t.number, e.level, e.message, e.data FROM events e LEFT JOIN trials t "
                "ON t.id = e.trial_id WHERE e.study_id = ? AND e.kind = 'flag' ORDER BY e.id DESC LIMIT ?",
                (study_id, limit)).fetchall()
        out = []
        for when, number, level, message, data in rows:
            try:
                parsed = json.loads(data or "{}")
            except ValueError:
                parsed = {}
            out.append(FlagLine(time=when, trial_number=number, flag=str(parsed.get("flag") or "flag"),
                                level=level or "warning", message=message or "", hint=str(parsed.get("hint") or "")))
        return out

    def resources(self) -> ResourceView:
        """The newest reading of each GPU and host, and which running trials sit on which GPU."""
        with self._lock:
            gpu_rows = self.conn.execute(
                "SELECT host, gpu, name, util, memory_used, memory_total FROM gpu_samples "
                "WHERE id > (SELECT COALESCE(MAX(id), 0) FROM gpu_samples) - 256 ORDER BY id").fetchall()
            host_rows = self.conn.execute(
                "SELECT host, cpu_percent, ram_used, ram_total, load1 FROM host_samples "
                "WHERE id > (SELECT COALESCE(MAX(id), 0) FROM host_samples) - 32 ORDER BY id").fetchall()
            placed = self.conn.execute(
                "SELECT s.name, t.number, t.host, t.gpus FROM trials t JOIN studies s ON s.id = t.study_id "
                "WHERE t.status = 'running'").fetchall()
        latest: dict[tuple[str, int], tuple[Any, ...]] = {}
        for r in gpu_rows:
            latest[(r[0], r[1])] = tuple(r)
        hosts: dict[str, HostLine] = {}
        for r in host_rows:
            hosts[r[0]] = HostLine(r[0], r[1], r[2], r[3], r[4])
        on_gpu: dict[tuple[str | None, int], list[str]] = {}
        unplaced = []
        for study, number, host, gpus in placed:
            label = f"{study}#{number}"
            indices = [g for g in (gpus or "").split(",") if g.strip().isdigit()]
            if not indices:
                unplaced.append(label)
            for g in indices:
                on_gpu.setdefault((host, int(g)), []).append(label)
        gpu_hosts = {h for h, _ in latest}
        if len(gpu_hosts) == 1:  # trials recorded without a host ran on the only box that has GPUs
            only = next(iter(gpu_hosts))
            for (host, g), labels in list(on_gpu.items()):
                if host != only:
                    on_gpu.setdefault((only, g), []).extend(labels)
        lines = []
        for (host, gpu), r in sorted(latest.items()):
            lines.append(GpuLine(host=host, gpu=gpu, name=r[2] or "", util=r[3], memory_used=r[4],
                                 memory_total=r[5], trials=tuple(on_gpu.get((host, gpu), ()))))
        return ResourceView(gpus=tuple(lines), hosts=tuple(hosts.values()), unplaced=tuple(unplaced))

    def top_trials(self, study: StudyRow, k: int) -> list[tuple[dict[str, Any], float]]:
        """(params, best) of the k best trials, for the refine dialog."""
        order = "DESC" if study.objective_mode == "max" else "ASC"
        with self._lock:
            rows = self.conn.execute(f"SELECT params, best_value FROM trials WHERE study_id = ? AND best_value "
                                     f"IS NOT NULL ORDER BY best_value {order} LIMIT ?", (study.id, k)).fetchall()
        return [(json.loads(p or "{}"), v) for p, v in rows if math.isfinite(v)]

    def finished_results(self, study: StudyRow, statuses: Sequence[str]) -> list[tuple[dict[str, Any], float]]:
        """What :func:`engine.boundary.finished_results` returns, read through this read-only connection."""
        marks = ",".join("?" * len(statuses))
        with self._lock:
            rows = self.conn.execute(f"SELECT params, best_value FROM trials WHERE study_id = ? AND status IN "
                                     f"({marks}) AND best_value IS NOT NULL ORDER BY number",
                                     (study.id, *statuses)).fetchall()
        return [(json.loads(p or "{}"), v) for p, v in rows if math.isfinite(v)]

    def scored_trials(self, study: StudyRow, limit: int = 2000) -> list[tuple[dict[str, Any], float]]:
        """(params, best) of finished scored trials (capped), for the refine dialog's scatter plots."""
        with self._lock:
            rows = self.conn.execute("SELECT params, best_value FROM trials WHERE study_id = ? AND best_value "
                                     "IS NOT NULL ORDER BY id DESC LIMIT ?", (study.id, limit)).fetchall()
        return [(json.loads(p or "{}"), v) for p, v in rows if math.isfinite(v)]


def _matches(trial: TrialInfo, status: str | None) -> bool:
    if status is None:
        return True
    return trial.status in FILTER_GROUPS.get(status, (status,))


_STATUS_ORDER = {s: i for i, s in enumerate(("running", "queued", "completed", "pruned", "stopped", "interrupted",
                                             "diverged", "failed"))}


def _sort_key(sort: str, mode: str) -> Callable[[TrialInfo], Any]:
    if sort == "best":
        sign = -1.0 if mode == "max" else 1.0
        return lambda t: (_finite(t.best) is None, sign * (_finite(t.best) or 0.0), t.number)
    if sort == "status":
        return lambda t: (_STATUS_ORDER.get(t.status, 99), t.number)
    if sort == "step":
        return lambda t: (-(t.last_step or 0.0), t.number)
    if sort == "run":
        return lambda t: (-(t.run_s or 0.0), t.number)
    return lambda t: t.number
