"""Every endpoint fuzzed: each rule of app.url_map (so a new endpoint is fuzzed
without anyone listing it) gets Hypothesis-made path arguments, query strings
and bodies — unicode, NUL, huge, empty, wrong types, repeated keys, JSON,
multipart, raw bytes — from a signed-in operator's browser (so admin pages are
reached), with a valid CSRF token on most POSTs and, for webhooks and
callbacks, a valid signature on most bodies (so the fuzz gets past the
doorman to the handler). Never a 5xx; every 4xx says what went wrong: an HTML
page with a heading or an error line, a JSON error, or a plain-text reason.
"""
from __future__ import annotations

import io
import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict
from werkzeug.routing import IntegerConverter

from topup import ROOT

from tests.proofs.common import (
    assert_clear, csrf_exempt, everything_on, routes, rules_of, signed_for,
)

EXAMPLES = 20

# Every field name a form, template or view knows, read from the sources.
_SOURCES = [*ROOT.glob("templates/**/*.html"), *ROOT.glob("plugins/**/templates/**/*.html"),
            *ROOT.glob("topup/**/*.py"), *ROOT.glob("plugins/**/*.py")]
_FIELD = re.compile(r'name="([A-Za-z_][\w-]*)"|(?:args|form|files)\.get(?:list)?\("([^"]+)"')
FIELDS = sorted({field for path in _SOURCES
                 for match in _FIELD.findall(path.read_text(encoding="utf-8"))
                 for field in match if field}
                | {"price-USD", "price-IDR", "price-VND", "id", "type", "data"})


@pytest.fixture
def config(config, stub):
    return everything_on(config, stub.url)


# --- what the fuzz sends ----------------------------------------------------------------

text = st.text(max_size=40)
huge = st.integers(2_000, 20_000).map(lambda n: "é" * n)
# Integers where columns and converters break: 32 and 64 bits, and beyond.
EDGES = [2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, -2**31 - 1, -2**63 - 1]
scalar = st.one_of(text, st.integers().map(str), st.sampled_from(EDGES).map(str),
                   st.sampled_from(["", " ", "0", "-1", "null", "true", "[]", "{}", "%00", "1e309",
                                    "NaN", "../..", "<script>", "'; --"]),
                   huge)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(EDGES),
              st.floats(allow_nan=False), text),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=10)


def pairs(known: dict):
    keys = st.one_of(st.sampled_from(FIELDS), text)
    values = st.one_of(scalar, st.sampled_from(sorted({v for vs in known.values() for v in vs})))
    return st.lists(st.tuples(keys, values), max_size=8)


def path_value(name: str, converter, known: dict):
    real = st.sampled_from(known[name]) if known.get(name) else st.nothing()
    if isinstance(converter, IntegerConverter):
        return st.one_of(real, st.integers(0, 2**31), st.sampled_from(EDGES).filter(
            lambda n: n >= 0)).map(str)
    return st.one_of(real, st.text(min_size=1, max_size=60), huge)


def shaped_event(known: dict):
    """Something like a provider's JSON, with fields fuzzed."""
    ref = st.one_of(st.sampled_from(known["payment_ref"]), text)
    return st.fixed_dictionaries({
        "id": st.one_of(text, st.integers(), st.none()),
        "type": st.sampled_from(["payment.succeeded", "payment.failed", "payment.received",
                                 "payment.refunded", "ewallet.capture", "payment", ""]),
        "event": st.sampled_from(["ewallet.capture", "ewallet.void", "x"]),
        "reference": ref,
        "amount": st.one_of(st.integers(), st.sampled_from(EDGES), text,
                            st.floats(allow_nan=False)),
        "currency": st.sampled_from(["USD", "BRL", "IDR", "usd", "", "XXX"]),
        "data": st.fixed_dictionaries({
            "payment_id": ref, "id": ref, "charge_id": ref, "ref_id": st.one_of(
                text, st.sampled_from(["abc\x00def", "TU" + "A" * 19 + "\x00"])),
            "channel_code": st.sampled_from(["ID_DANA", "PH_GCASH", "x"]),
            "amount": st.one_of(st.integers(), st.sampled_from(EDGES), text),
            "currency": st.sampled_from(["USD", "x"]),
            "status": st.sampled_from(["Sukses", "Gagal", "Pending", "SUCCEEDED", "x"]),
            "rc": st.sampled_from(["00", "03", "54", "x"]), "sn": text}),
        "status": st.sampled_from(["delivered", "failed", "x"]),
    }).map(lambda event: json.dumps(event).encode())


