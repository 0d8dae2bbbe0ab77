"""The vouchers delivery backend: importing encrypted codes, allocating one per
order through the worker (also under a race), out of stock, low-stock alerts
and key rotation."""
from __future__ import annotations

import logging
import socket

import pytest
from cryptography.fernet import Fernet
from peewee import IntegrityError

from topup import create_app, orders, problems, worker
from topup.db import database
from topup.models import Order, OrderEvent, Package, Product
from topup_plugins.vouchers.backend import VoucherDelivery
from topup_plugins.vouchers.crypto import Vault
from topup_plugins.vouchers.models import VoucherCode, VoucherStockAlert

from tests.conftest import place_order, plugin_problems
from tests.smtp import Inbox
from tests.test_worker import delivery_of, paid_orders, run_threads, status

KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
LOW = 3


@pytest.fixture
def config(config):
    config["PLUGINS"] = {**config["PLUGINS"], "vouchers": {"key": KEY, "low_stock": LOW}}
    return config


@pytest.fixture
def vouchers(app):
    """The demo product, sold through vouchers; returns the loaded backend."""
    Product.update(delivery_backend="vouchers").where(Product.slug == "tiktok-coins").execute()
    return app.extensions["topup"].backends["vouchers"]


@pytest.fixture
def stock_file(tmp_path):
    files = []

    def write(text: str | bytes) -> str:
        path = tmp_path / f"codes-{len(files)}.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        files.append(path)
        return str(path)

    return write


def run_import(runner, path, quantity=70, *options):
    return runner.invoke(args=["vouchers", "import", "tiktok-coins", str(quantity), path,
                               *options])


def stock_in(runner, stock_file, codes, quantity=70):
    result = run_import(runner, stock_file("\n".join(codes) + "\n"), quantity)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"imported {len(codes)}, refused 0 duplicate(s)")


def free(quantity=70) -> int:
    package = Package.get(Package.quantity == quantity)
    return VoucherCode.select().where(VoucherCode.package == package,
                                      VoucherCode.order_ref.is_null()).count()


def drain(app) -> int:
    worked = 0
    while worker.deliver_once(app):
        worked += 1
    return worked


# --- import ------------------------------------------------------------------------


def test_import_stores_codes_encrypted_and_handles_the_header(vouchers, runner, stock_file):
    path = stock_file("code\n  AAAA-1111 ,first\n\n\t\nBBBB-2222\r\nCCCC-3333")
    result = run_import(runner, path, 70, "--batch", "INV-7")
    assert result.exit_code == 0, result.output
    assert result.output == "imported 3, refused 0 duplicate(s)\n"

    rows = database.execute_sql(
        "SELECT ciphertext, fingerprint, batch, order_ref FROM voucher_code ORDER BY id").fetchall()
    assert len(rows) == 3
    for (ciphertext, fingerprint, batch, order_ref), code in zip(
            rows, ["AAAA-1111", "BBBB-2222", "CCCC-3333"]):
        assert code not in ciphertext and code.replace("-", "") not in ciphertext
        assert Fernet(KEY).decrypt(ciphertext.encode()).decode() == code  # stripped, as given
        assert fingerprint == vouchers.vault.fingerprint(code) and code not in fingerprint
        assert (batch, order_ref) == ("INV-7", None)
    assert free(70) == 3


def test_duplicates_in_the_file_and_in_stock_are_refused_by_line(vouchers, runner, stock_file):
    stock_in(runner, stock_file, ["AAAA-1111", "BBBB-2222"])
    path = stock_file("CODE\nbbbb 2222\nDDDD-4444\nEEEE-5555\ndddd-4444\nAAAA-1111\n")
    result = run_import(runner, path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "imported 2, refused 3 duplicate(s)",
        "  line 2: already imported",
        "  line 5: repeats line 3",
        "  line 6: already imported",
    ]
    assert free(70) == 4


def test_a_code_in_another_packages_stock_is_refused_without_showing_it(vouchers, runner,
                                                                       stock_file):
    stock_in(runner, stock_file, ["SECRET-70-CODE"], quantity=70)
    result = run_import(runner, stock_file("SECRET-70-CODE\nFRESH-350\n"), 350)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["imported 1, refused 1 duplicate(s)",
                                          "  line 1: already imported"]
    assert "SECRET" not in result.output
    assert (free(70), free(350)) == (1, 1)


