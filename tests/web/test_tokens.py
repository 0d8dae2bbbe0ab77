"""Signed tokens (topup.web.tokens): signers built once, keys derived once,
no zlib, Vary set without re-parsing. The tokens and
headers must stay what Flask, Flask-WTF and itsdangerous make, so each is
checked against theirs."""
from datetime import datetime, timezone
import hashlib
import itertools
import re
import struct
import subprocess
import sys
import threading

from flask import session
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionInterface
from flask_wtf.csrf import ValidationError, generate_csrf, validate_csrf
from itsdangerous import BadSignature, Signer, TimestampSigner, URLSafeTimedSerializer
from markupsafe import Markup
import pytest
from werkzeug.wrappers import Response

from topup.web import tokens
from topup.web.tokens import (CSRF_SALT, CompactSerializer, KeyOnceTimestampSigner, RandomPool,
                              SessionCookies, SessionJSON, _KeyOnce, csrf_token, token_urlsafe)
from topup.web.app import add_vary

NOW = 1_760_000_000


class KeyOnceSigner(_KeyOnce, Signer):
    """The mixin on the plain signer, to compare with itsdangerous' byte for byte."""


@pytest.fixture
def frozen(monkeypatch):
    """One timestamp for every signer, ours and itsdangerous' (same class)."""
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: NOW)


@pytest.fixture
def derivations(monkeypatch):
    """Counts itsdangerous' key derivations (ours call it on a cache miss)."""
    calls = []
    original = Signer.derive_key

    def counted(self, secret_key=None):
        calls.append(secret_key)
        return original(self, secret_key)

    monkeypatch.setattr(Signer, "derive_key", counted)
    return calls


def tamper(token: str) -> str:
    """Another signature (not the last character: some of its bits are padding)."""
    return token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]


def stock_session_serializer(app):
    return SecureCookieSessionInterface().get_signing_serializer(app)


def our_session_serializer(app):
    return app.session_interface.get_signing_serializer(app)


def stock_csrf_serializer(secret):
    return URLSafeTimedSerializer(secret, salt=CSRF_SALT)  # as Flask-WTF builds it


def our_csrf_serializer(app):
    with app.test_request_context("/"):
        csrf_token()
    return app.extensions["topup.csrf_serializer"][1]


def test_payloads_are_never_compressed_and_still_read_back():
    serializer = CompactSerializer("k" * 32, salt="test")
    token = serializer.dumps("a" * 500)  # zlib would shrink this one
    assert not token.startswith(".")
    assert serializer.loads(token) == "a" * 500


def test_session_cookies_are_byte_for_byte_flask_s(app, frozen):
    data = {"csrf_token": hashlib.sha1(b"a secret").hexdigest(), "n": 3}
    stock = stock_session_serializer(app).dumps(data)
    assert not stock.startswith(".")  # uncompressed, so both must be equal
    assert our_session_serializer(app).dumps(data) == stock


@pytest.mark.parametrize("data", [
    {}, {"csrf_token": "c" * 40}, {"b": 1, "a": 2.5, "c": None, "d": True, "é": "ü\u2028"},
    {" t": "x"}, {" t": "x", "y": 1},  # a lone key that names a tag must be tagged
    {"x": (1, 2)}, {"x": Markup("<b>")}, {"x": {" m": "y"}}, {"x": [b"bytes"]},
    {"x": datetime(2026, 1, 2, tzinfo=timezone.utc)},
])
def test_session_json_is_flask_s_tagged_json_to_the_byte(app, data):
    with app.app_context():
        ours = SessionJSON().dumps(data)
        assert ours == TaggedJSONSerializer().dumps(data)
        assert SessionJSON().loads(ours) == data


def test_csrf_tokens_are_byte_for_byte_flask_wtf_s(app, frozen):
    secret = hashlib.sha1(b"a session's csrf secret").hexdigest()  # as Flask-WTF makes them
    stock = stock_csrf_serializer(app.secret_key).dumps(secret)
    assert not stock.startswith(".")  # uncompressed, so both must be equal
    assert our_csrf_serializer(app).dumps(secret) == stock


