"""Database queries per request, counted: the pages every buyer hits (and the
status partial every open order page polls) must not grow queries silently."""
from __future__ import annotations

import contextlib

import pytest

from topup.db import database

from tests.conftest import buy, form_tokens, place_order

HX = {"HX-Request": "true"}


@contextlib.contextmanager
def counted():
    """The SQL statements run inside the block (pool bookkeeping excluded)."""
    statements = []
    real = database.obj.execute_sql

    def execute_sql(sql, params=None, *args, **kwargs):
        statements.append(sql)
        return real(sql, params, *args, **kwargs)

    database.obj.execute_sql = execute_sql
    try:
        yield statements
    finally:
        del database.obj.execute_sql


@pytest.fixture
def warm(app):
    """Caches as in production (a few seconds), warmed by one visit."""
    app.config["PAGE_CACHE_SECONDS"] = 60
    client = app.test_client()
    client.get("/tiktok-coins")
    client.get("/tiktok-coins/account?account=maria.s", headers=HX)
    return client


def test_the_landing_page_and_the_account_check_need_no_query_when_warm(warm):
    with counted() as statements:
        assert warm.get("/tiktok-coins").status_code == 200
        assert warm.get("/tiktok-coins/account?account=maria.s", headers=HX).status_code == 200
    assert statements == []


def test_the_order_page_and_an_unchanged_poll_need_one_query_each(app, client):
    with app.app_context():
        order = place_order(client)
    with counted() as statements:
        assert client.get(f"/orders/{order.public_id}").status_code == 200
    assert len(statements) == 1, statements
    with counted() as statements:
        live = client.get(f"/orders/{order.public_id}/live?seen=awaiting_payment", headers=HX)
        assert live.status_code == 204
    assert len(statements) == 1, statements
    selected = statements[0].split(" FROM ")[0]
    assert '"status"' in selected and '"public_id"' not in selected  # the shown state only
    # A change: the narrow query, then the order for the new block.
    with counted() as statements:
        live = client.get(f"/orders/{order.public_id}/live?seen=preparing", headers=HX)
        assert live.status_code == 200 and 'id="live"' in live.get_data(as_text=True)
    assert len(statements) == 2, statements


def test_buy_stays_within_its_query_budget(app, client):
    tokens = form_tokens(client.get("/tiktok-coins").get_data(as_text=True))
    with counted() as statements:
        assert buy(client, tokens=tokens).status_code == 303
    # Price and product look-ups, the order, its payment, its first event, the provider's
    # checkout row and the payment's start: a dozen, whatever the catalog's size.
    assert len(statements) <= 14, "\n".join(statements)
    assert len(statements) >= 5  # the counter sees them
