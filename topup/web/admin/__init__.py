"""The operator admin at /admin: every view requires a signed-in operator."""
from __future__ import annotations

from flask import Blueprint, render_template

from topup.web.auth import current_operator, operator_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@operator_required
def dashboard():
    return render_template("admin/dashboard.html", operator=current_operator())
