"""The operator admin at /admin.

One guard for the whole blueprint (a new page cannot forget it), and no
admin page is ever cached or indexed. The views live in the modules imported
at the bottom, each small: dashboard, orders, actions, catalog, stock,
plugins, exports.
"""
from __future__ import annotations

from flask import Blueprint, make_response, render_template, request

from topup.web.auth import current_operator, operator_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@operator_required
def signed_in_operators_only():
    """Signed out: GET goes to the sign-in page, anything else gets a 401."""
    return None


@bp.after_request
def never_cached(response):
    response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("X-Robots-Tag", "noindex")
    return response


@bp.context_processor
def admin_globals():
    return {"operator": current_operator()}


def render(partial: str, page: str, status: int = 200, **context):
    """Like topup.web.render_for_htmx, but an htmx history restore (htmx's
    cache is off, so it asks the server) gets the full page it needs."""
    htmx = request.htmx
    template = partial if htmx and not htmx.history_restore_request else page
    return make_response(render_template(template, **context), status, {"Vary": "HX-Request"})


from topup.web.admin import (  # noqa: E402  (each registers its views on bp)
    actions, catalog, dashboard, exports, orders, plugins, promos, stock,
)

__all__ = ["bp", "render", "actions", "catalog", "dashboard", "exports", "orders", "plugins",
           "promos", "stock"]
