"""Coarse-to-fine stages: write the next stage's space file from a study's best trials.

The practitioners' recipe is: search wide and cheap, then narrow the ranges around the best
configurations and spend more on each. ``hpotui refine`` and the TUI's refine dialog both call
this module; the pure part (:func:`param_spans`, :func:`refine_space`) takes a parsed space and
(params, objective) pairs, :func:`refine_study` adds the store and the file.

How each key changes (the file keeps every other key of the original, in order):

* numeric ranges: narrowed to the span of the top-K trials, in log space for log parameters,
  plus a margin on each side of ``max(10 % of that span, 5 % of the old range)`` (so one trial,
  or K trials on one value, still leave a range), never past the old bounds. Bounds are rounded
  outward to 3 significant digits; ``int`` stays whole (floor / ceil), ``step`` bounds snap
  outward to the old step grid.
* a side with a boundary warning (:mod:`engine.search.boundary`) is **widened** instead: log
  parameters by one decade past the old bound (x10 or /10), linear ones by half the old width.
  Widening stops at 0 for a range that started at or above 0, and at 1 for a range inside
  [0, 1] (dropout, momentum): those are the parameter's own limits (and a range already at such
  a limit gets no warning on that side, so it is narrowed as usual).
* ``choice``: reduced to the values the top-K used, in the original order.
* budget, with ``F = resource_scale``: ``scheduler.max_resource`` and any literal
  ``--epochs N`` in the command (also ``--epochs=N``, ``--num-epochs``, ``--max-epochs``,
  ``--n-epochs`` and the ``_`` spellings) are multiplied by F (rounded, at least 1 and at least
  ``min_resource``); ``budget.max_trials`` is divided by ``max(2, F)`` (rounded up): halved at
  equal cost per trial, and never more total epochs than the stage it refines.
  ``min_resource``, ``grace_period``, ``max_time`` and ``max_parallel`` are kept.
* ``parent: <study name>`` (``hpotui launch`` links the new study to it) and
  ``name: <base>-stage<N>``.
"""

from __future__ import annotations

import copy
import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..database.store import default_db_path
from ..errors import UserError
from ..space_file.conditions import dependency_order, render_command
from ..space_file.names import MAX_NAME_LENGTH
from ..space_file.space import Param, Space, parse_space
from .boundary import (
    MIN_TRIALS,
    BoundaryWarning,
    Result,
    boundary_warnings,
    finished_results,
    format_bound,
    rank,
    top_count,
)

SPAN_MARGIN = 0.10  # of the top-K span, each side
RANGE_MARGIN = 0.05  # of the old range, each side: the floor that keeps one-trial spans open
WIDEN_LOG_FACTOR = 10.0
WIDEN_LINEAR_FRACTION = 0.5
EPOCH_FLAG = re.compile(r"^(--?(?:num[-_]|max[-_]|n[-_])?epochs?)(?:=(\d+))?$")
STAGE_SUFFIX = re.compile(r"^(.*)-stage(\d+)$")


@dataclass(frozen=True)
class ParamSpan:
    """What the refine dialog shows for one parameter, and what refine proposes for it."""

    param: Param
    points: tuple[tuple[Any, float], ...]  # (value, objective) of every ranked trial: the scatter
    top_values: tuple[Any, ...]  # values the top-K trials used, best first
    span: tuple[float, float] | None  # min and max of the numeric top values
    warnings: tuple[BoundaryWarning, ...]
    proposed: dict[str, Any]  # new spec keys: {"low", "high"} or {"values"}
    note: str  # how ``proposed`` came about, in words


@dataclass(frozen=True)
class Change:
    key: str  # "space.lr", "budget.max_trials", "command", ...
    before: str
    after: str
    note: str = ""

    @property
    def text(self) -> str:
        arrow = f"{self.before} -> {self.after}" if self.before != self.after else f"{self.after} (kept)"
        return f"{self.key}: {arrow}" + (f"  ({self.note})" if self.note else "")


