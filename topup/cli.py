"""The `topup` command: init, serve, worker, plugins, migrate."""
from __future__ import annotations

import json
import sys
import logging
import secrets
import signal
import threading
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from topup import create_app


@click.group(cls=FlaskGroup, create_app=lambda: create_app(), add_default_commands=False,
             add_version_option=False, load_dotenv=False)
def main():
    """topup: a light, self-hostable top-up shop."""


def display_url(url: str) -> str:
    """A database URL without user, password or query string: safe to print."""
    scheme, _, rest = url.split("?", 1)[0].partition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def _registry():
    return current_app.extensions["topup"]


def _require_ready():
    from topup import schema
    from topup.models import SCHEMA_VERSION

    if not current_app.config.get("SECRET_KEY"):
        raise click.ClickException("No SECRET_KEY: run `topup init` (or set TOPUP_SECRET_KEY).")
    version = schema.current_version()
    if version is None:
        raise click.ClickException("The database has no tables yet: run `topup init`.")
    if version < SCHEMA_VERSION:
        raise click.ClickException(f"The database is at schema {version}, this topup needs "
                                   f"{SCHEMA_VERSION}: run `topup migrate`.")


DEMO_CONFIG = '''
# Demo mode: the sandbox payment and delivery plugins are on, and the QR and
# transfer methods show codes for made-up merchants (nobody can receive money
# through them). Replace PLUGINS (and list the sandboxes in DISABLED_PLUGINS)
# before taking real money.
DISABLED_PLUGINS = []
PLUGINS = {{
    "sandbox_payment": {{"webhook_secret": {webhook_secret!r}}},
    "pix": {{"key": "demo@topup.invalid", "merchant_name": "topup demo", "merchant_city": "SAO PAULO"}},
    "promptpay": {{"id": "0800000000", "merchant_name": "topup demo"}},
    "qris": {{"qris": "00020101021126620017ID.CO.EXAMPLE.WWW01189360000000000000010208DEMO00010303UMI51440014ID.CO.QRIS.WWW0215ID10200000000010303UMI5204541153033605802ID5910TOPUP DEMO6007JAKARTA6105101106304ECE9"}},
    "upi": {{"vpa": "topup.demo@upi", "name": "topup demo"}},
    "sepa": {{"iban": "DE89370400440532013000", "bic": "COBADEFFXXX", "name": "topup demo"}},
}}
'''


@main.command()
@click.option("--demo", is_flag=True, help="Seed the demo catalog and switch the sandboxes on.")
def init(demo):
    """Create the instance folder, its config (with a new secret key) and the database."""
    instance = Path(current_app.instance_path)
    (instance / "plugins").mkdir(parents=True, exist_ok=True)
    config_file = instance / "config.py"
    if not config_file.exists():
        text = f"SECRET_KEY = {secrets.token_hex(32)!r}\n"
        if demo:
            text += DEMO_CONFIG.format(webhook_secret="whsec_" + secrets.token_hex(24))
        config_file.write_text(text)
        config_file.chmod(0o600)
        click.echo(f"Wrote {config_file}")
        # The app in hand was built before the file existed: rebuild it.
        app = create_app()
        with app.app_context():
            _init_database(app, demo)
        return
    if demo and current_app.config["DISABLED_PLUGINS"]:
        click.echo(f"Note: {config_file} already exists and disables "
                   f"{', '.join(current_app.config['DISABLED_PLUGINS'])}. For the demo's sandbox "
                   "payments and deliveries, add these lines to it:\n" + DEMO_CONFIG.format(
                       webhook_secret="whsec_" + secrets.token_hex(24)), err=True)
    _init_database(current_app, demo)


def _init_database(app, demo):
    from topup import demo as demo_catalog
    from topup import schema

    schema.create_all(app.extensions["topup"].pm)
    click.echo(f"Database ready: {display_url(app.config['DATABASE_URL'])}")
    if demo:
        product = demo_catalog.seed()
        click.echo(f"Demo catalog ready: /{product.slug}")


