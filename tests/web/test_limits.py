"""Account lookups are cached and rate-limited per client, so the username
check cannot be used to hammer a reseller; Buy has its own limit."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import redis

from topup_plugins.sandbox.delivery import SandboxDelivery

from tests.conftest import buy

HX = {"HX-Request": "true"}


@pytest.fixture
def lookups(monkeypatch):
    """Every call that reaches the backend, by username."""
    asked = []
    original = SandboxDelivery.lookup_account

    def counting(self, product, account_id):
        asked.append(account_id)
        return original(self, product, account_id)

    monkeypatch.setattr(SandboxDelivery, "lookup_account", counting)
    return asked


def check(client, username, **headers):
    return client.get(f"/tiktok-coins/account?account={username}", headers={**HX, **headers})


def test_a_username_checked_twice_asks_the_backend_once(client, lookups):
    for _ in range(3):
        assert "Maria" in check(client, "@maria.s").get_data(as_text=True)
    client.get("/tiktok-coins?account=maria.s")  # the no-JS page shares the cache
    assert lookups == ["maria.s"]


def test_not_found_is_cached_briefly_and_errors_not_at_all(app, client, lookups, monkeypatch):
    # 2 s: cachelib's in-memory cache counts whole seconds (int(time()) + ttl), so
    # an entry lives ttl - 1 to ttl seconds; with 1 s, a slow first check could outlive it.
    app.config["LOOKUP_NOT_FOUND_CACHE_SECONDS"] = 2
    assert "No such account" in check(client, "nobody_here").get_data(as_text=True)
    check(client, "nobody_here")
    assert lookups == ["nobody_here"]
    import time
    time.sleep(2.1)
    check(client, "nobody_here")
    assert lookups == ["nobody_here", "nobody_here"]

    def broken(self, product, account_id):
        lookups.append(account_id)
        raise TimeoutError("reseller is slow")

    monkeypatch.setattr(SandboxDelivery, "lookup_account", broken)
    for _ in range(2):
        assert "couldn&#39;t check this account" in check(client, "flaky").get_data(as_text=True)
    assert lookups[-2:] == ["flaky", "flaky"]


@pytest.fixture
def limited(config):
    config.update(RATELIMIT_ENABLED=True, LOOKUP_RATE_LIMIT="3 per minute",
                  ORDER_RATE_LIMIT="2 per minute")
    return config


def test_lookups_over_the_limit_get_429_with_a_message_in_the_partial(limited, client, lookups):
    for name in ("a_one", "a_two", "a_three"):
        assert check(client, name).status_code == 200
    refused = check(client, "a_four")
    assert refused.status_code == 429
    assert "going a bit fast" in refused.get_data(as_text=True)
    assert refused.headers["Retry-After"]
    assert "a_four" not in lookups
    # The no-JS page with ?account= draws on the same budget; without it, it is free.
    page = client.get("/tiktok-coins?account=a_five")
    assert page.status_code == 429 and "going a bit fast" in page.get_data(as_text=True)
    assert client.get("/tiktok-coins").status_code == 200
    # Another buyer (another address) is not affected.
    assert check(client, "b_one", **{}).status_code == 429
    other = client.get("/tiktok-coins/account?account=b_one", headers=HX,
                       environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200


def test_orders_over_the_limit_get_429_and_no_order(limited, app, client):
    from topup.models import Order

    assert buy(client).status_code == 303
    assert buy(client).status_code == 303
    refused = buy(client)
    assert refused.status_code == 429 and "going a bit fast" in refused.get_data(as_text=True)
    assert Order.select().count() == 2


@pytest.fixture
def redis_url():
    url = "redis://127.0.0.1:6379/15"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


def test_limits_and_cache_can_live_in_redis_shared_by_processes(limited, redis_url, tmp_path,
                                                                 lookups, monkeypatch):
    """Two apps (two processes' worth) share one budget and one cache through Redis."""
    from topup import create_app

    limited.update(RATELIMIT_STORAGE_URI=redis_url, LOOKUP_CACHE_URL=redis_url)
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    first, second = create_app(limited), create_app(limited)
    from topup import demo, schema
    with first.app_context():
        schema.drop_all(first.extensions["topup"].pm)
        schema.create_all(first.extensions["topup"].pm)
        demo.seed()
    one, two = first.test_client(), second.test_client()
    assert check(one, "shared.name").status_code == 200
    assert check(two, "shared.name").status_code == 200
    assert lookups == ["shared.name"]  # the second process found it in Redis
    assert check(one, "other.name").status_code == 200
    assert check(two, "third.name").status_code == 429  # the budget is shared too
    assert redis.Redis.from_url(redis_url).keys("topup:lookup:*")


def test_refusals_say_how_long_to_wait_and_the_window_then_reopens(limited, app, client,
                                                                  monkeypatch):
    import time as clock

    limited["LOOKUP_RATE_LIMIT"] = "2 per second"
    app.config.update(limited)
    assert [check(client, name).status_code for name in ("w1", "w2", "w3")] == [200, 200, 429]
    wait = int(check(client, "w4").headers["Retry-After"])
    assert 1 <= wait <= 2
    clock.sleep(1.1)
    assert check(client, "w5").status_code == 200


def test_each_budget_is_its_own(limited, client):
    for name in ("x_one", "x_two", "x_three"):
        assert check(client, name).status_code == 200
    assert check(client, "x_four").status_code == 429
    assert buy(client).status_code == 303  # Buy counts against its own budget


def test_switched_off_nothing_is_counted(limited, app, client):
    app.config["RATELIMIT_ENABLED"] = False
    assert all(check(client, f"off_{n}").status_code == 200 for n in range(6))


def test_a_storage_that_is_down_lets_buyers_through_and_says_so(limited, app, client, caplog):
    from topup.web.limits import Limits

    app.extensions["topup.limits"] = Limits("redis://127.0.0.1:1/0")  # nothing listens there
    for name in ("d_one", "d_two", "d_three", "d_four"):
        assert check(client, name).status_code == 200
    assert "rate limit storage failed" in caplog.text


@pytest.fixture
def hanging_redis():
    """A server that accepts connections and never answers, as a Redis that
    hangs does (overloaded, or behind a network that drops its replies)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    server.settimeout(0.05)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:  # the accept timeout: look at stop again
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_a_redis_that_hangs_costs_one_request_a_timeout_not_every_request(
        limited, app, client, lookups, hanging_redis, caplog, monkeypatch):
    """Limits and the lookup cache in a Redis that hangs: the first check waits
    out the short timeouts, later ones leave Redis alone (redis-py's defaults
    made each wait about 5 s, with 4 waitress threads for the whole shop)."""
    from topup import stores
    from topup.web.limits import Limits

    app.config.update(limited, LOOKUP_CACHE_URL=hanging_redis)
    app.extensions.pop("topup.lookup_cache", None)
    app.extensions["topup.limits"] = Limits(hanging_redis)
    names = [f"hang_{n}" for n in range(6)]
    started = time.monotonic()
    assert [check(client, name).status_code for name in names] == [200] * 6
    waited = time.monotonic() - started
    assert waited < 4, f"six checks took {waited:.1f} s"
    assert lookups == names  # each went to the reseller
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2 and "rate limit storage failed" in failures[0]
    assert "lookup cache failed" in failures[1]

    later = time.monotonic() + stores.PAUSE_SECONDS + 1  # the pause is over: asked again
    monkeypatch.setattr(stores.time, "monotonic", lambda: later)
    assert check(client, "hang_after").status_code == 200
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 4
