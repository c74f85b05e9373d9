"""Read-only queries that turn the study file into immutable snapshots for the screens.

Why a module of its own: every screen asks the same few questions (which studies, which
trials, which curve, which GPU), and each answer must be cheap on a file with 10,000 trials and
5 million metric rows. So the queries here only ever read what is on screen: one trial's
curves through the ``(trial_id, name, step)`` index, the objective's last value only for trials
whose report count changed, flags and clone origins read incrementally by event id. Everything
returned is a frozen dataclass, so a worker thread can build it and hand it to the UI thread.

The connection is opened read-only (:mod:`tui.dbopen`: ``mode=ro``, or an immutable snapshot
when the folder is not ours): the TUI never writes through it; requests to the engine go
through :mod:`tui.actions`, a separate writable connection opened only when needed.

The engine's liveness is not in the file's data (a killed engine writes nothing), so every
study view asks the process table: a study whose engine is gone says so, and its trials whose
processes are gone stop showing as running.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from operator import attrgetter
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping, Sequence

import yaml

from ..engine.database import store_read
from ..engine.database.records import INVALID_STATUSES, LIVE_STATUSES, RANKED_STATUSES, UNFINISHED_STATUSES, TrialStatus
from ..engine.database.store import HOSTNAME, StudyRow
from ..engine.trials.liveness import HEARTBEAT_STALE_S, engine_alive, process_alive
from .dbopen import open_readonly
from .eta import RunningPace, expected_trial_seconds, study_eta, trial_eta
from .ordering import STATUS_FILTERS, ordered
from .trial_info import TrialInfo  # noqa: F401  # re-exported: what the screens import from the reader

__all__ = ["STATUS_FILTERS", "StudyReader", "StudyView", "TrialInfo", "downsample", "parse_plan", "study_eta",
           "trial_eta", "RunningPace"]



def _sql_in(statuses: Collection[str]) -> str:
    """``('a', 'b')`` for an IN clause; the values are the record vocabulary's own constants, never user text."""
    return "(" + ", ".join(f"'{s}'" for s in sorted(statuses)) + ")"


_VALID = "status NOT IN " + _sql_in(INVALID_STATUSES)
"""SQL: a trial that said its configuration is invalid has no result the refine dialog or the parameter view may use."""
TRANSIENT_FLAGS = ("not_learning", "underfitting", "overfitting", "update_ratio")
"""Flags that stop applying once the objective improves again after them (a flat trial that learned)."""


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _better(a: float | None, b: float | None, mode: str) -> bool:
    if _finite(a) is None:
        return False
    if _finite(b) is None:
        return True
    return a > b if mode == "max" else a < b  # type: ignore[operator]


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
    pause_reason: str | None = None
    storm_paused: bool = False  # launching paused by the engine (a failure storm), not by the user

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def engine_died(self) -> bool:
        """The study should be running but nothing runs it: `hpotui resume` is the way on."""
        return self.status in LIVE_STATUSES and not self.engine_alive


@dataclass(frozen=True)
class StudyPlan:
    """What the space file promised: used for step/max, the ETA and the parameter view."""

    max_trials: int | None
    max_parallel: int | None
    max_step: float | None
    params: tuple[str, ...]
    ranges: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    objectives: tuple[tuple[str, str], ...] = ()  # (metric, mode); two or more: a Pareto front

    def is_log(self, name: str) -> bool:
        spec = self.ranges.get(name, {})
        return spec.get("type") == "loguniform" or bool(spec.get("log"))


