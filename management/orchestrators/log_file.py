"""A log file a component's process appends to, read as a job follows it."""

from __future__ import annotations

from pathlib import Path


class LogFile:
    """New complete lines of `path`, each once: a line still being written
    waits for its newline; a file not there yet reads as nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
                self._offset = handle.tell()
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    def tail(self, lines: int = 20) -> str:
        """The last `lines` lines, whether or not read already."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
