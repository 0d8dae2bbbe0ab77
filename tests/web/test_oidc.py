"""OpenID Connect sign-in, end to end against a real provider: npm oidc-provider
(tests/oidc/provider.js) on a loopback port, the shop on the live server, and
a requests session as the browser, which fills in the provider's own login
and consent forms. Nothing of the provider is mocked."""
from __future__ import annotations

import html
import logging
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests
from flask import Flask

from topup.models import SignInSession
from topup.web import oidc

from tests.conftest import CSRF, place_order

HERE = Path(__file__).resolve().parent.parent / "oidc"
SECRET = "topup-test-client-secret-0123456789abcdef"  # as tests/oidc/provider.js registers it
COOKIE = "topup_session"  # cookies on 127.0.0.1 are shared across ports: ours gets its own name
OPERATOR = "ops@example.com"
FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def oidc_issuer(tmp_path_factory):
    """The provider's issuer URL; node_modules are installed on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the OpenID Connect tests need Node 20+ and npm on PATH"
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(HERE)], check=True,
                       stdout=subprocess.DEVNULL)
    port = _free_port()
    errors = tmp_path_factory.mktemp("oidc") / "provider.log"
    with errors.open("w") as log:
        process = subprocess.Popen([node, str(HERE / "provider.js"), str(port)],
                                   stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = process.stdout.readline()  # "ready <issuer>", or "" if it died
        assert line.startswith("ready "), f"provider did not start: {errors.read_text()}"
        issuer = line.split()[1]
        deadline = time.monotonic() + 10
        while True:
            try:
                requests.get(issuer + "/.well-known/openid-configuration", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, errors.read_text()
                time.sleep(0.05)
        yield issuer
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


def provider_settings(issuer: str, client_id: str, label: str = "Test IdP") -> dict:
    return {"label": label, "server_metadata_url": issuer + "/.well-known/openid-configuration",
            "client_id": client_id, "client_secret": {"$env": "TOPUP_TEST_OIDC_SECRET"},
            "scope": "openid email profile"}


@pytest.fixture
def config(config, oidc_issuer, monkeypatch):
    monkeypatch.setenv("TOPUP_TEST_OIDC_SECRET", SECRET)
    config.update({
        "SESSION_COOKIE_NAME": COOKIE,
        "ADMIN_OPERATORS": [OPERATOR, "sub:robot-7", "unverified.ops@example.com"],
        "OIDC_PROVIDERS": {
            "idp": provider_settings(oidc_issuer, "topup-test"),
            # The provider re-signs these clients' ID tokens with a wrong claim:
            "badaud": provider_settings(oidc_issuer, "topup-badaud", "Wrong audience"),
            "expired": provider_settings(oidc_issuer, "topup-expired", "Expired tokens"),
        },
    })
    return config


@pytest.fixture
def app(app):
    if "oidc" not in app.blueprints:  # until topup.web.init_app calls oidc.init_app itself
        oidc.init_app(app)
    return app


class Browser:
    """A person's browser: one cookie jar for the shop and the provider."""

    def __init__(self, app, base: str):
        self.app, self.base, self.http = app, base, requests.Session()

    def get(self, path: str, **kwargs):
        return self.http.get(urljoin(self.base, path), allow_redirects=False, timeout=10,
                             **kwargs)

    def start(self, provider="idp", page="/admin/sign-in") -> str:
        """Press "Sign in with ..." on page; returns the provider URL we are sent to."""
        form = self.get(page)
        assert form.status_code == 200, form.text
        fields = {"csrf_token": CSRF.search(form.text).group(1)}
        found = re.search(r'name="next" value="([^"]*)"', form.text)
        if found:
            fields["next"] = html.unescape(found.group(1))
        response = self.http.post(f"{self.base}/sign-in/{provider}", data=fields,
                                  allow_redirects=False, timeout=10)
        assert response.status_code == 303, response.text
        return response.headers["Location"]

    def authorize(self, url: str, login: str = OPERATOR) -> str:
        """At the provider: log in and consent as needed. Returns the callback
        URL the provider sends the browser back to (not yet followed)."""
        for _ in range(10):
            response = self.http.get(url, allow_redirects=False, timeout=10)
            while response.is_redirect:
                url = urljoin(url, response.headers["Location"])
                if url.startswith(self.base):
                    return url
                response = self.http.get(url, allow_redirects=False, timeout=10)
            page = response.text
            action = html.unescape(FORM_ACTION.search(page).group(1))
            if 'name="prompt" value="login"' in page:
                fields = {"prompt": "login", "login": login, "password": "any"}
            else:
                assert 'name="prompt" value="consent"' in page, page
                fields = {"prompt": "consent"}
            response = self.http.post(urljoin(url, action), data=fields, allow_redirects=False,
                                      timeout=10)
            assert response.is_redirect, response.text
            url = urljoin(url, response.headers["Location"])
            if url.startswith(self.base):
                return url
        raise AssertionError("the provider kept asking")

    def sign_in(self, login=OPERATOR, provider="idp", page="/admin/sign-in"):
        """The whole round trip; returns our callback's response."""
        return self.get(self.authorize(self.start(provider, page), login))

    # The session cookie, read and written with the app's own signing key.
    def session(self) -> dict:
        value = self.http.cookies.get(COOKIE)
        serializer = self.app.session_interface.get_signing_serializer(self.app)
        return serializer.loads(value) if value else {}

    def set_session(self, data: dict) -> None:
        serializer = self.app.session_interface.get_signing_serializer(self.app)
        self.http.cookies.set(COOKIE, serializer.dumps(data), domain="127.0.0.1", path="/")