def bodies(known: dict):
    return st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda value: json.dumps(value).encode()),
        shaped_event(known), shaped_event(known),
        st.integers(65_000, 120_000).map(lambda n: b"{" + b" " * n + b"}"),
    )


# --- sending and checking ------------------------------------------------------------------


def send(app, browser, rule, method, endpoint, args, query=(), form=(), body=b"",
         encoding="form", with_token=True, signed=True, htmx=False, language=""):
    """One request to rule as a browser (or, for a signed route, its provider)
    would send it; checks the answer is no 5xx and a clear error."""
    path = rule
    for name, value in args.items():
        path = re.sub(rf"<(?:[^:<>]+:)?{name}>", quote(value, safe=""), path)
    headers = {"Accept-Language": language} if language else {}
    if htmx:
        headers["HX-Request"] = "true"
    query_string = MultiDict(query)
    if method == "GET":
        response = browser.client.get(path, query_string=query_string, headers=headers)
    elif csrf_exempt(app, endpoint):
        if signed:  # the genuine sender's signature: the fuzz reaches the handler
            headers.update(signed_for(path, body))
        headers.setdefault("Content-Type", "application/json")
        response = browser.client.post(path, data=body, headers=headers,
                                       query_string=query_string)
    else:
        data = MultiDict(form)
        if with_token and browser.token:
            data.add("csrf_token", browser.token)
        if encoding == "json":
            response = browser.client.post(path, json=dict(form), headers=headers)
        elif encoding == "raw":
            response = browser.client.post(path, data=body, headers=headers,
                                           content_type="application/octet-stream")
        else:
            if encoding == "multipart":
                data.add("file", (io.BytesIO(body), "codes.csv"))
            response = browser.client.post(
                path, data=data, headers=headers, query_string=query_string,
                content_type="multipart/form-data" if encoding == "multipart" else None)
    try:
        assert_clear(response, f"{method} {path[:200]}")
    finally:
        response.close()
    if endpoint.startswith(("auth.", "oidc.", "account.")):
        browser.refresh()  # it may have signed the operator out, or in afresh


def converters(app, rule: str, method: str) -> dict:
    url_rule = next(r for r in app.url_map.iter_rules() if r.rule == rule and method in r.methods)
    return dict(url_rule._converters)


HOSTILE = [*map(str, EDGES), "", " ", "..", "%2e%2e", "é" * 3000, "\u202e", "null", "<b>x",
           "\x00", "1.5", "-1"]


@pytest.mark.parametrize("rule, method, endpoint", routes(), ids=[
    f"{method} {rule}" for rule, method, _ in routes()])
def test_no_input_makes_a_5xx_or_an_unclear_error(app, operator, world, rule, method, endpoint):
    browser = operator
    names = converters(app, rule, method)

    # 1. Deterministic: every path argument, then every field the sources name,
    #    set in turn to each edge value (the rest kept real).
    real = {name: (world.get(name) or ["x"])[0] for name in names}
    for name in names:
        for value in HOSTILE:
            if value.startswith("-") and isinstance(names[name], IntegerConverter):
                continue  # not this rule's URL at all
            send(app, browser, rule, method, endpoint, {**real, name: value})
    fields = [field for field in FIELDS if field != "csrf_token"]
    for value in HOSTILE:
        form = [(field, value) for field in fields]
        send(app, browser, rule, method, endpoint, real, query=form, form=form,
             body=json.dumps(dict(form)).encode())

    # 2. Random: Hypothesis draws everything at once.
    arguments = {name: path_value(name, converter, world) for name, converter in names.items()}

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(args=st.fixed_dictionaries(arguments), query=pairs(world), form=pairs(world),
           body=bodies(world), encoding=st.sampled_from(["form", "multipart", "json", "raw"]),
           with_token=st.integers(0, 9), signed=st.integers(0, 9), htmx=st.booleans(),
           language=st.sampled_from(["", "id", "pt-BR,pt;q=0.9", "*", "x" * 300]))
    def request(**drawn):
        send(app, browser, rule, method, endpoint, **drawn)

    request()


def test_the_fuzzed_routes_are_the_apps_routes(app):
    """The collection-time app and the fixtures' app have the same routes, so
    nothing the shop serves escapes the fuzz."""
    served = rules_of(app)
    assert served == routes()
    assert len(served) >= 30
