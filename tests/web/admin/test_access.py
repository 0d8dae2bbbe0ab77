"""Every admin URL is for signed-in operators only; each page renders for one;
every form needs its CSRF token; nothing is cached."""
from __future__ import annotations

import hashlib
import re
import secrets

import pytest

from topup.models import Order, OrderEvent, SignInSession

from tests.conftest import CSRF
from tests.web.admin.conftest import OPERATOR, csrf, post

PAGES = ["/admin/", "/admin/orders", "/admin/orders?status=paid&q=demo", "/admin/catalog",
         "/admin/catalog/1", "/admin/stock", "/admin/plugins", "/admin/export",
         "/admin/export.csv?from=2020-01-01&to=2040-12-31"]


def admin_urls(app, public_id: str) -> list[tuple[str, str]]:
    """(method, path) of every route the admin blueprint has, with real arguments."""
    values = {"public_id": public_id, "product_id": 1, "package_id": 1, "action": "retry"}
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        path = rule.rule
        for name in rule.arguments:
            path = re.sub(rf"<(?:[a-z]+:)?{name}>", str(values[name]), path)
        found += [(method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return found


def test_the_admin_has_all_its_pages(app, placed):
    urls = admin_urls(app, placed.public_id)
    assert ("GET", "/admin/") in urls
    assert ("POST", f"/admin/orders/{placed.public_id}/retry") in urls
    assert len(urls) >= 15


def test_signed_out_every_admin_url_is_refused(app, client, placed):
    shop_token = CSRF.search(client.get("/tiktok-coins").get_data(as_text=True)).group(1)
    for method, path in admin_urls(app, placed.public_id):
        if method == "GET":
            response = client.get(path)
            assert response.status_code == 302, path
            assert response.headers["Location"].startswith("/admin/sign-in?next=/admin"), path
            assert client.get(path, headers={"HX-Request": "true"}).status_code == 401, path
        else:  # a valid CSRF token, but nobody signed in
            response = client.post(path, data={"csrf_token": shop_token, "reason": "x",
                                               "reference": "x"})
            assert response.status_code == 401, path
    assert OrderEvent.select().where(OrderEvent.actor != "buyer").count() == 0


def test_a_signed_in_buyer_is_not_an_operator(client):
    token = secrets.token_urlsafe(32)
    SignInSession.create(token_hash=hashlib.sha256(token.encode()).hexdigest(),
                         subject="buyer@example.com", role="buyer", method="link")
    with client.session_transaction() as session:
        session["sid"] = token
    assert client.get("/admin/orders").status_code == 302
    assert client.get("/admin/orders", headers={"HX-Request": "true"}).status_code == 401


@pytest.mark.parametrize("path", PAGES)
def test_each_page_renders_for_an_operator(operator_client, paid, path):
    response = operator_client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    if not path.startswith("/admin/export.csv"):
        page = response.get_data(as_text=True)
        assert f"Signed in as {OPERATOR}." in page
        assert 'action="/sign-out"' in page and "admin." in page  # the admin stylesheet
        assert "style=" not in page and "<script>" not in page  # the CSP allows neither


def test_the_order_page_renders_for_an_operator(operator_client, paid):
    page = operator_client.get(f"/admin/orders/{paid.public_id}").get_data(as_text=True)
    assert paid.public_id in page and "style=" not in page


def test_an_unknown_order_or_product_is_a_404(operator_client):
    assert operator_client.get("/admin/orders/nope").status_code == 404
    assert operator_client.get("/admin/catalog/999").status_code == 404
    assert post(operator_client, "/admin/orders/nope/cancel", {"reason": "x"}).status_code == 404
    assert post(operator_client, "/admin/catalog/packages/999", {}).status_code == 404


def test_a_post_without_its_csrf_token_is_refused(operator_client, placed):
    response = operator_client.post(f"/admin/orders/{placed.public_id}/cancel",
                                    data={"reason": "buyer asked"})
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert Order.get_by_id(placed.id).status == "awaiting_payment"
    forged = operator_client.post(f"/admin/orders/{placed.public_id}/cancel",
                                  data={"reason": "x", "csrf_token": "forged"})
    assert forged.status_code == 400
    assert operator_client.post("/admin/catalog/1", data={"name": "Renamed"}).status_code == 400


def test_signing_out_from_the_admin_ends_the_session(operator_client):
    response = operator_client.post("/sign-out", data={"csrf_token": csrf(operator_client)})
    assert response.status_code == 303
    assert operator_client.get("/admin/orders").status_code == 302