@main.command()
@with_appcontext
def migrate():
    """Bring the database schema up to this version of topup."""
    from topup import schema

    applied = schema.migrate(_registry().pm)
    click.echo(f"Applied migrations: {applied}" if applied else "Schema is up to date.")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int,
              help="Waitress threads. Python runs one at a time: more only help while "
                   "requests wait (a distant database, slow providers); see bench/throughput.")
@click.option("--workers/--no-workers", default=True, show_default=True,
              help="Run the delivery worker threads inside this process.")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Serving processes sharing the port (Linux SO_REUSEPORT), restarted if "
                   "one dies: Python runs on one core per process, so about one per core.")
@click.option("--cpu", default=None, metavar="N|all",
              help="The CPU this process keeps its threads on (default: the one it starts "
                   "on; --processes gives each process its own). 'all' lets the kernel move "
                   "them; see README, Scaling.")
@click.option("--reuse-port", is_flag=True, hidden=True,
              help="Bind with SO_REUSEPORT (how --processes starts each of its processes).")
@with_appcontext
def serve(host, port, threads, workers, processes, cpu, reuse_port):
    """Serve the shop with waitress (and, by default, its delivery worker)."""
    import waitress.server

    from topup import processes as placing
    from topup.worker import Worker

    if cpu not in (None, "all"):
        usable = placing.usable_cpus()
        if not (cpu.isdigit() and int(cpu) in usable):
            raise click.BadParameter(f"{cpu!r}: expected 'all' or one of the CPUs this process "
                                     f"may use: {usable}", param_hint="--cpu")
        if processes > 1:
            raise click.BadParameter("--processes gives each process its own CPU; 'all' is the "
                                     "only other choice", param_hint="--cpu")
    _require_ready()
    app = current_app._get_current_object()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if processes > 1:
        argv = ["--host", host, "--threads", str(threads), "--workers" if workers else "--no-workers"]
        return placing.serve_processes(app, host, port, processes, argv,
                                       None if cpu == "all" else placing.usable_cpus())
    # waitress warns "Task queue depth is N" for each request that waits for a
    # free thread: under load, thousands of lines a second, written by the
    # server exactly when it is busiest (bench/soak counted 1,500 a second).
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # Behind PROXY_FIX_X_FOR proxies, werkzeug's ProxyFix reads their X-Forwarded-*
    # headers (topup.web.limits); waitress must pass them on instead of dropping them.
    behind_proxy = bool(app.config.get("PROXY_FIX_X_FOR"))
    if reuse_port:  # one of --processes' processes
        from topup.processes import follow_parent, shared_socket

        where = {"sockets": [shared_socket(host, port)]}
        follow_parent()
    else:
        where = {"host": host, "port": port}
    placing.place(cpu)  # before waitress starts its threads, which then stay there too
    server = waitress.server.create_server(app, threads=threads, ident="topup",
                                           clear_untrusted_proxy_headers=not behind_proxy, **where)
    bound = server.effective_port  # --port 0: the one the system picked
    app.config.setdefault("INTERNAL_URL", f"http://{_connectable(host)}:{bound}")
    worker = Worker(app).start() if workers else None
    click.echo(f"topup is serving on http://{host}:{bound}/", nl=True)
    sys.stdout.flush()
    try:
        server.run()
    finally:
        if worker:
            worker.stop()


