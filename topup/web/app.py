"""The Flask, request and Jinja classes topup runs on: Flask's, minus costs
that every request paid for nothing (measured with bench/throughput and
bench/calls).

- Flask asks `inspect` whether each hook and view is a coroutine function,
  about a dozen times per request here; for a plain function or method one
  look at its code flags answers.
- werkzeug's MultiDict.get builds a BadRequestKeyError for every key that is
  absent, and the product page's partials ask for seven keys that mostly are.
- werkzeug finds the Cookie header, read on every request (the session), by
  walking every key of the WSGI environ; the environ holds it under one key.
- Jinja gives each template its globals as a ChainMap over the environment's,
  which every render copies key by key in Python (a KeyError per global).

And add_vary: `response.vary.add` parses the header into a set and writes it
back on every call.
"""
from __future__ import annotations

from inspect import CO_COROUTINE
from types import FunctionType, MethodType

from flask import Flask
from flask.templating import Environment as FlaskEnvironment
from htmx_flask.requests import HtmxAwareRequest
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.sansio.http import parse_cookie
from werkzeug.utils import cached_property


class Parameters(ImmutableMultiDict):
    """A query string or form: get() answers a missing key without raising."""

    def get(self, key, default=None, type=None):
        if not dict.__contains__(self, key):
            return default
        return super().get(key, default, type)


class Request(HtmxAwareRequest):
    """htmx-flask's request (request.htmx), as its Htmx extension would set."""

    parameter_storage_class = Parameters

    @cached_property
    def cookies(self):
        """werkzeug's, from the environ's one HTTP_COOKIE (what its headers
        view would find there after looking at every key)."""
        return parse_cookie(self.environ.get("HTTP_COOKIE", ""), cls=self.dict_storage_class)


class Environment(FlaskEnvironment):
    def make_globals(self, d):
        """A template's globals as one dict, made when it is loaded: the
        environment's, under its own. (Jinja asks that globals not change
        once templates load; ours are all set as the app is made.)"""
        return {**self.globals, **(d or {})}


class App(Flask):
    request_class = Request
    jinja_environment = Environment

    def ensure_sync(self, func):
        plain = func.__func__ if type(func) is MethodType else func
        if (type(plain) is FunctionType and not plain.__code__.co_flags & CO_COROUTINE
                and "_is_coroutine_marker" not in plain.__dict__):  # inspect.markcoroutinefunction
            return func
        return super().ensure_sync(func)  # coroutines, partials, callables


def add_vary(headers, *names: str) -> None:
    """Name each of names once in one Vary header (what response.vary.add
    writes), without parsing it into a set and back."""
    present = headers.get("Vary")
    if not present:
        headers["Vary"] = ", ".join(names)
        return
    have = set(present.lower().replace(" ", "").replace("\t", "").split(","))  # names have no blanks
    missing = [name for name in names if name.lower() not in have]
    if missing:
        headers["Vary"] = ", ".join((present, *missing))
