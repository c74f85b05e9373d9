"""A study row and trial rows written by the engine's own Store, for tests that need rows to hang records on.

Many tests (the store contract and process checks, the read side, records, usage, GPU placement,
the TUI's notices, hostile and foreign files) start from "a fresh file with a study, and a trial or
two, in it" and care about none of its fields. The rows are written here, once, through
:meth:`Store.create_study` / :meth:`Store.add_trial` as the engine writes them, so a column those
calls come to require is added in one place instead of in every test file's own copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpotui.engine.database.store import Store, StudyRow, TrialRow


def bare_study(store: Store, name: str = "s", *, parent_id: int | None = None, headless: bool = True,
               **space: Any) -> StudyRow:
    """A study maximising ``val_acc``, two trials at a time; ``space`` is its stored space JSON."""
    return store.create_study(name=name, objective_metric="val_acc", objective_mode="max", space_file="s.yaml",
                              space_yaml="name: s\n", space_json=json.dumps(space), parent_id=parent_id, max_parallel=2,
                              headless=headless)


def bare_trial(store: Store, study: StudyRow, folder: Path, *, index: int = 0, params: dict[str, Any] | None = None,
               seed: int | None = 7, **extra: Any) -> TrialRow:
    """A queued trial of ``study`` (``lr=0.1`` unless ``params``) whose logs would be in ``folder``."""
    row = store.add_trial(study_id=study.id, params={"lr": 0.1} if params is None else params,
                          argv=["python", "t.py"], trial_dir=str(folder), stdout_path=str(folder / "stdout.log"),
                          stderr_path=str(folder / "stderr.log"), sample_index=index, rerun_of=None, seed=seed,
                          **extra)
    assert row is not None
    return row
