"""Static files under fingerprinted names, cached for a year and never revalidated.

`asset("htmx.min.js")` in a template gives /static/htmx.min.<hash>.js; a new
file content gives a new URL, so caches never serve a stale script. Each file
is read once and its brotli and gzip forms made once (at the highest level),
then served from memory.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import mimetypes
from functools import lru_cache

from flask import Blueprint, Response, abort, request, url_for

from topup.web import compression

FINGERPRINTED = re.compile(r"^(?P<stem>.+)\.(?P<digest>[0-9a-f]{10})(?P<suffix>\.[a-z0-9]+)$")
YEAR = 365 * 24 * 3600


class Assets:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.digests = {
            path.relative_to(self.folder).as_posix():
                hashlib.sha256(path.read_bytes()).hexdigest()[:10]
            for path in self.folder.rglob("*") if path.is_file()
        }
        self.blueprint = Blueprint("assets", __name__)
        self.blueprint.add_url_rule("/static/<path:filename>", "static", self.serve)

    def url(self, name: str) -> str:
        stem, dot, suffix = name.rpartition(".")
        return url_for("assets.static", filename=f"{stem}.{self.digests[name]}.{suffix}")

    def serve(self, filename: str):
        match = FINGERPRINTED.match(filename)
        if not match:
            abort(404)
        name = match["stem"] + match["suffix"]
        if self.digests.get(name) != match["digest"]:
            abort(404)
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        encoding = (compression.preferred(request.environ.get("HTTP_ACCEPT_ENCODING"))
                    if mimetype in compression.COMPRESSIBLE else None)
        response = Response(self._body(name, encoding), mimetype=mimetype)
        if encoding:
            response.headers["Content-Encoding"] = encoding
        response.cache_control.max_age = YEAR
        response.cache_control.immutable = True
        response.cache_control.public = True
        return response

    @lru_cache(maxsize=None)
    def _body(self, name: str, encoding: str | None) -> bytes:
        data = (self.folder / name).read_bytes()
        return compression.compress(data, encoding, compression.STATIC[encoding]) if encoding else data
