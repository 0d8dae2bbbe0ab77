"""What every response promises: security headers, no inline script, immutable
fingerprinted assets, and GET never changing anything."""
from __future__ import annotations

import json
import re

import pytest

from topup import ROOT, orders
from topup.models import Order, OrderEvent, Payment, Product, WebhookEvent
from topup.worker import deliver_once
from topup_plugins.sandbox.payment import SandboxCheckout

from tests.conftest import form_tokens, package_id, place_order, sandbox_event, signed_headers
from tests.web import HX

TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)\b([^>]*)>")
ATTRIBUTE = re.compile(r"""\s([^\s=/>]+)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?""")


def pay(client, order):
    payload = sandbox_event(order)
    assert client.post("/webhooks/sandbox", data=payload,
                       headers=signed_headers(payload)).status_code == 200


def html_responses(client, app):
    """(name, response) for every kind of HTML page a buyer can meet."""
    seen = []

    def add(name, response):
        seen.append((name, response))

    add("product", client.get("/tiktok-coins"))
    add("product VN", client.get("/tiktok-coins?country=VN&account=maria"))
    add("not found", client.get("/nope"))
    add("no order", client.get("/orders/nope"))
    add("method not allowed", client.put("/tiktok-coins"))
    add("invalid buy", client.post("/tiktok-coins", data={
        **form_tokens(client.get("/tiktok-coins").get_data(as_text=True)), "intent": "buy"}))
    add("refresh", client.post("/tiktok-coins", data={
        **form_tokens(client.get("/tiktok-coins").get_data(as_text=True)), "intent": "refresh",
        "account": "@maria"}))
    add("csrf", client.post("/tiktok-coins", data={"intent": "buy"}))
    add("too large", client.post("/tiktok-coins", data={"account": "a" * 100_000}))
    add("account partial", client.get("/tiktok-coins/account?account=maria", headers=HX))
    add("options partial", client.get("/tiktok-coins/options?country=ID", headers=HX))
    waiting = place_order(client)
    add("order waiting", client.get(f"/orders/{waiting.public_id}"))
    add("live partial", client.get(f"/orders/{waiting.public_id}/live", headers=HX))
    ref = waiting.latest_payment().provider_ref
    add("sandbox checkout", client.get(f"/sandbox/checkout/{ref}"))
    add("sandbox unknown", client.get("/sandbox/checkout/sbx_nope"))
    delivered = place_order(client, account="@someone")
    pay(client, delivered)
    assert deliver_once(app)
    add("order delivered", client.get(f"/orders/{delivered.public_id}"))
    failed = place_order(client, account="@another")
    payload = sandbox_event(failed, "failed")
    client.post("/webhooks/sandbox", data=payload, headers=signed_headers(payload))
    add("order failed", client.get(f"/orders/{failed.public_id}"))
    Product.create(slug="gems", name="Gems", delivery_backend="sandbox")
    add("index", client.get("/"))
    for name, response in seen:
        assert response.mimetype == "text/html", (name, response.status_code, response.mimetype)
    return seen


@pytest.fixture
def pages(client, app):
    return html_responses(client, app)


def test_every_html_response_sends_the_security_headers(pages):
    for name, response in pages:
        csp = response.headers.get("Content-Security-Policy", "")
        directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, name
        assert directives.get("frame-ancestors") == ["'none'"], name
        assert directives.get("object-src") == ["'none'"], name
        assert directives.get("default-src") == ["'none'"], name
        assert directives.get("script-src") == ["'self'"], name
        assert directives.get("base-uri") == ["'none'"], name
        assert directives.get("form-action") == ["'self'"], name
        assert response.headers.get("X-Content-Type-Options") == "nosniff", name
        assert response.headers.get("Referrer-Policy") in ("same-origin", "no-referrer",
                                                           "strict-origin"), name
        assert response.headers.get("X-Frame-Options") == "DENY", name
        for header in ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options",
                       "Referrer-Policy", "Permissions-Policy"):
            assert len(response.headers.getlist(header)) == 1, (name, header)


def test_the_status_codes_of_those_pages_are_right(pages):
    codes = {name: response.status_code for name, response in pages}
    assert codes == {
        "product": 200, "product VN": 200, "not found": 404, "no order": 404,
        "method not allowed": 405, "invalid buy": 422, "refresh": 200, "csrf": 400,
        "too large": 413, "account partial": 200, "options partial": 200, "order waiting": 200,
        "live partial": 200, "sandbox checkout": 200, "sandbox unknown": 404,
        "order delivered": 200, "order failed": 200, "index": 200,
    }


