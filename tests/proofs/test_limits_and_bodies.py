"""Rate limits on sign-in, and body limits on every POST route.

Lookups and Buy are limited per client (tests/web/test_limits.py). Here:
sign-in links (GET and POST /admin/link/<token>) and identity-provider
sign-in (POST /sign-in/<provider> and its callback) share a per-client
budget, so links cannot be guessed at speed; and a body over
MAX_CONTENT_LENGTH is 413 with a clear message and no change, on every POST
route of app.url_map — forms (urlencoded and multipart), webhooks and
callbacks (even correctly signed), and chunked bodies without a
Content-Length over real HTTP.
"""
from __future__ import annotations

import http.client
import json
import re
from urllib.parse import urlsplit

import pytest

from topup.cli import main
from topup.models import SignInLink, SignInSession

from tests.conftest import CSRF, form_tokens
from tests.proofs.common import (
    TOUCHED, assert_clear, concrete_paths, everything_on, routes, signed_for, table_snapshot,
)
from tests.web import visible


@pytest.fixture
def config(config, stub):
    return everything_on(config, stub.url)


# --- sign-in is rate-limited ------------------------------------------------------------


@pytest.fixture
def limited(config):
    config.update(RATELIMIT_ENABLED=True, SIGN_IN_RATE_LIMIT="3 per minute")
    return config


def new_link(runner) -> str:
    result = runner.invoke(main, ["admin-link", "--email", "ops@example.com"])
    assert result.exit_code == 0, result.output
    return urlsplit(result.output.splitlines()[0]).path


def test_guessing_sign_in_links_is_rate_limited_per_client(limited, app, client, runner):
    token = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))["csrf_token"]
    guesses = [client.post(f"/admin/link/guess{n:040d}", data={"csrf_token": token})
               for n in range(2)] + [client.get("/admin/link/guess" + "9" * 40)]
    assert [r.status_code for r in guesses] == [404, 404, 404]
    # The budget is spent: even the right link is refused now, and stays unused.
    real = new_link(runner)
    for refused in (client.get(real), client.post(real, data={"csrf_token": token})):
        assert refused.status_code == 429
        assert "going a bit fast" in visible(refused)
        assert int(refused.headers["Retry-After"]) > 0
    assert SignInLink.get().used_at is None and SignInSession.select().count() == 0
    # Another address has its own budget, and signs in with that link.
    elsewhere = app.test_client()
    environ = {"REMOTE_ADDR": "192.0.2.44"}
    page = elsewhere.get(real, environ_base=environ).get_data(as_text=True)
    signed_in = elsewhere.post(real, data={"csrf_token": CSRF.search(page).group(1)},
                               environ_base=environ)
    assert signed_in.status_code == 303 and SignInSession.select().count() == 1


def test_starting_identity_provider_sign_in_is_rate_limited_per_client(limited, app, client,
                                                                     stub):
    token = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))["csrf_token"]
    started = [client.post("/sign-in/stub", data={"csrf_token": token, "next": "/admin/"})
               for _ in range(3)]
    assert [r.status_code for r in started] == [303, 303, 303]
    assert all(r.headers["Location"].startswith(f"{stub.url}/authorize?") for r in started)
    # The budget is spent: no more trips to the provider, and its callback waits too.
    for refused in (client.post("/sign-in/stub", data={"csrf_token": token}),
                    client.get("/sign-in/stub/callback?state=x&code=y")):
        assert refused.status_code == 429
        assert "Location" not in refused.headers
        assert "going a bit fast" in visible(refused)
        assert int(refused.headers["Retry-After"]) > 0
    assert SignInSession.select().count() == 0
    # Another address has its own budget.
    elsewhere = app.test_client()
    environ = {"REMOTE_ADDR": "192.0.2.45"}
    page = elsewhere.get("/tiktok-coins", environ_base=environ).get_data(as_text=True)
    again = elsewhere.post("/sign-in/stub", data={"csrf_token": form_tokens(page)["csrf_token"]},
                           environ_base=environ)
    assert again.status_code == 303 and again.headers["Location"].startswith(stub.url)


# --- every POST route refuses a body over the limit ---------------------------------------

POSTS = [(rule, endpoint) for rule, method, endpoint in routes() if method == "POST"]
# A signed JSON body to the Xendit callback is size-checked by the plugin before
# it is read: a 400 naming the reason (forms are refused with 413 before any view).
OWN_ANSWER = {("xendit.callback", "signed json"): (400, "body too large")}


@pytest.mark.parametrize("rule, endpoint", POSTS, ids=[e for _, e in POSTS])
def test_a_body_over_the_limit_is_413_with_a_message_and_changes_nothing(app, world, operator,
                                                                        rule, endpoint):
    limit = app.config["MAX_CONTENT_LENGTH"]
    path = concrete_paths(rule, {**world, "action": ["delivered"]})[1 if "public_id" in rule
                                                                     else 0]
    before = table_snapshot(app, TOUCHED)
    blob = "x" * (limit + 1)
    body = json.dumps({"id": "evt_big", "type": "payment.succeeded", "data": {"pad": blob}}
                      ).encode()
    attempts = [
        ("urlencoded", dict(data={"csrf_token": operator.token, "reference": blob})),
        ("multipart", dict(data={"csrf_token": operator.token, "reference": blob},
                           content_type="multipart/form-data")),
        ("signed json", dict(data=body, headers={"Content-Type": "application/json",
                                                 **signed_for(path, body)})),
    ]
    for kind, request in attempts:
        response = operator.client.post(path, **request)
        status, reason = OWN_ANSWER.get((endpoint, kind), (413, None))
        assert response.status_code == status, (kind, response.status_code)
        assert_clear(response, f"{kind} POST {path}")
        if reason:
            assert reason in response.get_data(as_text=True)
        elif path.startswith("/webhooks/"):
            assert response.is_json
        else:
            assert "too large" in visible(response) or "too large" in response.get_data(
                as_text=True)
        assert table_snapshot(app, TOUCHED) == before, kind


@pytest.mark.parametrize("path, content_type", [
    ("/webhooks/sandbox", "application/json"),
    ("/tiktok-coins", "application/x-www-form-urlencoded"),
    ("/digiflazz/callback", "application/json"),
])
def test_a_chunked_body_over_the_limit_is_refused_over_http(app, live_server, path,
                                                           content_type):
    """No Content-Length to check up front: the limit still holds while reading."""
    host = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    chunk = b"a" * 8192
    connection.putrequest("POST", path)
    connection.putheader("Content-Type", content_type)
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    for _ in range(12):  # 96 KiB
        connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    connection.send(b"0\r\n\r\n")
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    assert response.status == 413, (response.status, text[:300])
    assert re.search(r"too large|Too Large", text)
