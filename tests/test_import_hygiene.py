"""The engine never drags in the TUI stack, torch or a training framework: it must start fast and
run detached. The trial-side helpers (report, callbacks) depend on nothing of hpotui."""

from __future__ import annotations

import subprocess
import sys


def test_engine_and_cli_do_not_import_textual_rich_or_torch() -> None:
    code = ("import sys, hpotui, hpotui.engine.cli, hpotui.engine.study, hpotui.engine.database.store, hpotui.engine.outputs.export\n"
            "bad = [m for m in ('textual', 'rich', 'torch', 'plotext', 'keras', 'lightning', 'pytorch_lightning',\n"
            "                   'transformers', 'tensorflow', 'hpotui.callbacks') if m in sys.modules]\n"
            "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_report_helper_is_standalone_and_writes_the_contract_line(tmp_path) -> None:
    copied = subprocess.run([sys.executable, "-m", "hpotui.engine.cli", "helpers", str(tmp_path)],
                            capture_output=True, text=True, check=True)  # as the README says
    assert "from hpotui_report import report" in copied.stdout
    code = ("import sys; sys.modules['hpotui'] = None\n"
            "from hpotui_report import report; report(3, train_loss=float('nan'), val_acc=0.5)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout == '@hpotui {"epoch": 3, "train_loss": NaN, "val_acc": 0.5}\n'


def test_the_callbacks_file_runs_where_hpotui_cannot_be_imported(tmp_path) -> None:
    import shutil

    import hpotui.callbacks

    shutil.copy(hpotui.callbacks.__file__, tmp_path / "hpotui_callbacks.py")  # what `hpotui helpers` writes
    code = ("import sys; sys.modules['hpotui'] = None\n"
            "from hpotui_callbacks import emit\n"
            "emit(1, {'val_acc': 0.5, 'loss': float('inf')})\n"
            "assert not [m for m in sys.modules if m.startswith(('keras', 'lightning', 'transformers', 'torch'))]\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == '@hpotui {"epoch": 1, "val_acc": 0.5, "loss": Infinity}\n'
