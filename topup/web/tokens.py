"""Signed tokens (the session cookie, CSRF tokens) in itsdangerous' format,
made cheaply: they were a quarter of a first visit to the product page.

Per token, Flask and Flask-WTF build a serializer and itsdangerous a signer,
try zlib (our payloads never shrink) and derive the key again; Flask then
re-parses the headers for Vary: Cookie, and tags every value of the session
(a visitor's is one string). Here each happens once, or not at all, with the
same bytes: Flask-WTF validates our tokens and we read theirs (and Flask's
cookies).
(Not hmac.digest: one C call, but it lets go of the GIL for every tiny
signature, and under waitress's threads that cost more than it saved, A/B.
os.urandom lets go of it too, so the random bytes of tokens come from a pool.)
"""
from __future__ import annotations

import base64
import hmac
import json
import os
import threading

from flask import current_app, g, session
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import Serializer, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, want_bytes
from itsdangerous.signer import HMACAlgorithm

from topup.web.app import add_vary

CSRF_SALT = "wtf-csrf-token"  # Flask-WTF's


class RandomPool:
    """The kernel's random bytes (os.urandom), fetched 4 KB at a time and each
    handed out once. os.urandom lets go of the GIL for its system call, and a
    first visit asked it twice (CSRF secret, idempotency key): under
    waitress's threads, getting the GIL back cost more than the bytes. Each
    thread has a pool of its own (one shared behind a lock kept threads
    waiting for it); a forked child starts with none of its parent's."""

    SIZE = 4096

    def __init__(self):
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._local = threading.local()

    def take(self, count: int) -> bytes:
        local = self._local
        pool, used = getattr(local, "pool", b""), getattr(local, "used", 0)
        if used + count > len(pool):
            pool = local.pool = os.urandom(max(self.SIZE, count))
            used = 0
        local.used = used + count
        return pool[used:used + count]


random_bytes = RandomPool().take


def token_urlsafe(count: int) -> str:
    """secrets.token_urlsafe(count), from the pool."""
    return base64.urlsafe_b64encode(random_bytes(count)).rstrip(b"=").decode("ascii")


class _KeyOnce:
    """Derives the signing key once per secret key (itsdangerous derives it on
    every sign and verify), and signs with an HMAC keyed once (hmac.new pads
    and hashes the key again for every signature). Salt, derivation and
    digest are fixed per signer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._derived: dict[bytes, bytes] = {}
        self._keyed = None  # the current key's HMAC before any message: one per signer

    def get_signature(self, value) -> bytes:
        if type(self.algorithm) is not HMACAlgorithm:
            return super().get_signature(value)
        if self._keyed is None:  # two threads may both make it: the same HMAC
            self._keyed = hmac.new(self.derive_key(), digestmod=self.algorithm.digest_method)
        mac = self._keyed.copy()
        mac.update(want_bytes(value))
        return base64_encode(mac.digest())

    def derive_key(self, secret_key=None) -> bytes:
        key = self.secret_keys[-1] if secret_key is None else want_bytes(secret_key)
        derived = self._derived.get(key)
        if derived is None:
            derived = super().derive_key(key)
            if key in self.secret_keys:  # bounded: only the configured keys
                self._derived[key] = derived
        return derived


class KeyOnceTimestampSigner(_KeyOnce, TimestampSigner):
    pass


class CompactSerializer(URLSafeTimedSerializer):
    """Never zlib; one signer for the serializer's own salt (itsdangerous
    makes one per dumps and loads)."""

    default_signer = KeyOnceTimestampSigner

    def dump_payload(self, obj) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))

    def make_signer(self, salt=None):
        if salt is not None and want_bytes(salt) != self.salt:
            return super().make_signer(salt)
        signer = self.__dict__.get("_signer")
        if signer is None:
            signer = self._signer = super().make_signer(None)
        return signer


# What JSON writes as itself, so Flask's tags leave it as it is (a str
# subclass such as Markup is not one of these: it is tagged).
_UNTAGGED = frozenset({str, int, float, bool, type(None)})
# What Flask's tagged JSON ends with (flask.json.dumps, compact, with Flask's
# DefaultJSONProvider settings), built once: json.dumps builds one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=True)


class SessionJSON(TaggedJSONSerializer):
    """Flask's tagged JSON, without the tagging when a session holds nothing
    to tag (strings and numbers, as a visitor's does): the same text, but no
    walk through eight tag checks per value and a JSON encoder built per
    call (a tenth of the landing page's Python)."""

    def dumps(self, value) -> str:
        if (type(value) is dict and all(type(item) in _UNTAGGED for item in value.values())
                and not (len(value) == 1 and next(iter(value)) in self.tags)):
            return _COMPACT.encode(value)
        return super().dumps(value)


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed-cookie session, its serializer compact and built once per
    set of keys (Flask builds and test-runs a new one on every request)."""

    serializer = SessionJSON()

    def get_signing_serializer(self, app):
        if not app.secret_key:
            return None
        keys = (*(app.config["SECRET_KEY_FALLBACKS"] or ()), app.secret_key)  # current key last
        built = app.extensions.get("topup.session_serializer")
        if built is None or built[0] != keys:
            serializer = CompactSerializer(
                list(keys), salt=self.salt, serializer=self.serializer,
                signer_kwargs={"key_derivation": self.key_derivation,
                               "digest_method": self.digest_method})
            built = app.extensions["topup.session_serializer"] = (keys, serializer)
        return built[1]

    def save_session(self, app, session, response) -> None:
        """Flask 3.1's, step for step and header for header, but Vary: Cookie
        added once (Flask adds it again after the cookie), by add_vary."""
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        secure = self.get_cookie_secure(app)
        partitioned = self.get_cookie_partitioned(app)
        samesite = self.get_cookie_samesite(app)
        httponly = self.get_cookie_httponly(app)
        if session.accessed:
            add_vary(response.headers, "Cookie")

        if not session:  # emptied: remove the cookie; empty: set none
            if not session.modified:
                return
            response.delete_cookie(name, domain=domain, path=path, secure=secure,
                                   partitioned=partitioned, samesite=samesite, httponly=httponly)
        elif self.should_set_cookie(app, session):
            expires = self.get_expiration_time(app, session)
            val = self.get_signing_serializer(app).dumps(dict(session))
            response.set_cookie(name, val, expires=expires, httponly=httponly, domain=domain,
                                path=path, secure=secure, partitioned=partitioned,
                                samesite=samesite)
        else:
            return
        if not session.accessed:  # else said above
            add_vary(response.headers, "Cookie")


def csrf_token() -> str:
    """Flask-WTF's generate_csrf (same session key, salt and format, one token
    per request), signed by a CompactSerializer."""
    app = current_app._get_current_object()  # each proxy access looks up the context
    field = app.config["WTF_CSRF_FIELD_NAME"]
    token = g.get(field)
    if token is None:
        values = session._get_current_object()
        if field not in values:
            values[field] = random_bytes(20).hex()  # Flask-WTF's form: 40 hex digits
        secret = app.config.get("WTF_CSRF_SECRET_KEY") or app.secret_key
        built = app.extensions.get("topup.csrf_serializer")
        if built is None or built[0] != secret:
            built = app.extensions["topup.csrf_serializer"] = (
                secret, CompactSerializer(secret, salt=CSRF_SALT))
        token = built[1].dumps(values[field])
        setattr(g, field, token)
    return token