@pytest.fixture
def browsers(app, live_server):
    """Browser() for as many people as a test needs; their connections are
    closed before the live server stops (it waits for open ones)."""
    opened = []

    def new() -> Browser:
        opened.append(Browser(app, live_server.url))
        return opened[-1]
    yield new
    for each in opened:
        each.http.close()


@pytest.fixture
def browser(browsers):
    return browsers()


def query(url: str) -> dict:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    values = {**query(url), **changes}
    values = {key: value for key, value in values.items() if value is not None}
    return urlunsplit(parts._replace(query=urlencode(values)))


def refused(response, status: int, words: str, caplog=None, reason: str = ""):
    """A 4xx page that says words, no session; the log says why (if asked)."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert words in html.unescape(response.text)
    assert SignInSession.select().count() == 0
    if caplog is not None:
        assert reason in caplog.text


# --- signing in -------------------------------------------------------------------


def test_an_operator_signs_in_with_code_pkce_state_and_nonce(app, browser, live_server):
    browser.set_session({"sid": "planted-by-an-attacker", "other": "old contents"})
    assert browser.get("/admin/").headers["Location"] == "/admin/sign-in?next=/admin/"
    url = browser.start()
    sent = query(url)
    assert url.startswith(app.config["OIDC_PROVIDERS"]["idp"]["server_metadata_url"]
                          .removesuffix("/.well-known/openid-configuration") + "/auth?")
    assert sent["response_type"] == "code" and sent["client_id"] == "topup-test"
    assert sent["redirect_uri"] == live_server.url + "/sign-in/idp/callback"
    assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
    assert len(sent["state"]) >= 20 and len(sent["nonce"]) >= 20
    assert set(sent["scope"].split()) == {"openid", "email", "profile"}
    assert SECRET not in url

    done = browser.get(browser.authorize(url))
    assert done.status_code == 303 and done.headers["Location"] == "/admin/"
    admin = browser.get("/admin/")
    assert admin.status_code == 200 and f"Signed in as {OPERATOR}" in admin.text
    [row] = SignInSession.select()
    assert (row.subject, row.role, row.method) == (OPERATOR, "operator", "oidc")
    cookie = browser.session()
    assert cookie["sid"] != "planted-by-an-attacker" and "other" not in cookie  # rotated
    assert not any(key.startswith("_state_") for key in cookie)  # the flow's data is gone


def test_next_is_carried_through_the_flow_and_kept_local(browser, browsers):
    url = browser.start(page="/admin/sign-in?next=/admin/%3Fpage%3D2")
    assert browser.get(browser.authorize(url)).headers["Location"] == "/admin/?page=2"

    other = browsers()
    url = other.start(page="/admin/sign-in?next=//evil.example/admin")
    assert other.get(other.authorize(url)).headers["Location"] == "/admin/"


def test_a_provider_without_email_signs_in_by_subject(browser):
    done = browser.sign_in(login="robot-7")
    assert done.status_code == 303 and done.headers["Location"] == "/admin/"
    assert SignInSession.get().subject == "sub:robot-7"


def test_a_buyer_sees_their_orders_and_may_not_use_the_admin(client, browser):
    mine = place_order(client, email="Buyer@Example.com", account="@first_user")
    again = place_order(client, email="buyer@example.com", account="@second_user")
    theirs = place_order(client, email="someone@example.com", account="@other_user")
    assert browser.get("/account").headers["Location"] == "/account/sign-in"

    done = browser.sign_in(login="buyer@example.com", page="/account/sign-in")
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    page = browser.get("/account")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "private, no-store"
    assert f"/orders/{mine.public_id}" in page.text and f"/orders/{again.public_id}" in page.text
    assert page.text.index(again.public_id) < page.text.index(mine.public_id)  # newest first
    assert theirs.public_id not in page.text and "other_user" not in page.text
    assert "account=first_user" in page.text and "account=second_user" in page.text  # buy again
    [row] = SignInSession.select()
    assert (row.subject, row.role, row.method) == ("buyer@example.com", "buyer", "oidc")

    assert browser.get("/admin/").status_code == 302  # a buyer session is no way in
    denied = browser.sign_in(login="buyer@example.com")
    assert denied.status_code == 403
    assert "This account may not use the admin" in html.unescape(denied.text)
    assert [(r.subject, r.role) for r in SignInSession.select()] == [("buyer@example.com", "buyer")]
    assert browser.get("/admin/").status_code == 302


def test_someone_not_allowed_gets_a_403_and_no_session_for_the_admin(browser):
    refused(browser.sign_in(login="stranger@example.com"), 403,
            "This account may not use the admin")
    assert browser.get("/admin/").status_code == 302
    assert "sid" not in browser.session()


def test_an_operator_from_the_account_page_lands_on_their_orders(browser):
    done = browser.sign_in(page="/account/sign-in")
    assert done.headers["Location"] == "/account"
    assert "Admin" in browser.get("/account").text and SignInSession.get().role == "operator"


# --- refusals: 4xx, a clear message, no session --------------------------------------


def test_a_tampered_state_is_refused(browser):
    callback = browser.authorize(browser.start())
    refused(browser.get(with_query(callback, state="forged-state-value")), 400,
            "This sign-in has expired or was already used")
    refused(browser.get(with_query(callback, state=None)), 400, "expired or was already used")


def test_a_replayed_callback_is_refused(browser, caplog):
    callback = browser.authorize(browser.start())
    before = browser.http.cookies.get(COOKIE)
    assert browser.get(callback).status_code == 303
    assert SignInSession.select().count() == 1
    replay = browser.get(callback)  # the state was used up
    assert replay.status_code == 400 and "already used" in replay.text
    browser.http.cookies.set(COOKIE, before, domain="127.0.0.1", path="/")
    replay = browser.get(callback)  # with the cookie from before: the provider refuses the code
    assert replay.status_code == 400 and "Test IdP refused this sign-in" in replay.text
    assert "token request refused: invalid_grant" in caplog.text
    assert SignInSession.select().count() == 1


def test_a_sign_in_left_waiting_too_long_is_refused(browser, monkeypatch):
    callback = browser.authorize(browser.start())
    monkeypatch.setattr(oidc, "PENDING_SECONDS", -1)
    refused(browser.get(callback), 400, "This sign-in has expired")


def test_a_callback_from_another_browser_is_refused(browser, browsers):
    callback = browser.authorize(browser.start())
    attacker = browsers()
    refused(attacker.get(callback), 400, "expired or was already used")


def test_a_nonce_mismatch_is_refused(browser, caplog):
    """An ID token minted for another authorization request (its nonce) is refused."""
    url = browser.start()
    callback = browser.authorize(with_query(url, nonce="a-nonce-from-another-request"))
    refused(browser.get(callback), 400, "The answer from Test IdP was not valid",
            caplog, "ID token invalid: invalid_claim: Invalid claim: 'nonce'")


def test_an_id_token_for_another_audience_is_refused(browser, caplog):
    refused(browser.sign_in(provider="badaud"), 400, "The answer from Wrong audience was not valid",
            caplog, "ID token invalid: invalid_claim: Invalid claim: 'aud'")


def test_an_expired_id_token_is_refused(browser, caplog):
    refused(browser.sign_in(provider="expired"), 400,
            "The answer from Expired tokens was not valid",
            caplog, "ID token invalid: expired_token")


def test_cancelling_at_the_provider_is_refused_clearly(browser):
    login_page = browser.http.get(browser.start(), timeout=10)  # follows to the login form
    abort = re.search(r'href="([^"]*/abort)"', login_page.text).group(1)
    callback = browser.authorize(urljoin(login_page.url, html.unescape(abort)))
    assert query(callback)["error"] == "access_denied"
    refused(browser.get(callback), 400, "Sign-in was cancelled at Test IdP")


def test_pkce_is_required_and_a_request_without_it_fails(browser, caplog):
    """The provider insists on PKCE, so every successful sign-in here proves
    that our code_verifier matched our S256 code_challenge."""
    url = with_query(browser.start(), code_challenge=None, code_challenge_method=None)
    callback = browser.authorize(url)
    assert query(callback)["error"] == "invalid_request"
    refused(browser.get(callback), 400, "Test IdP did not sign you in",
            caplog, "provider error 'invalid_request'")


def test_a_callback_naming_another_issuer_is_refused(browser):
    callback = browser.authorize(browser.start())
    refused(browser.get(with_query(callback, iss="https://evil.example")), 400,
            "This answer did not come from Test IdP")


def test_an_unverified_email_is_refused(browser):
    refused(browser.sign_in(login="unverified.ops@example.com"), 403,
            "has not verified your e-mail address")


def test_starting_a_sign_in_needs_the_form(browser):
    assert browser.get("/sign-in/idp").status_code == 405
    no_token = browser.http.post(browser.base + "/sign-in/idp", allow_redirects=False, timeout=10)
    assert no_token.status_code == 400 and "This form has expired" in no_token.text
    assert browser.get("/sign-in/nope/callback?state=x&code=y").status_code == 404


def test_secrets_stay_out_of_the_logs(browser, caplog):
    caplog.set_level(logging.DEBUG, logger="topup")
    callback = browser.authorize(browser.start())
    assert browser.get(callback).status_code == 303
    refused_code = browser.authorize(browser.start(provider="badaud"))
    assert browser.get(refused_code).status_code == 400
    assert "topup.web.oidc" in caplog.text and "ID token invalid" in caplog.text
    for secret in (SECRET, query(callback)["code"], query(callback)["state"],
                   query(refused_code)["code"]):
        assert secret not in caplog.text


# --- pages and settings -------------------------------------------------------------


def test_sign_in_pages_let_their_forms_reach_the_provider(browser, oidc_issuer):
    for page in ("/admin/sign-in", "/account/sign-in"):
        response = browser.get(page)
        assert "Sign in with Test IdP" in response.text
        [policy] = response.raw.headers.getlist("Content-Security-Policy")  # the page's own, alone
        assert f"form-action 'self' {oidc_issuer};" in policy
        assert "default-src 'none'" in policy
    assert "form-action 'self';" in browser.get("/tiktok-coins").headers["Content-Security-Policy"]


@pytest.mark.parametrize("settings, message", [
    ({"server_metadata_url": "http://idp.example/.well-known/openid-configuration"}, "https://"),
    ({"client_secret": ""}, "client_secret is required"),
    ({"scope": "email profile"}, "must include 'openid'"),
    ({"client_secrte": "typo"}, "unknown settings"),
])
def test_bad_provider_settings_stop_the_app_at_start(settings, message):
    base = {"label": "X", "client_id": "c", "client_secret": "s",
            "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}
    app = Flask(__name__)
    app.config["OIDC_PROVIDERS"] = {"x": {**base, **settings}}
    with pytest.raises(ValueError, match=re.escape(message)):
        oidc.init_app(app)


def test_a_provider_id_must_fit_in_a_url():
    app = Flask(__name__)
    app.config["OIDC_PROVIDERS"] = {"Not OK/": {}}
    with pytest.raises(ValueError, match="an id is"):
        oidc.init_app(app)


def test_secrets_come_from_the_environment(monkeypatch, oidc_issuer):
    app = Flask(__name__)
    app.config["OIDC_PROVIDERS"] = {"idp": provider_settings(oidc_issuer, "topup-test")}
    with pytest.raises(KeyError, match="TOPUP_TEST_OIDC_SECRET"):
        oidc.init_app(app)
    monkeypatch.setenv("TOPUP_TEST_OIDC_SECRET", SECRET)
    app = Flask(__name__)
    app.config["OIDC_PROVIDERS"] = {"idp": provider_settings(oidc_issuer, "topup-test")}
    oidc.init_app(app)
    assert app.extensions["topup.oidc_providers"]["idp"].label == "Test IdP"
    with app.app_context():
        assert app.extensions["topup.oidc_providers"]["idp"].client().client_secret == SECRET


# --- a real browser -------------------------------------------------------------------


@pytest.fixture
def chromium_page():
    """Debian's Chromium (as tests/e2e uses it): CSP is only enforced by a browser."""
    from playwright import sync_api

    chromium = "/usr/bin/chromium"
    assert shutil.which(chromium), f"no Chromium at {chromium}: run `make browser`"
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = launched.new_page()
            page.set_default_timeout(10_000)
            complaints = []
            page.on("console", lambda message: complaints.append(message.text)
                    if message.type == "error" else None)
            yield page, complaints
        finally:
            launched.close()


