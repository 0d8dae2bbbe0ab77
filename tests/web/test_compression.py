"""Compression without a proxy: pages brotli- or gzip-compressed per request,
the landing page's gzip and static files made once, each only when the browser
says it accepts it."""
from __future__ import annotations

import gzip
import re

import brotli
import pytest

from topup.web.compression import GzipAround, preferred


def static_url(client, name: str) -> str:
    page = client.get("/tiktok-coins").get_data(as_text=True)
    return re.search(rf'"(/static/{re.escape(name.rsplit(".", 1)[0])}\.[0-9a-f]{{10}}\.\w+)"', page).group(1)


def without_tokens(html: bytes) -> bytes:
    return re.sub(rb'value="[^"]{20,}"', b"", html)


@pytest.mark.parametrize("accept, encoding, decode", [
    ("gzip, deflate, br", "br", brotli.decompress),
    ("gzip", "gzip", gzip.decompress),
    ("br;q=0, gzip", "gzip", gzip.decompress),
])
def test_pages_are_compressed_as_the_browser_accepts(client, accept, encoding, decode):
    page = "/tiktok-coins?country=BR"  # rendered for its query (the landing page is below)
    plain = client.get(page).get_data()
    packed = client.get(page, headers={"Accept-Encoding": accept})
    assert packed.headers["Content-Encoding"] == encoding
    assert "Accept-Encoding" in packed.headers["Vary"]
    body = decode(packed.get_data())
    # The same page (only the per-visit tokens differ) in a fraction of the bytes.
    assert without_tokens(body) == without_tokens(plain)
    assert len(packed.get_data()) < len(plain) / 2.5


def tokens(html: bytes) -> tuple[str, str]:
    return tuple(re.search(rf'name="{name}" value="([^"]+)"', html.decode()).group(1)
                 for name in ("csrf_token", "idempotency_key"))


@pytest.mark.parametrize("accept", ["gzip, deflate, br, zstd", "gzip", "br;q=0.5, gzip;q=0.9"])
def test_the_landing_page_is_gzipped_once_and_given_each_visitor_s_tokens(app, accept,
                                                                           monkeypatch):
    app.config["PAGE_CACHE_SECONDS"] = 60  # the tests' default is 0
    plain = app.test_client().get("/tiktok-coins").get_data()
    first, second = app.test_client(), app.test_client()
    packed = first.get("/tiktok-coins", headers={"Accept-Encoding": accept})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed.headers["Vary"]
    body = gzip.decompress(packed.get_data())
    assert without_tokens(body) == without_tokens(plain)
    assert len(packed.get_data()) < len(plain) / 2.5

    # From now on no compressor runs: each visitor's page is the one made above,
    # with their own tokens in it.
    def no_compressing(*args, **kwargs):
        raise AssertionError("compressed again")

    for name in ("compressobj", "compress"):
        monkeypatch.setattr(f"zlib.{name}", no_compressing)
    monkeypatch.setattr("brotli.compress", no_compressing)
    again = second.get("/tiktok-coins", headers={"Accept-Encoding": accept})
    assert again.headers["Content-Encoding"] == "gzip"
    other = gzip.decompress(again.get_data())
    assert without_tokens(other) == without_tokens(body)
    assert set(tokens(other)).isdisjoint(tokens(body))  # theirs, not the first visitor's
    monkeypatch.undo()
    csrf, key = tokens(other)
    bought = second.post("/tiktok-coins", data={
        "csrf_token": csrf, "idempotency_key": key, "country": "US", "account": "maria.s",
        "package": re.search(r'name="package" value="(\d+)"', other.decode()).group(1),
        "method": "sandbox", "intent": "buy"})
    assert bought.status_code == 303  # the token in the gzip body is this visitor's


def test_the_landing_page_for_brotli_only_or_uncached_is_compressed_per_response(app, client):
    app.config["PAGE_CACHE_SECONDS"] = 60
    assert client.get("/tiktok-coins", headers={"Accept-Encoding": "br"}).headers[
        "Content-Encoding"] == "br"
    app.config["PAGE_CACHE_SECONDS"] = 0  # rendered every time: nothing to reuse
    assert client.get("/tiktok-coins", headers={"Accept-Encoding": "gzip, br"}).headers[
        "Content-Encoding"] == "br"


def test_no_compression_unless_asked_and_none_for_tiny_answers(client):
    assert "Content-Encoding" not in client.get("/tiktok-coins").headers
    refused = client.get("/tiktok-coins", headers={"Accept-Encoding": "identity, br;q=0"})
    assert "Content-Encoding" not in refused.headers
    tiny = client.get("/tiktok-coins/account?account=maria",
                      headers={"HX-Request": "true", "Accept-Encoding": "br"})
    assert len(tiny.get_data()) < 256 and "Content-Encoding" not in tiny.headers


@pytest.mark.parametrize("name", ["topup.css", "htmx.min.js", "topup.js", "icon.svg"])
def test_static_files_are_precompressed_and_immutable(client, name):
    url = static_url(client, name)
    plain = client.get(url)
    packed = client.get(url, headers={"Accept-Encoding": "br"})
    assert packed.headers["Content-Encoding"] == "br"
    assert brotli.decompress(packed.get_data()) == plain.get_data()
    assert "immutable" in packed.headers["Cache-Control"] and "max-age=31536000" in packed.headers["Cache-Control"]
    assert client.get(url, headers={"Accept-Encoding": "gzip"}).headers["Content-Encoding"] == "gzip"


def test_htmx_compressed_is_small(client):
    packed = client.get(static_url(client, "htmx.min.js"), headers={"Accept-Encoding": "br"})
    assert len(packed.get_data()) < 20_000


@pytest.mark.parametrize("header, chosen", [
    (None, None), ("", None), ("deflate", None), ("BR", "br"), ("gzip;q=0.5, br;q=1", "br"),
    ("br;q=0.0, gzip;q=0", None), ("*", None),
    ("identity, " * 30 + "gzip, br;q=0", "gzip"),  # long: past the cache, read whole
])
def test_encoding_negotiation(header, chosen):
    assert preferred(header) == chosen
    assert preferred(header) == chosen  # and again, from the cache


def test_vary_is_one_header_naming_each_dependency_once(client):
    """The view's Vary (HX-Request) and what every answer depends on, merged."""
    partial = client.get("/tiktok-coins/account?account=maria.s", headers={"HX-Request": "true"})
    assert partial.headers.getlist("Vary") == ["HX-Request, Accept-Encoding, Accept-Language, Cookie"]
    script = client.get(static_url(client, "topup.js"))
    assert script.headers.getlist("Vary") == ["Accept-Encoding"]


@pytest.mark.parametrize("values", [
    (b"a-csrf-token." * 7, b"an-idempotency-key"), (b"", b""), (b"\x00\xff" * 40_000, b"x"),
    ("ünïcode ✓".encode(), b"k" * 6000),
])
def test_a_body_made_around_slots_is_one_gzip_stream(values):
    """Stored blocks up to 64 KB each between full-flushed parts; the CRC computed
    across parts and values, in chunks, over more than one chunk too."""
    import zlib

    parts = [b"<html>" + b"head " * 2000, b"</i> between <i>", b"tail " * 1500 + b"</html>"]
    body = GzipAround(parts).fill(*values)
    whole = parts[0] + values[0] + parts[1] + values[1] + parts[2]
    assert gzip.decompress(body) == whole
    stream = zlib.decompressobj(wbits=31)
    assert stream.decompress(body) == whole and stream.eof and not stream.unused_data
    with pytest.raises(ValueError):
        GzipAround(parts).fill(b"only one value")
