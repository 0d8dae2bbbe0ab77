"""Plugin failures while the shop runs, recorded in the database so the
operator sees every process's: a reseller that times out in a worker, a mail
server that refuses a notifier, a provider that breaks on a webhook. One row
per plugin holds its latest message, how many times it failed, when first and
last, and where; the admin's plugins page and `topup plugins` list them until
the operator dismisses them (a plugin that fails again comes back).

A plugin that fails on every request must not add a write to every request:
each process writes a plugin's same message at most once a minute, and the
failures in between are added to the count at the next write.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from topup.models import PluginProblem, utcnow

log = logging.getLogger(__name__)
WRITE_EVERY_SECONDS = 60
MESSAGE_LENGTH = 1000


def this_process() -> str:
    """host:pid, how workers and problems name the process they come from."""
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


class Problems:
    """One process's writer of PluginProblem rows (held by its plugin Registry)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._written: dict[str, tuple[str, float]] = {}  # plugin -> (message, when written)
        self._unwritten: dict[str, int] = {}  # plugin -> failures not yet counted

    def record(self, plugin: str, message: str) -> None:
        plugin, message = plugin[:255], message[:MESSAGE_LENGTH]
        now = time.monotonic()
        with self._lock:
            self._unwritten[plugin] = self._unwritten.get(plugin, 0) + 1
            written = self._written.get(plugin)
            if written and written[0] == message and now - written[1] < WRITE_EVERY_SECONDS:
                return
            count = self._unwritten.pop(plugin)
            self._written[plugin] = (message, now)
        at, process = utcnow(), this_process()
        try:  # one statement: atomic without a transaction of its own
            (PluginProblem.insert(plugin=plugin, message=message, count=count, first_at=at,
                                  last_at=at, process=process)
             .on_conflict(conflict_target=[PluginProblem.plugin], update={
                 PluginProblem.message: message, PluginProblem.last_at: at,
                 PluginProblem.process: process, PluginProblem.count: PluginProblem.count + count})
             .execute())
        except Exception as exc:  # the log line above this one is then the only record
            log.warning("could not record plugin %s's failure (%s)", plugin, type(exc).__name__)


def recent() -> list[PluginProblem]:
    """Every recorded problem, the latest first."""
    return list(PluginProblem.select().order_by(PluginProblem.last_at.desc()))


def dismiss(plugin: str) -> bool:
    """The operator has seen it: True if there was such a problem."""
    return PluginProblem.delete().where(PluginProblem.plugin == plugin).execute() > 0
