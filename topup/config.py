"""Configuration: defaults here, then instance/config.py, then TOPUP_* variables.

Environment values are parsed as JSON when they look like JSON
(``TOPUP_ORDER_TTL_SECONDS=600``), else taken as strings.
"""
from __future__ import annotations

import os


class Defaults:
    SHOP_NAME = "topup"
    # Where buyers reach the shop, e.g. "https://coins.example.com": links in
    # e-mails and callbacks sent from outside a request. None: the request's host.
    PUBLIC_URL = None
    # SQLite file in the instance folder unless DATABASE_URL says otherwise.
    DATABASE_URL = None
    # Plugins by registered name that must not load (built-ins included). The
    # sandboxes are for demos and tests; `topup init --demo` switches them on.
    DISABLED_PLUGINS = ["sandbox_payment", "sandbox_delivery"]
    # Namespaced plugin settings: {"plugin_id": {...}}; {"$env": "NAME"} reads a secret.
    PLUGINS = {}
    ORDER_TTL_SECONDS = 30 * 60
    # Delivery outbox worker.
    WORKER_THREADS = 1
    WORKER_POLL_SECONDS = 0.5
    DELIVERY_MAX_ATTEMPTS = 6
    DELIVERY_RETRY_BASE_SECONDS = 5
    DELIVERY_RETRY_MAX_SECONDS = 15 * 60
    DELIVERY_LEASE_SECONDS = 120
    # A backend that answered "pending" is asked again (first after this many
    # seconds, then less often); unconfirmed after the limit -> needs attention.
    DELIVERY_CHECK_MIN_SECONDS = 10
    DELIVERY_CONFIRM_WITHIN_SECONDS = 24 * 3600
    # The reconciler re-asks providers about unpaid payments this often each.
    RECONCILE_PAYMENTS_EVERY_SECONDS = 60
    # Outgoing mail (receipts, operator alerts). No SMTP_HOST: no mail.
    SMTP_HOST = None
    SMTP_PORT = 587
    SMTP_SECURITY = "starttls"  # "starttls", "tls" (implicit, port 465) or "none" (loopback only)
    SMTP_USERNAME = None
    SMTP_PASSWORD = None  # set TOPUP_SMTP_PASSWORD in the environment, not in a file
    SMTP_TIMEOUT_SECONDS = 10
    MAIL_FROM = "topup <shop@localhost>"
    # Account lookups: cached (LOOKUP_CACHE_URL: "redis://..." to share between
    # processes) and rate-limited per client (topup.web.limits;
    # RATELIMIT_STORAGE_URI: "memory://" or "redis://..."; RATELIMIT_ENABLED).
    LOOKUP_CACHE_URL = None
    LOOKUP_CACHE_SECONDS = 10 * 60
    LOOKUP_NOT_FOUND_CACHE_SECONDS = 30
    LOOKUP_RATE_LIMIT = "30 per minute; 300 per hour"
    ORDER_RATE_LIMIT = "10 per minute; 100 per hour"
    # Sign-in links and identity-provider sign-in (start and callback) share one budget.
    SIGN_IN_RATE_LIMIT = "10 per minute; 50 per hour"
    RATELIMIT_STORAGE_URI = "memory://"
    RATELIMIT_ENABLED = True
    PROXY_FIX_X_FOR = 0  # how many reverse proxies set X-Forwarded-For in front of topup
    # Operators: who may enter /admin (e-mail addresses, or "sub:<subject>" for
    # an identity provider that gives no e-mail), and how long a sign-in lasts.
    ADMIN_OPERATORS = []
    ADMIN_SESSION_IDLE_SECONDS = 30 * 60
    ADMIN_SESSION_MAX_SECONDS = 12 * 3600
    ADMIN_LINK_SECONDS = 10 * 60
    # /metrics: loopback only, or anyone presenting this bearer token.
    METRICS_TOKEN = None
    # The product page as most buyers first see it is rendered once per
    # country and language for this long (0: every time); Buy re-checks prices.
    PAGE_CACHE_SECONDS = 5
    # Cookies and forms.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session
    WTF_CSRF_CHECK_DEFAULT = False  # topup.web's check_csrf calls Flask-WTF's check, method first
    MAX_CONTENT_LENGTH = 64 * 1024
    BABEL_DEFAULT_LOCALE = "en"


def load(app, test_config: dict | None) -> None:
    app.config.from_object(Defaults)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env("TOPUP")
    else:
        app.config.update(test_config)
    if not app.config.get("DATABASE_URL"):
        app.config["DATABASE_URL"] = "sqlite:///" + os.path.join(app.instance_path, "topup.sqlite")


def resolve_secrets(settings: dict) -> dict:
    """Replace {"$env": "NAME"} values, at any depth (in dicts and lists), by
    the environment variable NAME."""
    return {key: _resolve(value, key) for key, value in settings.items()}


def _resolve(value, key):
    if isinstance(value, dict) and set(value) == {"$env"}:
        if value["$env"] not in os.environ:
            raise KeyError(f"setting {key!r} needs environment variable {value['$env']}")
        return os.environ[value["$env"]]
    if isinstance(value, dict):
        return {name: _resolve(item, f"{key}.{name}") for name, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, key) for item in value]
    return value
