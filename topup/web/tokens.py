"""Signed tokens (the session cookie, CSRF tokens): one serializer per key,
built once, without itsdangerous' zlib attempt.

Flask and Flask-WTF build a new serializer for every request, and
itsdangerous tries zlib on every payload it signs, keeping the result only
if shorter; ours (a random CSRF secret, a session id) never are. Together
that was 13-19% of the product page's throughput (bench/throughput, A/B).
Tokens keep itsdangerous' format: Flask-WTF validates ours, and ours read
the compressed ones it made.
"""
from __future__ import annotations

import hashlib
import os

from flask import current_app, g, session
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import Serializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

CSRF_SALT = "wtf-csrf-token"  # Flask-WTF's


class CompactSerializer(URLSafeTimedSerializer):
    def dump_payload(self, obj) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed-cookie session, its serializer compact and built once per
    set of keys (Flask builds and test-runs a new one on every request)."""

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


def csrf_token() -> str:
    """Flask-WTF's generate_csrf (same session key, salt and format, one token
    per request), signed by a CompactSerializer."""
    field = current_app.config["WTF_CSRF_FIELD_NAME"]
    if field not in g:
        if field not in session:
            session[field] = hashlib.sha1(os.urandom(64)).hexdigest()
        secret = current_app.config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key
        built = current_app.extensions.get("topup.csrf_serializer")
        if built is None or built[0] != secret:
            built = (secret, CompactSerializer(secret, salt=CSRF_SALT))
            current_app.extensions["topup.csrf_serializer"] = built
        setattr(g, field, built[1].dumps(session[field]))
    return g.get(field)
