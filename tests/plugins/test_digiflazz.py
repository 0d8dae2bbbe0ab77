"""Digiflazz delivery through the real worker path (sandbox payment, then
topup.worker.deliver_once), against a local fake of Digiflazz's buyer API
(tests/plugins/digiflazz_server.py): signed requests, ref_id status checks,
response codes, signed callbacks."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import timedelta

import pytest

from topup import create_app, orders, worker
from topup.models import Delivery, Order, OrderEvent, Package, Product, utcnow
from topup_plugins.digiflazz.backend import ref_id_for
from topup_plugins.digiflazz.models import DigiflazzTransaction

from tests.conftest import pay, place_order, wait_for
from tests.plugins.digiflazz_server import FakeDigiflazz
from tests.proofs.common import table_snapshot

USERNAME = "tokokoin"
API_KEY = "dev-" + "5f0e" * 8
SECRET = "digiflazz-hook-" + "q" * 20
REF_ID = re.compile(r"TU[A-Z2-7]{20}")


@pytest.fixture
def fake():
    server = FakeDigiflazz(USERNAME, API_KEY, skus={"TTC70"}).start()
    yield server
    server.stop()


@pytest.fixture
def config(config, fake, monkeypatch):
    monkeypatch.setenv("DIGIFLAZZ_TEST_API_KEY", API_KEY)
    config["PLUGINS"]["digiflazz"] = {
        "username": USERNAME, "api_key": {"$env": "DIGIFLAZZ_TEST_API_KEY"},
        "webhook_secret": SECRET, "base_url": fake.url, "testing": True,
        "timeout_seconds": 0.5, "status_check_interval_seconds": 0,
        "skus": {"tiktok-coins:70": "TTC70"}}
    return config


# --- helpers -------------------------------------------------------------------


def paid_order(app, client, account="@fan.of_coins") -> Order:
    """An order for 70 coins delivered by Digiflazz, paid (its Delivery row is due)."""
    Product.update(delivery_backend="digiflazz").execute()
    with app.app_context():
        order = place_order(client, account=account, coins=70)
    assert pay(app, order) == "applied"
    return order


def work(app) -> None:
    """Let the worker handle the next due delivery (waiting until one is due)."""
    wait_for(lambda: worker.deliver_once(app), timeout=5)


def status(order) -> str:
    return Order.get_by_id(order.id).status


def delivery(order) -> Delivery:
    return Delivery.get(Delivery.order == order.id)


def messages(order, kind="delivery") -> list[str]:
    return [e.message for e in OrderEvent.select().where(
        OrderEvent.order == order.id, OrderEvent.kind == kind).order_by(OrderEvent.id)]


def tries(order) -> list[DigiflazzTransaction]:
    return list(DigiflazzTransaction.select().where(
        DigiflazzTransaction.order_ref == order.public_id).order_by(DigiflazzTransaction.seq))


def backend(app):
    return app.extensions["topup"].backends["digiflazz"]


def signed(body: dict, secret: str = SECRET, event: str = "update") -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    return raw, {"X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), raw, hashlib.sha1)
                 .hexdigest(), "X-Digiflazz-Event": event, "Content-Type": "application/json"}


# --- set-up ----------------------------------------------------------------------


def test_without_username_or_api_key_it_is_not_configured(config, tmp_path, monkeypatch):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    config["PLUGINS"]["digiflazz"] = {"username": USERNAME, "skus": {}}
    app = create_app(config)
    registry = app.extensions["topup"]
    assert "digiflazz" not in registry.backends and "digiflazz" in registry.not_configured
    assert "digiflazz" not in registry.errors
    # its callback route still exists (CSRF-exempt), and says it is not set up
    assert app.test_client().post("/digiflazz/callback", data=b"{}").status_code == 404


def test_a_malformed_sku_mapping_is_a_contained_plugin_error(config, tmp_path, monkeypatch):
    monkeypatch.setenv("TOPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    config["PLUGINS"]["digiflazz"]["skus"] = {"tiktok-coins:70": 70}
    registry = create_app(config).extensions["topup"]
    assert "digiflazz" not in registry.backends
    assert "buyer_sku_code" in registry.errors["digiflazz"]
    assert API_KEY not in registry.errors["digiflazz"]


def test_only_packages_with_a_sku_are_offered_and_every_account_is_found(app):
    product = Product.get(Product.slug == "tiktok-coins")
    offered = {package.quantity for package in Package.select() if backend(app).in_stock(package)}
    assert offered == {70}
    info = backend(app).lookup_account(product, "anyone.at_all")
    assert (info.account_id, info.found, info.nickname) == ("anyone.at_all", True, None)


# --- delivering ------------------------------------------------------------------------


def test_a_paid_order_is_bought_once_with_a_signed_request(app, client, fake):
    backend(app).callback_url = "https://coins.example/digiflazz/callback"
    order = paid_order(app, client)
    work(app)
    assert status(order) == orders.DELIVERED
    [sent] = fake.requests
    assert sent["cb_url"] == "https://coins.example/digiflazz/callback"
    ref_id = sent["ref_id"]
    assert REF_ID.fullmatch(ref_id) and ref_id == ref_id_for(order.public_id, 0)
    assert order.public_id not in json.dumps(sent)  # the order page's secret stays here
    assert sent["sign"] == hashlib.md5((USERNAME + API_KEY + ref_id).encode()).hexdigest()
    assert (sent["username"], sent["buyer_sku_code"], sent["customer_no"]) == (
        USERNAME, "TTC70", "fan.of_coins")
    assert sent["testing"] is True and sent["allow_dot"] is True
    held = fake.ledger[ref_id]
    assert fake.purchases == 1 and held["testing"] is True
    done = delivery(order)
    assert (done.status, done.attempts, done.reference) == ("done", 1, held["sn"])
    assert messages(order) == [f"Attempt 1: delivered (Digiflazz {ref_id}: Sukses), "
                               f"reference {held['sn']}"]
    [row] = tries(order)
    assert (row.status, row.rc, row.sn, row.source) == ("Sukses", "00", held["sn"], "api")

    # deliver() again: answered from the record, nothing sent
    assert backend(app).deliver(order).reference == held["sn"] and len(fake.requests) == 1
    # even with the record lost, the same ref_id only asks: never a second purchase
    DigiflazzTransaction.delete().execute()
    again = backend(app).deliver(order)
    assert (again.status, again.reference) == ("delivered", held["sn"])
    assert [r["ref_id"] for r in fake.requests] == [ref_id, ref_id] and fake.purchases == 1


def test_pending_then_a_signed_callback_delivers_at_once(app, client, fake):
    fake.outcomes = ["Pending"]
    order = paid_order(app, client)
    work(app)
    ref_id = ref_id_for(order.public_id, 0)
    waiting = delivery(order)
    assert (waiting.status, waiting.reference) == ("waiting", ref_id)
    assert status(order) == orders.DELIVERING
    assert messages(order) == [f"Attempt 1: pending (Digiflazz {ref_id}: rc 03 (Transaksi "
                               f"Pending)), reference {ref_id}"]
    assert worker.deliver_once(app) is False  # the first status check is 10 s away

    fake.complete(ref_id, "Sukses")
    body, headers = fake.callback(ref_id, SECRET)
    answer = client.post("/digiflazz/callback", data=body, headers=headers)
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "recorded"
    [row] = tries(order)
    assert (row.status, row.rc, row.source) == ("Sukses", "00", "callback")
    assert delivery(order).next_attempt_at <= utcnow()  # woken

    assert worker.deliver_once(app) is True
    assert status(order) == orders.DELIVERED
    assert delivery(order).reference == fake.ledger[ref_id]["sn"]
    assert len(fake.requests) == 1  # the callback's word was enough: no status check
    assert fake.purchases == 1

    events = OrderEvent.select().where(OrderEvent.order == order.id).count()
    again = client.post("/digiflazz/callback", data=body, headers=headers)  # a replay
    assert again.status_code == 200
    assert OrderEvent.select().where(OrderEvent.order == order.id).count() == events
    assert worker.deliver_once(app) is False and status(order) == orders.DELIVERED


def test_pending_then_a_status_check_delivers(app, client, fake):
    app.config["DELIVERY_CHECK_MIN_SECONDS"] = 0
    fake.outcomes = ["Pending"]
    order = paid_order(app, client)
    work(app)
    assert delivery(order).status == "waiting"
    work(app)  # asks again: still pending at Digiflazz
    assert delivery(order).status == "waiting" and len(fake.requests) == 2
    ref_id = ref_id_for(order.public_id, 0)
    fake.complete(ref_id, "Sukses")
    work(app)
    assert status(order) == orders.DELIVERED
    assert [r["ref_id"] for r in fake.requests] == [ref_id] * 3
    assert fake.purchases == 1 and len(fake.ledger) == 1
    assert delivery(order).attempts == 1  # checks spend no attempts


def test_status_checks_keep_a_minute_apart(app, client, fake):
    app.config["DELIVERY_CHECK_MIN_SECONDS"] = 0
    backend(app).check_interval = 60
    fake.outcomes = ["Pending"]
    order = paid_order(app, client)
    work(app)
    work(app)  # due, but Digiflazz was asked a moment ago: no request, no news
    assert len(fake.requests) == 1 and delivery(order).status == "waiting"
    DigiflazzTransaction.update(sent_at=utcnow() - timedelta(seconds=61)).execute()
    fake.complete(ref_id_for(order.public_id, 0), "Sukses")
    work(app)
    assert len(fake.requests) == 2 and status(order) == orders.DELIVERED


def test_pending_that_fails_at_the_biller_is_bought_again_under_a_new_ref_id(app, client, fake):
    fake.outcomes = ["Pending"]
    order = paid_order(app, client)
    work(app)
    first = ref_id_for(order.public_id, 0)
    fake.complete(first, "Gagal", "70")  # Timeout Dari Biller: the ref_id is spent
    body, headers = fake.callback(first, SECRET)
    assert client.post("/digiflazz/callback", data=body, headers=headers).status_code == 200
    work(app)  # the check reads the callback: retry
    assert delivery(order).status == "pending"
    work(app)  # attempt 2, under try 1's ref_id
    assert status(order) == orders.DELIVERED
    second = ref_id_for(order.public_id, 1)
    assert [r["ref_id"] for r in fake.requests] == [first, second]
    assert [(t.ref_id, t.status, t.rc) for t in tries(order)] == [
        (first, "Gagal", "70"), (second, "Sukses", "00")]
    assert fake.purchases == 1
    assert delivery(order).attempts == 2


def test_a_timeout_after_the_purchase_finds_it_instead_of_buying_again(app, client, fake):
    app.config["DELIVERY_CHECK_MIN_SECONDS"] = 0
    fake.script = ["slow"]  # bought, then answered after the client's 0.5 s timeout
    order = paid_order(app, client)
    work(app)
    ref_id = ref_id_for(order.public_id, 0)
    assert fake.ledger[ref_id]["status"] == "Sukses"
    assert delivery(order).status == "waiting" and status(order) == orders.DELIVERING
    [attempt] = messages(order)
    assert attempt.startswith(f"Attempt 1: pending (Digiflazz {ref_id}: no answer within 0.5 s")
    work(app)  # the status check: the same request again
    assert status(order) == orders.DELIVERED
    assert [r["ref_id"] for r in fake.requests] == [ref_id, ref_id]
    assert fake.purchases == 1 and len(fake.ledger) == 1
    assert delivery(order).attempts == 1


def test_a_server_error_is_checked_and_then_bought(app, client, fake):
    app.config["DELIVERY_CHECK_MIN_SECONDS"] = 0
    fake.script = ["500"]
    order = paid_order(app, client)
    work(app)
    assert delivery(order).status == "waiting" and "HTTP 500" in messages(order)[0]
    assert fake.ledger == {}
    work(app)
    assert status(order) == orders.DELIVERED and fake.purchases == 1


def test_a_malformed_answer_is_checked_not_bought_twice(app, client, fake):
    app.config["DELIVERY_CHECK_MIN_SECONDS"] = 0
    fake.script = ["garbage"]
    order = paid_order(app, client)
    work(app)
    assert "malformed answer: not JSON" in messages(order)[0]
    assert delivery(order).status == "waiting" and fake.purchases == 1
    work(app)
    assert status(order) == orders.DELIVERED
    assert fake.purchases == 1 and len(fake.requests) == 2


def test_a_rate_limited_request_is_retried(app, client, fake):
    backend(app).check_interval = 60  # a refused request is not one to wait a minute after
    fake.script = ["429"]
    order = paid_order(app, client)
    work(app)
    retried = delivery(order)
    assert (retried.status, retried.attempts) == ("pending", 1)
    assert "HTTP 429" in retried.last_error
    work(app)
    assert status(order) == orders.DELIVERED and delivery(order).attempts == 2
    assert fake.purchases == 1


def test_a_cut_off_is_retried_under_a_new_ref_id(app, client, fake):
    fake.outcomes = [("Gagal", "58")]
    order = paid_order(app, client)
    work(app)
    assert delivery(order).status == "pending"
    assert "rc 58 (Sedang Cut Off)" in messages(order)[0]
    work(app)
    assert status(order) == orders.DELIVERED
    assert [r["ref_id"] for r in fake.requests] == [ref_id_for(order.public_id, 0),
                                                     ref_id_for(order.public_id, 1)]
    assert fake.purchases == 1 and len(fake.ledger) == 2


def test_a_wrong_account_needs_attention_with_the_reason(app, client, fake):
    fake.outcomes = [("Gagal", "54")]
    order = paid_order(app, client)
    work(app)
    assert status(order) == orders.NEEDS_ATTENTION
    failed = delivery(order)
    assert failed.status == "failed" and "rc 54 (Nomor Tujuan Salah)" in failed.last_error
    reason = messages(order, "status")[-1]
    assert reason.startswith("Delivery gave up after 1 attempt(s): Digiflazz TU")
    assert "rc 54 (Nomor Tujuan Salah)" in reason
    assert fake.purchases == 0
    assert worker.deliver_once(app) is False


def test_no_balance_needs_attention_and_a_retry_reuses_the_unspent_ref_id(app, client, fake):
    fake.balance = 0
    order = paid_order(app, client)
    work(app)
    assert status(order) == orders.NEEDS_ATTENTION
    reason = messages(order, "status")[-1]
    assert "rc 44 (Saldo tidak cukup)" in reason and "top up your Digiflazz deposit" in reason
    assert fake.ledger == {}  # Digiflazz formed no transaction

    fake.balance = 1_000_000  # the operator topped up the deposit
    with app.app_context():
        orders.retry_delivery(Order.get_by_id(order.id), actor="operator@example.com")
    work(app)
    assert status(order) == orders.DELIVERED
    ref_id = ref_id_for(order.public_id, 0)
    assert [r["ref_id"] for r in fake.requests] == [ref_id, ref_id] and fake.purchases == 1


def test_a_package_without_a_sku_needs_attention_without_asking_digiflazz(app, client, fake):
    order = paid_order(app, client)
    backend(app).skus = {}  # the mapping was removed after the order was placed
    work(app)
    assert status(order) == orders.NEEDS_ATTENTION
    assert "no Digiflazz SKU for tiktok-coins:70" in messages(order, "status")[-1]
    assert fake.requests == [] and tries(order) == []


def test_an_unknown_response_code_never_counts_as_delivered(app, client, fake):
    app.config["DELIVERY_MAX_ATTEMPTS"] = 2
    fake.outcomes = [("Sukses", "98")]  # says Sukses, but with a code nobody documented
    order = paid_order(app, client)
    work(app)
    assert delivery(order).status == "pending" and status(order) == orders.DELIVERING
    work(app)
    assert status(order) == orders.NEEDS_ATTENTION
    assert all("unexpected answer, status 'Sukses' rc '98'" in m for m in messages(order))
    assert delivery(order).reference is None


def test_a_transaction_too_old_to_check_needs_a_person(app, client, fake):
    app.config["DELIVERY_CHECK_MIN_SECONDS"] = 0
    fake.outcomes = ["Pending"]
    order = paid_order(app, client)
    work(app)
    DigiflazzTransaction.update(created_at=utcnow() - timedelta(days=86)).execute()
    work(app)
    assert status(order) == orders.NEEDS_ATTENTION
    assert "too old to check" in messages(order, "status")[-1]
    assert len(fake.requests) == 1


# --- callbacks -------------------------------------------------------------------------


def test_a_forged_or_unsigned_callback_is_refused_and_changes_nothing(app, client, fake, caplog):
    fake.outcomes = ["Pending"]
    order = paid_order(app, client)
    work(app)
    ref_id = ref_id_for(order.public_id, 0)
    fake.complete(ref_id, "Sukses")
    due = delivery(order).next_attempt_at

    body, headers = fake.callback(ref_id, "not-the-secret")
    forged = client.post("/digiflazz/callback", data=body, headers=headers)
    assert forged.status_code == 401 and forged.get_json() == {"error": "signature does not match"}
    del headers["X-Hub-Signature"]
    assert client.post("/digiflazz/callback", data=body, headers=headers).status_code == 400
    headers["X-Hub-Signature"] = "md5=" + hashlib.md5(body).hexdigest()
    assert client.post("/digiflazz/callback", data=body, headers=headers).status_code == 400
    _, good = fake.callback(ref_id, SECRET)  # a real signature over another body
    tampered = body.replace(b'"Sukses"', b'"Sukses" ', 1)
    assert client.post("/digiflazz/callback", data=tampered, headers=good).status_code == 401

    [row] = tries(order)
    assert (row.status, row.rc, row.source) == ("Pending", "03", "api")
    assert delivery(order).next_attempt_at == due
    assert worker.deliver_once(app) is False
    rejected = [r.getMessage() for r in caplog.records if "rejected digiflazz callback" in
                r.getMessage()]
    assert len(rejected) == 4 and all(SECRET not in m for m in rejected)


def test_a_callback_for_a_ref_id_we_never_sent_is_acknowledged_and_ignored(app, client, caplog):
    body, headers = signed({"data": {"ref_id": "TUNOTONEOFOURS2345678", "status": "Sukses",
                                     "rc": "00", "sn": "X", "message": "Sukses"}})
    answer = client.post("/digiflazz/callback", data=body, headers=headers)
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "ignored"
    assert DigiflazzTransaction.select().count() == 0
    assert any("never sent" in r.getMessage() for r in caplog.records)


def test_a_signed_callback_with_a_ref_id_not_shaped_like_ours_is_unknown_and_changes_nothing(
        app, client, fake, caplog, monkeypatch):
    """A NUL or stray byte never reaches a query (Postgres refuses a NUL with an error)."""
    fake.outcomes = ["Pending"]
    order = paid_order(app, client)
    work(app)
    ours = ref_id_for(order.public_id, 0)
    before = table_snapshot(app)

    def no_query(*args):
        raise AssertionError(f"record() called with {args[0]!r}")

    monkeypatch.setattr("topup_plugins.digiflazz.backend.record", no_query)
    for junk in ["abc\x00def", ours + "\x00", ours[:-1] + "\x00", ours + "\n", ours.lower(),
                 "TU" + "\x00" * 20, "", 7, None]:
        body, headers = signed({"data": {"ref_id": junk, "status": "Sukses", "rc": "00",
                                         "sn": "STOLEN", "message": "Sukses"}})
        answer = client.post("/digiflazz/callback", data=body, headers=headers)
        assert answer.status_code == 200, repr(junk)
        assert answer.get_json() == {"ok": True, "outcome": "ignored"}, repr(junk)
    assert table_snapshot(app) == before
    assert sum("never sent" in r.getMessage() for r in caplog.records) == 9
    assert (delivery(order).status, status(order)) == ("waiting", orders.DELIVERING)


def test_the_webhook_ping_is_answered(client):
    body, headers = signed({"sed": "AgXXtVAHp", "hook_id": "11aaabbb",
                            "hook": {"url": "https://shop.example/digiflazz/callback",
                                     "type": "application/json", "status": 1}}, event="ping")
    answer = client.post("/digiflazz/callback", data=body, headers=headers)
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "pong"


def test_a_late_pending_callback_never_undoes_a_final_status(app, client, fake):
    order = paid_order(app, client)
    work(app)
    ref_id = ref_id_for(order.public_id, 0)
    late = {**fake.ledger[ref_id], "status": "Pending", "rc": "03", "sn": ""}
    late.pop("testing")
    body, headers = signed({"data": late}, event="create")
    assert client.post("/digiflazz/callback", data=body, headers=headers).status_code == 200
    [row] = tries(order)
    assert (row.status, row.rc, row.sn) == ("Sukses", "00", fake.ledger[ref_id]["sn"])


def test_over_http_the_worker_delivers_when_digiflazz_calls_back(app, client, fake, live_server):
    fake.outcomes = ["Pending"]
    order = paid_order(app, client)
    wait_for(lambda: delivery(order).status == "waiting")
    ref_id = ref_id_for(order.public_id, 0)
    fake.complete(ref_id, "Sukses")
    url = live_server.url + "/digiflazz/callback"
    assert fake.send_callback(url, ref_id, "wrong-secret") == 401
    assert fake.send_callback(url, ref_id, SECRET) == 200
    wait_for(lambda: status(order) == orders.DELIVERED, timeout=5)  # checks are 10 s apart
    assert len(fake.requests) == 1 and fake.purchases == 1
