"""What `topup plugins` prints, as a page: loaded plugins, their hooks, what
they provide, what is not configured, what failed to load, and the problems
any process (server or worker) met with them since, until dismissed.
Settings are never shown: they hold secrets."""
from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from topup import problems
from topup.plugins import report
from topup.web.admin import bp


@bp.get("/plugins")
def plugin_list():
    registry = current_app.extensions["topup"]
    return render_template("admin/plugins.html", **report(registry),
                           providers=sorted((p.id, p.name) for p in registry.providers.values()),
                           backends=sorted((b.id, b.name) for b in registry.backends.values()))


@bp.post("/plugins/problems/dismiss")
def dismiss_problem():
    plugin = request.form.get("plugin", "")[:255]
    if problems.dismiss(plugin):
        flash(_("Dismissed the problem with %(plugin)s. If it fails again, it is listed again.",
                plugin=plugin))
    else:
        flash(_("There was no problem with %(plugin)s to dismiss.", plugin=plugin))
    return redirect(url_for("admin.plugin_list"), 303)
