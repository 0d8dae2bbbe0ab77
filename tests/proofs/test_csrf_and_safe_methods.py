"""CSRF and safe methods, over every route of app.url_map:

- every POST route except the signature-authenticated webhooks and callbacks
  refuses a request without a CSRF token, with a wrong one, or with another
  browser's, with 400 "This form has expired" and not one row changed — and
  the same request with the right token does what it says (so the refusal is
  the token's doing);
- the routes exempt from CSRF are exactly the signed ones;
- no GET (or HEAD) changes the database: every GET route, as a visitor and as
  a signed-in operator, with and without htmx, with query strings that look
  like decisions, purchases and operator actions, leaves every row of every
  table as it was.
"""
from __future__ import annotations

import io
import re

import pytest
from werkzeug.datastructures import MultiDict

from topup.models import PluginProblem, Price, Product, PromoCode

from tests.conftest import CSRF, form_tokens, package_id
from tests.proofs.common import (
    SIGNED_ENDPOINTS, TOUCHED, concrete_paths, csrf_exempt, everything_on, routes, rules_of,
    table_snapshot,
)
from tests.web import HX, visible

STATE_CHANGING = [(rule, endpoint) for rule, method, endpoint in routes()
                  if method == "POST" and endpoint not in SIGNED_ENDPOINTS]
READS = [(rule, endpoint) for rule, method, endpoint in routes() if method == "GET"]


@pytest.fixture
def config(config, stub):
    return everything_on(config, stub.url)


@pytest.fixture
def sandbox_sends(sandbox_webhooks):
    return sandbox_webhooks  # the sandbox's own webhook, captured instead of sent


def good_request(app, world, rule: str, endpoint: str, promo: PromoCode) -> tuple[str, list]:
    """(path, form fields) a real browser would send to this route: with the
    right CSRF token it must change something."""
    ids = {"public_id": world["public_id"][1],  # the paid order
           "action": "delivered", "slug": "tiktok-coins", "ref": world["ref"][0],
           "token": world["token"][0], "provider": "stub",
           "product_id": world["product_id"][0], "package_id": str(package_id(70))}
    path = re.sub(r"<(?:[^:<>]+:)?(\w+)>", lambda m: ids[m.group(1)], rule)
    fields = {
        "shop.buy": [("country", "US"), ("account", "demo_user"), ("package", str(package_id(70))),
                     ("method", "sandbox"), ("intent", "buy"),
                     ("idempotency_key", "csrf-proof-key-0123456789")],
        "sandbox.decide": [("decision", "approve")],
        "admin.act": [("reference", "HAND-CREDITED-1")],
        "admin.update_product": [("name", "TikTok Coins!"), ("delivery_backend", "sandbox"),
                                 ("sort", "3"), ("enabled", "on")],
        "admin.add_package": [("quantity", "5"), ("sort", "9"), ("enabled", "on")],
        "admin.update_package": [("quantity", "71"), ("sort", "1"), ("enabled", "on")],
        "admin.add_price": [("currency", "EUR"), ("amount", "0.99")],
        "admin.import_stock": [("package", str(package_id(70))), ("batch", "csrf"),
                               ("file", (io.BytesIO(b"CODE-AAAA-0001\nCODE-AAAA-0002\n"),
                                         "codes.csv"))],
        "admin.update_custom": [("custom_enabled", "on"), ("custom_min", "100"),
                                ("custom_max", "10000"), ("rate-USD", "13.40")],
        "admin.create_promo": [("code", "PROOF10"), ("kind", "percent"), ("percent", "10"),
                               ("enabled", "on")],
        "admin.update_promo": [("id", str(promo.id)), ("kind", "percent"), ("percent", "20"),
                               ("enabled", "on")],
        "admin.toggle_promo": [("id", str(promo.id)), ("enabled", "0")],
        "admin.dismiss_problem": [("plugin", "stub")],
        "auth.use_link": [], "auth.sign_out": [], "oidc.login": [("next", "/admin/")],
    }
    return path, fields[endpoint]


def test_every_state_changing_route_is_known_here_and_only_signed_routes_skip_csrf(app):
    """A new POST route must be added to good_request (and so to the proof);
    a new CSRF exemption must be a signed route."""
    assert rules_of(app) == routes()
    exempt = {endpoint for _, method, endpoint in routes()
              if method == "POST" and csrf_exempt(app, endpoint)}
    assert exempt == SIGNED_ENDPOINTS
    assert {endpoint for _, endpoint in STATE_CHANGING} == {
        "shop.buy", "sandbox.decide", "admin.act", "admin.update_product", "admin.add_package",
        "admin.update_package", "admin.add_price", "admin.import_stock", "admin.update_custom",
        "admin.create_promo", "admin.update_promo", "admin.toggle_promo",
        "admin.dismiss_problem", "auth.use_link", "auth.sign_out", "oidc.login"}