@dataclass(frozen=True)
class StudyView:
    """The study screen's table and header, for one filter and sort order."""

    study: StudyRow
    alive: bool
    plan: StudyPlan
    trials: tuple[TrialInfo, ...]
    counts: Mapping[str, int]
    best: TrialInfo | None
    eta_s: float | None
    max_step: float | None
    data_version: int
    eta_paused: bool = False
    end_reason: str = ""
    immutable: bool = False
    clones_waiting: int = 0
    warnings: tuple[str, ...] = ()  # the engine's ``studies.warnings``: boundary and "what was not read" lines
    storm_paused: bool = False  # launching paused by the engine (a failure storm), not by the user

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def counted(self) -> int:
        """Trials that count toward ``max_trials``: an invalid configuration does not (engine/search/invalid.py)."""
        return self.total - sum(self.counts.get(s, 0) for s in INVALID_STATUSES)

    @property
    def engine_died(self) -> bool:
        return self.study.status in LIVE_STATUSES and not self.alive


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
    # GPU sharing (issue 17): what every hpotui engine on the host claims, other users' memory, reading time
    claimed_memory: int | None = None
    claimed_trials: int | None = None
    other_memory: int | None = None
    time: float | None = None


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
    now: float | None = None  # when the view was read: the GPU panel shows the readings' age


@dataclass(frozen=True)
class FlagLine:
    time: float
    trial_number: int | None
    flag: str
    level: str
    message: str
    hint: str


@dataclass(frozen=True)
class FailureDetail:
    """What a failed trial left: its exit and the last lines of its stderr (from the engine's event)."""

    exit_code: int | None
    stderr_tail: str


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


def _objectives(raw: Any) -> tuple[tuple[str, str], ...]:
    """``objective:`` as one mapping or (issue 16) a list of them."""
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("metric"), str):
            out.append((item["metric"], str(item.get("mode", "max"))))
    return tuple(out)


