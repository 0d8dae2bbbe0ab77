"""What every response promises, over every GET route of app.url_map and the
answers POSTs get (webhook JSON, CSRF refusal, 413, 422): the CSP without
'unsafe-inline', frame-ancestors 'none', object-src 'none', nosniff, a
Referrer-Policy that keeps order URLs to ourselves, X-Frame-Options, and HSTS
exactly when the request came over TLS. And the cookies: the session cookie
(buyer's and operator's) and the language cookie are HttpOnly, SameSite=Lax,
and Secure behind TLS; the operator's lasts only for the browser session."""
from __future__ import annotations

import re

import pytest

from topup.cli import main

from tests.conftest import CSRF, form_tokens
from tests.proofs.common import concrete_paths, everything_on, rules_of
from tests.web import HX

HTTPS = "https://coins.example"


@pytest.fixture
def config(config, stub):
    return everything_on(config, stub.url)


def directives(csp: str) -> dict:
    return {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}


def assert_headers(response, what: str, tls: bool) -> None:
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    found = directives(csp)
    assert csp, f"{what}: no CSP"
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, what
    assert found.get("frame-ancestors") == ["'none'"], what
    assert found.get("object-src") == ["'none'"], what
    assert found.get("default-src") == ["'none'"], what
    assert found.get("base-uri") == ["'none'"], what
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("Referrer-Policy") in ("same-origin", "no-referrer"), what
    assert headers.get("X-Frame-Options") == "DENY", what
    hsts = headers.get("Strict-Transport-Security")
    if tls:
        assert hsts and int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 180 * 24 * 3600, what
    else:
        assert hsts is None, f"{what}: HSTS over plain HTTP"


def responses(app, client, browser, world, base_url):
    """(what, response) for every GET route (real arguments, as a visitor and
    as the operator, with and without htmx) and the usual POST answers."""
    for rule, method, _ in rules_of(app):
        if method != "GET":
            continue
        for path in concrete_paths(rule, world):
            for who, c in (("visitor", client), ("operator", browser)):
                for headers in ({}, HX):
                    yield f"{who} GET {path} {headers}", c.get(path, base_url=base_url,
                                                               headers=headers)
    order = world["public_id"][0]
    yield "missing page", client.get("/no/such/page", base_url=base_url)
    yield "webhook rejected", client.post("/webhooks/sandbox", data=b"{}", base_url=base_url,
                                          headers={"Content-Type": "application/json"})
    yield "webhook too large", client.post("/webhooks/sandbox", data=b"x" * 70_000,
                                           base_url=base_url)
    yield "csrf refused", client.post("/tiktok-coins", data={"intent": "buy"}, base_url=base_url)
    tokens = form_tokens(client.get("/tiktok-coins", base_url=base_url).get_data(as_text=True))
    yield "invalid buy", client.post("/tiktok-coins", data={**tokens, "intent": "buy"},
                                     base_url=base_url,
                                     headers={"Referer": f"{base_url}/tiktok-coins"})
    yield "form too large", client.post("/tiktok-coins", data={"account": "a" * 70_000},
                                        base_url=base_url)
    yield "live 204", client.get(f"/orders/{order}/live?seen=awaiting_payment", headers=HX,
                                 base_url=base_url)


def operator_over(app, runner, base_url: str):
    """A browser signed in as an operator through a one-time link, at base_url."""
    browser = app.test_client()
    result = runner.invoke(main, ["admin-link", "--email", "ops@example.com"])
    assert result.exit_code == 0, result.output
    path = result.output.splitlines()[0].removeprefix("http://127.0.0.1:8080")
    page = browser.get(path, base_url=base_url).get_data(as_text=True)
    # Over TLS Flask-WTF also wants the same-origin Referer a browser sends.
    signed_in = browser.post(path, data={"csrf_token": CSRF.search(page).group(1)},
                             base_url=base_url, headers={"Referer": base_url + path})
    assert signed_in.status_code == 303
    return browser, signed_in


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_every_response_carries_the_security_headers(app, client, runner, world, tls):
    base_url = HTTPS if tls else "http://localhost"
    operator, _ = operator_over(app, runner, base_url)
    seen = 0
    for what, response in responses(app, client, operator, world, base_url):
        assert_headers(response, what, tls)
        response.close()
        seen += 1
    assert seen > 60


# --- cookies --------------------------------------------------------------------------------


def cookie(response, name: str) -> dict:
    """The Set-Cookie for name, as {attribute (lowercase): value}."""
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            parts = [part.strip() for part in header.split(";")]
            found = {"value": parts[0].split("=", 1)[1]}
            for part in parts[1:]:
                key, _, value = part.partition("=")
                found[key.lower()] = value
            return found
    raise AssertionError(f"no {name} cookie in {response.headers.getlist('Set-Cookie')}")


@pytest.mark.parametrize("secure", [False, True], ids=["plain-http", "behind-tls"])
def test_session_and_language_cookies_are_httponly_samesite_and_secure_behind_tls(
        app, client, secure):
    app.config["SESSION_COOKIE_SECURE"] = secure
    base_url = HTTPS if secure else "http://localhost"
    session = cookie(client.get("/tiktok-coins", base_url=base_url), "session")
    language = cookie(client.get("/tiktok-coins?lang=id", base_url=base_url), "lang")
    for found in (session, language):
        assert "httponly" in found and found["samesite"] == "Lax"
        assert ("secure" in found) is secure
        assert "domain" not in found  # this host only
    assert language["value"] == "id"


def test_the_operators_cookie_lasts_for_the_browser_session_and_is_secure_behind_tls(
        app, runner):
    app.config["SESSION_COOKIE_SECURE"] = True
    browser, signed_in = operator_over(app, runner, HTTPS)
    session = cookie(signed_in, "session")
    assert "httponly" in session and session["samesite"] == "Lax" and "secure" in session
    assert "expires" not in session and "max-age" not in session  # gone with the browser
    assert browser.get("/admin/", base_url=HTTPS).status_code == 200
    stored = browser.get_cookie("session", domain="coins.example")
    assert stored.secure and stored.http_only and stored.expires is None
