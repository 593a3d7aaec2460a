"""What a supervisor sees of a daemon (`gem-run serve`, `gem-run dicom-listen`): readiness and liveness over
systemd's notify socket, and its log as one JSON object per line for journald, with no patient data.

    notify("READY=1")                       # the model is loaded and the port answers (Type=notify units)
    Watchdog(lambda: worker.alive).start()  # WATCHDOG=1 every half WatchdogSec while the model's thread lives
    configure_logging("gem-run serve", json_lines=True)

Without $NOTIFY_SOCKET (not under systemd) notify does nothing; without $WATCHDOG_USEC the watchdog does not run.
A log line holds the event's one-line text (gem_runtime.errors.one_line), never a dataset's patient fields: the
daemons log UIDs, AE titles, addresses, statuses and timings only.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
from datetime import datetime, timezone
from typing import Callable

from .errors import one_line


def notify(state: str) -> bool:
    """Send `state` ("READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...") to systemd; False when not supervised."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):                      # the abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(state.encode())
    except OSError:
        return False
    return True


class Watchdog(threading.Thread):
    """Pings systemd's watchdog at half its interval while `alive()` holds: a model thread that died or hangs in a
    native call stops the pings, and systemd restarts the unit (WatchdogSec=, Restart=on-failure)."""

    def __init__(self, alive: Callable[[], bool]):
        super().__init__(name="gem-watchdog", daemon=True)
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.interval_s = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
        self.alive = alive
        self._stop_event = threading.Event()

    def start(self) -> None:
        if self.interval_s is not None:
            super().start()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s) and self.alive():
            notify("WATCHDOG=1")

    def stop(self) -> None:
        self._stop_event.set()


class JsonLines(logging.Formatter):
    """One JSON object per event: time (UTC), level, logger, event (one line), and the exception's class name
    (never its text, which can quote a file name)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "event": one_line(record.getMessage())}
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=True)


class OneLineFormatter(logging.Formatter):
    """Every record's message as one line (a dataset's text cannot split or forge a line); a traceback, where a
    record has one, follows on its own lines as usual."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


def configure_logging(prefix: str, json_lines: bool) -> None:
    """The daemon's log: JSON lines on stdout (journald), or `prefix: message` lines on stderr."""
    handler = logging.StreamHandler(sys.stdout if json_lines else sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else OneLineFormatter(f"{prefix}: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.INFO, force=True)
    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    logging.getLogger("highdicom").setLevel(logging.WARNING)      # 7 INFO lines per SR ("copy attributes of ...")
