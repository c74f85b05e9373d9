"""The real study loop in this test's process: a real space file, a real Store on a SQLite file, and
:class:`engine.executors.fake.FakeExecutor` running scripted trials instead of subprocesses.

What the CLI's ``launch --headless`` does before it runs the loop (load the space file, create the
study row) is done here the same way, so the records a test reads are the ones a user's study
leaves. The one thing left out is the engine's ``git rev-parse`` of the project folder, a
subprocess that records the commit on each trial: it is replaced by "no commit" so that these tests
start no process at all (the real CLI tests still record it).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hpotui.engine.database.store import EventRow, Store, StudyRow, TrialRow
from hpotui.engine.executors.fake import FakeExecutor, Script
from hpotui.engine.outputs.export import export_csv, export_json, export_markdown, status_text
from hpotui.engine.space_file.space import Space, load_space
from hpotui.engine.study import Options, StudyLoop


@dataclass
class InProcessRun:
    """One run of the loop: its exit code and output, and the store to read its records from."""

    code: int
    out: str
    store: Store
    study: StudyRow
    executor: FakeExecutor
    space_path: Path

    def trials(self) -> list[TrialRow]:
        return self.store.trials(self.study.id)

    def statuses(self) -> list[tuple[int, str]]:
        return [(t.number, t.status) for t in self.trials()]

    def events(self, *kinds: str) -> list[EventRow]:
        return list(self.store.events(self.study.id, kinds=kinds or None))

    def messages(self, *kinds: str) -> list[str]:
        return [e.message for e in self.events(*kinds)]

    def study_row(self) -> StudyRow:
        row = self.store.study_by_id(self.study.id)
        assert row is not None
        return row

    def export(self, fmt: str = "json") -> Any:
        """What `hpotui export --format FMT` prints (the JSON parsed), from the same functions."""
        row = self.study_row()
        if fmt == "json":
            return json.loads(export_json(self.store, row))
        return {"csv": export_csv, "md": export_markdown}[fmt](self.store, row)

    def status(self) -> str:
        """What `hpotui status STUDY` prints."""
        return status_text(self.store, self.study_row())


def write_space(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@contextlib.contextmanager
def _no_git_subprocess() -> Iterator[None]:
    """Every engine module's ``_git_commit`` answers "no commit" (wherever the engine keeps it)."""
    patched = [(module, module._git_commit) for name, module in list(sys.modules.items())  # type: ignore[attr-defined]
               if name.startswith("hpotui.engine") and callable(getattr(module, "_git_commit", None))]
    for module, _ in patched:
        module._git_commit = lambda workdir: None  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in patched:
            module._git_commit = original  # type: ignore[attr-defined]


def create_study(store: Store, space: Space, space_path: Path, *, headless: bool = True) -> StudyRow:
    """The study row `hpotui launch` creates for this space file (engine/cli.py: cmd_launch)."""
    source = space_path.resolve()
    return store.create_study(
        name=store.unused_study_name(space.name), objective_metric=space.objective.metric,
        objective_mode=space.objective.mode, space_file=str(source), space_yaml=source.read_text(encoding="utf-8"),
        space_json=json.dumps({"base_dir": str(source.parent), "db_dir": str(store.path.resolve().parent)}),
        parent_id=store.study(space.parent).id if space.parent and store.study(space.parent) else None,
        max_parallel=space.budget.max_parallel, headless=headless)


def run_loop(store: Store, space: Space, study: StudyRow, executor: FakeExecutor, *, grace_period_s: float = 1.0,
             keep_trials_on_exit: bool = False, headless: bool = True) -> tuple[int, str]:
    """The loop to its end, as `_run_loop` in the CLI runs it; (exit code, what it printed)."""
    out = io.StringIO()
    options = Options(headless=headless, grace_period_s=grace_period_s, keep_trials_on_exit=keep_trials_on_exit,
                      out=out)
    with _no_git_subprocess():
        try:
            code = StudyLoop(store, space, study, options, executor=executor).run()
        finally:
            executor.shutdown()
    return code, out.getvalue()


@dataclass
class Prepared:
    """A launched study before its loop runs: a script can then send commands to it by its row."""

    store: Store
    space: Space
    study: StudyRow
    space_path: Path

    def run(self, script: Script | None = None, *, executor: FakeExecutor | None = None, **loop: Any) -> InProcessRun:
        executor = executor or FakeExecutor(script)  # type: ignore[arg-type]
        code, out = run_loop(self.store, self.space, self.study, executor, **loop)
        return InProcessRun(code, out, self.store, self.store.study_by_id(self.study.id) or self.study, executor,
                            self.space_path)

    def send(self, action: str, trial_number: int | None = None, **args: Any) -> int:
        """A command as `hpotui stop` or the TUI sends it: its own connection to the file; the command's id."""
        other = Store(self.store.path)
        try:
            return other.send_command(self.study.id, action, trial_number=trial_number, args=args or None)
        finally:
            other.close()

    def outcome(self, command_id: int) -> Any:
        return self.store.command_outcome(command_id)


def prepare(tmp_path: Path, space_text: str, *, db: Path | None = None, space_name: str = "s.yaml") -> Prepared:
    """What `hpotui launch --headless` does before its loop runs: read the space file, create the study."""
    space_path = write_space(tmp_path, space_text, space_name)
    space = load_space(space_path)
    store = Store(db or tmp_path / "hpotui.db")
    return Prepared(store, space, create_study(store, space, space_path), space_path)


def resume(run: InProcessRun, executor: FakeExecutor | None = None, **loop: Any) -> InProcessRun:
    """`hpotui resume --headless STUDY` after ``run``: the same file, the space read back from the study row.

    ``executor`` defaults to the one ``run`` used, so trials it left running can be adopted.
    """
    from hpotui.engine.cli import _space_of  # what cmd_resume does, in the CLI's own words

    store = Store(run.store.path)
    study = store.study_by_id(run.study.id)
    assert study is not None
    store.set_launching_paused(study.id, False)
    study = store.study_by_id(study.id)
    assert study is not None
    executor = executor or run.executor
    code, out = run_loop(store, _space_of(store, study), study, executor, **loop)
    return InProcessRun(code, out, store, store.study_by_id(study.id) or study, executor, run.space_path)


def launch(tmp_path: Path, space_text: str, script: Script | None = None, *, executor: FakeExecutor | None = None,
           db: Path | None = None, space_name: str = "s.yaml", **loop: Any) -> InProcessRun:
    """`hpotui launch --headless` of this space file, its trials run by ``script`` (or ``executor``)."""
    return prepare(tmp_path, space_text, db=db, space_name=space_name).run(script, executor=executor, **loop)

