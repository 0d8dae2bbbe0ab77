"""What `topup plugins` prints, as a page: loaded plugins, their hooks, what
they provide, what is not configured and what failed. Settings are never
shown: they hold secrets."""
from __future__ import annotations

from flask import current_app, render_template

from topup.plugins import report
from topup.web.admin import bp


@bp.get("/plugins")
def plugin_list():
    registry = current_app.extensions["topup"]
    return render_template("admin/plugins.html", **report(registry),
                           providers=sorted((p.id, p.name) for p in registry.providers.values()),
                           backends=sorted((b.id, b.name) for b in registry.backends.values()))
