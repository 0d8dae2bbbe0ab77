"""Fixtures the proofs share: a stand-in for outside services, a shop in a
known state (orders in several states, an operator's sign-in link), and the
operator's browser, signed in the way a person signs in."""
from __future__ import annotations

import re

import pytest

from topup import worker
from topup.models import Package, Payment, Product, SignInSession
from topup.web.admin.allowed import ACTIONS
from topup.web.auth import create_link

from tests.conftest import CSRF, place_order, sandbox_event, signed_headers
from tests.proofs.common import Stub
from tests.web.admin.conftest import sign_in


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.stop()


@pytest.fixture
def world(app, client):
    """Orders waiting, paid, delivered and a Pix one; and, by path argument
    name, values that name real things (for building URLs of any route)."""
    waiting = place_order(client)
    paid = place_order(client, account="@proof_paid")
    delivered = place_order(client, account="@proof_delivered")
    pix = place_order(client, country="BR", method="pix")
    for order in (delivered, paid):
        body = sandbox_event(order)
        assert client.post("/webhooks/sandbox", data=body,
                           headers=signed_headers(body)).status_code == 200
        if order is delivered:
            assert worker.deliver_once(app)
    worker.beat()  # a worker is alive: /healthz answers 200
    with app.app_context():
        token = create_link("linked@example.com")
    html = client.get("/tiktok-coins").get_data(as_text=True)
    return {
        "slug": ["tiktok-coins"],
        "public_id": [o.public_id for o in (waiting, paid, delivered, pix)],
        "action": list(ACTIONS),
        "product_id": [str(p.id) for p in Product.select()],
        "package_id": [str(p.id) for p in Package.select()],
        "ref": [p.provider_ref for p in Payment.select() if p.provider == "sandbox"],
        "payment_ref": [p.provider_ref for p in Payment.select()],
        "provider_id": sorted(app.extensions["topup"].providers),
        "provider": sorted(app.extensions["topup.oidc_providers"]),
        "token": [token],
        "filename": re.findall(r'/static/([\w.-]+\.[0-9a-f]{10}\.\w+)', html),
    }


class Browser:
    """The operator's browser, with a CSRF token from its session; signed in
    again when a request signed it out."""

    def __init__(self, app, runner):
        self.app, self.runner = app, runner
        self.client = app.test_client()
        self.token = None
        self.refresh()

    def refresh(self):
        if not SignInSession.select().exists():
            sign_in(self.client, self.runner)
        found = CSRF.search(self.client.get("/admin/orders").get_data(as_text=True))
        if found is None:  # this browser was signed out; the session left is someone else's
            sign_in(self.client, self.runner)
            found = CSRF.search(self.client.get("/admin/orders").get_data(as_text=True))
        self.token = found.group(1)


@pytest.fixture
def operator(app, runner):
    return Browser(app, runner)