def form(fields: list, *more) -> MultiDict:
    """The fields as a browser posts them (a fresh file object each time)."""
    return MultiDict([(key, (io.BytesIO(value[0].getvalue()), value[1])
                       if isinstance(value, tuple) else value) for key, value in [*fields, *more]])


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


@pytest.mark.parametrize("rule, endpoint", STATE_CHANGING, ids=[e for _, e in STATE_CHANGING])
def test_a_post_without_the_right_csrf_token_is_400_and_changes_nothing(
        app, stub, world, operator, sandbox_sends, rule, endpoint):
    Price.delete().where(Price.package == package_id(70), Price.currency == "EUR").execute()
    promo = PromoCode.create(code="EXISTING", kind="percent", percent_bp=500)
    PluginProblem.create(plugin="stub", message="RuntimeError: down", process="proof:1")
    path, fields = good_request(app, world, rule, endpoint, promo)
    elsewhere = app.test_client()  # another browser: its own session, its own token
    other_token = form_tokens(elsewhere.get("/tiktok-coins").get_data(as_text=True))["csrf_token"]
    before = table_snapshot(app, TOUCHED)
    signed_in_as = session_cookie(operator.client)

    for token in (None, "", "not-a-token", other_token, operator.token[:-2] + "xx"):
        data = form(fields) if token is None else form(fields, ("csrf_token", token))
        response = operator.client.post(path, data=data, content_type="multipart/form-data")
        assert response.status_code == 400, (token, response.status_code)
        assert "This form has expired" in visible(response)
        assert table_snapshot(app, TOUCHED) == before, token
        assert session_cookie(operator.client) == signed_in_as  # nobody signed in or out
    assert sandbox_sends == []

    # The control: the same request with the browser's own token does its work.
    response = operator.client.post(path, data=form(fields, ("csrf_token", operator.token)),
                                    content_type="multipart/form-data")
    assert response.status_code in (200, 303), (response.status_code, visible(response)[:500])
    if endpoint == "oidc.login":  # a sign-in started: the state lives in the session cookie
        assert response.headers["Location"].startswith(f"{stub.url}/authorize?")
    else:
        assert table_snapshot(app, TOUCHED) != before
    if endpoint == "sandbox.decide":
        assert len(sandbox_sends) == 1


def test_the_token_may_also_come_in_a_header_but_never_from_another_session(app, world,
                                                                           operator):
    """Flask-WTF reads X-CSRFToken too (htmx could send it): the same rule holds."""
    path = f"/admin/orders/{world['public_id'][1]}/delivered"
    before = table_snapshot(app, TOUCHED)
    elsewhere = app.test_client()
    other = CSRF.search(elsewhere.get("/tiktok-coins").get_data(as_text=True)).group(1)
    refused = operator.client.post(path, data={"reference": "X"}, headers={"X-CSRFToken": other})
    assert refused.status_code == 400 and table_snapshot(app, TOUCHED) == before
    done = operator.client.post(path, data={"reference": "X"},
                                headers={"X-CSRFToken": operator.token})
    assert done.status_code == 303 and table_snapshot(app, TOUCHED) != before


# --- GET never changes anything -------------------------------------------------------------

# Query strings that look like the state-changing forms: a GET must ignore them.
TEMPTING = [{}, {"decision": "approve"}, {"intent": "buy", "country": "US",
                                          "account": "demo_user", "method": "sandbox",
                                          "idempotency_key": "get-never-buys-0123456"},
            {"reference": "X", "reason": "x", "action": "refund", "status": "delivered",
             "next": "/admin/", "lang": "id", "seen": "paid", "account": "maria"}]


def test_no_get_or_head_changes_the_database(app, world, operator, sandbox_sends):
    before = table_snapshot(app, TOUCHED)
    anonymous = app.test_client()
    asked = 0
    for rule, endpoint in READS:
        for path in concrete_paths(rule, world):
            for browser in (anonymous, operator.client):
                for query in TEMPTING:
                    for headers in ({}, HX):
                        for method in (browser.get, browser.head):
                            query = {**query, **({"package": str(package_id(70))}
                                                 if "intent" in query else {})}
                            if "intent" in query:
                                query["csrf_token"] = operator.token
                            response = method(path, query_string=query, headers=headers)
                            assert response.status_code < 500, (path, response.status_code)
                            response.close()
                            asked += 1
            after = table_snapshot(app, TOUCHED)
            assert after == before, f"GET {path} changed {changed_tables(before, after)}"
    assert asked > 500 and sandbox_sends == []
    assert Product.get().name == "TikTok Coins"


def changed_tables(before: dict, after: dict) -> list[str]:
    return [table for table in after if after[table] != before.get(table)]
