"""The status poll's 204, answered before Flask (topup.web.polls): the same
answer the page relies on, with nothing of Flask's per-request work, and
every other poll handed to the view."""
from __future__ import annotations

import pytest
from flask import request_started

from topup.db import database
from topup.web.polls import StatusPolls

from tests.conftest import place_order
from tests.web import HX


@pytest.fixture
def handled(app):
    """A list that grows by one for every request Flask itself handles."""
    seen = []
    with request_started.connected_to(lambda sender, **extra: seen.append(1), app):
        yield seen


def test_an_unchanged_poll_is_answered_without_flask(client, handled):
    order = place_order(client)
    handled.clear()  # placing the order went through Flask
    response = client.get(f"/orders/{order.public_id}/live?seen=awaiting_payment", headers=HX)
    assert response.status_code == 204 and response.data == b""
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "Set-Cookie" not in response.headers  # no session started for a poll
    assert handled == []


def test_every_other_poll_reaches_the_view(client, handled):
    order = place_order(client)
    live = f"/orders/{order.public_id}/live"
    handled.clear()  # placing the order went through Flask
    changed = client.get(f"{live}?seen=paid", headers=HX)
    assert changed.status_code == 200 and 'id="live"' in changed.get_data(as_text=True)
    no_js = client.get(f"{live}?seen=awaiting_payment")  # a browser without htmx: the page
    assert no_js.status_code == 303 and no_js.headers["Location"].endswith(order.public_id)
    assert client.get(f"{live}?seen=AWAITING_PAYMENT", headers=HX).status_code == 200
    assert client.get(f"{live}?seen=", headers=HX).status_code == 200
    assert client.head(f"{live}?seen=awaiting_payment", headers=HX).status_code == 200
    missing = client.get("/orders/no-such-order/live?seen=awaiting_payment", headers=HX)
    assert missing.status_code == 404
    assert len(handled) == 6


def test_seen_is_read_among_other_parameters(client):
    order = place_order(client)
    live = f"/orders/{order.public_id}/live"
    assert client.get(f"{live}?x=1&seen=awaiting_payment&y=2", headers=HX).status_code == 204
    assert client.get(f"{live}?unseen=awaiting_payment", headers=HX).status_code == 200


def test_behind_tls_the_204_says_strict_transport_security(client):
    order = place_order(client)
    response = client.get(f"/orders/{order.public_id}/live?seen=awaiting_payment", headers=HX,
                          base_url="https://localhost")
    assert response.status_code == 204
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    plain = client.get(f"/orders/{order.public_id}/live?seen=awaiting_payment", headers=HX)
    assert "Strict-Transport-Security" not in plain.headers


def test_a_poll_returns_its_connection_and_leaves_a_callers_open(app, client):
    order = place_order(client)
    live = f"/orders/{order.public_id}/live?seen=awaiting_payment"
    database.close()
    assert client.get(live, headers=HX).status_code == 204
    assert database.is_closed()  # back to the pool, as Flask's teardown would
    database.connect()
    try:
        assert client.get(live, headers=HX).status_code == 204
        assert not database.is_closed()  # not the poll's to close
    finally:
        database.close()


def test_a_poll_the_lane_cannot_answer_goes_to_the_view(app, client, monkeypatch, handled):
    """A failing query is not the lane's to report: Flask's view and error page do."""
    order = place_order(client)
    polls = app.wsgi_app.wsgi_app  # inside topup.web.security's headers
    assert isinstance(polls, StatusPolls)
    monkeypatch.setattr(polls, "shown_now", lambda public_id: 1 / 0)
    handled.clear()  # placing the order went through Flask
    response = client.get(f"/orders/{order.public_id}/live?seen=awaiting_payment", headers=HX)
    assert response.status_code == 200 and 'id="live"' in response.get_data(as_text=True)
    assert handled == [1]
