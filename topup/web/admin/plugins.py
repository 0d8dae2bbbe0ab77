"""What `topup plugins` prints, as a page: loaded plugins, their hooks, what
they provide, what is not configured and what failed. Settings are never
shown: they hold secrets."""
from __future__ import annotations

from flask import current_app, render_template

from topup.web.admin import bp


def report(registry) -> dict:
    pm = registry.pm
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        rows.append({"name": name, "version": dist.version if dist else None,
                     "hooks": sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())})
    return {
        "plugins": rows,
        "disabled": sorted(name for name, plugin in pm.list_name_plugin() if plugin is None),
        "providers": sorted((p.id, p.name) for p in registry.providers.values()),
        "backends": sorted((b.id, b.name) for b in registry.backends.values()),
        "not_configured": sorted(registry.not_configured),
        "errors": sorted(registry.errors.items()),
    }


@bp.get("/plugins")
def plugin_list():
    return render_template("admin/plugins.html", **report(current_app.extensions["topup"]))
