"""The log reader at its edges: batch boundaries, a finished trial's tail, and the disk cap."""

from __future__ import annotations

import os
from pathlib import Path

from hpotui.engine.reading.logtail import LogTail


def _drain(tail: LogTail, final: bool = True) -> list[str]:
    lines: list[str] = []
    while True:
        lines += [line for line, _ in tail.read_lines(final=final, budget=1000)]
        if not final or tail.at_eof:
            return lines


def test_a_finished_trials_last_line_is_not_cut_at_a_batch_boundary(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    body = "".join(f"ordinary line {i:05d} " + "x" * 40 + "\n" for i in range(200))
    log.write_text(body + '@hpotui {"epoch": 1, "val_acc": 0.9}')  # no final newline, past many batches
    lines = _drain(LogTail(log))
    assert len(lines) == 201
    assert lines[-1] == '@hpotui {"epoch": 1, "val_acc": 0.9}'
    assert all(line.startswith("ordinary line") for line in lines[:-1])


def test_trim_frees_only_recorded_output_older_than_the_cap(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    with open(log, "wb") as f:
        f.write((b"y" * 1023 + b"\n") * 8 * 1024)  # 8 MiB of lines
    tail = LogTail(log, keep_bytes=1 << 20)
    assert tail.trim() == 0  # nothing handed out yet: nothing may go
    while tail.read_lines():
        pass
    freed = tail.trim()
    assert freed >= 6 * 2**20
    st = os.stat(log)
    assert st.st_size == 8 * 2**20  # same length: offsets stay valid
    assert st.st_blocks * 512 <= 2 * 2**20 + 64 * 1024
    with open(log, "rb") as f:
        assert f.read(4) == b"\0\0\0\0"  # the punched part reads back as NUL bytes
        f.seek(-1024, os.SEEK_END)
        assert f.read() == b"y" * 1023 + b"\n"  # the newest part is untouched
    with open(log, "ab") as f:  # the trial keeps appending; reading goes on where it was
        f.write(b'@hpotui {"epoch": 2}\n')
    assert tail.read_lines() == [('@hpotui {"epoch": 2}', 8 * 2**20 + 21)]
    tail.close()


def test_a_resumed_reader_starts_at_the_committed_offset_past_the_hole(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    with open(log, "wb") as f:
        f.write((b"z" * 1023 + b"\n") * 4 * 1024 + b'@hpotui {"epoch": 9}\n')
    first = LogTail(log, keep_bytes=64 * 1024)
    lines = first.read_lines() + first.read_lines()  # two batches: 4 MiB is one read's budget
    assert lines[-1][0] == '@hpotui {"epoch": 9}'
    committed = lines[-2][1]  # the engine recorded up to the line before the metric, then died
    first.trim()
    again = LogTail(log, committed)
    assert again.read_lines() == [('@hpotui {"epoch": 9}', os.stat(log).st_size)]
