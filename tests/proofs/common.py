"""What the proofs share: every plugin switched on (so its routes and handlers
are reachable), the app's routes read from its url_map, which of them are
CSRF-exempt (signature-authenticated), a stand-in for outside services, and a
snapshot of every table."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import tempfile
import threading
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from topup import create_app, signing
from topup.db import database
from topup_plugins.qr.common import NOTIFICATION_HEADER

from tests.conftest import WEBHOOK_SECRET, signed_headers
from tests.plugins.test_qr import SETTINGS as QR_SETTINGS

BANK_SECRET = "bank-notification-secret-proofs"
DIGIFLAZZ_SECRET = "digiflazz-hook-" + "f" * 20
XENDIT_TOKEN = "xendit-callback-token-proofs"
OPERATOR_SECRET = "operator-webhook-callback-proofs"

# Signature-authenticated routes: no CSRF token, a provider's signature instead.
SIGNED_ENDPOINTS = {"webhooks.receive", "digiflazz.callback", "xendit.callback",
                    "operator_webhook.callback"}


VOUCHER_KEY = "3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="  # a Fernet key, for tests only
OIDC_CLIENT = "topup-proofs"


def everything_on(config: dict, stub_url: str) -> dict:
    """config with every built-in plugin set up (its routes reach their
    handlers) and an identity provider whose metadata the stub serves."""
    config.update(DISABLED_PLUGINS=[], PLUGINS=plugin_settings(stub_url), OIDC_PROVIDERS={
        "stub": {"label": "Stub ID", "server_metadata_url":
                 f"{stub_url}/.well-known/openid-configuration", "client_id": OIDC_CLIENT,
                 "client_secret": "stub-secret"}})
    return config


def plugin_settings(stub_url: str) -> dict:
    """Every built-in payment provider and delivery backend configured."""
    return {
        "vouchers": {"key": VOUCHER_KEY},
        "sandbox_payment": {"webhook_secret": WEBHOOK_SECRET},
        **{name: {**values, "notification_secret": BANK_SECRET}
           for name, values in QR_SETTINGS.items()},
        "xendit": {"secret_key": "xnd_development_proofs", "callback_token": XENDIT_TOKEN,
                   "api_base": stub_url, "timeout": 0.5},
        "digiflazz": {"username": "prover", "api_key": "dev-proofs", "webhook_secret":
                      DIGIFLAZZ_SECRET, "base_url": stub_url, "timeout_seconds": 0.5,
                      "skus": {"tiktok-coins:70": "TTC70"}},
        "operator_webhook": {"url": stub_url + "/fulfil", "secret": "operator-secret-proofs",
                             "callback_secret": OPERATOR_SECRET, "timeout_seconds": 0.5},
    }


def rules_of(app) -> list[tuple[str, str, str]]:
    """(rule, method, endpoint) for every route the app serves."""
    return sorted((rule.rule, method, rule.endpoint) for rule in app.url_map.iter_rules()
                  for method in sorted(rule.methods - {"HEAD", "OPTIONS"}))


@cache
def routes() -> list[tuple[str, str, str]]:
    """The routes of the app the proofs' fixtures build, read at collection time
    (building an app points the shared database handle at its database: put back)."""
    saved, handle = os.environ.get("TOPUP_INSTANCE_PATH"), database.obj
    with tempfile.TemporaryDirectory(prefix="topup-proofs-") as instance:
        os.environ["TOPUP_INSTANCE_PATH"] = instance
        try:
            app = create_app(everything_on({"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL":
                                            f"sqlite:///{instance}/unused.sqlite"},
                                           "http://127.0.0.1:9"))
        finally:
            if saved is None:
                os.environ.pop("TOPUP_INSTANCE_PATH")
            else:
                os.environ["TOPUP_INSTANCE_PATH"] = saved
            if handle is not None:
                database.initialize(handle)
    return rules_of(app)


def csrf_exempt(app, endpoint: str) -> bool:
    """Whether Flask-WTF skips the CSRF check for endpoint (as CSRFProtect decides)."""
    csrf = app.extensions["csrf"]
    view = app.view_functions[endpoint]
    blueprint = app.blueprints.get(endpoint.rsplit(".", 1)[0]) if "." in endpoint else None
    return (f"{view.__module__}.{view.__name__}" in csrf._exempt_views
            or (blueprint is not None and blueprint in csrf._exempt_blueprints))


def table_snapshot(app, skip: dict | None = None) -> dict:
    """Every row of every table (core and plugins'), minus columns in skip
    ({table: {column, ...}}) that reads may legitimately touch."""
    skip = skip or {}
    snapshot = {}
    for table in sorted(database.get_tables()):
        columns = [c.name for c in database.get_columns(table) if c.name not in
                   skip.get(table, ())]
        quoted = ", ".join(f'"{name}"' for name in columns)
        rows = database.execute_sql(f'SELECT {quoted} FROM "{table}" ORDER BY 1').fetchall()
        snapshot[table] = [tuple(row) for row in rows]
    return snapshot


class Stub:
    """Stands in for Xendit, Digiflazz, the operator's system and an identity
    provider: serves the provider's metadata, and knows nothing else (404
    DATA_NOT_FOUND to everything)."""

    def __init__(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, body = 404, b'{"error_code": "DATA_NOT_FOUND", "message": "not found"}'
                if self.path == "/.well-known/openid-configuration":
                    status, body = 200, json.dumps({
                        "issuer": stub.url, "authorization_endpoint": f"{stub.url}/authorize",
                        "token_endpoint": f"{stub.url}/token", "jwks_uri": f"{stub.url}/jwks",
                        "userinfo_endpoint": f"{stub.url}/userinfo",
                        "response_types_supported": ["code"],
                        "id_token_signing_alg_values_supported": ["RS256"]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# SignInSession.last_seen_at is touched (at most once a minute) by any signed-in request.
TOUCHED = {"signinsession": {"last_seen_at"}}


def concrete_paths(rule: str, world: dict) -> list[str]:
    """The rule with real values (each public id, each action, ...)."""
    names = re.findall(r"<(?:[^:<>]+:)?(\w+)>", rule)
    paths = [rule]
    for name in names:
        values = world.get(name) or ["x"]
        paths = [re.sub(rf"<(?:[^:<>]+:)?{name}>", value, path, count=1)
                 for path in paths for value in values]
    return paths


def signed_for(path: str, body: bytes) -> dict:
    """The headers a genuine sender of this path would sign body with."""
    if path.startswith("/webhooks/sandbox"):
        return signed_headers(body)
    if path.startswith("/webhooks/xendit") or path.startswith("/xendit/"):
        return {"x-callback-token": XENDIT_TOKEN}
    if path.startswith("/webhooks/"):
        return {NOTIFICATION_HEADER: signing.sign(BANK_SECRET, body)}
    if path.startswith("/digiflazz/"):
        return {"X-Hub-Signature": "sha1=" + hmac.new(DIGIFLAZZ_SECRET.encode(), body,
                                                      hashlib.sha1).hexdigest()}
    if path.startswith("/operator-webhook/"):
        from topup_plugins.operator_webhook.backend import SIGNATURE_HEADER

        return {SIGNATURE_HEADER: signing.sign(OPERATOR_SECRET, body)}
    return {}


WERKZEUG_DEFAULT = re.compile(r"<title>\d{3} [^<]+</title>\s*<h1>")


def assert_clear(response, what: str) -> None:
    """No 5xx; a 4xx says what went wrong (an HTML page with a heading or an
    error line, a JSON error, or a plain-text reason), never werkzeug's page."""
    status = response.status_code
    assert status < 500, f"{what}: {status}\n{response.get_data(as_text=True)[:2000]}"
    if status < 400:
        return
    body = response.get_data(as_text=True)
    assert not WERKZEUG_DEFAULT.search(body), f"{what}: werkzeug's bare error page"
    if response.is_json:
        answer = response.get_json()
        assert isinstance(answer, dict) and answer.get("error"), f"{what}: {body[:300]}"
    elif response.mimetype == "text/html":
        heading = re.search(r"<h1>\s*([^<]+?)\s*</h1>", body)
        line = re.search(r'class="error"[^>]*>\s*([^<]+?)\s*<', body)
        assert heading or line, f"{what}: {status} without a message\n{body[:1000]}"
    else:
        assert response.mimetype == "text/plain" and body.strip(), f"{what}: {response.mimetype}"
