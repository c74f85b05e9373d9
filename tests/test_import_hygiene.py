"""The engine never drags in the TUI stack or torch: it must start fast and run detached."""

from __future__ import annotations

import subprocess
import sys


def test_engine_and_cli_do_not_import_textual_rich_or_torch() -> None:
    code = ("import sys, hpotui, hpotui.engine.cli, hpotui.engine.study, hpotui.engine.store, hpotui.engine.export\n"
            "bad = [m for m in ('textual', 'rich', 'torch', 'plotext') if m in sys.modules]\n"
            "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_report_helper_is_standalone_and_writes_the_contract_line(tmp_path) -> None:
    import shutil
    from pathlib import Path

    import hpotui.engine

    shutil.copy(Path(hpotui.engine.__file__).with_name("report.py"), tmp_path / "report.py")  # as the README says
    code = "from report import report; report(3, train_loss=float('nan'), val_acc=0.5)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout == '@hpotui {"epoch": 3, "train_loss": NaN, "val_acc": 0.5}\n'