def _connectable(host: str) -> str:
    """An address this machine can reach the server on, for its own callbacks."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


@main.command()
@click.option("--threads", type=int, default=None, help="Delivery threads (default: WORKER_THREADS).")
@with_appcontext
def worker(threads):
    """Run delivery worker threads until SIGINT/SIGTERM (for serve --no-workers setups)."""
    from topup.worker import Worker

    _require_ready()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    running = Worker(current_app._get_current_object(), threads).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    click.echo(f"topup worker running with {running.count} thread(s)")
    done.wait()
    running.stop()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@with_appcontext
def plugins(as_json):
    """List loaded plugins, the hooks each implements, and what they provide."""
    from topup.plugins import report as plugins_report

    registry = _registry()
    report = plugins_report(registry)
    rows, blocked = report["plugins"], report["disabled"]
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for row in rows:
        version = f" {row['version']}" if row["version"] else ""
        click.echo(f"{row['name']}{version}: {', '.join(row['hooks'])}")
    click.echo(f"disabled: {', '.join(blocked) or '-'}")
    click.echo(f"payment providers: {', '.join(report['payment_providers']) or '-'}")
    click.echo(f"delivery backends: {', '.join(report['delivery_backends']) or '-'}")
    if registry.not_configured:
        click.echo(f"not configured: {', '.join(registry.not_configured)}")
    for name, error in registry.errors.items():
        click.echo(f"failed to load {name}: {error}")
    for problem in report["problems"]:
        click.echo(f"problem in {problem['plugin']}: {problem['message']} ({problem['count']}x, "
                   f"last {problem['last_at'][:19]} UTC in {problem['process']})")


@main.command()
@with_appcontext
def reconcile():
    """Expire unpaid orders, re-ask providers about open payments, report what is stuck."""
    from topup import orders, reconcile as reconciler

    _require_ready()
    expired = orders.expire_overdue()
    asked = reconciler.payments(limit=10_000)
    stuck = reconciler.stuck()
    click.echo(f"expired {expired} unpaid order(s); asked about {asked['asked']} payment(s), "
               f"{asked['applied']} changed, {asked['errors']} provider error(s)")
    click.echo(f"needs attention: {stuck['needs_attention']}; waiting on a delivery backend: "
               f"{stuck['waiting_on_backend']}; deliveries overdue: {stuck['overdue_deliveries']}"
               + (" (is a worker running?)" if stuck["overdue_deliveries"] else ""))


@main.group()
def order():
    """Look at one order and act on it (by hand, as an operator)."""


def _operator() -> str:
    import getpass
    return f"cli:{getpass.getuser()}"


def _order_or_fail(public_id):
    from topup.models import Order

    _require_ready()
    found = Order.get_or_none(Order.public_id == public_id)
    if found is None:
        raise click.ClickException(f"No order {public_id}.")
    return found


def _act(action):
    """Run an operator action (a function of no arguments) and print the order's new status."""
    from topup.orders import OrderRefused

    try:
        done = action()
    except OrderRefused as refused:
        raise click.ClickException(str(refused))
    click.echo(f"order {done.public_id}: {done.status}")


@order.command("show")
@click.argument("public_id")
@with_appcontext
def order_show(public_id):
    """The order, its delivery and its timeline."""
    from topup.models import OrderEvent

    found = _order_or_fail(public_id)
    click.echo(f"order {found.public_id}: {found.status}, {found.quantity} {found.product.unit} "
               f"for {found.account_id}, {found.total.format()} by {found.payment_method}")
    for delivery in found.deliveries:
        click.echo(f"delivery via {delivery.backend}: {delivery.status}, {delivery.attempts} attempt(s)"
                   + (f", reference {delivery.reference}" if delivery.reference else "")
                   + (f", last error: {delivery.last_error}" if delivery.last_error else ""))
    for event in found.events.order_by(OrderEvent.id):
        click.echo(f"  {event.created_at:%Y-%m-%d %H:%M:%S} {event.actor}: {event.kind} "
                   f"{event.to_status or ''} {event.message or ''}".rstrip())


@order.command("delivered")
@click.argument("public_id")
@click.option("--reference", required=True, help="What you credited, e.g. the reseller's receipt.")
@click.option("--note", default=None)
@with_appcontext
def order_delivered(public_id, reference, note):
    """Mark a paid order delivered by hand."""
    from topup import orders

    _act(lambda: orders.mark_delivered(_order_or_fail(public_id), reference, _operator(), note))


@order.command("failed")
@click.argument("public_id")
@click.option("--reason", required=True)
@with_appcontext
def order_failed(public_id, reason):
    """Mark a paid order's delivery failed: it needs attention (refund or retry)."""
    from topup import orders

    _act(lambda: orders.mark_delivery_failed(_order_or_fail(public_id), reason, _operator()))