def parse_plan(space_yaml: str, fallback_parallel: int | None) -> StudyPlan:
    """The bits of the stored space file the screens need; a file we cannot read gives an empty plan."""
    try:
        raw = yaml.safe_load(space_yaml) or {}
    except yaml.YAMLError:
        raw = {}
    if not isinstance(raw, dict):
        raw = {}
    budget = _mapping(raw.get("budget"))
    scheduler = _mapping(raw.get("scheduler"))
    space = _mapping(raw.get("space"))
    max_step = scheduler.get("max_resource")
    return StudyPlan(
        max_trials=budget.get("max_trials") if isinstance(budget.get("max_trials"), int) else None,
        max_parallel=budget.get("max_parallel") if isinstance(budget.get("max_parallel"), int) else fallback_parallel,
        max_step=float(max_step) if isinstance(max_step, (int, float)) else None,
        params=tuple(str(k) for k in space),
        ranges={str(k): _numeric_bounds(v) for k, v in space.items() if isinstance(v, dict)},
        objectives=_objectives(raw.get("objective")),
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


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


def current_flags(flags: Sequence[tuple[str, float | None]], best_step: float | None) -> tuple[str, ...]:
    """The flags that still apply: a transient one is dropped once the objective improved after it."""
    out: list[str] = []
    for kind, step in flags:
        if kind in TRANSIENT_FLAGS and step is not None and best_step is not None and best_step > step:
            continue
        if kind not in out:
            out.append(kind)
    return tuple(out)


class StudyReader:
    """One read-only connection plus the caches that make a refresh of a big study cheap.

    Used from worker threads; a lock serialises queries because workers of different groups
    (table refresh, log tail) may overlap.
    """

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        opened = open_readonly(path)
        self.conn: sqlite3.Connection = opened.conn
        self.immutable = opened.immutable
        self.has_clones = store_read.has_clone_queue(opened.conn)  # schema 3: a lasting queue
        source = store_read.clone_source_sql(self.has_clones)
        self._columns = self._COLUMNS.replace(" FROM trials", f", {source} FROM trials")
        self._lock = threading.Lock()
        self._params: dict[int, dict[str, Any]] = {}
        self._last: dict[int, tuple[int, float | None]] = {}
        self._pace: dict[int, tuple[int, float | None, float | None]] = {}
        self._events: dict[int, tuple[int, dict[int, list[tuple[str, float | None]]], dict[int, int]]] = {}
        self._plans: dict[int, StudyPlan] = {}
        self._trials: dict[int, dict[int, TrialInfo]] = {}
        self._open: dict[int, set[int]] = {}
        self._raw: dict[int, tuple[Any, ...]] = {}
        self._ends: dict[int, tuple[tuple[Any, ...], str]] = {}
        self._storms: dict[int, tuple[int, str | None]] = {}  # study id -> (events read up to, newest storm line)

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
                                    engine_alive=engine_alive(r), launching_paused=r.launching_paused,
                                    pause_reason=r.pause_reason, storm_paused=self._storm_paused(r)))
        return out

    def _storm_paused(self, study: StudyRow) -> bool:
        """Whether launching is paused by the engine's failure storm: its ``failure_storm`` event holds the reason.

        Asked only while launching is paused; events are read from where the last look stopped.
        """
        if not study.launching_paused or not study.pause_reason:
            return False
        read_to, storm = self._storms.get(study.id, (0, None))
        with self._lock:
            read_to, found = store_read.failure_storm_since(self.conn, study.id, read_to)
        storm = found if found is not None else storm
        self._storms[study.id] = (read_to, storm)
        return storm == study.pause_reason

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
                   descending: bool = False, text: str = "") -> StudyView | None:
        """The study's trials, re-reading only rows that can still change (running, queued, new ones).

        A finished trial never changes again (a rerun is a new trial), so after the first read a
        refresh of a 10,000-trial study touches the few dozen live rows plus new events.
        """
        version = self.data_version()
        study = self.study(study_id)
        if study is None:
            return None
        plan = self.plan(study)
        alive = engine_alive(study)
        rows, max_step, durations, finished_n = self._changed_rows(study_id, plan)
        flags, clones, touched = self._trial_events(study_id)
        cache = self._trials.setdefault(study_id, {})
        open_ids = self._open.setdefault(study_id, set())
        context = _RowContext(metric=study.objective_metric, mode=study.objective_mode, max_step=max_step,
                              now=self.clock(), alive=alive, last_seen=_last_seen(study, self.clock()))
        for r in rows:
            self._raw[r[0]] = tuple(r)
        for tid in {r[0] for r in rows} | (touched & set(cache)):
            raw = self._raw.get(tid)
            if raw is None:
                continue
            cache[tid] = self._trial_info(raw, context, flags.get(tid, ()), clones.get(tid))
            if raw[2] in LIVE_STATUSES or raw[8] is None:
                open_ids.add(tid)
            else:
                open_ids.discard(tid)
        trials = list(cache.values())
        waiting = self._waiting_clones(study, clones, alive)
        counts: dict[str, int] = {}
        for t in trials:
            counted_as = t.process or t.status  # a dead engine's trials count as gone / unwatched, not running
            counts[counted_as] = counts.get(counted_as, 0) + 1
        eta, eta_paused = self._eta(study, plan, trials, counts, durations, finished_n, alive)
        shown = ordered([*trials, *waiting], status=status, text=text, sort=sort, descending=descending,
                        mode=study.objective_mode)
        return StudyView(study=study, alive=alive, plan=plan, trials=tuple(shown), counts=counts,
                         best=self._best(trials, study.objective_mode), eta_s=eta, max_step=max_step,
                         data_version=version, eta_paused=eta_paused, end_reason=self._end_reason(study),
                         immutable=self.immutable, clones_waiting=len(waiting), warnings=study.warnings,
                         storm_paused=self._storm_paused(study))

    _COLUMNS = ("SELECT id, number, status, params, best_value, last_step, gpus, started_at, finished_at, paused, "
                "reports, stdout_path, stderr_path, status_reason, exit_code, pid, proc_create_time, host, best_step "
                "FROM trials WHERE study_id = ?")

    def _changed_rows(self, study_id: int, plan: StudyPlan) -> tuple[list[Any], float | None, float | None, int]:
        cache = self._trials.get(study_id) or {}
        open_ids = self._open.get(study_id, set())
        with self._lock:
            if cache:
                rows = self.conn.execute(self._columns + " AND (id > ? OR id IN (SELECT value FROM json_each(?)))",
                                         (study_id, max(cache), json.dumps(sorted(open_ids)))).fetchall()
            else:
                rows = self.conn.execute(self._columns, (study_id,)).fetchall()
            max_step = plan.max_step
            if max_step is None:
                max_step = self.conn.execute("SELECT MAX(last_step) FROM trials WHERE study_id = ? AND "
                                             f"status = '{TrialStatus.COMPLETED}'", (study_id,)).fetchone()[0]
            durations, finished_n = self.conn.execute(
                "SELECT AVG(finished_at - started_at), COUNT(*) FROM trials WHERE study_id = ? AND finished_at IS "
                "NOT NULL AND started_at IS NOT NULL AND status IN "
                + _sql_in(RANKED_STATUSES | {TrialStatus.DIVERGED}),
                (study_id,)).fetchone()
        return rows, max_step, durations, finished_n or 0

    def _eta(self, study: StudyRow, plan: StudyPlan, trials: Sequence[TrialInfo], counts: Mapping[str, int],
             durations: float | None, finished_n: int, alive: bool) -> tuple[float | None, bool]:
        """(ETA, paused): unknown once nothing runs the study; "paused" while nothing moves."""
        if study.status not in LIVE_STATUSES or not alive:
            return None, False
        running = [t for t in trials if t.status == TrialStatus.RUNNING]
        paces = [RunningPace(t.run_s or 0.0, t.eta_s) for t in running if not t.paused]
        if study.launching_paused and not paces:
            return None, True
        left = _left_to_start(study, plan, counts, len(running))
        mean = expected_trial_seconds(durations, finished_n, paces)
        return study_eta(paces, left, mean, _parallel(study, plan)), False

    def _end_reason(self, study: StudyRow) -> str:
        """Why the study ended, from the engine's last ``study_end`` event (read once per ending)."""
        if study.status in LIVE_STATUSES:
            return ""
        key = (study.status, study.finished_at)
        cached = self._ends.get(study.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        with self._lock:
            ended = store_read.latest_study_end(self.conn, study.id)
        reason = ""
        if ended is not None:
            reason = ended.end.reason or ended.message
        self._ends[study.id] = (key, reason)
        return reason

    def _trial_info(self, r: tuple[Any, ...], ctx: "_RowContext", flags: Sequence[tuple[str, float | None]],
                    clone_of: int | None) -> TrialInfo:
        (tid, number, status, params_json, best, last_step, gpus, started, finished, paused, reports, out,
         err, reason, exit_code, pid, create_time, host, best_step, clone_source) = r
        reports = reports or 0
        eta, process, end = (None, "", finished) if status != TrialStatus.RUNNING else self._running(
            tid, reports, ctx, last_step, started, (host, pid, create_time))
        last = self._last_objective(tid, reports, ctx.metric)
        if _better(last, best, ctx.mode):
            best = last  # reports recorded after the engine stopped judging still count
        return TrialInfo(id=tid, number=number, status=status, params=self._params_of(tid, params_json), last=last,
                         best=best, last_step=last_step, flags=current_flags(flags, best_step), gpus=gpus,
                         started_at=started, finished_at=finished, paused=bool(paused),
                         run_s=_run_seconds(started, end, ctx.now), eta_s=eta, stdout_path=_text(out),
                         stderr_path=_text(err), reason=_text(reason), exit_code=exit_code,
                         clone_of=_first(clone_source, clone_of), process=process)

    def _params_of(self, trial_id: int, params_json: str | None) -> dict[str, Any]:
        """Parsed once per trial: a trial's parameters never change."""
        params = self._params.get(trial_id)
        if params is None:
            params = self._params[trial_id] = json.loads(params_json or "{}")
        return params

    def _running(self, tid: int, reports: int, ctx: "_RowContext", last_step: float | None, started: float | None,
                 process_id: tuple[str | None, int | None, float | None]) -> tuple[float | None, str, float | None]:
        """(ETA, process state, when its clock stops) of a running trial."""
        pace, last_time = self._step_seconds(tid, reports, ctx.metric)
        process = "" if ctx.alive else _process_state(*process_id)
        if process != "gone":
            return trial_eta(last_step, ctx.max_step, pace), process, None
        seen = [x for x in (last_time, ctx.last_seen, started) if x is not None]
        return None, process, max(seen) if seen else None  # its clock stopped when it was last seen

    @staticmethod
    def _best(trials: Sequence[TrialInfo], mode: str) -> TrialInfo | None:
        scored = [t for t in trials if t.best is not None and math.isfinite(t.best)]
        if not scored:
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=attrgetter("best"))

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

    def _step_seconds(self, trial_id: int, reports: int, metric: str) -> tuple[float | None, float | None]:
        """(seconds per step from the first and last report of the objective, time of the last report)."""
        cached = self._pace.get(trial_id)
        if cached is not None and cached[0] == reports:
            return cached[1], cached[2]
        with self._lock:
            row = self.conn.execute("SELECT MIN(step), MAX(step), MIN(time), MAX(time) FROM metrics "
                                    "WHERE trial_id = ? AND name = ?", (trial_id, metric)).fetchone()
        pace = None
        if row and row[0] is not None and row[1] > row[0]:
            pace = (row[3] - row[2]) / (row[1] - row[0])
        last_time = row[3] if row else None
        self._pace[trial_id] = (reports, pace, last_time)
        return pace, last_time

    def _trial_events(self, study_id: int) -> tuple[dict[int, list[tuple[str, float | None]]], dict[int, int],
                                                     set[int]]:
        """Flags (kind, step) and clone origins per trial id, read incrementally; also the ids touched now."""
        last_id, flags, clones = self._events.get(study_id, (0, {}, {}))
        touched: set[int] = set()
        with self._lock:  # schema 3 on, trials carry clone_id: the started events are not needed for it
            marks = store_read.trial_marks_since(self.conn, study_id, last_id, clone_starts=not self.has_clones)
        for trial_id, started in marks.starts:
            if started.clone_of is not None:
                clones[trial_id] = started.clone_of
                touched.add(trial_id)
        for trial_id, flag in marks.flags:
            if flag.flag:
                flags.setdefault(trial_id, []).append((flag.flag, flag.step))
                touched.add(trial_id)
        self._events[study_id] = (marks.last_id, flags, clones)
        return flags, clones, touched

    def _waiting_clones(self, study: StudyRow, clones: Mapping[int, int], alive: bool) -> list[TrialInfo]:
        """Clones the engine accepted but has not started (launching paused, no free slot): shown as rows.

        Since schema 3 the queue is the ``clones`` table (it survives the engine; a clone is started
        once a trial carries its id). An older file only has the acknowledged commands, kept in a
        first-in first-out queue in the engine's memory: the oldest ones are those already started.
        """
        if self.has_clones:
            with self._lock:
                queued = store_read.queued_clones(self.conn, study.id)
            return [self._waiting(-c.clone_id, c.source_number, c.params, c.note or "") for c in queued]
        if not alive:
            return []
        with self._lock:
            accepted = store_read.accepted_clone_commands(self.conn, study.id)
        numbers = {t.number: t for t in self._trials.get(study.id, {}).values()}
        out = []
        for command in accepted[len(clones):]:
            source = command.source_number
            base = dict(numbers[source].params) if source in numbers else {}
            base.update(command.params)
            out.append(self._waiting(-command.command_id, source, base, ""))
        return out

    @staticmethod
    def _waiting(row_id: int, source: int | None, params: dict[str, Any], note: str) -> TrialInfo:
        reason = "waiting in the clone queue" + (f" · {note}" if note else "")
        return TrialInfo(id=row_id, number=0, status=TrialStatus.QUEUED, params=params, last=None, best=None, last_step=None,
                         flags=(), gpus=None, started_at=None, finished_at=None, paused=False, run_s=None, eta_s=None,
                         stdout_path="", stderr_path="", clone_of=source, pending=True, reason=reason)

    def failure(self, trial_id: int) -> FailureDetail | None:
        """The engine's ``failed`` event of a trial: exit code and stderr tail."""
        with self._lock:
            ended = store_read.trial_failure(self.conn, trial_id)
        if ended is None:
            return None
        return FailureDetail(ended.exit_code, ended.stderr_tail or "")

    def not_read(self, trial_id: int) -> list[str]:
        """What the engine could not read from this trial (its ``not_read`` events), one line each.

        The event's message is ``trial N STATUS: what``; the reason line already names the trial
        and its status, so only the part after the first ``: `` is kept.
        """
        with self._lock:
            records = store_read.trial_not_read(self.conn, trial_id)
        return [_after_prefix(r.message) for r in records]


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
        """Steps where the scheduler stopped this trial, for the rung markers.

        The engine records a scheduler decision as a ``scheduler`` event whose data holds
        ``action`` (``stop`` / ``continue``) and the ``step`` it was made at.
        """
        with self._lock:
            decisions = store_read.scheduler_decisions(self.conn, trial_id)
        return [d.step for d in decisions if d.stopped and d.step is not None]

    def flags(self, study_id: int, limit: int = 200) -> list[FlagLine]:
        with self._lock:
            records = store_read.recent_flags(self.conn, study_id, limit)
        return [FlagLine(time=r.time, trial_number=r.trial_number, flag=r.flag.flag or "flag", level=r.level,
                         message=r.message, hint=r.flag.hint) for r in records]

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
                f"WHERE t.status = '{TrialStatus.RUNNING}'").fetchall()
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
        sharing = self._gpu_sharing()
        for (host, gpu), r in sorted(latest.items()):
            claimed, count, other, when = sharing.get((host, gpu), (None, None, None, None))
            lines.append(GpuLine(host=host, gpu=gpu, name=r[2] or "", util=r[3], memory_used=r[4],
                                 memory_total=r[5], trials=tuple(on_gpu.get((host, gpu), ())),
                                 claimed_memory=claimed, claimed_trials=count, other_memory=other, time=when))
        return ResourceView(gpus=tuple(lines), hosts=tuple(hosts.values()), unplaced=tuple(unplaced), now=self.clock())

    def _gpu_sharing(self) -> dict[tuple[str, int], tuple[Any, ...]]:
        """(host, gpu) -> (claimed bytes, claimed trials, other users' bytes, time) of the newest reading.

        A file written before those columns existed (schema 1) has none: the panel then shows only use.
        """
        try:
            with self._lock:
                rows = self.conn.execute(
                    "SELECT host, gpu, claimed_memory, claimed_trials, other_memory, time FROM gpu_samples "
                    "WHERE id > (SELECT COALESCE(MAX(id), 0) FROM gpu_samples) - 256 ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            return {}
        return {(r[0], r[1]): tuple(r[2:]) for r in rows}

    def top_trials(self, study: StudyRow, k: int) -> list[tuple[dict[str, Any], float]]:
        """(params, best) of the k best trials, for the refine dialog."""
        order = "DESC" if study.objective_mode == "max" else "ASC"
        with self._lock:
            rows = self.conn.execute(f"SELECT params, best_value FROM trials WHERE study_id = ? AND best_value "
                                     f"IS NOT NULL AND {_VALID} ORDER BY best_value {order} LIMIT ?",
                                     (study.id, k)).fetchall()
        return [(json.loads(p or "{}"), v) for p, v in rows if math.isfinite(v)]

    def finished_results(self, study: StudyRow, statuses: Collection[str]) -> list[tuple[dict[str, Any], float]]:
        """What :func:`engine.search.boundary.finished_results` returns, read through this read-only connection."""
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
                                     f"IS NOT NULL AND {_VALID} ORDER BY id DESC LIMIT ?", (study.id, limit)).fetchall()
        return [(json.loads(p or "{}"), v) for p, v in rows if math.isfinite(v)]

    def scored_numbers(self, study: StudyRow, limit: int = 2000) -> list[tuple[int, dict[str, Any], float]]:
        """(number, params, best) of the latest ``limit`` trials with a finite objective, for the parameter view."""
        with self._lock:
            rows = self.conn.execute("SELECT number, params, best_value FROM trials WHERE study_id = ? AND "
                                     f"best_value IS NOT NULL AND status NOT IN {_sql_in(LIVE_STATUSES)} AND {_VALID} "
                                     "ORDER BY id DESC LIMIT ?", (study.id, limit)).fetchall()
        return [(n, json.loads(p or "{}"), v) for n, p, v in rows if math.isfinite(v)]

    def final_values(self, study: StudyRow, metrics: Sequence[str], limit: int = 2000
                     ) -> list[tuple[int, tuple[float, ...]]]:
        """(number, last value of each metric) of finished trials that reported them all: the Pareto input."""
        with self._lock:
            trials = self.conn.execute("SELECT id, number FROM trials WHERE study_id = ? AND status IN "
                                       f"{_sql_in(RANKED_STATUSES)} ORDER BY id DESC LIMIT ?",
                                       (study.id, limit)).fetchall()
            out = []
            for trial_id, number in trials:
                values = []
                for name in metrics:
                    row = self.conn.execute("SELECT value FROM metrics WHERE trial_id = ? AND name = ? "
                                            "ORDER BY step DESC LIMIT 1", (trial_id, name)).fetchone()
                    if row is None or row[0] is None or not math.isfinite(row[0]):
                        break
                    values.append(float(row[0]))
                else:
                    out.append((number, tuple(values)))
        return out