def test_no_page_has_inline_script_style_or_handlers(pages):
    for name, response in pages:
        html = response.get_data(as_text=True)
        for tag, attributes in TAG.findall(html):
            names = {attribute.lower() for attribute in ATTRIBUTE.findall(attributes)}
            if tag.lower() == "script":
                assert "src" in names, (name, tag, attributes)
            assert "style" not in names, (name, tag, attributes)
            assert not any(attr.startswith("on") for attr in names), (name, tag, attributes)
            assert not any(attr.startswith(("hx-on", "data-hx-on")) for attr in names), name
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), name  # nothing between the tags
        assert "<style" not in html.lower(), name
        assert "javascript:" not in html.lower(), name


def test_htmx_is_loaded_deferred_from_a_fingerprinted_url(pages):
    for name, response in pages:
        html = response.get_data(as_text=True)
        if "<html" not in html:
            continue
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert len(scripts) == 2, name
        assert re.fullmatch(r'<script src="/static/htmx\.min\.[0-9a-f]{10}\.js" defer>', scripts[0])
        assert re.fullmatch(r'<script src="/static/topup\.[0-9a-f]{10}\.js" defer>', scripts[1])
        # htmx must not need what the CSP forbids (eval, injected <style>, inline scripts)
        config = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", html)
        assert config, name
        settings = json.loads(config.group(1))
        assert settings["allowEval"] is False
        assert settings["includeIndicatorStyles"] is False
        assert settings["allowScriptTags"] is False


def test_the_session_cookie_is_httponly_and_samesite(client):
    cookies = client.get("/tiktok-coins").headers.getlist("Set-Cookie")
    session = [cookie for cookie in cookies if cookie.startswith("session=")]
    assert session
    assert "HttpOnly" in session[0] and "SameSite=Lax" in session[0]


def test_https_requests_get_hsts(client):
    response = client.get("/tiktok-coins", base_url="https://shop.example")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Strict-Transport-Security" not in client.get("/tiktok-coins").headers


# --- static assets ---------------------------------------------------------------


def asset_urls(client):
    html = client.get("/tiktok-coins").get_data(as_text=True)
    return {
        "htmx.min.js": re.search(r'<script src="([^"]+)"', html).group(1),
        "topup.css": re.search(r'<link rel="stylesheet" href="([^"]+)"', html).group(1),
    }


@pytest.mark.parametrize("name, mimetypes", [
    ("htmx.min.js", {"text/javascript", "application/javascript"}),
    ("topup.css", {"text/css"}),
])
def test_fingerprinted_assets_are_cached_for_a_year(client, name, mimetypes):
    url = asset_urls(client)[name]
    stem, suffix = name.rsplit(".", 1)
    assert re.fullmatch(rf"/static/{re.escape(stem)}\.[0-9a-f]{{10}}\.{suffix}", url)
    response = client.get(url)
    assert response.status_code == 200
    assert response.get_data() == (ROOT / "static" / name).read_bytes()
    response.close()
    assert response.mimetype in mimetypes
    cache = response.headers["Cache-Control"]
    assert "immutable" in cache and "max-age=31536000" in cache and "public" in cache
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


def test_a_changed_file_gets_a_new_url_and_the_old_one_stops_serving(tmp_path):
    """Caches keep an asset for a year, so new content must come under a new URL."""
    from flask import Flask

    from topup.web.assets import Assets

    css = tmp_path / "site.css"

    def serve_folder():
        app = Flask(__name__, static_folder=None)  # as the shop: only Assets serves /static
        assets = Assets(tmp_path)
        app.register_blueprint(assets.blueprint)
        with app.test_request_context():
            return app.test_client(), assets.url("site.css")

    def fetch(client, url):
        response = client.get(url)
        data = response.get_data()
        response.close()  # send_from_directory leaves the file open
        return response.status_code, data, response.headers

    css.write_text("body { color: black }")
    old_client, old_url = serve_folder()
    assert re.fullmatch(r"/static/site\.[0-9a-f]{10}\.css", old_url), old_url
    assert fetch(old_client, old_url)[:2] == (200, b"body { color: black }")
    css.write_text("body { color: red }")
    client, new_url = serve_folder()
    assert re.fullmatch(r"/static/site\.[0-9a-f]{10}\.css", new_url), new_url
    assert new_url != old_url
    assert fetch(client, old_url)[0] == 404
    status, data, headers = fetch(client, new_url)
    assert (status, data) == (200, b"body { color: red }")
    cache = headers["Cache-Control"]
    assert "immutable" in cache and "max-age=31536000" in cache


def test_a_wrong_or_missing_fingerprint_is_404(client):
    url = asset_urls(client)["htmx.min.js"]
    digest = re.search(r"\.([0-9a-f]{10})\.js$", url).group(1)
    wrong = url.replace(digest, "0123456789" if digest != "0123456789" else "9876543210")
    for path in (wrong, "/static/htmx.min.js", "/static/topup.css",
                 "/static/nothing.0123456789.js", "/static/../topup/__init__.0123456789.py",
                 "/static/%2e%2e/pyproject.0123456789.toml", url.upper()):
        response = client.get(path)
        assert response.status_code == 404, path
        response.close()


