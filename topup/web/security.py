"""The security headers every answer carries, added in one place for all of
them: Flask's pages and files, and the answers given before Flask (the
status poll's 204).

Added as the answer starts, to its list of headers, rather than by an
after-request hook: werkzeug's Headers checks and copies each header it is
given: 64 Python calls of every request (bench/calls).
A view that sets one of them itself (the sign-in pages widen the form-action
of their Content-Security-Policy) keeps its own.
"""
from __future__ import annotations

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
    "object-src 'none'",
])
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),  # order URLs are secrets
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
HSTS = ("Strict-Transport-Security", "max-age=31536000")  # only over TLS
_BY_NAME = tuple((name.lower(), (name, value)) for name, value in SECURITY_HEADERS)


class SecurityHeaders:
    """WSGI middleware: SECURITY_HEADERS on every answer, and HSTS over TLS
    (inside the proxy fix, so the buyer's scheme is the one seen), each
    unless the answer already has it."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        secure = environ.get("wsgi.url_scheme") == "https"

        def start(status, headers, exc_info=None):
            present = {name.lower() for name, _value in headers}
            headers.extend(header for name, header in _BY_NAME if name not in present)
            if secure and "strict-transport-security" not in present:
                headers.append(HSTS)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)