@pytest.mark.parametrize("text, problem", [
    ("GOOD-1\nGOOD-2\nBAD\x07CODE\nGOOD-3\n", "line 3: holds control characters"),
    ("GOOD-1\n" + "X" * 201 + "\n", "line 2: longer than 200 characters"),
    ("code\nGOOD-1\n,note without a code\n", "line 3: no code in the first column"),
    ("GOOD-1\n---\n", "line 2: only dashes, not a code"),
    (b"GOOD-1\nCAF\xc9-2\n", "the file is not UTF-8 text"),
])
def test_a_bad_file_imports_nothing(vouchers, runner, stock_file, text, problem):
    result = run_import(runner, stock_file(text))
    assert result.exit_code == 1
    assert "Nothing imported" in result.output and problem in result.output
    assert "GOOD" not in result.output
    assert VoucherCode.select().count() == 0


def test_an_import_that_fails_in_the_database_adds_nothing(vouchers, runner, stock_file,
                                                           monkeypatch):
    """A clash at insert time (a concurrent import of the same codes) rolls the file back."""
    from topup_plugins.vouchers import stock

    monkeypatch.setattr(stock, "CHUNK", 2)  # several INSERTs; the third one clashes
    stock_in(runner, stock_file, ["TAKEN-9"])
    monkeypatch.setattr(stock, "_known_fingerprints", lambda fingerprints: set())
    result = run_import(runner, stock_file("NEW-1\nNEW-2\nNEW-3\nNEW-4\nTAKEN-9\n"))
    assert result.exit_code == 1
    assert "Nothing imported" in result.output
    assert VoucherCode.select().count() == 1


def test_import_needs_a_known_package(vouchers, runner, stock_file):
    path = stock_file("AAAA-1111\n")
    result = run_import(runner, path, 71)
    assert result.exit_code == 1 and "no package of 71 coins" in result.output
    assert "70" in result.output
    result = runner.invoke(args=["vouchers", "import", "no-such-thing", "70", path])
    assert result.exit_code == 1 and "No product 'no-such-thing'" in result.output
    assert VoucherCode.select().count() == 0


def test_the_fingerprint_refuses_a_duplicate_in_the_database(vouchers, runner, stock_file):
    stock_in(runner, stock_file, ["AAAA-1111"])
    vault = vouchers.vault
    assert vault.fingerprint("aaaa 1111") == vault.fingerprint("AAAA-1111")
    assert vault.fingerprint("AAAA-1112") != vault.fingerprint("AAAA-1111")
    assert Vault([NEW_KEY]).fingerprint("AAAA-1111") != vault.fingerprint("AAAA-1111")
    with pytest.raises(IntegrityError):
        with database.atomic():
            VoucherCode.create(package=Package.get(Package.quantity == 350),
                               ciphertext=vault.encrypt("aaaa1111"),
                               fingerprint=vault.fingerprint("aaaa1111"))
    assert VoucherCode.select().count() == 1


# --- delivery ------------------------------------------------------------------------


def test_a_paid_order_gets_a_code_through_the_worker(app, vouchers, client, runner,
                                                     stock_file):
    stock_in(runner, stock_file, ["FIRST-0001", "SECOND-0002"])
    [order] = paid_orders(app, client, 1)
    assert delivery_of(order).backend == "vouchers"
    assert worker.deliver_once(app) is True
    assert status(order) == orders.DELIVERED

    code = VoucherCode.get(VoucherCode.order_ref == order.public_id)
    assert code.allocated_at is not None
    assert delivery_of(order).reference == f"voucher #{code.id}"
    with app.app_context():
        assert vouchers.buyer_code(order) == "FIRST-0001"
    assert free(70) == 1
    page = client.get(f"/orders/{order.public_id}").get_data(as_text=True)
    assert "FIRST-0001" in page and "SECOND-0002" not in page
    timeline = " ".join(e.message or "" for e in OrderEvent.select())
    assert "FIRST" not in timeline and "SECOND" not in timeline

    again = vouchers.deliver(Order.get_by_id(order.id))  # e.g. a lease ran out
    assert (again.status, again.reference) == ("delivered", f"voucher #{code.id}")
    with app.app_context():
        assert vouchers.buyer_code(order) == "FIRST-0001"
    assert free(70) == 1


def test_an_order_not_yet_delivered_has_no_code(app, vouchers, client, runner, stock_file):
    stock_in(runner, stock_file, ["SPARE-0001"])
    order = place_order(client)
    with app.app_context():
        assert vouchers.buyer_code(order) is None
    assert vouchers.lookup_account(order.product, "demo_user").found is True


def test_in_stock_follows_the_free_codes(app, vouchers, client, runner, stock_file):
    package = Package.get(Package.quantity == 70)
    assert vouchers.in_stock(package) is False
    stock_in(runner, stock_file, ["ONLY-0001"], quantity=350)  # another package's code
    assert vouchers.in_stock(package) is False
    stock_in(runner, stock_file, ["ONLY-0002"])
    assert vouchers.in_stock(package) is True
    paid_orders(app, client, 1)
    drain(app)
    assert vouchers.in_stock(package) is False
    assert vouchers.in_stock(Package.get(Package.quantity == 350)) is True


