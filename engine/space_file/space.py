"""Parse and validate a space file into frozen dataclasses.

All user-facing validation of the space file lives here so that a bad file fails before anything
touches the database: every error is a :class:`SpaceError` naming the file, the key path
(``space.lr.low``) and the fix.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Mapping

import yaml

from ..errors import SpaceError
from ..flags.health import parse_health
from ..gpus.gpu_memory import AUTO, parse_memory
from ..outputs.notify import parse_notify
from ..reading.metric_files import parse_metric_files
from ..reading.metricline import expand_number
from .conditions import check_command, check_conditions, parse_when, render_command
from .names import NAME_FIX, name_problem
from .param import BUILTIN_PLACEHOLDERS, PLACEHOLDER
from .param import Param, format_value  # noqa: F401  # both re-exported: the space's vocabulary
from .yamlfile import YamlProblem, load_yaml

PARAM_TYPES = ("loguniform", "uniform", "int", "choice")
ALGORITHMS = ("random", "grid", "tpe")
SCHEDULERS = ("fifo", "asha", "hyperband", "median")
EXECUTORS = ("local", "ray")
MAX_GRID_POINTS = 1_000_000  # per parameter: a grid axis is held in memory, and nobody runs more trials

TOP_KEYS = ("name", "command", "workdir", "objective", "search", "budget", "resources", "space",
            "metrics", "scheduler", "health", "executor", "logs", "parent", "notify")


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str  # "max" | "min"

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b`` (NaN is never better)."""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a > b if self.mode == "max" else a < b


@dataclass(frozen=True)
class Search:
    algorithm: str = "random"
    seed: int | None = None
    warm_start: tuple[str, ...] = ()  # studies (same database) whose finished trials the sampler learns first


@dataclass(frozen=True)
class Budget:
    max_trials: int
    max_parallel: int
    max_time_s: float | None = None
    patience: int | None = None
    failure_streak: int = 5


@dataclass(frozen=True)
class Resources:
    gpus_per_trial: float = 0.0
    gpus: tuple[int, ...] | None = None
    avoid_busy: bool = True
    busy_util_percent: float = 50.0
    busy_memory_percent: float = 50.0
    cpus_per_trial: float = 1.0
    gpu_memory: int | str | None = None  # bytes per trial, "auto" (learned from the study), None: by fraction
    on_oom: str = "retry_alone"  # a trial out of GPU memory while sharing: "retry_alone" once, or "fail"


@dataclass(frozen=True)
class SchedulerSpec:
    type: str = "fifo"
    resource: str = "epoch"
    min_resource: float = 1
    max_resource: float | None = None
    reduction_factor: float = 3
    grace_period: float = 1
    min_trials: int = 3


@dataclass(frozen=True)
class ExecutorSpec:
    type: str = "local"
    address: str | None = None


@dataclass(frozen=True)
class LogSpec:
    max_bytes: int = 64 * 1024 * 1024
    max_line_bytes: int = 64 * 1024


@dataclass(frozen=True)
class Space:
    name: str
    command: tuple[str, ...]
    workdir: Path
    objective: Objective
    search: Search
    budget: Budget
    resources: Resources
    params: tuple[Param, ...]
    scheduler: SchedulerSpec
    executor: ExecutorSpec
    logs: LogSpec
    metric_regex: tuple[tuple[str, str], ...] = ()
    metric_files: Any = None  # engine.reading.metric_files.MetricFilesSpec: csv / tensorboard sources, or None
    health: Any = None
    parent: str | None = None
    source_file: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    objectives: tuple[Objective, ...] = ()  # all of them; ``objective`` is the first (schedulers decide on it)
    notify: Any = None  # engine.outputs.notify.NotifySpec: the command run on study events, or None

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


