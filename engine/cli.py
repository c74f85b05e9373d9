"""The ``hpotui`` command: argument parsing only; the work happens in the engine modules.

Light modules (the standard library, engine modules of a few plain functions) are imported at
the top. The heavy ones are imported inside the verb that needs them, each with its reason, so that
``--help``, ``status`` and ``stop`` start in milliseconds and never load textual or torch; the
interface (``tui``) is only ever imported here, and only lazily. Bad input ends in one line on
stderr and exit code 2; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, Sequence

from .database.dbfile import explain_error
from .database.records import STUDY_DONE_STATUSES, WORK_LEFT_STATUSES
from .errors import SpaceError, StudyNotFound, UserError
from .self_command import hpotui_command
from .space_file.names import NAME_FIX, name_problem
from .space_file.relocate import project_folder
from .trial_side.trial_helpers import copy_helpers

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse's own convention too)
        message = message.replace(", '_engine'", "")  # the detached engine's entry is not for people
        self.exit(EXIT_BAD_INPUT, f"hpotui: {message}; see `hpotui --help`\n")


def build_parser() -> argparse.ArgumentParser:
    db_help = "study database (default: $HPOTUI_DB or ./hpotui.db)"
    common = _Parser(add_help=False)  # a _Parser, as the subparsers it is a parent of
    common.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    parser = _Parser(prog="hpotui", parents=[common],
                     description="Hyperparameter search on your GPU box, watched from the terminal. "
                                 "Without a command: open the interface on the study database.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("launch", parents=[common], help="start a study from a space file")
    p.add_argument("space", help="space file (YAML)")
    p.add_argument("--headless", action="store_true", help="run in this terminal and print progress")
    p.add_argument("--name", help="study name (default: the space file's name)")
    p.add_argument("--keep-trials", action="store_true",
                   help="on Ctrl-C / SIGTERM leave trials running for `hpotui resume` to adopt")
    p.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (default 10)")
    p.add_argument("--executor", choices=("local", "ray"), help="override the space file's executor")

    p = sub.add_parser("resume", parents=[common], help="continue a study whose engine stopped")
    p.add_argument("study")
    p.add_argument("--headless", action="store_true")
    p.add_argument("--keep-trials", action="store_true")
    p.add_argument("--grace", type=float, default=10.0)
    p.add_argument("--workdir", help="the folder the study's space file is in now, if the project moved")

    p = sub.add_parser("status", parents=[common], help="list studies, or show one")
    p.add_argument("study", nargs="?")

    p = sub.add_parser("stop", parents=[common], help="stop a study or one of its trials")
    p.add_argument("study")
    p.add_argument("--trial", type=int, help="trial id (as shown by status)")

    p = sub.add_parser("export", parents=[common], help="write a study as json, csv or a Markdown table")
    p.add_argument("study")
    p.add_argument("--format", choices=("json", "csv", "md"), default="json")
    p.add_argument("--curves", action="store_true",
                   help="json: add each trial's curves, {metric: [[step, value], ...]} (last value per step)")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")

    p = sub.add_parser("plan", parents=[common], help="show what a space file's search will run and cost")
    p.add_argument("space")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("refine", parents=[common], help="write the next stage's space file from the top trials")
    p.add_argument("study")
    p.add_argument("--top", type=int, default=5, help="trials whose span sets the new ranges (default 5)")
    p.add_argument("--resource-scale", type=float, default=1.0, help="multiply epochs / max_resource by this")
    p.add_argument("-o", "--output", help="where to write the space file")

    p = sub.add_parser("helpers", parents=[common],
                       help="copy the metric helper and framework callbacks next to a training script")
    p.add_argument("folder", nargs="?", default=".", help="where the training script is (default: here)")

    p = sub.add_parser("_engine", parents=[common])  # the detached engine: no help, so not listed
    p.add_argument("study")
    p.add_argument("--grace", type=float, default=10.0)
    return parser


def study_shortcut(argv: Sequence[str], commands: Sequence[str]) -> tuple[list[str], str | None]:
    """``hpotui STUDY [--db PATH]``: the interface opened on STUDY; the name is taken out before parsing."""
    rest = list(argv)
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--db":
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        if arg in commands:
            return rest, None
        return rest[:i] + rest[i + 1:], arg
    return rest, None


def _command_names(parser: argparse.ArgumentParser) -> list[str]:
    actions = parser._subparsers._group_actions if parser._subparsers else []  # type: ignore[union-attr]
    return [name for action in actions for name in getattr(action, "choices", None) or {}]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv, shortcut_study = study_shortcut(sys.argv[1:] if argv is None else argv, _command_names(parser))
    args = parser.parse_args(argv)
    args.shortcut_study = shortcut_study
    debug = getattr(args, "debug", False) or bool(os.environ.get("HPOTUI_DEBUG"))
    try:
        return _dispatch(args)
    except UserError as exc:
        if debug:
            raise
        print(f"hpotui: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except sqlite3.Error as exc:  # disk full, or a damaged file, before or outside the loop
        if debug:
            raise
        line, _damaged = explain_error(Path(_db_path(args)), exc)
        print(f"hpotui: {line}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


def _db_path(args: argparse.Namespace) -> str:
    from .database.store import default_db_path  # lazy: sqlite3 + psutil; --help, plan and helpers open no database

    return getattr(args, "db", None) or default_db_path()


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command is None:
        return _open_tui(_db_path(args), study=getattr(args, "shortcut_study", None))
    handler = {"launch": cmd_launch, "resume": cmd_resume, "status": cmd_status, "stop": cmd_stop,
               "export": cmd_export, "plan": cmd_plan, "refine": cmd_refine, "helpers": cmd_helpers,
               "_engine": cmd_engine}[command]
    return handler(args)


def _open_store(args: argparse.Namespace, *, must_exist: bool, readonly: bool = False) -> Any:
    """The study file: created only by `launch` (must_exist=False), never over a file that is not hpotui's.

    ``readonly`` (status, export) writes nothing, so a finished study opens on read-only storage;
    an older schema is migrated first where the file can be written.
    """
    from .database.store import SCHEMA_VERSION, Store  # lazy: sqlite3 + psutil; --help, plan and helpers open no database

    path = _db_path(args)
    try:
        store = Store(path, create=not must_exist, readonly=readonly)
        if readonly and store.schema_version() < SCHEMA_VERSION and os.access(path, os.W_OK):
            store.close()
            store = Store(path, create=False)
    except sqlite3.DatabaseError as exc:  # unreadable, locked for good, ...
        raise UserError(f"{path}: cannot open the study database ({exc}); check --db") from None
    if getattr(store, "immutable", False):
        wal = Path(str(path) + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            print(f"hpotui: {path}: read-only storage: opened as a snapshot without {wal.name} "
                  f"({wal.stat().st_size:,} bytes of its last writes are not shown)", file=sys.stderr)
    return store


def _find_study(store: Any, name: str) -> Any:
    study = store.study(name)
    if study is None:
        raise StudyNotFound(name, str(store.path))
    return study


# -- launch / resume -------------------------------------------------------------------------------
def cmd_launch(args: argparse.Namespace) -> int:
    from .space_file.space import load_space  # lazy: yaml and the whole space parser; status never reads a space

    space = load_space(args.space)
    if args.executor:
        space = replace(space, executor=replace(space.executor, type=args.executor))
    _check_resources(space)
    if args.keep_trials and space.executor.type == "ray":
        raise UserError(f"{args.space}: --keep-trials: Ray ends a trial when its engine exits; "
                        "drop --keep-trials (`hpotui resume` reruns interrupted Ray trials)")
    store = _open_store(args, must_exist=False)
    parent_id = None
    if space.parent:
        parent = store.study(space.parent)
        if parent is None:
            raise UserError(f"{args.space}: parent: no study named {space.parent!r} in {store.path}; "
                            "remove parent: or launch with the database that holds it (--db)")
        parent_id = parent.id
    from .search.warm_start import check_warm_start  # lazy: the samplers and the space parser; launch only

    check_warm_start(store, space)  # every search.warm_start study is in this database
    wanted = space.name if args.name is None else args.name
    _check_name(wanted, "--name" if args.name is not None else f"{args.space}: name")
    name = store.unused_study_name(wanted)
    if name != wanted:
        print(f"hpotui: a study named {wanted!r} already exists in {store.path}; this launch is recorded as "
              f"{name!r} (to continue the old one: `hpotui resume {wanted}`)", file=sys.stderr)
    source = Path(args.space).resolve()
    study = store.create_study(
        name=name, objective_metric=space.objective.metric, objective_mode=space.objective.mode,
        space_file=str(source), space_yaml=source.read_text(encoding="utf-8"),
        space_json=json.dumps({"base_dir": str(source.parent), "db_dir": str(store.path.resolve().parent)}),
        parent_id=parent_id,
        max_parallel=space.budget.max_parallel, headless=args.headless)
    if args.headless:
        return _run_loop(store, space, study, headless=True, grace=args.grace, keep=args.keep_trials)
    return _detach_and_open(store, study, grace=args.grace)


def _check_name(name: str, where: str) -> None:
    """The one study-name rule (engine/space_file/names.py), for --name and names read back from the database."""
    problem = name_problem(name)
    if problem:
        raise UserError(f"{where}: {problem}; {NAME_FIX}")


def _check_resources(space: Any) -> None:
    """GPUs asked for where there are none is an error now, not a study that waits forever.

    On Ray the nodes' GPUs count, not the head's: Ray itself keeps such a trial pending.
    """
    if space.resources.gpus_per_trial <= 0 or space.executor.type == "ray":
        return
    from .machine.resources import ResourceMonitor, check_request  # lazy: NVML and psutil, only when GPUs are asked for

    problem = check_request(space.resources, ResourceMonitor())
    if problem:
        raise UserError(f"{space.source_file}: {problem}")


def _space_of(store: Any, study: Any, workdir: str | None = None) -> Any:
    import yaml  # lazy: with the space parser below, only resume and the detached engine read a space

    from .space_file.space import parse_space  # lazy: yaml and the whole space parser; status never reads a space

    base_dir = project_folder(store, study, workdir)  # found again if the project moved, or --workdir
    try:
        space = parse_space(yaml.safe_load(study.space_yaml), study.space_file, base_dir)
    except SpaceError as exc:
        if exc.key != "workdir":
            raise
        raise UserError(f"{exc}; or, if the project moved, `hpotui resume {study.name} --workdir NEW_FOLDER` "
                        "(the folder its space file is in now)") from None
    return replace(space, name=study.name)


def _run_loop(store: Any, space: Any, study: Any, *, headless: bool, grace: float, keep: bool,
              out: Any = None) -> int:
    from .database.store import EngineLocked  # lazy: sqlite3 + psutil; --help, plan and helpers open no database
    from .study import Options, StudyLoop  # lazy: the loop and all it runs; only the process that runs a study

    _check_name(study.name, f"{store.path}: study")  # a row written by hand or by an older hpotui
    executor = None
    if space.executor.type == "ray":
        from .executors.ray import RayExecutor  # lazy: executor.type ray only (it imports Ray itself lazily too)

        executor = RayExecutor(space.executor.address, grace_period_s=grace, resources=space.resources)
    loop = StudyLoop(store, space, study, Options(headless=headless, grace_period_s=grace, keep_trials_on_exit=keep,
                                                  out=out), executor=executor)
    try:
        return loop.run()
    except EngineLocked as exc:
        raise UserError(str(exc)) from None
    finally:
        if executor is not None:
            executor.shutdown()


def cmd_resume(args: argparse.Namespace) -> int:
    from .trials.liveness import engine_alive  # lazy: psutil, loaded with the store; --help never needs it

    store = _open_store(args, must_exist=True)
    study = _find_study(store, args.study)
    if engine_alive(study):
        raise UserError(f"study {study.name!r} is already run by engine pid {study.engine_pid} on "
                        f"{study.engine_host}; watch it with `hpotui` or stop it with `hpotui stop {study.name}`")
    if study.status in STUDY_DONE_STATUSES and not _has_work_left(store, study):
        print(f"study {study.name} is already {study.status}; nothing to resume")
        return 0
    store.set_launching_paused(study.id, False)
    study = store.study_by_id(study.id)
    space = _space_of(store, study, args.workdir)
    if args.headless:
        return _run_loop(store, space, study, headless=True, grace=args.grace, keep=args.keep_trials)
    return _detach_and_open(store, study, grace=args.grace)


def _has_work_left(store: Any, study: Any) -> bool:
    if store.trials(study.id, statuses=WORK_LEFT_STATUSES) or store.pending_clones(study.id):
        return True
    return any(c.action == "clone_trial" for c in store.pending_commands(study.id))  # sent while no engine ran


def cmd_engine(args: argparse.Namespace) -> int:
    """The detached engine behind an interactive launch: writes its progress to engine.log."""
    store = _open_store(args, must_exist=True)
    study = _find_study(store, args.study)
    space = _space_of(store, study)
    return _run_loop(store, space, study, headless=False, grace=args.grace, keep=False, out=sys.stdout)


def _detach_and_open(store: Any, study: Any, *, grace: float) -> int:
    log_dir = store.path.resolve().parent / "hpotui_runs" / study.name
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = log_dir / "engine.log"
    from .trials.trial_files import append_engine_log  # lazy: ~2 ms (a dataclass) that only a detached launch needs

    try:
        log_fd = append_engine_log(log_path)  # owner-only, never through a planted link
    except OSError as exc:
        raise UserError(f"{log_path}: cannot be the engine's log ({exc.strerror or exc}); remove it and launch "
                        "again") from None
    with open(log_fd, "ab") as log:
        proc = subprocess.Popen(hpotui_command("_engine", study.name, "--db", str(store.path.resolve()),
                                                "--grace", str(grace)),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                close_fds=True)
    # Wait until the engine holds the study (or died trying), so the interface opens on a live study.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        row = store.study_by_id(study.id)
        if row.engine_pid == proc.pid:
            break
        time.sleep(0.05)
    if proc.poll() not in (None, 0):
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"the engine for {study.name!r} exited at once: {tail[0]} (log: {log_path})")
    print(f"engine for study {study.name!r} runs in the background (pid {proc.pid}, log {log_path}); "
          "closing this terminal never stops it")
    return _open_tui(str(store.path), study=study.name)


def _open_tui(db_path: str, study: str | None) -> int:
    from ..tui.dbopen import NotAStudyDatabase, open_readonly  # lazy: the CLI's one entry to the TUI (sqlite only)

    try:
        open_readonly(db_path).conn.close()
    except NotAStudyDatabase as exc:  # a YAML file, a missing file: one line, exit 2, whatever the terminal
        print(f"hpotui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not (sys.stdin.isatty() and sys.stdout.isatty()):  # a script or a pipe: nobody to draw for
        where = f" {study}" if study else ""
        print(f"not a terminal, so no interface; follow the study with `hpotui status{where} --db {db_path}`",
              file=sys.stderr)
        return 0
    try:
        from ..tui.app import run_tui  # lazy: textual and rich, only when a terminal opens the interface
    except ImportError as exc:
        if "tui" not in str(exc) and "textual" not in str(exc):
            raise
        print(f"the interactive interface is not available ({exc}); studies keep running: "
              "use `hpotui status` and `hpotui stop`", file=sys.stderr)
        return 0
    return run_tui(db_path, study)


# -- status / stop / export -------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    from .outputs.export import status_text  # lazy: the reports (pareto, GPU sharing); status and export only

    store = _open_store(args, must_exist=True, readonly=True)
    study = _find_study(store, args.study) if args.study else None
    print(status_text(store, study))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from .trials.control import stop  # lazy: process trees and signals (runner, process_tree); stop only

    store = _open_store(args, must_exist=True)
    study = _find_study(store, args.study)
    print(stop(store, study, args.trial))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .outputs.export import export_csv, export_json, export_markdown  # lazy: as in cmd_status

    store = _open_store(args, must_exist=True, readonly=True)
    study = _find_study(store, args.study)
    if args.format == "json":
        text = export_json(store, study, curves=args.curves)
    else:
        text = {"csv": export_csv, "md": export_markdown}[args.format](store, study)
    _write_output(args.output, text if text.endswith("\n") else text + "\n")
    return 0


def _write_output(output: str | None, text: str) -> None:
    """``-o FILE`` or stdout; a folder, a missing folder or a full disk is one line, not a traceback."""
    try:
        if output:
            Path(output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        where = f"-o {output}" if output else "stdout"
        why = exc.strerror or exc.__class__.__name__
        fix = ("pass -o a file path, not a folder" if isinstance(exc, IsADirectoryError)
               else "create the folder first, or pass -o a path in an existing folder"
               if isinstance(exc, FileNotFoundError) else "free disk space or pass -o another path")
        if not output:  # what could not be written must not be flushed again at exit
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the process ends right after)
        raise UserError(f"{where}: cannot write the export ({why}); {fix}") from None


def cmd_plan(args: argparse.Namespace) -> int:
    from .search.plan import format_plan, plan  # lazy: the scheduler rungs and the space parser; plan only
    from .space_file.space import load_space  # lazy: yaml and the whole space parser; status never reads a space

    space = load_space(args.space)
    result = plan(space.scheduler, space.budget.max_trials)
    print(json.dumps(result, indent=2) if args.format == "json" else format_plan(result))
    return 0


def cmd_helpers(args: argparse.Namespace) -> int:
    print("\n".join(copy_helpers(args.folder)))
    return 0


def cmd_refine(args: argparse.Namespace) -> int:
    from .search.refine import refine_study  # lazy: yaml and the space parser; refine only

    store = _open_store(args, must_exist=True)
    study = _find_study(store, args.study)
    if args.top < 1:
        raise UserError("--top: must be at least 1; pass e.g. --top 5")
    if args.resource_scale <= 0:
        raise UserError("--resource-scale: must be positive; pass e.g. --resource-scale 3")
    result = refine_study(store, study, top=args.top, resource_scale=args.resource_scale, output=args.output)
    print(result.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