def _process_state(host: str | None, pid: int | None, create_time: float | None) -> str:
    """A running trial whose engine is dead: ``unwatched`` while its process lives here, else ``gone``.

    Trials on other hosts (Ray) do not outlive their engine.
    """
    return "unwatched" if host == HOSTNAME and process_alive(pid, create_time) else "gone"


def _after_prefix(message: str) -> str:
    """``trial 3 completed: never reported the objective acc`` -> ``never reported the objective acc``."""
    head, sep, rest = message.partition(": ")
    return rest if sep and head.startswith("trial ") else message


def _text(value: str | None) -> str:
    return value or ""


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _run_seconds(started: float | None, end: float | None, now: float) -> float | None:
    """How long a trial ran: to its end, to when it was last seen (gone), or to now."""
    return None if started is None else max(0.0, (end or now) - started)


def _parallel(study: StudyRow, plan: StudyPlan) -> int:
    return study.max_parallel or plan.max_parallel or 1


def _left_to_start(study: StudyRow, plan: StudyPlan, counts: Mapping[str, int], running: int) -> int:
    """Trials the budget still has to start (none while launching is paused)."""
    if plan.max_trials is None or study.launching_paused:
        return 0
    finished = sum(n for s, n in counts.items() if s not in UNFINISHED_STATUSES)
    return max(0, plan.max_trials - finished - running)


@dataclass(frozen=True)
class _RowContext:
    """What every row of one refresh shares."""

    metric: str
    mode: str
    max_step: float | None
    now: float
    alive: bool
    last_seen: float | None


def _last_seen(study: StudyRow, now: float) -> float | None:
    """When the study's engine was last known alive: its last heartbeat (it beats every few seconds)."""
    if study.engine_heartbeat is None:
        return None
    return min(now, study.engine_heartbeat + min(HEARTBEAT_STALE_S, 5.0))