class _Reader:
    """Walks the YAML mapping, remembering the file so every error can name it."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, problem: str, fix: str = "") -> SpaceError:
        return SpaceError(self.file, key, problem, fix)

    def mapping(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {_show(value)}", f"write {key}: {{key: value, ...}}")
        return value

    def only_keys(self, value: dict, allowed: tuple[str, ...], key: str) -> None:
        for k in value:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), allowed, n=1)
                fix = f"did you mean {close[0]!r}?" if close else "allowed keys: " + ", ".join(allowed)
                raise self.fail(_join(key, str(k)), "unknown key", fix)

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool):
            raise self.fail(key, f"expected a number, got {_show(value)}", "write a number such as 0.1 or 1e-3")
        if isinstance(value, (int, float)):
            result = float(value)
        elif isinstance(value, str):
            try:
                result = float(value.strip())  # PyYAML reads 1e-5 as a string
            except ValueError:
                raise self.fail(key, f"expected a number, got {_show(value)}", "write a number such as 0.1 or 1e-3") from None
        else:
            raise self.fail(key, f"expected a number, got {_show(value)}", "write a number such as 0.1 or 1e-3")
        if not math.isfinite(result):
            raise self.fail(key, f"expected a finite number, got {_show(value)}", "write a finite number")
        return result

    def integer(self, value: Any, key: str, minimum: int | None = None) -> int:
        number = self.number(value, key)
        if number != int(number):
            raise self.fail(key, f"expected a whole number, got {_show(value)}", f"write e.g. {int(number)}")
        if minimum is not None and number < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {_show(value)}", f"write a value >= {minimum}")
        return int(number)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_show(value)}", "write true or false")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {_show(value)}", f"write {key}: some-text")
        return value

    def choice(self, value: Any, key: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1)
            fix = f"did you mean {close[0]!r}?" if close else "use one of " + ", ".join(allowed)
            raise self.fail(key, f"unknown value {_show(value)}", fix)
        return value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict, _SHORT_REPR.maxtuple = 2, 4, 4, 4
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 60


def _show(value: Any) -> str:
    """A value as an error message shows it: bounded, whatever its size (a shared alias structure
    can stand for billions of values; a plain ``repr`` would build all of them)."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_duration(text: Any, reader: _Reader, key: str) -> float:
    """Seconds from ``90s``, ``30m``, ``2h``, ``1h30m`` or a bare number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?"
                             r"\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*", str(text))
        if not match or not any(match.groups()):
            raise reader.fail(key, f"cannot read duration {_show(text)}", "write e.g. 90s, 30m or 2h")
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    if seconds <= 0:
        raise reader.fail(key, f"duration must be positive, got {_show(text)}", "write e.g. 90s, 30m or 2h")
    return seconds


def load_space(path: str | Path) -> Space:
    """Read and validate a space file; raises SpaceError with a one-line message."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(file, "", "file not found", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(file, "", f"cannot read file ({exc.__class__.__name__})", "check the path and permissions") from None
    try:
        data = load_yaml(text)
    except YamlProblem as exc:
        where = f" at line {exc.line}" if exc.line else ""
        fix = "write each key once" if "duplicate" in exc.problem else "use fewer aliases (*name) or write the values out"
        raise SpaceError(file, "", f"refused YAML{where}: {exc.problem}", fix) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SpaceError(file, "", f"unreadable YAML{where}: {problem}", "fix the YAML syntax") from None
    return parse_space(data, file, base_dir=path.resolve().parent)


