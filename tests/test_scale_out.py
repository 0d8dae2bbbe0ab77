"""Scale-out: two `topup serve` processes and two `topup worker` processes on
one database (and Redis for rate limits and the lookup cache), as behind a
reverse proxy. Buyers order at either server, the provider's webhooks arrive
at both, several times, at once: every order is paid once and delivered
exactly once."""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import redis

from topup import orders
from topup.models import Order, OrderEvent
from topup_plugins.sandbox.delivery import SandboxCredit

from tests.conftest import CSRF, IDEMPOTENCY, package_id, sandbox_event, signed_headers, wait_for

TOPUP = Path(sys.executable).parent / "topup"
SECRET = "whsec_scale_" + "s" * 24
REDIS = "redis://127.0.0.1:6379/14"
ORDERS = 12


@pytest.fixture
def processes(app, database_url, tmp_path):
    redis.Redis.from_url(REDIS).flushdb()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")},
           "TOPUP_INSTANCE_PATH": str(tmp_path / "instance"), "TOPUP_DATABASE_URL": database_url,
           "TOPUP_SECRET_KEY": "one-secret-for-every-process", "TOPUP_DISABLED_PLUGINS": "[]",
           "TOPUP_PLUGINS": json.dumps({"sandbox_payment": {"webhook_secret": SECRET},
                                        "sandbox_delivery": {"delay_seconds": 0.05}}),
           "TOPUP_RATELIMIT_STORAGE_URI": REDIS, "TOPUP_LOOKUP_CACHE_URL": REDIS,
           "TOPUP_WORKER_POLL_SECONDS": "0.05",
           "TOPUP_ORDER_RATE_LIMIT": "100 per minute"}  # every buyer here is 127.0.0.1
    started = []

    def spawn(*command):
        process = subprocess.Popen([str(TOPUP), *command], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        started.append(process)
        return process

    servers = [spawn("serve", "--port", "0", "--no-workers") for _ in range(2)]
    urls = [re.search(r"serving on (http://\S+?)/?$", server.stdout.readline()).group(1)
            for server in servers]
    for _ in range(2):
        spawn("worker", "--threads", "2")
    yield urls
    for process in started:
        process.terminate()
        process.wait(10)
        process.stdout.close()
    redis.Redis.from_url(REDIS).flushdb()


class Buyer:
    """A browser: its own cookies, the product page's form, Buy."""

    def __init__(self, url: str):
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def buy(self, account: str) -> str:
        page = self.opener.open(f"{self.url}/tiktok-coins").read().decode()
        form = {"csrf_token": CSRF.search(page).group(1),
                "idempotency_key": IDEMPOTENCY.search(page).group(1), "country": "US",
                "account": account, "package": str(package_id(70)), "method": "sandbox",
                "email": "", "intent": "buy"}
        response = self.opener.open(f"{self.url}/tiktok-coins",
                                    data=urllib.parse.urlencode(form).encode())
        return response.url.rsplit("/", 1)[1]  # followed the 303 to /orders/<id>


def post_webhook(url: str, body: bytes) -> int:
    request = urllib.request.Request(f"{url}/webhooks/sandbox", data=body, method="POST",
                                     headers=signed_headers(body, SECRET))
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status


def test_two_servers_and_two_workers_deliver_each_order_exactly_once(app, processes):
    first, second = processes
    public_ids = [Buyer(processes[index % 2]).buy(f"@scale_{index}") for index in range(ORDERS)]
    placed = [Order.get(Order.public_id == public_id) for public_id in public_ids]

    # Every success event, three times, at both servers, all at once.
    answers, threads = [], []
    for order in placed:
        body = sandbox_event(order)
        for url in (first, second, first, second, first, second):
            thread = threading.Thread(target=lambda u=url, b=body: answers.append(post_webhook(u, b)))
            threads.append(thread)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers.count(200) == len(threads)

    wait_for(lambda: Order.select().where(Order.status == orders.DELIVERED).count() == ORDERS,
             timeout=60)
    assert SandboxCredit.select().count() == ORDERS
    assert SandboxCredit.select().where(SandboxCredit.attempts != 1).count() == 0
    for order in placed:
        trail = [(e.from_status, e.to_status) for e in
                 OrderEvent.select().where(OrderEvent.order == order.id, OrderEvent.kind == "status")
                 .order_by(OrderEvent.id)]
        assert trail.count((orders.AWAITING_PAYMENT, orders.PAID)) == 1
        assert trail.count((orders.DELIVERING, orders.DELIVERED)) == 1
    # Both servers are healthy: the workers' heartbeats are in the shared database.
    for url in processes:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as health:
            assert json.loads(health.read()) == {"ok": True, "database": "ok", "worker": "ok"}
    # The lookup cache is shared through Redis.
    assert redis.Redis.from_url(REDIS).keys("topup:lookup:*")


def serve_two_processes(database_url, tmp_path, stderr) -> subprocess.Popen:
    """`topup serve --processes 2` on the test database."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")},
           "TOPUP_INSTANCE_PATH": str(tmp_path / "instance"), "TOPUP_DATABASE_URL": database_url,
           "TOPUP_SECRET_KEY": "one-secret-for-every-process", "TOPUP_RATELIMIT_ENABLED": "false"}
    return subprocess.Popen([str(TOPUP), "serve", "--port", "0", "--processes", "2",
                             "--no-workers"], env=env, stdout=subprocess.PIPE, stderr=stderr,
                            text=True)


def children_of(pid: int) -> list[int]:
    """Its child processes, whichever of its threads started them."""
    return sorted(int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                  for child in (task / "children").read_text().split())


def cpu_of(pid: int) -> int | None:
    """The one CPU all its threads may run on; None if they may run on more."""
    allowed = set().union(*(os.sched_getaffinity(int(thread))
                            for thread in os.listdir(f"/proc/{pid}/task")))
    return allowed.pop() if len(allowed) == 1 else None


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_serve_with_processes_shares_one_port_replaces_a_dead_process_and_stops_on_sigterm(
        app, database_url, tmp_path):
    server = serve_two_processes(database_url, tmp_path, stderr=subprocess.PIPE)
    try:
        line = server.stdout.readline()
        url = re.search(r"serving on (http://\S+?)/?$", line).group(1)
        first = children_of(server.pid)
        assert len(first) == 2
        # Each process on a CPU of its own, all of its threads with it.
        usable = sorted(os.sched_getaffinity(0))
        placed = {pid: cpu_of(pid) for pid in first}
        assert sorted(placed.values()) == sorted((usable * 2)[:2]), placed  # None: not one

        def pages(count: int) -> list[int]:  # each on a new connection: spread by the kernel
            return [urllib.request.urlopen(f"{url}/tiktok-coins", timeout=10).status
                    for _ in range(count)]

        before = {pid: cpu_ticks(pid) for pid in first}
        assert pages(60) == [200] * 60
        assert all(cpu_ticks(pid) > before[pid] for pid in first), "one process served all"

        os.kill(first[0], 9)  # a process dies: the other serves meanwhile, then one replaces it
        # Gone once its parent reaped it: only then are all its threads, and so
        # its socket, closed (until then new connections may still reach it).
        wait_for(lambda: not Path(f"/proc/{first[0]}").exists())
        assert pages(5) == [200] * 5
        replaced = wait_for(lambda: len(children_of(server.pid)) == 2
                            and children_of(server.pid) != first and children_of(server.pid))
        assert first[1] in replaced and first[0] not in replaced
        new = next(pid for pid in replaced if pid != first[1])
        wait_for(lambda: cpu_of(new) == placed[first[0]])  # its slot's CPU, once it placed itself
        assert pages(5) == [200] * 5

        server.terminate()
        assert server.wait(20) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in replaced)  # stopped and reaped
        assert f"serving process {first[0]} exited with -9; starting another" in server.stderr.read()
    finally:
        if server.poll() is None:  # the test failed midway: leave no process behind
            for pid in children_of(server.pid):
                os.kill(pid, 9)
            server.kill()
            server.wait()
        server.stdout.close()
        server.stderr.close()


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_serving_processes_stop_when_their_parent_is_killed_outright(app, database_url,
                                                                     tmp_path):
    server = serve_two_processes(database_url, tmp_path, stderr=subprocess.DEVNULL)
    with server:
        assert "serving on" in server.stdout.readline()
        serving = children_of(server.pid)
        assert len(serving) == 2
        server.kill()
        server.wait()
        wait_for(lambda: not any(running(pid) for pid in serving))
