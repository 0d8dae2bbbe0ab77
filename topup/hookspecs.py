"""Every hook topup calls. A plugin implements any of them with @topup.hookimpl.

docs/plugins.md is the reference: each hook's arguments, return value, when it
runs, and an example. A plugin module may declare the hook API it was written
for (``TOPUP_HOOK_API = 1``); one needing a newer API than HOOK_API_VERSION
refuses to start, rather than half-working.
"""
import pluggy

hookspec = pluggy.HookspecMarker("topup")

# Goes up by one when a hook is added, or a hook's or a contract's meaning
# changes: a plugin declaring the new number then refuses to load on an older
# topup (topup.plugins.check_hook_api) instead of half-working.
HOOK_API_VERSION = 1

# Registration: called once at start-up; every plugin's answer is collected.


@hookspec
def register_payment_providers():
    """Return a list of PaymentProvider subclasses (see topup.payments).

    Called once while the app is built. Each class is instantiated with the
    plugin's own settings (PLUGINS[<plugin name>], secrets resolved); a class
    whose __init__ raises NotConfigured is quietly left out, any other
    exception is contained and shown by `topup plugins`."""


@hookspec
def register_delivery_backends():
    """Return a list of DeliveryBackend subclasses (see topup.delivery).

    Built like payment providers: one instance per class, with the plugin's
    settings; NotConfigured leaves the backend out, other errors are contained."""


@hookspec
def register_blueprints():
    """Return a list of flask.Blueprint: a plugin's own pages, templates and static files.

    Registered after core's blueprints, before the first request. Give the
    blueprint template_folder/static_folder (absolute paths) so its templates
    are found where the plugin is installed."""


@hookspec
def register_models():
    """Return a list of peewee models (using topup.db.database) whose tables `topup init` creates.

    `topup init` and `topup migrate` create missing tables (safe=True); they
    never alter a plugin's existing table."""


@hookspec
def register_commands(cli):
    """Add click commands to the `topup` command group `cli` (e.g. `topup vouchers`).

    Called once while the app is built; commands run inside an app context
    when decorated with flask.cli.with_appcontext."""


# Periodic work: called by the worker's sweep, inside an app context.


@hookspec
def housekeeping():
    """Do periodic work (retry a notification, warn about low stock). Return value ignored;
    an exception is contained and logged.

    Called by each worker process's sweep (every few seconds), inside an app
    context; several processes may sweep at once, so make the work idempotent.
    Keep it short: use timeouts on every network call."""


# Events: broadcast to every plugin after the change is committed.


@hookspec
def order_status_changed(order, old, new):
    """An order moved from status `old` to `new` (committed). Return value ignored.

    Called after the transaction commits, in the thread that made the change
    (a request or a worker); an exception is contained and never undoes the
    change. Slow work belongs in housekeeping, driven by a table of your own."""
