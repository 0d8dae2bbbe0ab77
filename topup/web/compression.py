"""Compression, since waitress has none: brotli when the browser accepts it,
else gzip. Pages are compressed per response at a cheap level (the 14 KB
first-window budget is about bytes, not CPU); static files are compressed
once at the highest level and kept in memory (see topup.web.assets)."""
from __future__ import annotations

import gzip

import brotli
from flask import request

COMPRESSIBLE = frozenset({"text/html", "text/css", "text/javascript", "application/javascript",
                          "image/svg+xml", "application/json", "text/plain", "text/csv"})
MIN_SIZE = 256  # smaller bodies gain nothing after headers
DYNAMIC = {"br": 4, "gzip": 6}
STATIC = {"br": 11, "gzip": 9}


def preferred(accept_encoding: str | None) -> str | None:
    """"br" or "gzip" if the client accepts it (q > 0), br first."""
    if not accept_encoding:
        return None
    accepted = set()
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if params.strip().replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            continue
        accepted.add(name.strip().lower())
    for encoding in ("br", "gzip"):
        if encoding in accepted:
            return encoding
    return None


def compress(data: bytes, encoding: str, level: int) -> bytes:
    if encoding == "br":
        return brotli.compress(data, quality=level)
    return gzip.compress(data, compresslevel=level, mtime=0)


def compress_response(response) -> None:
    """Compress a buffered, compressible answer in place (for the after-request
    hook, which also says Vary: Accept-Encoding)."""
    encoding = preferred(request.environ.get("HTTP_ACCEPT_ENCODING"))
    if (encoding is None or response.direct_passthrough or response.is_streamed
            or "Content-Encoding" in response.headers
            or response.mimetype not in COMPRESSIBLE):
        return
    data = response.get_data()
    if len(data) < MIN_SIZE:
        return
    response.set_data(compress(data, encoding, DYNAMIC[encoding]))
    response.headers["Content-Encoding"] = encoding
