"""Admin fixtures: an operator signed in the way a person does it (a one-time
`topup admin-link`, then its confirm form), and helpers to post admin forms."""
from __future__ import annotations

import pytest

from topup import orders
from topup.cli import main
from topup.models import Order, Payment

from tests.conftest import CSRF, place_order
from tests.conftest import pay as pay_order

OPERATOR = "ops@example.com"


def sign_in(client, runner, email: str = OPERATOR):
    result = runner.invoke(main, ["admin-link", "--email", email])
    assert result.exit_code == 0, result.output
    path = result.output.splitlines()[0].removeprefix("http://127.0.0.1:8080")
    token = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    done = client.post(path, data={"csrf_token": token})
    assert done.status_code == 303 and done.headers["Location"] == "/admin/"
    return client


@pytest.fixture
def operator_client(app, runner):
    """A test client signed in as the operator OPERATOR."""
    return sign_in(app.test_client(), runner)


def csrf(client, path: str = "/admin/") -> str:
    """A CSRF token from an admin page, as a browser's form would carry it."""
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def post(client, path: str, data: dict | None = None, **kwargs):
    """POST an admin form with its CSRF token."""
    return client.post(path, data={"csrf_token": csrf(client), **(data or {})}, **kwargs)


def fresh(order: Order) -> Order:
    return Order.get_by_id(order.id)


def pay(app, order: Order) -> Order:
    """The sandbox says the order's payment succeeded: it is paid, with a delivery row."""
    assert pay_order(app, order) == "applied"
    return fresh(order)


@pytest.fixture
def buyer(app):
    """A separate client for the buyer's side (its own cookies)."""
    return app.test_client()


@pytest.fixture
def placed(app, buyer):
    """An order placed through the shop: awaiting payment."""
    with app.app_context():
        return place_order(buyer)


@pytest.fixture
def paid(app, placed):
    return pay(app, placed)


def new_order(app, *, coins: int = 70, country: str = "US", currency: str = "USD",
              account: str = "demo_user", email: str | None = None,
              method: str = "sandbox", created_at=None, slug: str = "tiktok-coins") -> Order:
    """An order straight from topup.orders.create_order (faster than the shop's
    form), its payment given a provider reference as if started; created_at
    moved when a test needs the order in the past."""
    import secrets

    from topup.models import Package, Product

    product = Product.get(Product.slug == slug)
    package = Package.get(Package.product == product, Package.quantity == coins)
    with app.app_context():
        order, _ = orders.create_order(
            product=product, package=package, country=country, currency=currency,
            account_id=account, account_nickname=None, payment_method=method, email=email,
            locale="en", idempotency_key=secrets.token_urlsafe(18))
    Payment.update(provider_ref=f"sbx_{order.public_id}", status="started").where(
        Payment.order == order.id).execute()
    if created_at is not None:
        Order.update(created_at=created_at).where(Order.id == order.id).execute()
    return fresh(order)
