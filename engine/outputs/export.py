"""What a study looks like from outside: export (json, csv, md), status text and the top trials.

The JSON shape is a contract (issue 2, section 5); csv and md flatten the same records so that
all three formats always agree.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from typing import Any

from ..database import store_read
from ..database.records import TrialStatus
from ..database.store import Store, StudyRow, TrialRow
from ..gpus.gpu_report import gpu_status_lines  # GPU sharing: placements, OOM reruns, paused packing
from ..search.pareto import front_lines, pareto_front, stored_objectives
from ..trials.liveness import engine_alive


def trial_flags(store: Store, study_id: int) -> dict[int, list[str]]:
    flags: dict[int, list[str]] = {}
    for trial_id, flag in store_read.trial_marks_since(store.conn, study_id, 0, clone_starts=False).flags:
        if flag.flag and flag.flag not in flags.setdefault(trial_id, []):
            flags[trial_id].append(flag.flag)
    return flags


def top_trials(store: Store, study_id: int, k: int) -> list[TrialRow]:
    study = store.study_by_id(study_id)
    assert study is not None
    scored = [t for t in store.trials(study_id) if t.best_value is not None and math.isfinite(t.best_value)]
    scored.sort(key=lambda t: t.best_value, reverse=study.objective_mode == "max")  # type: ignore[arg-type,return-value]
    return scored[:k]


def lineage(store: Store, study: StudyRow) -> dict[str, Any]:
    parent = store.study_by_id(study.parent_id) if study.parent_id else None
    return {"stage": study.stage, "parent": parent.name if parent else None,
            "children": [c.name for c in store.children(study.id)]}


def study_record(store: Store, study: StudyRow) -> dict[str, Any]:
    flags = trial_flags(store, study.id)
    trials = []
    for t in store.trials(study.id):
        last = store.last_values(t.id)
        trials.append({
            "id": t.number,
            "status": t.status,
            "params": t.params,
            "last": last,  # NaN / Infinity stay numbers: json.dumps writes them as the metric line does
            "best": t.best_value,
            "resource": t.last_step,
            "flags": flags.get(t.id, []),
            "exit_code": t.exit_code,
            "argv": t.argv,
            "started_at": t.started_at,
            "finished_at": t.finished_at,
            "gpus": t.gpus,
            "host": t.host,
            "rerun_of": _number_of(store, t.rerun_of),
            "trial_dir": _absolute(store, t.trial_dir),
        })
    objectives = stored_objectives(study.space_yaml)  # several objectives: the list, and each trial's place
    if objectives:
        front = pareto_front(trials, objectives)
        for trial in trials:
            trial["pareto"] = trial["id"] in front
    return {
        "study": {"name": study.name, "status": study.status,
                  "objective": objectives or {"metric": study.objective_metric, "mode": study.objective_mode},
                  "warnings": list(study.warnings), **lineage(store, study),
                  "engine_alive": engine_alive(study)},
        "trials": trials,
    }


def _number_of(store: Store, trial_id: int | None) -> int | None:
    if trial_id is None:
        return None
    t = store.trial(trial_id)
    return t.number if t else None


def _absolute(store: Store, path: str | None) -> str | None:
    """A trial folder as an absolute path (relative ones are relative to the database's folder)."""
    if not path:
        return None
    return os.path.abspath(path if os.path.isabs(path) else os.path.join(store.path.resolve().parent, path))


def trial_curves(store: Store, trial_id: int) -> dict[str, list[list[float]]]:
    """Each metric's curve: steps ascending, one point per step, the last value reported there."""
    by_metric: dict[str, dict[float, float]] = {}
    for row in store.metrics(trial_id):  # recording order: a later value at a step replaces an earlier one
        by_metric.setdefault(row.name, {})[row.step] = row.value
    return {name: [[step, points[step]] for step in sorted(points)] for name, points in sorted(by_metric.items())}


def export_json(store: Store, study: StudyRow, curves: bool = False) -> str:
    """The JSON export; ``curves`` adds each trial's ``"curves": {metric: [[step, value], ...]}``."""
    record = study_record(store, study)
    if curves:
        for trial, row in zip(record["trials"], store.trials(study.id)):
            trial["curves"] = trial_curves(store, row.id)
    return json.dumps(record, indent=2, allow_nan=True)


def _flat_rows(record: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    params = sorted({p for t in record["trials"] for p in t["params"]})
    metrics = sorted({m for t in record["trials"] for m in t["last"]})
    header = ["id", "status", *params, "best", *[f"last_{m}" for m in metrics], "resource", "flags", "exit_code"]
    header[header.index("best"):header.index("best")] = _pareto_column(record)
    rows = []
    for t in record["trials"]:
        row: dict[str, Any] = {"id": t["id"], "status": t["status"], "best": _text(t["best"]), "resource": t["resource"],
                               "flags": " ".join(t["flags"]), "exit_code": t["exit_code"], **_pareto_cell(t)}
        row.update({p: t["params"].get(p) for p in params})
        row.update({f"last_{m}": _text(t["last"].get(m)) for m in metrics})
        rows.append(row)
    return header, rows


def _pareto_column(record: dict[str, Any]) -> list[str]:
    """Several objectives: a ``pareto`` column before ``best``; none for one objective."""
    return ["pareto"] if isinstance(record["study"]["objective"], list) else []


def _pareto_cell(trial: dict[str, Any]) -> dict[str, str]:
    return {"pareto": "yes" if trial["pareto"] else ""} if "pareto" in trial else {}


def export_csv(store: Store, study: StudyRow) -> str:
    header, rows = _flat_rows(study_record(store, study))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _text(value: Any) -> Any:
    """NaN and the infinities spelled as in the metric line and the JSON export, in csv and md too."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _cell(value: Any) -> str:
    value = _text(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def export_markdown(store: Store, study: StudyRow) -> str:
    record = study_record(store, study)
    header, rows = _flat_rows(record)
    s = record["study"]
    lines = [f"## {s['name']} ({s['status']})", "",
             f"Objective: {objective_text(s['objective'])}; stage {s['stage']}"
             + (f", parent {s['parent']}" if s["parent"] else ""), ""]
    for warning in s["warnings"]:
        lines.append(f"> warning: {warning}")
    if s["warnings"]:
        lines.append("")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[h]) for h in header) + " |")
    return "\n".join(lines) + "\n"


def objective_text(objective: Any) -> str:
    """``val_acc (max)``, or ``val_acc (max), size_mb (min)`` for several objectives."""
    items = objective if isinstance(objective, list) else [objective]
    return ", ".join(f"{o['metric']} ({o['mode']})" for o in items)


def _by_first(study: StudyRow, objective: Any) -> str:
    """With several objectives the top list is by the first one; say so."""
    return f" by {study.objective_metric}" if isinstance(objective, list) else ""


def _search_lines(store: Store, study: StudyRow, record: dict[str, Any]) -> list[str]:
    """The warm start (if any) and, with several objectives, the Pareto front."""
    lines = [event.message for event in store.events(study.id, kinds=("warm_start",))[-1:]]
    objective = record["study"]["objective"]
    if isinstance(objective, list):
        lines += front_lines(record["trials"], objective)
    return lines


def _all_studies_text(store: Store) -> str:
    """`hpotui status` with no study: one aligned line per study, or a hint when there are none."""
    studies = store.studies()
    if not studies:
        return f"no studies in {store.path}; start one with `hpotui launch SPACE --headless`"
    lines = [f"{'study':<28} {'stage':>5} {'status':<12} {'trials':<34} {'best':>10}  engine"]
    for s in studies:
        counts = store.status_counts(s.id)
        summary = " ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        best = top_trials(store, s.id, 1)
        best_text = f"{best[0].best_value:.4g}" if best else "-"
        alive = "alive" if engine_alive(s) else "-"
        lines.append(f"{s.name:<28} {s.stage:>5} {s.status:<12} {summary:<34} {best_text:>10}  {alive}")
    return "\n".join(lines)


def _study_header_lines(store: Store, study: StudyRow, s: dict[str, Any]) -> list[str]:
    """Status, objective and stage lineage, trial counts, pause reason and warnings: what a user
    checks first, before any trial detail."""
    counts = store.status_counts(study.id)
    lines = [f"study {s['name']}: {s['status']} (engine {'alive' if s['engine_alive'] else 'not running'})",
             f"objective: {objective_text(s['objective'])}, stage {s['stage']}"
             + (f", parent {s['parent']}" if s["parent"] else "")
             + (f", next stages: {', '.join(s['children'])}" if s["children"] else ""),
             "trials: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))]
    if study.launching_paused:
        lines.append(f"launching paused: {study.pause_reason}")
    for warning in s["warnings"]:
        lines.append(f"warning: {warning}")
    return lines


def _top_lines(store: Store, study: StudyRow, objective: Any) -> list[str]:
    """The five best trials with their parameters (nothing when no trial has a value yet)."""
    best = top_trials(store, study.id, 5)
    if not best:
        return []
    lines = [f"top {len(best)}{_by_first(study, objective)}:"]
    for t in best:
        lines.append(f"  trial {t.number:<4} {study.objective_metric}={t.best_value:.4g} {t.status:<10} "
                     + " ".join(f"{k}={_cell(v)}" for k, v in t.params.items()))
    return lines


def _running_and_flag_lines(trials: list[dict[str, Any]]) -> list[str]:
    """Running trials with their last metrics, then every trial carrying a health flag, so a
    problem is never hidden behind the top list."""
    lines = []
    for t in trials:
        if t["status"] == TrialStatus.RUNNING:
            lines.append(f"  running: trial {t['id']} step {t['resource']} " +
                         " ".join(f"{k}={_cell(v)}" for k, v in t["last"].items()))
    for t in trials:
        if t["flags"]:
            lines.append(f"  flags: trial {t['id']}: {', '.join(t['flags'])}")
    return lines


def status_text(store: Store, study: StudyRow | None = None) -> str:
    """`hpotui status`: every study in one line each, or one study in detail."""
    if study is None:
        return _all_studies_text(store)
    record = study_record(store, study)
    s = record["study"]
    lines = _study_header_lines(store, study, s)
    lines += _search_lines(store, study, record)
    lines += _top_lines(store, study, s["objective"])
    lines += _running_and_flag_lines(record["trials"])
    lines += gpu_status_lines(store, study.id, record["trials"])
    elapsed = (study.finished_at or time.time()) - (study.started_at or study.created_at)
    lines.append(f"elapsed: {elapsed:.0f}s")
    return "\n".join(lines)