def parse_space(data: Any, file: str, base_dir: Path) -> Space:
    """Validate an already-loaded mapping (``load_space`` without the file reading)."""
    r = _Reader(file)
    if not isinstance(data, dict):
        raise r.fail("", f"expected a mapping at the top level, got {_show(data)}", "start with `name: my-study`")
    r.only_keys(data, TOP_KEYS, "")
    for required in ("name", "command", "objective", "budget", "space"):
        if required not in data:
            raise r.fail(required, "missing", f"add `{required}:` (see sample_spaces/quick.yaml)")

    name = r.string(data["name"], "name").strip()
    problem = name_problem(name)
    if problem:
        raise r.fail("name", problem, NAME_FIX)

    objectives = _objectives(r, data["objective"])
    objective = objectives[0]
    search = _search(r, data.get("search"))

    budget = _budget(r, data["budget"])
    params = _params(r, data["space"])
    scheduler = _scheduler(r, data.get("scheduler"))
    resources = _resources(r, data.get("resources"))
    executor = _executor(r, data.get("executor"))
    logs = _logs(r, data.get("logs"))
    metric_regex = _metrics(r, data.get("metrics"))
    command = _command(r, data["command"], params, scheduler)

    workdir_raw = data.get("workdir", ".")
    workdir = (base_dir / r.string(str(workdir_raw), "workdir")).resolve()
    if not workdir.is_dir():
        raise r.fail("workdir", f"folder {str(workdir)!r} does not exist", "fix the path (relative to the space file's folder)")

    health = parse_health(data.get("health"), r.fail)
    parent = r.string(data["parent"], "parent") if data.get("parent") is not None else None
    notify = parse_notify(data.get("notify"), r.fail)
    metric_files = parse_metric_files(data.get("metrics"), r.fail, {p.name for p in params})

    return Space(name=name, command=command, workdir=workdir, objective=objective, search=search,
                 budget=budget, resources=resources, params=params, scheduler=scheduler, executor=executor,
                 logs=logs, metric_regex=metric_regex, health=health, parent=parent, source_file=file,
                 raw=data, objectives=objectives, notify=notify, metric_files=metric_files)


def _objective(r: _Reader, raw: Any, key: str) -> Objective:
    raw = r.mapping(raw, key)
    r.only_keys(raw, ("metric", "mode"), key)
    if "metric" not in raw:
        raise r.fail(f"{key}.metric", "missing", "add objective: {metric: val_acc, mode: max}")
    return Objective(metric=r.string(raw["metric"], f"{key}.metric"),
                     mode=r.choice(raw.get("mode", "max"), f"{key}.mode", ("max", "min")))