@dataclass(frozen=True)
class RefineResult:
    path: Path
    space_yaml: str
    name: str
    changes: tuple[Change, ...]
    warnings: tuple[str, ...]
    summary: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


# -- numeric helpers ----------------------------------------------------------------------------------
def _forward(param: Param, x: float) -> float:
    return math.log(x) if param.log else x


def _back(param: Param, t: float) -> float:
    return math.exp(t) if param.log else t


def _round_out(x: float, up: bool) -> float:
    """Round to 3 significant digits away from the inside of the range (so it never shrinks)."""
    if x == 0 or not math.isfinite(x):
        return x
    q = 10.0 ** (math.floor(math.log10(abs(x))) - 2)
    k = math.ceil(x / q - 1e-9) if up else math.floor(x / q + 1e-9)
    return float(f"{k * q:.3g}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (choice values may mix them)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _propose_numeric(param: Param, values: Sequence[float], sides: set[str]) -> tuple[dict[str, Any], str]:
    """The new ``low``/``high`` for a numeric parameter and a note saying how they came about."""
    low0, high0 = float(param.low), float(param.high)  # type: ignore[arg-type]
    target = _target_range(param, values, sides, low0, high0)
    if target is None:
        return {"low": param.low, "high": param.high}, "no top trial used it: kept"
    lo, hi = _snap(param, *target, low0, high0)
    if "lower" not in sides:
        lo = max(lo, low0)
    if "upper" not in sides:
        hi = min(hi, high0)
    lo, hi = _keep_open(param, lo, hi, low0, high0, sides)
    note = _widen_note(sides, lo, hi, low0, high0)
    if param.type == "int":
        return {"low": int(lo), "high": int(hi)}, note
    return {"low": lo, "high": hi}, note


def _target_range(param: Param, values: Sequence[float], sides: set[str], low0: float,
                  high0: float) -> tuple[float, float] | None:
    """The top-K span plus its margin (in log space for log parameters), widened past the old
    bound on each warned side but never past the parameter's own limits (0, and 1 for a range
    inside [0, 1]); None when no top trial used a usable value, so the old range is kept."""
    t0, t1 = _forward(param, low0), _forward(param, high0)
    ts = [_forward(param, float(v)) for v in values if _is_number(v) and (not param.log or v > 0)]
    if not ts:
        return None
    lo_t, hi_t = _widened(param, min(ts), max(ts), t0, t1, sides)
    lo, hi = _back(param, lo_t), _back(param, hi_t)
    if not param.log and low0 >= 0:  # widening stops at the parameter's own limits
        lo = max(lo, 0.0)
        if high0 <= 1:
            hi = min(hi, 1.0)
    return lo, hi


def _widened(param: Param, a: float, b: float, t0: float, t1: float, sides: set[str]) -> tuple[float, float]:
    """In the parameter's own scale (log or linear): the top span ``a..b`` plus its margin inside
    the old range ``t0..t1``, except that a warned side moves a decade (log) or half the old
    width (linear) past the old bound, because the best trials sat against it."""
    width = t1 - t0
    margin = max(SPAN_MARGIN * (b - a), RANGE_MARGIN * width)
    lo_t, hi_t = max(a - margin, t0), min(b + margin, t1)
    extension = math.log(WIDEN_LOG_FACTOR) if param.log else WIDEN_LINEAR_FRACTION * width
    if "lower" in sides:
        lo_t = t0 - extension
    if "upper" in sides:
        hi_t = t1 + extension
    return lo_t, hi_t


def _snap(param: Param, lo: float, hi: float, low0: float, high0: float) -> tuple[float, float]:
    """Bounds the parser accepts and a reader can read: whole for ``int``, on the old step grid
    for ``step``, else 3 significant digits; always rounded outward so the range never shrinks."""
    if param.type == "int":
        lo, hi = float(math.floor(lo + 1e-9)), float(math.ceil(hi - 1e-9))
        if param.log:
            lo = max(lo, 1.0)
    elif param.step is not None:
        step = param.step
        lo = round(low0 + math.floor((lo - low0) / step + 1e-9) * step, 12)
        hi = round(low0 + math.ceil((hi - low0) / step - 1e-9) * step, 12)
        while (param.log and lo <= 0) or lo < 0 <= low0:  # snapping must not undo the limits above
            lo = round(lo + step, 12)
        while 0 <= low0 and high0 <= 1 < hi:
            hi = round(hi - step, 12)
    else:
        lo, hi = _round_out(lo, up=False), _round_out(hi, up=True)
    return lo, hi


def _widen_note(sides: set[str], lo: float, hi: float, low0: float, high0: float) -> str:
    """For each warned side, whether the range really moved past the old bound or hit a limit,
    so the user knows a boundary warning was acted on (or why it could not be)."""
    notes = []
    for side in sorted(sides, reverse=True):
        moved = hi > high0 if side == "upper" else lo < low0
        word = "upward" if side == "upper" else "downward"
        notes.append(f"widened {word}" if moved else f"cannot widen {word}: the parameter's own limit")
    return "; ".join(notes)


def _keep_open(param: Param, lo: float, hi: float, low0: float, high0: float, sides: set[str]) -> tuple[float, float]:
    """The parser needs low < high (and step <= high - low): open a collapsed range by one unit."""
    unit = 1.0 if param.type == "int" else param.step
    if unit is None:
        return lo, hi
    while hi - lo < unit - 1e-12:
        if hi + unit <= high0 + 1e-12 or "upper" in sides:
            hi = round(hi + unit, 12)
        elif lo - unit >= low0 - 1e-12:
            lo = round(lo - unit, 12)
        else:
            return low0, high0
    return lo, hi


# -- the pure part: spans and the new mapping ---------------------------------------------------------
def param_spans(space: Space, results: Sequence[Result], top: int, *,
                min_trials: int = MIN_TRIALS) -> list[ParamSpan]:
    """Per parameter: the scatter, the top-K span, boundary warnings and the proposed new range."""
    ranked = rank(results, space.objective.mode)
    warnings = boundary_warnings(space.params, results, space.objective.mode, min_trials=min_trials, top=top)
    return [_param_span(param, ranked, warnings, top) for param in space.params]


def _param_span(param: Param, ranked: Sequence[Result], warnings: Sequence[BoundaryWarning],
                top: int) -> ParamSpan:
    """One parameter's span, judged only on the trials where it was active (a conditional one
    is absent from the others, which must not count as its values)."""
    points, top_values, k = _active_values(param, ranked, top)
    mine = tuple(w for w in warnings if w.param == param.name)
    numbers = [float(v) for v in top_values if _is_number(v)]
    span = (min(numbers), max(numbers)) if numbers and param.is_numeric else None
    if param.is_numeric:
        proposed, note = _propose_numeric(param, numbers, {w.side for w in mine})
    else:
        proposed, note = _propose_choice(param, top_values, k)
    return ParamSpan(param, points, top_values, span, mine, proposed, note)


def _active_values(param: Param, ranked: Sequence[Result],
                   top: int) -> tuple[tuple[tuple[Any, float], ...], tuple[Any, ...], int]:
    """(value, objective) of every ranked trial where ``param`` was active, the values of the
    top K of those (best first), and K."""
    active = [r for r in ranked if param.name in r[0]]  # a conditional one: the trials where it was on
    k = top_count(len(active), top) if active else 0
    points = tuple((r[0][param.name], r[1]) for r in active)
    top_values = tuple(r[0][param.name] for r in active[:k])
    return points, top_values, k


def _propose_choice(param: Param, top_values: Sequence[Any], k: int) -> tuple[dict[str, Any], str]:
    """The choices the top-K used, in the file's order; all of them when none was used, so a
    stage never loses a parameter by accident."""
    kept = [v for v in param.values if any(_same(v, u) for u in top_values)] or list(param.values)
    note = f"the values the top {k} used" if len(kept) < len(param.values) else ""
    return {"values": kept}, note


def _describe(param: Param, spec: Mapping[str, Any]) -> str:
    if param.type == "choice":
        return "[" + ", ".join(str(v) for v in spec["values"]) + "]"
    return f"[{format_bound(float(spec['low']))}, {format_bound(float(spec['high']))}]"


def stage_name(parent: str, stage: int) -> str:
    """``digits`` -> ``digits-stage2``; ``digits-stage2`` -> ``digits-stage3`` (``stage`` is the new one)."""
    match = STAGE_SUFFIX.match(parent)
    suffix = f"-stage{stage}"
    base = (match.group(1) if match else parent)[:MAX_NAME_LENGTH - len(suffix) - 3]  # room for "-NN" too
    return f"{base}{suffix}"


def _scale_number(value: float, factor: float, floor: float = 1) -> int | float:
    scaled = value * factor
    if float(value) == int(value):
        return max(math.ceil(floor), round(scaled))
    return max(floor, round(scaled, 6))


def _scale_command(command: Any, factor: float) -> tuple[Any, list[tuple[str, str]]]:
    """Multiply literal epoch counts in the command; returns the new command and (before, after) pairs."""
    changed: list[tuple[str, str]] = []
    if isinstance(command, str):
        def replace(match: re.Match[str]) -> str:
            new = _scale_number(int(match.group(3)), factor)
            changed.append((match.group(0), f"{match.group(1)}{match.group(2)}{new}"))
            return f"{match.group(1)}{match.group(2)}{new}"

        pattern = r"(?<![\w-])(--?(?:num[-_]|max[-_]|n[-_])?epochs?)(=|\s+)(\d+)(?![\w.])"
        return re.sub(pattern, replace, command), changed
    argv = [str(a) for a in command]
    for i, arg in enumerate(argv):
        match = EPOCH_FLAG.match(arg)
        if not match:
            continue
        if match.group(2) is not None:
            new = f"{match.group(1)}={_scale_number(int(match.group(2)), factor)}"
            changed.append((arg, new))
            argv[i] = new
        elif i + 1 < len(argv) and argv[i + 1].isdigit():
            new = str(_scale_number(int(argv[i + 1]), factor))
            changed.append((f"{arg} {argv[i + 1]}", f"{arg} {new}"))
            argv[i + 1] = new
    return argv, changed


def refine_space(space: Space, results: Sequence[Result], top: int, resource_scale: float = 1.0, *,
                 bounds: Mapping[str, Any] | None = None, parent: str | None = None,
                 name: str | None = None, min_trials: int = MIN_TRIALS) -> tuple[dict[str, Any], list[Change]]:
    """The next stage's space mapping and what changed; ``bounds`` overrides the proposals.

    ``bounds`` maps a parameter name to ``(low, high)`` (numeric) or a list of values (choice),
    as the refine dialog edits them. ``parent`` defaults to ``space.name``; ``name`` to
    ``<parent>-stage2`` (or the next stage number when the parent already ends in ``-stageN``).
    """
    if not rank(results, space.objective.mode):
        raise UserError(f"study {parent or space.name!r}: no finished trial with a {space.objective.metric} value "
                        "yet; refine needs at least one")
    if resource_scale <= 0:
        raise UserError("resource scale must be positive; pass e.g. --resource-scale 3")
    parent = parent or space.name
    if name is None:
        match = STAGE_SUFFIX.match(parent)
        name = stage_name(parent, int(match.group(2)) + 1 if match else 2)
    raw = copy.deepcopy(dict(space.raw))
    changes = _refine_params(raw, space, results, top, bounds or {}, min_trials)
    changes.extend(_prune_conditions(raw, space))
    changes.extend(_warm_start_from_parent(raw, parent))
    if resource_scale != 1:
        changes.extend(_scale_resources(raw, resource_scale))
    changes.extend(_shrink_trials(raw, resource_scale))
    ordered = _named(raw, name, parent)
    changes.append(Change("name", space.name, name))
    changes.append(Change("parent", str(space.parent or "(none)"), parent))
    return ordered, changes


def _refine_params(raw: dict[str, Any], space: Space, results: Sequence[Result], top: int,
                   bounds: Mapping[str, Any], min_trials: int) -> list[Change]:
    """Write each parameter's proposed (or hand-set) range into ``raw["space"]``, keeping the
    spec's other keys (``log``, ``step``, ``when``), and describe each change."""
    changes: list[Change] = []
    new_specs = raw.setdefault("space", {})
    for span in param_spans(space, results, top, min_trials=min_trials):
        param = span.param
        proposed, note = dict(span.proposed), span.note
        override = bounds.get(param.name)
        if override is not None:
            proposed = _overridden(param, proposed, override)
            note = "set by hand"
        spec = dict(new_specs.get(param.name) or {})
        spec.update(proposed)
        new_specs[param.name] = spec
        changes.append(_param_change(span, proposed, note))
    return changes


def _overridden(param: Param, proposed: dict[str, Any], override: Any) -> dict[str, Any]:
    """The refine dialog's edit in place of the proposal; a numeric side left None keeps the
    proposal for that side, so the user can move one bound only."""
    if param.type == "choice":
        return {"values": list(override)}
    low, high = override  # either may be None: keep refine's proposal for that side
    low = proposed["low"] if low is None else low
    high = proposed["high"] if high is None else high
    return {"low": int(low), "high": int(high)} if param.type == "int" else {"low": float(low), "high": float(high)}


def _param_change(span: ParamSpan, proposed: Mapping[str, Any], note: str) -> Change:
    """``space.<name>: old -> new (note; top K span a..b)``: the evidence next to the decision."""
    param = span.param
    old = {"values": list(param.values)} if param.type == "choice" else {"low": param.low, "high": param.high}
    if span.span is not None and not note.startswith("set"):
        top_text = f"top {len(span.top_values)} span {format_bound(span.span[0])}..{format_bound(span.span[1])}"
        note = f"{note}; {top_text}" if note else top_text
    return Change(f"space.{param.name}", _describe(param, old), _describe(param, proposed), note)


def _shrink_trials(raw: dict[str, Any], resource_scale: float) -> list[Change]:
    """``budget.max_trials`` divided by ``max(2, F)``: longer trials, fewer of them, so the stage
    never costs more than the one it refines."""
    budget = raw.get("budget") or {}
    if not (isinstance(budget, dict) and budget.get("max_trials") is not None):
        return []
    old_trials = int(float(budget["max_trials"]))
    new_trials = max(1, math.ceil(old_trials / max(2.0, resource_scale)))
    raw["budget"] = dict(budget, max_trials=new_trials)
    return [Change("budget.max_trials", str(old_trials), str(new_trials),
                   f"divided by max(2, resource scale {resource_scale:g})")]


def _named(raw: dict[str, Any], name: str, parent: str) -> dict[str, Any]:
    """``raw`` in its original key order with the new ``name`` and ``parent: <parent>`` right
    after it (at the end when the file had no ``name``), so the file reads like the original."""
    ordered: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "parent":
            continue
        ordered[key] = name if key == "name" else value
        if key == "name":
            ordered["parent"] = parent
    ordered.setdefault("parent", parent)
    return ordered


def _prune_conditions(raw: dict[str, Any], space: Space) -> list[Change]:
    """``when:`` values the narrowed choices no longer hold are dropped; a parameter left with none goes.

    Without this the refined file would not parse (a ``when`` value must be one of the choices),
    and a parameter that can never be active would still ask for its placeholder.
    """
    specs = raw.get("space") or {}
    changes: list[Change] = []
    gone: set[str] = set()
    for param in dependency_order(space.params):
        spec = specs.get(param.name)
        if not param.when or not isinstance(spec, dict):
            continue
        when = _trimmed_when(param, specs, gone)
        if all(when.values()):
            new = {k: (v[0] if len(v) == 1 else v) for k, v in when.items()}
            if new != spec.get("when"):
                changes.append(Change(f"space.{param.name}.when", str(spec.get("when")), str(new),
                                      "the narrowed choices hold only these"))
                spec["when"] = new
            continue
        gone.add(param.name)
        del specs[param.name]
        changes.append(Change(f"space.{param.name}", "conditional", "removed",
                              "no top trial used the choices that switch it on"))
    if gone:
        argv = render_command(space.command, {}, gone, lambda arg: arg)
        raw["command"] = shlex.join(argv) if isinstance(raw.get("command"), str) else argv
    return changes


def _trimmed_when(param: Param, specs: Mapping[str, Any], gone: set[str]) -> dict[str, list[Any]]:
    """Each ``when`` parent's wanted values that its refined choices still hold (none if it was removed)."""
    when: dict[str, list[Any]] = {}
    for parent, values in param.when:
        parent_values = (specs.get(parent) or {}).get("values", []) if parent not in gone else []
        when[parent] = [v for v in values if any(_same(v, u) for u in parent_values)]
    return when


def _warm_start_from_parent(raw: dict[str, Any], parent: str) -> list[Change]:
    """A stage learns from its parent's trials unless the file already says where to warm-start from."""
    search = dict(raw.get("search") or {})
    if "warm_start" in search:
        return []
    search["warm_start"] = [parent]
    raw["search"] = search
    return [Change("search.warm_start", "(none)", f"[{parent}]", "the sampler learns the parent's trials first")]


def _scale_resources(raw: dict[str, Any], factor: float) -> list[Change]:
    changes = []
    scheduler = raw.get("scheduler")
    if isinstance(scheduler, dict) and scheduler.get("max_resource") is not None:
        old = float(scheduler["max_resource"])
        floor = float(scheduler.get("min_resource", 1))
        new = _scale_number(int(old) if old == int(old) else old, factor, floor)
        raw["scheduler"] = dict(scheduler, max_resource=new)
        changes.append(Change("scheduler.max_resource", format_bound(old), format_bound(float(new)),
                              f"x{factor:g}"))
    if "command" in raw:
        raw["command"], pairs = _scale_command(raw["command"], factor)
        for before, after in pairs:
            changes.append(Change("command", before, after, f"x{factor:g}"))
    if not changes:
        changes.append(Change("resource scale", f"x{factor:g}", "nothing scaled",
                              "no scheduler.max_resource and no literal --epochs N in the command"))
    return changes


# -- the study part: store in, file out -----------------------------------------------------------------
def _default_path(study: Any, base_dir: Path, stage: int) -> Path:
    source = Path(study.space_file) if study.space_file else base_dir / f"{study.name}.yaml"
    folder = source.parent if source.parent.is_dir() else base_dir
    stem = re.sub(r"\.stage\d+(-\d+)?$", "", source.stem)
    path = folder / f"{stem}.stage{stage}.yaml"
    n = 2
    while path.exists():  # never overwrite a file the user did not name
        path = folder / f"{stem}.stage{stage}-{n}.yaml"
        n += 1
    return path


class _FlowMapping(dict):
    """A parameter spec written on one line, as people write them: ``lr: {type: loguniform, ...}``."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_FlowMapping, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data.items(), flow_style=True))


def _render(raw: Mapping[str, Any], study: Any, top: int, resource_scale: float, changes: Sequence[Change],
            warnings: Sequence[str]) -> str:
    lines = [(f"# Stage {study.stage + 1} of study {study.name}, written by "
              f"`hpotui refine {study.name} --top {top} --resource-scale {resource_scale:g}`.")]
    lines += [f"#   {c.text}" for c in changes]
    lines += [f"# warning: {w}" for w in warnings]
    shown = dict(raw)
    if isinstance(shown.get("space"), dict):
        shown["space"] = {k: _FlowMapping(v) if isinstance(v, dict) else v for k, v in shown["space"].items()}
    body = yaml.dump(shown, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=120,
                     allow_unicode=True)
    return "\n".join(lines) + "\n" + body


def _budget_changes(changes: Sequence[Change], space: Any, budget: Mapping[str, Any]) -> list[Change]:
    """Refine's own budget lines replaced by the values typed in the refine dialog."""
    kept = [c for c in changes if c.key.removeprefix("budget.") not in budget]
    before = {"max_trials": space.budget.max_trials, "max_parallel": space.budget.max_parallel}
    typed = [Change(f"budget.{k}", str(before.get(k, "")), str(v), "set in the refine dialog") for k, v in budget.items()]
    return kept + typed


def refine_study(store: Any, study: Any, *, top: int, resource_scale: float = 1.0,
                 output: str | os.PathLike[str] | None = None,
                 bounds: dict[str, Any] | None = None, budget: dict[str, Any] | None = None) -> RefineResult:
    """Write the next stage's space file for ``study`` and say what changed.

    ``bounds`` ({name: (low, high)}, either side None to keep the proposal, or {name: [values]}) and ``budget`` ({"max_trials": N, ...}) are the
    refine dialog's edits: applied here, before the file is validated and written, so the file keeps
    its header of changes.
    """
    base_dir = Path(store.space_json(study.id).get("base_dir") or Path(study.space_file).parent)
    space = parse_space(yaml.safe_load(study.space_yaml), study.space_file or f"{study.name}.yaml", base_dir)
    results = finished_results(store, study.id)
    stage = study.stage + 1
    name = store.unused_study_name(stage_name(study.name, stage))
    raw, changes = refine_space(space, results, top, resource_scale, bounds=bounds, parent=study.name, name=name)
    if budget:
        raw.setdefault("budget", {}).update(budget)
        changes = _budget_changes(changes, space, budget)  # the header says what the file holds
    warnings = [w.text for w in boundary_warnings(space.params, results, space.objective.mode, top=top)]

    path = Path(output) if output else _default_path(study, base_dir, stage)
    path = path.resolve()
    if path.parent.resolve() != base_dir.resolve():  # keep `workdir:` pointing where it did
        raw["workdir"] = str(space.workdir)
    parse_space(raw, str(path), base_dir=path.parent)  # the file we write must launch
    text = _render(raw, study, top, resource_scale, changes, warnings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the refined space file ({exc.strerror or exc}); pass -o PATH") from None

    used = top_count(len(rank(results, space.objective.mode)), top)
    head = (f"refined {study.name} (stage {study.stage}): top {used} of {len(results)} finished trials by "
            f"{space.objective.metric} ({space.objective.mode})")
    if used < top:
        head += f"; only {len(results)} finished, so all of them set the ranges"
    lines = [head] + [f"  {c.text}" for c in changes]
    if warnings:
        lines.append("boundary warnings (those sides were widened, not narrowed):")
        lines += [f"  {w}" for w in warnings]
    lines.append(f"wrote {path}; launch stage {stage} with: hpotui launch {path}" + _db_flag(store))
    return RefineResult(path=path, space_yaml=text, name=name, changes=tuple(changes), warnings=tuple(warnings),
                        summary="\n".join(lines), raw=raw)


def _db_flag(store: Any) -> str:
    here = Path(default_db_path()).resolve()
    return "" if Path(store.path).resolve() == here else f" --db {store.path}"
