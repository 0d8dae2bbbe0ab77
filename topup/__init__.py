"""topup: a light, self-hostable top-up shop. Plugins implement topup.hookimpl."""
from __future__ import annotations

import os
from pathlib import Path

import pluggy

hookimpl = pluggy.HookimplMarker("topup")

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict | None = None):
    from flask_babel import Babel
    from flask_wtf.csrf import CSRFProtect

    from topup import config, db, web
    from topup.plugins import Registry, get_plugin_manager
    from topup.web.app import App

    instance_path = os.environ.get("TOPUP_INSTANCE_PATH")
    app = App(__name__, instance_relative_config=True,
              instance_path=os.path.abspath(instance_path) if instance_path else None,
              template_folder=str(ROOT / "templates"), static_folder=None)
    config.load(app, test_config)
    db.init_app(app)
    pm = get_plugin_manager(app.config["DISABLED_PLUGINS"], app.instance_path)
    app.extensions["topup"] = Registry(pm, app.config["PLUGINS"])
    CSRFProtect(app)
    Babel(app, locale_selector=web.select_locale)
    web.init_app(app)
    for blueprints in pm.hook.register_blueprints():
        for blueprint in blueprints:
            app.register_blueprint(blueprint)
    pm.hook.register_commands(cli=app.cli)
    return app


__all__ = ["create_app", "hookimpl"]
