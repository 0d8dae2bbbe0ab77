"""Signed tokens without zlib (topup.web.tokens): the same format as before,
so Flask-WTF accepts ours and ours accept what the old serializer made."""
from flask import session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import ValidationError, generate_csrf, validate_csrf
import pytest

from topup.web.tokens import CompactSerializer, csrf_token


def test_payloads_are_never_compressed_and_still_read_back():
    serializer = CompactSerializer("k" * 32, salt="test")
    token = serializer.dumps("a" * 500)  # zlib would shrink this one
    assert not token.startswith(".")
    assert serializer.loads(token) == "a" * 500


def test_our_csrf_token_is_one_flask_wtf_accepts(app):
    with app.test_request_context("/"):
        token = csrf_token()
        assert csrf_token() == token  # one per request
        validate_csrf(token)
        assert generate_csrf() == token  # both read the same per-request token
        with pytest.raises(ValidationError):
            validate_csrf(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))


def test_a_session_cookie_from_flask_s_own_serializer_still_opens(app):
    old = SecureCookieSessionInterface().get_signing_serializer(app).dumps(
        {"csrf_token": "b" * 40, "note": "x" * 300})
    assert old.startswith(".")  # the old serializer compressed this one
    client = app.test_client()
    client.set_cookie(app.config.get("SESSION_COOKIE_NAME", "session"), old)
    with client:
        client.get("/healthz")
        assert session.get("note") == "x" * 300


def test_the_product_page_form_posts_with_its_token(client):
    page = client.get("/tiktok-coins").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert not token.startswith(".")
    response = client.post("/tiktok-coins", data={"csrf_token": token, "intent": "refresh"})
    assert response.status_code == 200
    bad = client.post("/tiktok-coins", data={"csrf_token": token[:-3] + "xyz", "intent": "refresh"})
    assert bad.status_code == 400