@pytest.mark.e2e
def test_a_browser_signs_in_through_the_provider(chromium_page, live_server):
    """Browsers apply form-action to the redirect after a form post: without
    the provider's origin in it, the "Sign in with" button would do nothing."""
    page, complaints = chromium_page
    page.goto(live_server.url + "/admin/")
    page.get_by_role("button", name="Sign in with Test IdP").click()
    page.wait_for_url(re.compile(r".*/interaction/.*"))
    page.fill("input[name=login]", OPERATOR)
    page.fill("input[name=password]", "any")
    page.click("button[type=submit]")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(live_server.url + "/admin/")
    assert f"Signed in as {OPERATOR}" in page.content()
    assert not [text for text in complaints if "Content Security Policy" in text], complaints
    assert SignInSession.get().method == "oidc"


def test_an_operator_taken_off_the_list_loses_the_admin_at_once(app):
    """The allow-list is checked on every admin request, not only at sign-in."""
    from topup.web.auth import current_operator, start_session

    with app.test_request_context("/admin/"):
        start_session("ops@example.com", role="operator", method="oidc")
        app.config["ADMIN_OPERATORS"] = ["ops@example.com"]
        assert current_operator() == "ops@example.com"
        app.config["ADMIN_OPERATORS"] = []
        assert current_operator() is None
    with app.test_request_context("/admin/"):
        start_session("bootstrap@example.com", role="operator", method="link")
        assert current_operator() == "bootstrap@example.com"  # a link is its own proof
