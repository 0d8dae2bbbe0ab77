"""Rate limits (Flask-Limiter): per client address, in memory by default,
in Redis when RATELIMIT_STORAGE_URI says so (needed with several processes).

Account lookups share one budget (the partial and the page that checks a
username in its query string), so nobody can use us to hammer a reseller;
Buy has its own; sign-in too (topup.web.auth.limit_sign_in: admin links and
identity-provider sign-in, SIGN_IN_RATE_LIMIT). Behind a reverse proxy set
PROXY_FIX_X_FOR to the number of proxies so the limit applies to buyers, not
to the proxy.
"""
from __future__ import annotations

from flask import current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, key_prefix="topup")


def lookup_limit() -> str:
    return current_app.config["LOOKUP_RATE_LIMIT"]


def order_limit() -> str:
    return current_app.config["ORDER_RATE_LIMIT"]


def no_account_in_query() -> bool:
    """The product page without ?account= looks nothing up: not counted."""
    return not request.args.get("account")


def limit_lookups(view):
    return limiter.shared_limit(lookup_limit, scope="lookup", exempt_when=no_account_in_query)(view)


def limit_orders(view):
    return limiter.limit(order_limit, methods=["POST"])(view)


def init_app(app) -> None:
    if app.config.get("PROXY_FIX_X_FOR"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"],
                                x_proto=app.config["PROXY_FIX_X_FOR"])
    limiter.init_app(app)