def test_each_side_opens_what_the_other_signed(app):
    data = {"csrf_token": "c" * 40}
    ours, stock = our_session_serializer(app), stock_session_serializer(app)
    assert stock.loads(ours.dumps(data)) == data
    assert ours.loads(stock.dumps(data), max_age=60) == data
    ours, stock = our_csrf_serializer(app), stock_csrf_serializer(app.secret_key)
    assert stock.loads(ours.dumps("d" * 40)) == "d" * 40
    assert ours.loads(stock.dumps("d" * 40)) == "d" * 40
    tampered = tamper(ours.dumps("d" * 40))
    for serializer in (ours, stock):
        with pytest.raises(BadSignature):
            serializer.loads(tampered)
    other = URLSafeTimedSerializer("another key", salt=CSRF_SALT).dumps("d" * 40)
    with pytest.raises(BadSignature):
        ours.loads(other)


def test_the_random_pool_hands_out_each_kernel_byte_once(monkeypatch):
    fetched = []

    def urandom(count):  # numbered bytes, so a reused or skipped one shows
        start = sum(map(len, fetched))
        fetched.append(bytes((start + i) % 256 for i in range(count)))
        return fetched[-1]

    monkeypatch.setattr(tokens.os, "urandom", urandom)
    pool = RandomPool()
    taken = [pool.take(count) for count in (20, 24, 4000, 60, 5000, 1)]
    assert [len(part) for part in taken] == [20, 24, 4000, 60, 5000, 1]
    # 20 + 24 + 4000 fit the first 4 KB; 60 does not: a new 4 KB; 5000 is fetched whole.
    assert [len(part) for part in fetched] == [4096, 4096, 5000, 4096]
    assert taken[:3] == [fetched[0][:20], fetched[0][20:44], fetched[0][44:4044]]
    assert taken[3:] == [fetched[1][:60], fetched[2], fetched[3][:1]]