def _objectives(r: _Reader, raw: Any) -> tuple[Objective, ...]:
    """One mapping (the usual study) or a list of them (several objectives; the first drives early stopping)."""
    if not isinstance(raw, list):
        return (_objective(r, raw, "objective"),)
    if not raw:
        raise r.fail("objective", "empty list", "write objective: [{metric: val_acc, mode: max}, {metric: size_mb, mode: min}]")
    objectives = tuple(_objective(r, item, f"objective[{i}]") for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, objective in enumerate(objectives):
        if objective.metric in seen:
            raise r.fail(f"objective[{i}].metric", f"{objective.metric!r} is listed twice", "list each metric once")
        seen.add(objective.metric)
    return objectives


def _search(r: _Reader, raw: Any) -> Search:
    raw = r.mapping(raw or {}, "search")
    r.only_keys(raw, ("algorithm", "seed", "warm_start"), "search")
    warm = raw.get("warm_start") or []
    if isinstance(warm, str):
        warm = [warm]
    if not isinstance(warm, list):
        raise r.fail("search.warm_start", f"expected a list of study names, got {_show(warm)}",
                     "write warm_start: [earlier-study]")
    return Search(
        algorithm=r.choice(raw.get("algorithm", "random"), "search.algorithm", ALGORITHMS),
        seed=r.integer(raw["seed"], "search.seed") if raw.get("seed") is not None else None,
        warm_start=tuple(r.string(w, f"search.warm_start[{i}]").strip() for i, w in enumerate(warm)),
    )


def _budget(r: _Reader, raw: Any) -> Budget:
    raw = r.mapping(raw, "budget")
    r.only_keys(raw, ("max_trials", "max_parallel", "max_time", "patience", "failure_streak"), "budget")
    for required in ("max_trials", "max_parallel"):
        if required not in raw:
            raise r.fail(f"budget.{required}", "missing", f"add budget: {{{required}: N}}")
    return Budget(
        max_trials=r.integer(raw["max_trials"], "budget.max_trials", minimum=1),
        max_parallel=r.integer(raw["max_parallel"], "budget.max_parallel", minimum=1),
        max_time_s=parse_duration(raw["max_time"], r, "budget.max_time") if raw.get("max_time") is not None else None,
        patience=r.integer(raw["patience"], "budget.patience", minimum=1) if raw.get("patience") is not None else None,
        failure_streak=r.integer(raw.get("failure_streak", 5), "budget.failure_streak", minimum=1),
    )


def _params(r: _Reader, raw: Any) -> tuple[Param, ...]:
    raw = r.mapping(raw, "space")
    if not raw:
        raise r.fail("space", "no parameters", "add at least one, e.g. lr: {type: loguniform, low: 1e-5, high: 1}")
    params = []
    for name, spec in raw.items():
        key = f"space.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise r.fail(key, f"{_show(name)} is not a usable parameter name", "use letters, digits and '_' (no leading digit)")
        if name in BUILTIN_PLACEHOLDERS:
            raise r.fail(key, f"{_show(name)} is reserved for the engine", "rename the parameter")
        spec = r.mapping(spec, key)
        if "type" not in spec:
            raise r.fail(f"{key}.type", "missing", "add type: loguniform | uniform | int | choice")
        kind = r.choice(spec["type"], f"{key}.type", PARAM_TYPES)
        when, spec = _when(r, spec, key)
        if kind == "choice":
            params.append(_choice_param(r, name, spec, key, when))
            continue
        allowed = ("type", "low", "high", "log", "step", "points")
        r.only_keys(spec, allowed, key)
        low, high, log = _numeric_range(r, spec, key, kind)
        if kind == "int":
            low_i, high_i = r.integer(spec["low"], f"{key}.low"), r.integer(spec["high"], f"{key}.high")
            low, high = float(low_i), float(high_i)
        step = None
        if spec.get("step") is not None:
            if kind == "int":
                raise r.fail(f"{key}.step", "int parameters are already whole numbers", "remove step")
            step = r.number(spec["step"], f"{key}.step")
            if step <= 0 or step > high - low:
                raise r.fail(f"{key}.step", f"step {_fmt(step)} does not fit in [{_fmt(low)}, {_fmt(high)}]",
                             "use a positive step smaller than high - low")
        points = _grid_points(r, spec, key)
        params.append(Param(name=name, type=kind, low=low, high=high, log=log, step=step, points=points, when=when))
    check_conditions(params, r.fail)
    return tuple(params)


def _numeric_range(r: _Reader, spec: dict, key: str, kind: str) -> tuple[float, float, bool]:
    """(low, high, log) of a numeric parameter: both bounds given, ordered, and a range a float can hold."""
    for bound in ("low", "high"):
        if bound not in spec:
            raise r.fail(f"{key}.{bound}", "missing", f"add {bound}: NUMBER")
    low, high = r.number(spec["low"], f"{key}.low"), r.number(spec["high"], f"{key}.high")
    log = kind == "loguniform" or (r.boolean(spec.get("log", False), f"{key}.log") if "log" in spec else False)
    if kind == "loguniform" and "log" in spec and not r.boolean(spec["log"], f"{key}.log"):
        raise r.fail(f"{key}.log", "loguniform is always log", "remove log or use type: uniform")
    if low >= high:
        raise r.fail(f"{key}.low", f"low ({_fmt(low)}) must be below high ({_fmt(high)})", "swap or fix the bounds")
    if not math.isfinite(high - low):  # low + u * (high - low) would sample inf
        raise r.fail(f"{key}.high", f"the range [{_fmt(low)}, {_fmt(high)}] is wider than a float can hold",
                     "narrow the bounds, or use type: loguniform for a range over many orders of magnitude")
    if log and low <= 0:
        raise r.fail(f"{key}.low", f"log scale needs low > 0, got {_fmt(low)}", "use a small positive low such as 1e-6")
    return low, high, log


def _when(r: _Reader, spec: dict, key: str) -> tuple[tuple[tuple[str, tuple[Any, ...]], ...], dict]:
    """The parameter's ``when:`` condition (engine/space_file/conditions.py), and its spec without it."""
    if "when" not in spec:
        return (), spec
    return parse_when(spec["when"], f"{key}.when", r.fail), {k: v for k, v in spec.items() if k != "when"}


def _choice_param(r: _Reader, name: str, spec: dict, key: str, when: tuple) -> Param:
    r.only_keys(spec, ("type", "values"), key)
    values = spec.get("values")
    if not isinstance(values, list) or not values:
        raise r.fail(f"{key}.values", "empty or missing choice list", "give at least one value: values: [32, 64]")
    for i, v in enumerate(values):
        if isinstance(v, (dict, list)) or v is None:
            raise r.fail(f"{key}.values[{i}]", f"unsupported value {_show(v)}", "use numbers, strings or booleans")
    return Param(name=name, type="choice", values=tuple(values), when=when)


def _grid_points(r: _Reader, spec: dict, key: str) -> int:
    """``points:`` for grid search; an axis is held in memory, so an impossible one is refused now."""
    points = r.integer(spec.get("points", 3), f"{key}.points", minimum=1)
    if points > MAX_GRID_POINTS:
        raise r.fail(f"{key}.points", f"{points} grid points cannot be enumerated",
                     f"use at most {MAX_GRID_POINTS:,} points, or search.algorithm: random")
    return points


def _scheduler(r: _Reader, raw: Any) -> SchedulerSpec:
    if raw is None:
        return SchedulerSpec()
    raw = r.mapping(raw, "scheduler")
    r.only_keys(raw, ("type", "resource", "min_resource", "max_resource", "reduction_factor", "grace_period",
                      "min_trials"), "scheduler")
    kind = r.choice(raw.get("type", "fifo"), "scheduler.type", SCHEDULERS)
    min_resource = r.number(raw.get("min_resource", 1), "scheduler.min_resource")
    max_resource = r.number(raw["max_resource"], "scheduler.max_resource") if raw.get("max_resource") is not None else None
    if min_resource <= 0:
        raise r.fail("scheduler.min_resource", "must be positive", "write min_resource: 1")
    if kind in ("asha", "hyperband") and max_resource is None:
        raise r.fail("scheduler.max_resource", f"{kind} needs max_resource", "add max_resource: 27 (epochs)")
    if max_resource is not None and max_resource < min_resource:
        raise r.fail("scheduler.max_resource", f"max_resource ({_fmt(max_resource)}) is below min_resource ({_fmt(min_resource)})",
                     "raise max_resource or lower min_resource")
    eta = r.number(raw.get("reduction_factor", 3), "scheduler.reduction_factor")
    if eta < 2:
        raise r.fail("scheduler.reduction_factor", f"must be at least 2, got {_fmt(eta)}", "write reduction_factor: 3")
    return SchedulerSpec(
        type=kind,
        resource=r.string(raw.get("resource", "epoch"), "scheduler.resource"),
        min_resource=min_resource,
        max_resource=max_resource,
        reduction_factor=eta,
        grace_period=r.number(raw.get("grace_period", min_resource), "scheduler.grace_period"),
        min_trials=r.integer(raw.get("min_trials", 3), "scheduler.min_trials", minimum=1),
    )


def _resources(r: _Reader, raw: Any) -> Resources:
    if raw is None:
        return Resources()
    raw = r.mapping(raw, "resources")
    r.only_keys(raw, ("gpus_per_trial", "gpus", "avoid_busy", "busy_util_percent", "busy_memory_percent",
                      "cpus_per_trial", "gpu_memory", "on_oom"), "resources")
    gpu_memory = _gpu_memory(r, raw)
    per_trial = r.number(raw.get("gpus_per_trial", 1 if gpu_memory is not None else 0), "resources.gpus_per_trial")
    if gpu_memory is not None and per_trial != 1:
        raise r.fail("resources.gpu_memory", f"packs trials of one GPU each, but gpus_per_trial is {_fmt(per_trial)}",
                     "remove gpus_per_trial (or set it to 1), or remove gpu_memory to share by fraction")
    if per_trial < 0 or (per_trial > 1 and per_trial != int(per_trial)):
        raise r.fail("resources.gpus_per_trial", f"{_fmt(per_trial)} GPUs per trial cannot be placed",
                     "use 0 (CPU), a fraction below 1 (0.5 shares a GPU) or a whole number")
    gpus = None
    if raw.get("gpus") is not None:
        if not isinstance(raw["gpus"], list) or not raw["gpus"]:
            raise r.fail("resources.gpus", "expected a non-empty list of GPU indices", "write gpus: [0, 2, 3]")
        gpus = tuple(r.integer(g, f"resources.gpus[{i}]", minimum=0) for i, g in enumerate(raw["gpus"]))
    return Resources(
        gpus_per_trial=per_trial,
        gpus=gpus,
        avoid_busy=r.boolean(raw.get("avoid_busy", True), "resources.avoid_busy"),
        busy_util_percent=r.number(raw.get("busy_util_percent", 50), "resources.busy_util_percent"),
        busy_memory_percent=r.number(raw.get("busy_memory_percent", 50), "resources.busy_memory_percent"),
        cpus_per_trial=r.number(raw.get("cpus_per_trial", 1), "resources.cpus_per_trial"),
        gpu_memory=gpu_memory,
        on_oom=r.choice(raw.get("on_oom", "retry_alone"), "resources.on_oom", ("retry_alone", "fail")),
    )


def _gpu_memory(r: _Reader, raw: dict) -> int | str | None:
    """``gpu_memory: 12GiB`` (bytes), ``auto``, or absent; units as :func:`engine.gpus.gpu_memory.parse_memory`."""
    value = raw.get("gpu_memory")
    if value is None or value == AUTO:
        return value
    try:
        return parse_memory(value)
    except ValueError as exc:
        raise r.fail("resources.gpu_memory", str(exc), "write gpu_memory: 12GiB (or 12GB, 12000MiB, auto)") from None


def _executor(r: _Reader, raw: Any) -> ExecutorSpec:
    if raw is None:
        return ExecutorSpec()
    raw = r.mapping(raw, "executor")
    r.only_keys(raw, ("type", "address"), "executor")
    address = raw.get("address")
    return ExecutorSpec(type=r.choice(raw.get("type", "local"), "executor.type", EXECUTORS),
                        address=r.string(str(address), "executor.address") if address is not None else None)


def _logs(r: _Reader, raw: Any) -> LogSpec:
    if raw is None:
        return LogSpec()
    raw = r.mapping(raw, "logs")
    r.only_keys(raw, ("max_mb", "max_line_kb"), "logs")
    max_mb = r.number(raw.get("max_mb", 64), "logs.max_mb")
    max_line_kb = r.number(raw.get("max_line_kb", 64), "logs.max_line_kb")
    # At 0 or below every line would be cut: no metric recorded, yet the study would "complete".
    if max_line_kb < 1:
        raise r.fail("logs.max_line_kb", f"must be at least 1, got {_fmt(max_line_kb)}",
                     "write max_line_kb: 64 (the longest line kept, in KiB)")
    if max_mb <= 0:
        raise r.fail("logs.max_mb", f"must be positive, got {_fmt(max_mb)}", "write max_mb: 64")
    return LogSpec(max_bytes=int(max_mb * 1024 * 1024), max_line_bytes=int(max_line_kb * 1024))


def _metrics(r: _Reader, raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    raw = r.mapping(raw, "metrics")
    r.only_keys(raw, ("regex", "csv", "tensorboard", "step"), "metrics")
    patterns = r.mapping(raw.get("regex", {}), "metrics.regex")
    result = []
    for metric, pattern in patterns.items():
        key = f"metrics.regex.{metric}"
        pattern = r.string(pattern, key)
        try:
            compiled = re.compile(expand_number(pattern))
        except re.error as exc:
            raise r.fail(key, f"invalid regular expression ({exc})", "fix the pattern") from None
        if compiled.groups < 1:
            raise r.fail(key, "the pattern captures nothing", "mark the number with {number}: 'val acc: {number}'")
        result.append((str(metric), pattern))
    return tuple(result)


def _command(r: _Reader, raw: Any, params: tuple[Param, ...], scheduler: SchedulerSpec) -> tuple[str, ...]:
    """The command as argv, refused unless every placeholder names something and every
    parameter reaches the trial (a parameter left out would be searched but never used)."""
    argv = _command_argv(r, raw)
    used = _placeholders_used(r, argv, params, scheduler)
    for p in params:
        if p.name not in used:
            raise r.fail(f"space.{p.name}", f"parameter never reaches the trial: no {{{p.name}}} in command",
                         f"add e.g. --{p.name.replace('_', '-')} {{{p.name}}} to command")
    check_command(argv, params, r.fail)
    return tuple(argv)


def _command_argv(r: _Reader, raw: Any) -> list[str]:
    """A command string split like a shell would, or a list of scalar arguments; never empty."""
    if isinstance(raw, str):
        try:
            argv = shlex.split(raw)
        except ValueError as exc:
            raise r.fail("command", f"cannot split the command line ({exc})", "balance the quotes") from None
    elif isinstance(raw, list) and raw:
        argv = []
        for i, item in enumerate(raw):
            if isinstance(item, (dict, list)) or item is None:
                raise r.fail(f"command[{i}]", f"expected a string, got {_show(item)}", "quote the argument")
            argv.append(str(item))
    else:
        raise r.fail("command", f"expected a string or a list, got {_show(raw)}", "write command: python train.py --lr {lr}")
    if not argv:
        raise r.fail("command", "empty command", "write command: python train.py --lr {lr}")
    return argv


def _placeholders_used(r: _Reader, argv: list[str], params: tuple[Param, ...],
                       scheduler: SchedulerSpec) -> set[str]:
    """Every ``{name}`` in the command, refused (with the closest name as the fix) when it names
    no parameter or built-in, since it would otherwise reach the trial as literal text."""
    names = {p.name for p in params}
    used: set[str] = set()
    for arg in argv:
        for placeholder in PLACEHOLDER.findall(arg):
            if placeholder not in names and placeholder not in BUILTIN_PLACEHOLDERS:
                close = difflib.get_close_matches(placeholder, sorted(names | set(BUILTIN_PLACEHOLDERS)), n=1)
                fix = f"did you mean {{{close[0]}}}?" if close else f"add {placeholder} under space: or remove {{{placeholder}}}"
                raise r.fail("command", f"placeholder {{{placeholder}}} names no parameter", fix)
            if placeholder == "max_resource" and scheduler.max_resource is None:
                raise r.fail("command", "placeholder {max_resource} needs scheduler.max_resource",
                             "add scheduler: {max_resource: 27}")
            used.add(placeholder)
    return used


def _fmt(x: float) -> str:
    return f"{x:g}"


def render_argv(command: tuple[str, ...], values: Mapping[str, Any], inactive: Collection[str] = ()) -> list[str]:
    """Substitute ``{identifier}`` placeholders per argument; other braces pass through.

    Each argument stays one argument whatever the value holds (spaces, quotes, ``;``),
    because nothing is ever split or handed to a shell after substitution. Arguments holding a
    placeholder of an ``inactive`` (conditional, switched off) parameter are left out, with the
    option flag before a bare ``{name}`` (see :func:`engine.space_file.conditions.render_command`).
    """
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        return format_value(values[key]) if key in values else match.group(0)

    if not inactive:
        return [PLACEHOLDER.sub(replace, arg) for arg in command]
    return render_command(command, values, inactive, lambda arg: PLACEHOLDER.sub(replace, arg))
