"""Following a component's log file (local processes, the Fleet front)."""

from __future__ import annotations

from pathlib import Path

from flops_management.orchestrators.log_file import LogFile


def test_each_complete_line_is_read_once_and_a_partial_one_waits(
    tmp_path: Path,
) -> None:
    log = LogFile(tmp_path / "superlink.log")
    assert log.new_lines() == [] and log.tail() == ""  # not written yet
    with log.path.open("ab") as out:
        out.write(b"listening on 0.0.0.0:9092\r\nround 1: fit")
        out.flush()
        assert log.new_lines() == ["listening on 0.0.0.0:9092"]
        assert log.new_lines() == []
        out.write(b" done\n\xffbad byte\n")
    assert log.new_lines() == ["round 1: fit done", "\ufffdbad byte"]
    assert log.tail(2) == "round 1: fit done\n\ufffdbad byte"
