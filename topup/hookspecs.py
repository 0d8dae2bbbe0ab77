"""Every hook topup calls. A plugin implements any of them with @topup.hookimpl."""
import pluggy

hookspec = pluggy.HookspecMarker("topup")

# Registration: called once at start-up; every plugin's answer is collected.


@hookspec
def register_payment_providers():
    """Return a list of PaymentProvider subclasses (see topup.payments)."""


@hookspec
def register_delivery_backends():
    """Return a list of DeliveryBackend subclasses (see topup.delivery)."""


@hookspec
def register_blueprints():
    """Return a list of flask.Blueprint: a plugin's own pages, templates and static files."""


@hookspec
def register_models():
    """Return a list of peewee models (using topup.db.database) whose tables `topup init` creates."""


@hookspec
def register_commands(cli):
    """Add click commands to the `topup` command group `cli` (e.g. `topup vouchers`)."""


# Periodic work: called by the worker's sweep, inside an app context.


@hookspec
def housekeeping():
    """Do periodic work (retry a notification, warn about low stock). Return value ignored;
    an exception is contained and logged."""


# Events: broadcast to every plugin after the change is committed.


@hookspec
def order_status_changed(order, old, new):
    """An order moved from status `old` to `new` (committed). Return value ignored."""
