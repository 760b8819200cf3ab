"""What ``bin/up`` shows in its terminal, and where the rest goes.

Every line a child prints goes to its log file under ``.local/logs/``; the terminal gets the
lines a person watching needs: warnings and errors (with their tracebacks), librdkafka's
errors, and the sentinels' state changes (the runtime's INFO lines: a sentinel started,
stopped, moved, its host restarted). Routine task chatter (Celery's ``received`` /
``succeeded`` every two seconds, beat's ``Sending due task``) stays in the file.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import IO

# Django's LOGGING "plain" format (dashboard/settings.py): "<date> <time>,<ms> LEVEL logger ..."
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) (?P<logger>[\w.]+)( \d+)?:?"
)
# librdkafka's own log lines: "%<syslog level>|<time>|<facility>|...": 0-3 are errors.
RDKAFKA_LINE = re.compile(r"^%(?P<level>\d)\|")
SHOWN_LEVELS = {"WARNING", "ERROR", "CRITICAL"}
# INFO lines that are a sentinel's state changing, or the server being reachable.
SHOWN_INFO_LOGGERS = ("workers.runtime.", "daphne.cli")


class LineFilter:
    """Decides line by line; a line that is not a log record (a traceback, a continuation)
    goes where the record it belongs to went."""

    def __init__(self) -> None:
        self.showing = False

    def wants(self, line: str) -> bool:
        record = LOG_LINE.match(line)
        if record:
            level, logger = record["level"], record["logger"]
            self.showing = level in SHOWN_LEVELS or (
                level == "INFO" and logger.startswith(SHOWN_INFO_LOGGERS)
            )
            return self.showing
        rdkafka = RDKAFKA_LINE.match(line)
        if rdkafka:
            self.showing = int(rdkafka["level"]) <= 3
            return self.showing
        return self.showing


class LogRelay:
    """Reads a child's output in a thread: every line to ``path``, the wanted ones to
    ``terminal`` with the child's name in front."""

    def __init__(self, name: str, stream: IO[str], path: Path, terminal: IO[str] = sys.stdout):
        self.name = name
        self.path = path
        self.terminal = terminal
        self.filter = LineFilter()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(
            target=self._run, args=(stream,), name=f"log-{name}", daemon=True
        )
        self._thread.start()

    def _run(self, stream: IO[str]) -> None:
        last, repeated = "", 0
        with self.path.open("a", encoding="utf-8") as out:
            for line in stream:
                out.write(line)
                out.flush()
                if not self.filter.wants(line):
                    continue
                # A warning repeated while a client retries is said once, then counted.
                text = LOG_LINE.sub("", line)
                if text == last:
                    repeated += 1
                    continue
                if repeated:
                    self.terminal.write(f"[{self.name}] (the line before: {repeated} more times)\n")
                last, repeated = text, 0
                self.terminal.write(f"[{self.name}] {line}")
                self.terminal.flush()
            if repeated:
                self.terminal.write(f"[{self.name}] (the line before: {repeated} more times)\n")

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def tail(self, lines: int = 20) -> list[str]:
        """The last ``lines`` lines of the child's log file (what to show when it exits)."""
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        except OSError:
            return []
