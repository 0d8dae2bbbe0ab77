"""Rate limits per client address, counted by the `limits` library: in memory
by default, in Redis when RATELIMIT_STORAGE_URI says so (needed with several
processes).

Account lookups share one budget (the partial and the page that checks a
username in its query string), so nobody can use us to hammer a reseller;
Buy has its own; sign-in too (topup.web.auth.limit_sign_in: admin links and
identity-provider sign-in, SIGN_IN_RATE_LIMIT). Over a limit: 429 with
Retry-After. Behind a reverse proxy set PROXY_FIX_X_FOR to the number of
proxies so the limit applies to buyers, not to the proxy.

A decorator of our own over `limits` rather than Flask-Limiter: we need three
named budgets, and Flask-Limiter's general machinery (default, blueprint and
meta limits, exemption scopes, header hints) cost 9-16% of every limited
page in a profile, even with limits switched off (bench/throughput).
"""
from __future__ import annotations

import functools
import logging
import time

from flask import current_app, request
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from topup.stores import Pause, redis_options

log = logging.getLogger(__name__)
KEY_PREFIX = "topup"


class Limits:
    """One app's counters: its storage, and each limit string parsed once."""

    def __init__(self, storage_uri: str):
        options = redis_options() if storage_uri.startswith("redis") else {}
        self.counter = FixedWindowRateLimiter(storage_from_string(storage_uri, **options))
        self.pause = Pause("rate limit storage", "requests let through")
        self._parsed: dict[str, list] = {}

    def check(self, scope: str, limit_string: str, client: str) -> None:
        """Count one request of client against scope; TooManyRequests (with
        the seconds to wait) once a window is full. A storage that is down
        lets requests through (logged, and left alone a few seconds: see
        topup.stores): a shop keeps selling."""
        if self.pause.active():
            return
        windows = self._parsed.get(limit_string)
        if windows is None:
            windows = self._parsed[limit_string] = sorted(parse_many(limit_string))
        key = (KEY_PREFIX, client, scope)
        for window in windows:
            try:
                allowed = self.counter.hit(window, *key)
                if not allowed:
                    reset = self.counter.get_window_stats(window, *key).reset_time
            except Exception as exc:
                self.pause.failed(exc)
                return
            if not allowed:
                log.info("rate limit %s exceeded for %s (%s)", window, client, scope)
                raise TooManyRequests(retry_after=max(1, int(reset - time.time()) + 1))


def limited(scope: str, setting: str, *, methods=None, when=None):
    """A view decorator: requests (of methods, and only when `when()` says so)
    count against the app's `setting` limit in scope, shared by every view
    that names the same scope."""
    def decorate(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            config = current_app.config
            if (config["RATELIMIT_ENABLED"] and (methods is None or request.method in methods)
                    and (when is None or when())):
                current_app.extensions["topup.limits"].check(
                    scope, config[setting], request.remote_addr or "unknown")
            return view(*args, **kwargs)
        return checked
    return decorate


def account_in_query() -> bool:
    """The product page without ?account= looks nothing up: not counted."""
    return bool(request.args.get("account"))


limit_lookups = limited("lookup", "LOOKUP_RATE_LIMIT", when=account_in_query)
limit_orders = limited("order", "ORDER_RATE_LIMIT", methods=("POST",))


def init_app(app) -> None:
    if app.config.get("PROXY_FIX_X_FOR"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"],
                                x_proto=app.config["PROXY_FIX_X_FOR"])
    app.extensions["topup.limits"] = Limits(app.config["RATELIMIT_STORAGE_URI"])