def test_out_of_stock_needs_attention_then_restock_and_retry_delivers(app, vouchers, client,
                                                                      runner, stock_file):
    stock_in(runner, stock_file, ["LAST-0001"])
    first, second = paid_orders(app, client, 2)
    assert drain(app) == 2
    assert status(first) == orders.DELIVERED
    assert status(second) == orders.NEEDS_ATTENTION
    message = "Out of stock: no voucher codes left for TikTok Coins 70"
    assert delivery_of(second).status == "failed"
    assert delivery_of(second).last_error == message
    attention = OrderEvent.get(OrderEvent.order == second.id,
                               OrderEvent.to_status == orders.NEEDS_ATTENTION)
    assert message in attention.message
    with app.app_context():
        assert vouchers.buyer_code(second) is None

    stock_in(runner, stock_file, ["RESTOCK-0002"])
    with app.app_context():
        orders.retry_delivery(Order.get_by_id(second.id), actor="operator")
    assert drain(app) == 1
    assert status(second) == orders.DELIVERED
    with app.app_context():
        assert vouchers.buyer_code(second) == "RESTOCK-0002"


def test_more_buyers_than_codes_at_once_each_code_goes_to_one_order(app, vouchers, client,
                                                                    runner, stock_file):
    codes = [f"RACE-{index:04d}" for index in range(5)]
    stock_in(runner, stock_file, codes)
    placed = paid_orders(app, client, 12)

    worked = run_threads(6, lambda: drain(app))

    assert sum(worked) == 12  # every delivery attempted exactly once
    statuses = [status(order) for order in placed]
    assert statuses.count(orders.DELIVERED) == 5
    assert statuses.count(orders.NEEDS_ATTENTION) == 7
    allocated = list(VoucherCode.select().where(VoucherCode.order_ref.is_null(False)))
    assert len(allocated) == 5 and free(70) == 0
    delivered = {o.public_id for o, s in zip(placed, statuses) if s == orders.DELIVERED}
    assert {code.order_ref for code in allocated} == delivered
    with app.app_context():
        given = [vouchers.buyer_code(order) for order in placed
                 if order.public_id in delivered]
    assert sorted(given) == codes  # every code issued, none twice
    for order, state in zip(placed, statuses):
        if state == orders.NEEDS_ATTENTION:
            assert delivery_of(order).last_error.startswith("Out of stock")


# --- low stock --------------------------------------------------------------------------


def sweep(app):
    worker.sweep(app)
    assert "vouchers" not in plugin_problems()


def warnings_in(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("topup_plugins.vouchers") and r.levelno == logging.WARNING]


def sell(app, client, count):
    placed = paid_orders(app, client, count)
    assert drain(app) == count
    assert all(status(order) == orders.DELIVERED for order in placed)


def test_low_stock_is_warned_once_per_crossing(app, vouchers, client, runner, stock_file,
                                               caplog):
    caplog.set_level(logging.INFO, logger="topup_plugins.vouchers")
    # Only the stocked package is on sale (an empty one is low at once).
    Package.update(enabled=False).where(Package.quantity != 70).execute()
    stock_in(runner, stock_file, [f"LOW-{index}" for index in range(LOW + 1)])
    sweep(app)
    assert warnings_in(caplog) == [] and VoucherStockAlert.select().count() == 0

    sell(app, client, 2)  # LOW + 1 - 2 = 2 free: under the threshold
    sweep(app)
    sweep(app)
    assert warnings_in(caplog) == [
        f"voucher stock low: tiktok-coins 70 has {LOW - 1} free code(s), under {LOW}"]

    stock_in(runner, stock_file, ["MORE-1", "MORE-2"])  # 4 free: restocked
    sweep(app)
    assert VoucherStockAlert.select().count() == 0
    sell(app, client, 2)  # 2 free again: a new crossing
    sweep(app)
    sweep(app)
    assert len(warnings_in(caplog)) == 2

    result = runner.invoke(args=["vouchers", "stock"])
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.split()[1:2] == ["70"]]
    assert line.split() == ["tiktok-coins", "70", "2", "4", "LOW"]
    [line] = [line for line in result.output.splitlines() if line.split()[1:2] == ["350"]]
    assert line.split() == ["tiktok-coins", "350", "0", "0", "LOW"]


@pytest.fixture
def inbox(config):
    server = Inbox().start()
    config.update(server.config())
    yield server
    server.stop()