def test_threads_taking_at_once_never_get_the_same_bytes(monkeypatch):
    counter, guard = itertools.count(), threading.Lock()

    def urandom(count):  # 4-byte words that are each different
        with guard:
            return b"".join(struct.pack("<I", next(counter)) for _ in range(count // 4))

    monkeypatch.setattr(tokens.os, "urandom", urandom)
    pool, taken = RandomPool(), []

    def take():
        taken.extend(pool.take(24) for _ in range(2000))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    words = [word for part in taken for word in struct.iter_unpack("<I", part)]
    assert len(words) == 8 * 2000 * 6 == len(set(words))


def test_a_forked_child_never_takes_its_parent_s_pooled_bytes():
    script = """
import os
from topup.web.tokens import random_bytes
random_bytes(1)  # the pool is filled before the fork
reader, writer = os.pipe()
if os.fork() == 0:
    os.write(writer, random_bytes(32))
    os._exit(0)
os.wait()
child = os.read(reader, 32)
print(child != random_bytes(32) and len(child) == 32)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "True"


def test_tokens_keep_the_shape_of_secrets_and_flask_wtf(app):
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", token_urlsafe(24))
    assert len({token_urlsafe(24) for _ in range(1000)}) == 1000
    with app.test_request_context("/"):
        csrf_token()
        assert re.fullmatch(r"[0-9a-f]{40}", session["csrf_token"])  # as Flask-WTF's sha1 hex


def test_our_csrf_token_is_one_flask_wtf_accepts(app):
    with app.test_request_context("/"):
        token = csrf_token()
        assert csrf_token() == token  # one per request
        validate_csrf(token)
        assert generate_csrf() == token  # both read the same per-request token
        with pytest.raises(ValidationError):
            validate_csrf(tamper(token))


def test_a_session_cookie_from_flask_s_own_serializer_still_opens(app):
    old = stock_session_serializer(app).dumps({"csrf_token": "b" * 40, "note": "x" * 300})
    assert old.startswith(".")  # the old serializer compressed this one
    client = app.test_client()
    client.set_cookie(app.config.get("SESSION_COOKIE_NAME", "session"), old)
    with client:
        client.get("/healthz")
        assert session.get("note") == "x" * 300


def test_a_cookie_signed_with_a_retired_key_still_opens(app):
    old = stock_session_serializer(app).dumps({"note": "kept"})
    our_session_serializer(app).dumps({"warm": 1})  # a cached signer for the old key alone
    retired = app.config["SECRET_KEY"]
    app.config.update(SECRET_KEY="the-new-secret-key", SECRET_KEY_FALLBACKS=[retired])
    client = app.test_client()
    client.set_cookie("session", old)
    with client:
        client.get("/healthz")
        assert session.get("note") == "kept"
    app.config["SECRET_KEY_FALLBACKS"] = []  # retired for good: no longer opens
    client = app.test_client()
    client.set_cookie("session", old)
    with client:
        client.get("/healthz")
        assert "note" not in session


def test_each_key_is_derived_once_per_serializer(app, derivations):
    app.config["SECRET_KEY_FALLBACKS"] = ["an-older-key"]
    serializer = our_session_serializer(app)
    old = stock_session_serializer(app)  # signs with the current key too
    signed = [serializer.dumps({"i": i}) for i in range(20)]
    for token in signed:
        assert serializer.loads(token)["i"] >= 0
    assert len(derivations) == 1  # the current key, for 20 signs and 20 verifies
    assert serializer.make_signer() is serializer.make_signer()

    retired = URLSafeTimedSerializer(
        "an-older-key", salt="cookie-session", serializer=old.serializer,
        signer_kwargs=old.signer_kwargs).dumps({"i": -1})
    del derivations[:]
    for _ in range(5):
        assert serializer.loads(retired) == {"i": -1}
    assert len(derivations) == 1  # the older key, once (the current one is cached)

    csrf = our_csrf_serializer(app)
    del derivations[:]
    for _ in range(10):
        assert csrf.loads(csrf.dumps("e" * 40)) == "e" * 40
    assert derivations == []  # derived when csrf_token() signed its first token


def test_the_cache_changes_nothing_but_the_cost():
    for key_derivation in ("concat", "django-concat", "hmac", "none"):
        for keys in ("one key", ["older", "newer"]):
            ours = KeyOnceSigner(keys, salt="s", key_derivation=key_derivation)
            stock = Signer(keys, salt="s", key_derivation=key_derivation)
            for _ in range(2):  # computed, then cached
                assert ours.sign(b"value") == stock.sign(b"value")
                assert ours.derive_key("older") == stock.derive_key("older")
                assert ours.unsign(stock.sign(b"v")) == b"v"
            older = Signer("older", salt="s", key_derivation=key_derivation).sign(b"v")
            assert ours.validate(older) is stock.validate(older) is (keys != "one key")
    signer = KeyOnceTimestampSigner("k", salt="s")
    signer.derive_key("not one of its keys")
    assert b"not one of its keys" not in signer._derived  # only configured keys are kept


@pytest.mark.parametrize("present", [
    None, "", "Accept-Encoding", "Accept-Encoding, Accept-Language", "cookie",
    "Accept-Language, COOKIE", "Accept-Encoding,Cookie", "X-Cookie-Version", "*",
])
def test_vary_cookie_is_what_werkzeug_would_write(present):
    ours, theirs = Response(), Response()
    for response in (ours, theirs):
        if present is not None:
            response.headers["Vary"] = present
    add_vary(ours.headers, "Cookie")
    theirs.vary.add("Cookie")
    assert ours.headers.getlist("Vary") == theirs.headers.getlist("Vary")
    assert [v.strip().lower() for v in ours.headers["Vary"].split(",")].count("cookie") == 1


def _session(data, *, access=False, modify=None, permanent=False):
    s = SecureCookieSession(data)
    s.accessed = access
    if permanent:
        s.permanent = True
    if modify:
        modify(s)
    return s


@pytest.mark.parametrize("case", [
    dict(data={}),  # never touched
    dict(data={}, access=True),
    dict(data={"a": 1}, access=True),  # read, refreshed (SESSION_REFRESH_EACH_REQUEST)
    dict(data={"a": 1}, access=True, refresh=False),  # read, not refreshed: no cookie
    dict(data={"a": 1}, modify=lambda s: s.update(b=2)),  # written, not read (Vary after)
    dict(data={"a": 1}, modify=lambda s: s.clear()),  # emptied: the cookie is deleted
    dict(data={"a": 1}, modify=lambda s: s.update(b=2), permanent=True),
    dict(data={"a": 1}, modify=lambda s: s.clear(), partitioned=True, vary="Accept-Language"),
    dict(data={"a": 1}, access=True, modify=lambda s: s.update(b=2), vary="Accept-Language"),
    dict(data={"a": 1}, access=True, modify=lambda s: s.clear()),
])
def test_save_session_writes_what_flask_s_writes(app, frozen, monkeypatch, case):
    monkeypatch.setattr(SessionInterface, "get_expiration_time",
                        lambda self, app, s: datetime(2031, 1, 2, tzinfo=timezone.utc)
                        if s.permanent else None)
    app.config.update(SESSION_REFRESH_EACH_REQUEST=case.get("refresh", True),
                      SESSION_COOKIE_PARTITIONED=case.get("partitioned", False),
                      SESSION_COOKIE_SECURE=case.get("partitioned", False))
    headers = []
    for interface in (SessionCookies(), SecureCookieSessionInterface()):
        response = app.response_class("page")
        if "vary" in case:
            response.headers["Vary"] = case["vary"]
        s = _session(dict(case["data"]), access=case.get("access", False),
                     modify=case.get("modify"), permanent=case.get("permanent", False))
        with app.test_request_context("/"):
            interface.save_session(app, s, response)
        headers.append(response.headers.to_wsgi_list())
    assert headers[0] == headers[1]


def test_an_emptied_session_deletes_the_cookie(app):
    client = app.test_client()
    with client.session_transaction() as s:
        s["note"] = "there"
    assert client.get_cookie("session") is not None
    with client.session_transaction() as s:
        s.clear()
    assert client.get_cookie("session") is None
    response = app.response_class()
    emptied = SecureCookieSession({"note": "there"})
    emptied.clear()
    with app.test_request_context("/"):
        app.session_interface.save_session(app, emptied, response)
    [cookie] = response.headers.getlist("Set-Cookie")
    assert cookie.startswith("session=;") and "Expires=Thu, 01 Jan 1970" in cookie
    assert response.headers["Vary"] == "Cookie"


def test_a_first_visit_to_the_product_page_varies_on_cookie_once(client):
    response = client.get("/tiktok-coins")
    assert response.status_code == 200
    assert any(c.startswith("session=") for c in response.headers.getlist("Set-Cookie"))
    [vary] = response.headers.getlist("Vary")
    assert [name.strip().lower() for name in vary.split(",")].count("cookie") == 1
    again = client.get("/tiktok-coins")  # now with the cookie
    [vary] = again.headers.getlist("Vary")
    assert [name.strip().lower() for name in vary.split(",")].count("cookie") == 1


def test_the_product_page_form_posts_with_its_token(client):
    page = client.get("/tiktok-coins").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert not token.startswith(".")
    response = client.post("/tiktok-coins", data={"csrf_token": token, "intent": "refresh"})
    assert response.status_code == 200
    bad = client.post("/tiktok-coins", data={"csrf_token": tamper(token), "intent": "refresh"})
    assert bad.status_code == 400


def test_pages_put_our_token_in_their_forms_not_flask_wtf_s(client, monkeypatch):
    import flask_wtf.csrf

    def theirs():
        raise AssertionError("Flask-WTF's generate_csrf rendered a form")

    monkeypatch.setattr(flask_wtf.csrf, "generate_csrf", theirs)
    page = client.get("/tiktok-coins?country=BR&account=maria.s")  # rendered, not the cached landing
    assert page.status_code == 200 and 'name="csrf_token" value="' in page.get_data(as_text=True)
