"""The bridge's structlog output captured as JSON lines, for tests that read what it
logged."""

from __future__ import annotations

import io
import json
import threading
from typing import Any


class LogBuffer(io.StringIO):
    """A thread-safe text stream the bridge's structlog writes JSON lines to."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            return super().write(text)

    def isatty(self) -> bool:
        return False

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            lines = self.getvalue().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events()]
