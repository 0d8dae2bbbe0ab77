"""The status poll's usual answer, given before Flask.

Every open order page asks /orders/<id>/live?seen=<what it shows> every few
seconds, and nearly always the answer is 204: nothing to swap. That answer
takes one narrow query and nothing else a request usually needs (session,
language, CSRF, limits, a template), yet Flask's per-request work cost it
several times the query (bench/throughput, (d')). This WSGI middleware gives
it directly; everything else (a change, the first render, a request without
htmx, an address that is no order) goes on to the Flask view, which renders,
redirects or answers 404.
"""
from __future__ import annotations

import re

from topup.db import database

PATH = re.compile(r"/orders/([A-Za-z0-9_-]{1,64})/live")
SEEN = re.compile(r"(?:^|&)seen=([a-z_]{1,32})(?:&|$)")


class StatusPolls:
    def __init__(self, wsgi_app, shown_now):
        """shown_now(public_id): what the order's status block would show now,
        or None. (The security headers are added around it: topup.web.security.)"""
        self.wsgi_app, self.shown_now = wsgi_app, shown_now

    def __call__(self, environ, start_response):
        path = PATH.fullmatch(environ.get("PATH_INFO", ""))
        if (path and environ.get("HTTP_HX_REQUEST") == "true"
                and environ.get("REQUEST_METHOD") == "GET"):
            seen = SEEN.search(environ.get("QUERY_STRING", ""))
            if seen and self._still(path.group(1), seen.group(1)):
                start_response("204 No Content", [("Cache-Control", "no-store"),
                                                  ("Vary", "HX-Request")])
                return []
        return self.wsgi_app(environ, start_response)

    def _still(self, public_id: str, seen: str) -> bool:
        opened = database.is_closed()  # else a caller's connection (a test's), left open
        try:
            return self.shown_now(public_id) == seen
        except Exception:  # the database, say: the view meets it too, and answers properly
            return False
        finally:
            if opened and not database.is_closed():
                database.close()
