"""The delivery worker: claim a due outbox row, call its backend, record the answer.

Runs as threads inside `topup serve` (the embedded default) or as `topup worker`
processes; any number of them may share one database.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from topup import orders
from topup.delivery import DeliveryResult
from topup.models import WorkerHeartbeat, utcnow
from topup.problems import this_process

log = logging.getLogger(__name__)

SWEEP_EVERY_SECONDS = 5.0


def deliver_once(app) -> bool:
    """Work one due delivery, if any. True when there was one."""
    with app.app_context():
        delivery = orders.claim_delivery()
        if delivery is None:
            return False
        registry = app.extensions["topup"]
        backend = registry.backends.get(delivery.backend)
        checking = delivery.status == "waiting"
        if backend is None:
            result = DeliveryResult("retry", message=f"delivery backend {delivery.backend!r} is not loaded")
        else:
            try:
                result = backend.fetch_status(delivery) if checking else backend.deliver(delivery.order)
            except Exception as exc:  # contained: counted as a transient failure
                registry.contain(backend.id, exc)
                result = None if checking else DeliveryResult(
                    "retry", message=f"{type(exc).__name__}: {exc}")
        orders.record_delivery_result(delivery, result)
        return True


def beat() -> None:
    """Record that this worker process is alive (one row per host:pid)."""
    name = this_process()
    (WorkerHeartbeat.insert(name=name, seen_at=utcnow())
     .on_conflict(conflict_target=[WorkerHeartbeat.name], update={WorkerHeartbeat.seen_at: utcnow()})
     .execute())
    WorkerHeartbeat.delete().where(WorkerHeartbeat.seen_at < utcnow() - timedelta(days=1)).execute()


def sweep(app) -> None:
    """Periodic housekeeping: close orders nobody paid, re-ask providers about
    payments whose webhook may be lost, and let plugins do their periodic work."""
    from topup import reconcile

    with app.app_context():
        count = orders.expire_overdue()
        if count:
            log.info("expired %d unpaid order(s)", count)
        reconcile.payments()
        beat()
        registry = app.extensions["topup"]
        for impl in registry.pm.hook.housekeeping.get_hookimpls():
            try:
                impl.function()
            except Exception as exc:
                registry.contain(impl.plugin_name, exc)


class Worker:
    """`threads` loops that deliver until stopped, and one that sweeps every
    SWEEP_EVERY_SECONDS: a long sweep (thousands of unpaid orders expiring at
    once) never holds deliveries up."""

    def __init__(self, app, threads: int | None = None):
        self.app = app
        self.count = threads if threads is not None else app.config["WORKER_THREADS"]
        self.stopping = threading.Event()
        # Set when this process commits a payment: an idle thread starts at once.
        self.wake = app.extensions.setdefault("topup.worker_wake", threading.Event())
        self.threads: list[threading.Thread] = []

    def start(self) -> Worker:
        loops = [(self._deliver_loop, f"topup-worker-{index}") for index in range(self.count)]
        for target, name in loops + [(self._sweep_loop, "topup-sweeper")]:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self, timeout: float = 10) -> None:
        self.stopping.set()
        self.wake.set()
        for thread in self.threads:
            thread.join(timeout)

    def _deliver_loop(self) -> None:
        poll = self.app.config["WORKER_POLL_SECONDS"]
        while not self.stopping.is_set():
            try:
                if deliver_once(self.app):
                    continue
            except Exception:  # a database hiccup must not kill the worker
                log.exception("worker loop error")
            if self.wake.wait(poll):
                self.wake.clear()

    def _sweep_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sweep(self.app)
            except Exception:  # nor one round of housekeeping
                log.exception("worker sweep error")
            self.stopping.wait(SWEEP_EVERY_SECONDS)
