"""Redis, where topup uses it (rate limits, the account-lookup cache), is a
helper the shop sells without: when it is down the limits let requests
through and lookups go to the reseller. What must not happen is that a Redis
which hangs (overloaded, or a network that drops packets) costs every request
its client's patience: redis-py waits about 5 s for a silent server's
handshake, and retries up to 10 times, while waitress has a handful of threads.

So each client gets short timeouts and one retry (for a pooled connection the
server has closed), and after a failure its Pause leaves the store alone for a
few seconds: one request per pause pays the timeout, the others none.
"""
from __future__ import annotations

import logging
import threading
import time

from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 0.25  # Redis answers in a millisecond or two on a LAN
PAUSE_SECONDS = 5.0


def redis_options() -> dict:
    """Keyword arguments for redis.Redis (or Redis.from_url; the URL's own
    query, e.g. ?socket_timeout=1, still wins there)."""
    return {"socket_timeout": TIMEOUT_SECONDS, "socket_connect_timeout": TIMEOUT_SECONDS,
            "retry": Retry(NoBackoff(), 1)}


class Pause:
    """After a store failed, "not now" for `seconds`; then it is asked again."""

    def __init__(self, store: str, meanwhile: str, seconds: float = PAUSE_SECONDS):
        """store: what it is, meanwhile: what happens instead, both for the log."""
        self.store, self.meanwhile, self.seconds = store, meanwhile, seconds
        self._until = 0.0
        self._lock = threading.Lock()

    def active(self) -> bool:
        return time.monotonic() < self._until

    def failed(self, exc: BaseException) -> None:
        """Begin a pause, logged once (by the thread whose failure began it)."""
        with self._lock:
            if self.active():
                return
            self._until = time.monotonic() + self.seconds
        log.warning("%s failed (%s): %s for %.0f s", self.store, type(exc).__name__,
                    self.meanwhile, self.seconds)