@order.command("retry")
@click.argument("public_id")
@with_appcontext
def order_retry(public_id):
    """Deliver a needs-attention order again."""
    from topup import orders

    _act(lambda: orders.retry_delivery(_order_or_fail(public_id), _operator()))


@order.command("paid")
@click.argument("public_id")
@click.option("--reference", required=True, help="The bank's reference for the money received.")
@with_appcontext
def order_paid(public_id, reference):
    """Mark an order paid by hand (money seen in the bank): it is then delivered."""
    from topup import orders

    _act(lambda: orders.mark_paid(_order_or_fail(public_id), reference, _operator()))


@order.command("cancel")
@click.argument("public_id")
@click.option("--reason", required=True)
@with_appcontext
def order_cancel(public_id, reason):
    """Cancel an unpaid (or needs-attention, unpaid) order."""
    from topup import orders

    _act(lambda: orders.cancel(_order_or_fail(public_id), reason, _operator()))


@order.command("refund")
@click.argument("public_id")
@click.option("--reason", required=True)
@with_appcontext
def order_refund(public_id, reason):
    """Refund a paid order: through the provider if it can, else recorded as done by hand."""
    from topup import orders

    _act(lambda: orders.refund(_order_or_fail(public_id), _operator(), reason))


@main.command()
@click.argument("backend", default="manual")
@with_appcontext
def queue(backend):
    """Paid orders waiting on a person (the manual backend's work list by default)."""
    from topup import orders

    _require_ready()
    rows = list(orders.delivery_queue(backend))
    for delivery in rows:
        paid = delivery.order
        click.echo(f"{paid.public_id}  {paid.quantity} {paid.product.unit} -> {paid.account_id}"
                   f"  (paid {delivery.created_at:%Y-%m-%d %H:%M} UTC)")
    click.echo(f"{len(rows)} waiting on {backend}")


@main.command("admin-link")
@click.option("--email", "subject", required=True,
              help="Who signs in (recorded as the actor of their actions).")
@click.option("--minutes", default=None, type=click.IntRange(1, 60),
              help="How long the link works (default: ADMIN_LINK_SECONDS).")
@with_appcontext
def admin_link(subject, minutes):
    """Print a one-time operator sign-in link: no identity provider or password needed."""
    from flask import url_for

    from topup.web.auth import create_link

    _require_ready()
    token = create_link(subject, minutes * 60 if minutes else None)
    base = current_app.config.get("PUBLIC_URL") or "http://127.0.0.1:8080"
    with current_app.test_request_context(base_url=base):
        url = url_for("auth.link", token=token, _external=True)
    click.echo(url)
    seconds = minutes * 60 if minutes else current_app.config["ADMIN_LINK_SECONDS"]
    click.echo(f"Open it within {seconds // 60} minute(s); it works once.", err=True)


@main.command()
@click.argument("destination", type=click.Path(dir_okay=False, writable=True))
@with_appcontext
def backup(destination):
    """Copy the SQLite database to DESTINATION, consistently, while the shop runs.

    Uses SQLite's online backup API (readers and writers carry on). For
    Postgres, use pg_dump (see the README's Operating section)."""
    import sqlite3

    from topup.db import database, is_sqlite

    if not is_sqlite():
        raise click.ClickException("The database is Postgres: back it up with pg_dump, e.g. "
                                   "`pg_dump --format=custom --file=topup.dump <database>`.")
    target = Path(destination)
    if target.exists():
        raise click.ClickException(f"{target} exists; choose a new file.")
    partial = target.with_name(target.name + ".partial")
    with sqlite3.connect(partial) as copy:
        database.connection().backup(copy)
    partial.rename(target)  # only a complete copy gets the name asked for
    click.echo(f"Backed up {display_url(current_app.config['DATABASE_URL'])} to {target}")


if __name__ == "__main__":  # how --processes starts its processes
    main()