@pytest.fixture
def alert_email(config):
    config["PLUGINS"]["vouchers"]["alert_email"] = "ops@example.com"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_low_stock_is_mailed_once_per_crossing_and_retried_after_a_failure(
        inbox, alert_email, app, vouchers, client, runner, stock_file):
    Package.update(enabled=False).where(Package.quantity != 70).execute()
    stock_in(runner, stock_file, [f"LOW-{index}" for index in range(LOW + 1)])
    sell(app, client, 2)

    smtp_port = app.config["SMTP_PORT"]
    app.config["SMTP_PORT"] = closed_port()  # the mail server is down
    worker.sweep(app)
    assert "vouchers" in plugin_problems()
    assert inbox.messages == []
    assert VoucherStockAlert.get().mailed_at is None

    app.config["SMTP_PORT"] = smtp_port
    assert problems.dismiss("vouchers")
    sweep(app)
    sweep(app)
    [(to, parsed)] = inbox.messages
    message = parsed.as_string()
    assert to == ["ops@example.com"]
    assert "Subject: Low voucher stock: TikTok Coins 70" in message
    assert f"TikTok Coins 70: {LOW - 1} free code(s) left" in message
    assert "LOW-" not in message

    stock_in(runner, stock_file, ["MORE-1", "MORE-2"])
    sweep(app)
    sell(app, client, 2)
    sweep(app)
    assert len(inbox.messages) == 2


def test_no_mail_without_an_alert_address(inbox, app, vouchers, client, runner, stock_file,
                                          caplog):
    stock_in(runner, stock_file, ["ONLY-1"])
    sell(app, client, 1)
    sweep(app)
    assert VoucherStockAlert.select().count() == len(Package.select())  # every package is low
    assert any("tiktok-coins 70 has 0 free" in m for m in warnings_in(caplog))
    assert inbox.messages == []


# --- keys ----------------------------------------------------------------------------------


def test_without_a_key_the_backend_is_not_set_up(config, tmp_path, monkeypatch, stock_file):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    config["PLUGINS"]["vouchers"] = {"low_stock": 5}
    bare = create_app(config)
    registry = bare.extensions["topup"]
    assert "vouchers" not in registry.backends
    assert "vouchers" in registry.not_configured and "vouchers" not in registry.errors
    result = bare.test_cli_runner().invoke(
        args=["vouchers", "import", "tiktok-coins", "70", stock_file("AAAA-1\n")])
    assert result.exit_code == 1 and "has no key" in result.output


def test_a_key_that_is_not_a_fernet_key_is_an_error_without_echoing_it(config, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    config["PLUGINS"]["vouchers"] = {"key": "not-a-real-key-but-a-secret"}
    registry = create_app(config).extensions["topup"]
    assert "vouchers" not in registry.backends
    assert "not a Fernet key" in registry.errors["vouchers"]
    assert "secret" not in registry.errors["vouchers"]


def test_key_rotation_keeps_codes_readable_and_duplicates_refused(app, vouchers, client, runner,
                                                                  stock_file):
    stock_in(runner, stock_file, ["OLD-0001", "OLD-0002"])
    [order] = paid_orders(app, client, 1)
    drain(app)

    rotated = VoucherDelivery({"keys": f"{NEW_KEY}, {KEY}"})  # as one environment variable
    app.extensions["topup"].backends["vouchers"] = rotated
    with app.app_context():
        assert rotated.buyer_code(order) == "OLD-0001"
    result = run_import(runner, stock_file("old-0002\nNEW-0003\n"))
    assert result.output.splitlines() == ["imported 1, refused 1 duplicate(s)",
                                          "  line 1: already imported"]

    result = runner.invoke(args=["vouchers", "rotate"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("re-encrypted 3 code(s)")

    only_new = VoucherDelivery({"key": NEW_KEY})
    app.extensions["topup"].backends["vouchers"] = only_new
    with app.app_context():
        assert only_new.buyer_code(order) == "OLD-0001"
    for (ciphertext,) in database.execute_sql("SELECT ciphertext FROM voucher_code"):
        Fernet(NEW_KEY).decrypt(ciphertext.encode())  # every code now opens with the new key
    result = run_import(runner, stock_file("OLD-0002\nnew-0003\n"))
    assert result.output.startswith("imported 0, refused 2 duplicate(s)")

    old_only = VoucherDelivery({"key": KEY})
    with app.app_context(), pytest.raises(RuntimeError, match="none of the configured keys"):
        old_only.buyer_code(order)


def test_keys_from_the_environment_inside_a_list(monkeypatch):
    monkeypatch.setenv("TOPUP_TEST_VOUCHER_KEY", NEW_KEY)
    backend = VoucherDelivery({"keys": [{"$env": "TOPUP_TEST_VOUCHER_KEY"}, KEY]})
    token = backend.vault.encrypt("ABC")
    assert Fernet(NEW_KEY).decrypt(token.encode()) == b"ABC"
    assert backend.vault.decrypt(Fernet(KEY).encrypt(b"XYZ").decode()) == "XYZ"