# --- GET never changes anything --------------------------------------------------


def state():
    return (list(Order.select(Order.id, Order.status).tuples()),
            list(Payment.select(Payment.id, Payment.status).tuples()),
            list(SandboxCheckout.select(SandboxCheckout.id, SandboxCheckout.status).tuples()),
            WebhookEvent.select().count(), OrderEvent.select().count())


def test_get_on_the_sandbox_checkout_does_not_approve(client, sandbox_webhooks):
    sent = sandbox_webhooks  # (url, secret, body) per webhook
    order = place_order(client)
    path = f"/sandbox/checkout/{order.latest_payment().provider_ref}"
    before = state()
    for query in ("", "?decision=approve", "?decision=decline"):
        assert client.get(path + query).status_code == 200
        assert client.head(path + query).status_code == 200
    assert state() == before and sent == []
    assert SandboxCheckout.get().status == "open"
    assert Order.get_by_id(order.id).status == orders.AWAITING_PAYMENT


def test_the_sandbox_decision_needs_a_csrf_token(client, sandbox_webhooks):
    sent = sandbox_webhooks  # (url, secret, body) per webhook
    order = place_order(client)
    path = f"/sandbox/checkout/{order.latest_payment().provider_ref}"
    response = client.post(path, data={"decision": "approve"})
    assert response.status_code == 400
    assert SandboxCheckout.get().status == "open" and sent == []


def test_get_with_buy_fields_does_not_buy(client):
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    query = {**tokens, "country": "US", "account": "demo_user", "package": package_id(70),
             "method": "sandbox", "intent": "buy"}
    before = state()
    response = client.get("/tiktok-coins", query_string=query)
    assert response.status_code == 200
    assert state() == before and Order.select().count() == 0


def test_get_on_order_pages_changes_nothing(client):
    order = place_order(client)
    before = state()
    client.get(f"/orders/{order.public_id}")
    client.get(f"/orders/{order.public_id}/live", headers=HX)
    client.get(f"/orders/{order.public_id}/live?seen=x")
    assert state() == before


# --- redirects stay home and never crash on odd query strings ----------------------


@pytest.mark.parametrize("endpoint, query", [
    ("account", "account=maria&country=US&country=BR"),
    ("options", "country=BR&_anchor=x"),
    # query keys that url_for() takes as its own arguments
    ("account", "account=maria&slug=other"),
    ("options", "country=BR&slug=other"),
    ("account", "account=maria&_method=POST"),
    ("options", "country=BR&_external=1&_scheme=javascript"),
])
def test_no_js_redirects_keep_to_the_product_page(client, endpoint, query):
    response = client.get(f"/tiktok-coins/{endpoint}?{query}",
                          headers={"Host": "evil.example"})
    assert response.status_code == 303, response.status_code
    location = response.headers["Location"]
    assert location.startswith("/tiktok-coins"), location
    assert not location.startswith("//")


def test_error_pages_do_not_echo_input_unescaped(client):
    response = client.get("/tiktok-coins?account=%3Cscript%3Ealert(1)%3C/script%3E")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)" in html
    response = client.post("/tiktok-coins", data={
        **form_tokens(client.get("/tiktok-coins").get_data(as_text=True)),
        "intent": "buy", "account": "<img src=x onerror=alert(1)>", "email": '"><b>x'})
    assert response.status_code == 422
    assert "<img src=x" not in response.get_data(as_text=True)
    assert "<b>x" not in response.get_data(as_text=True)
    assert "&lt;img" in response.get_data(as_text=True)


# --- caches ---------------------------------------------------------------------------


def test_the_product_page_is_not_stored_by_shared_caches(client):
    """Each view of the product page carries its own idempotency key and the
    visitor's CSRF token, and its country depends on Accept-Language: a shared
    cache serving one copy to many buyers would merge their orders or refuse them."""
    response = client.get("/tiktok-coins", headers={"Accept-Language": "id-ID"})
    cache = response.headers.get("Cache-Control", "")
    assert "no-store" in cache or "private" in cache, response.headers


@pytest.mark.parametrize("path", ["/tiktok-coins/account?account=maria",
                                  "/tiktok-coins/options?country=ID", "live"])
def test_dual_use_urls_vary_on_hx_request_in_both_answers(client, path):
    """One URL, two answers (partial for htmx, redirect otherwise): both must say so."""
    if path == "live":
        path = f"/orders/{place_order(client).public_id}/live"
    with_htmx = client.get(path, headers=HX)
    without = client.get(path)
    assert with_htmx.status_code == 200 and without.status_code == 303
    assert "HX-Request" in with_htmx.headers.get("Vary", "")
    assert "HX-Request" in without.headers.get("Vary", ""), without.headers
