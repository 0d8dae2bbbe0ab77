"""The web layer: blueprints, and what every response shares."""
from __future__ import annotations

import functools
import logging

from babel import Locale
from babel.numbers import format_decimal
from flask import abort, g, has_request_context, make_response, render_template, request
from flask_babel import LazyString, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from peewee import InterfaceError, OperationalError
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.datastructures import LanguageAccept
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_accept_header

from topup import ROOT
from topup.money import written_as
from topup.regions import country_from_accept_language
from topup.web import compression
from topup.web.app import add_vary
from topup.web.assets import Assets
from topup.web.security import SecurityHeaders

log = logging.getLogger(__name__)
# How long a buyer (or a provider's webhook) is asked to wait when the database
# cannot be reached: a restart or a failover takes about this long.
DATABASE_RETRY_AFTER = 30

# The buyer-facing languages, each named in itself for the switcher. "en" is
# the source language; the others have a catalogue in topup/translations.
LANGUAGES = {
    "en": "English",
    "id": "Bahasa Indonesia",
    "pt_BR": "Português (Brasil)",
    "es": "Español",
    "th": "ไทย",
    "vi": "Tiếng Việt",
}
SUPPORTED_LOCALES = list(LANGUAGES)
LANGUAGE_COOKIE = "lang"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
# The product page's form fields: the switcher carries them, so changing the
# language re-renders the same choices.
SWITCHER_KEEPS = ("country", "account", "package", "method", "email", "quantity", "promo")
# Parsed once: Babel's Locale.parse looks for the locale's data file on disk
# every time it is given a string, and the selector runs on every request.
_PARSED = {code: Locale.parse(code) for code in SUPPORTED_LOCALES}
_BY_LOWER = {code.lower().replace("_", "-"): code for code in SUPPORTED_LOCALES}
# A browser's language without our region still gets our variant (pt-PT: pt_BR);
# "in" is Indonesian's old code, still sent by some Android browsers.
_BY_LANGUAGE = {**{code.split("_")[0].lower(): code for code in SUPPORTED_LOCALES}, "in": "id"}

VARY_ANY = ("Accept-Encoding",)
VARY_PAGE = ("Accept-Encoding", "Accept-Language", "Cookie")


def supported_locale(value: str | None) -> str | None:
    """One of SUPPORTED_LOCALES for a lang value ("pt-br", "pt_BR", "ID"), else None."""
    if not value:  # the usual request: no ?lang=, no cookie
        return None
    return _BY_LOWER.get(str(value).strip().lower().replace("_", "-")[:20])


def browser_locale(accept_languages) -> str | None:
    """The first of the browser's languages (best quality first) that we have,
    by its full tag (pt-BR) or else by its language (pt-PT, es-MX: pt_BR, es)."""
    for tag, quality in accept_languages:
        tag = tag.strip().lower().replace("_", "-")
        if quality <= 0 or tag == "*":
            continue
        code = _BY_LOWER.get(tag) or _BY_LANGUAGE.get(tag.split("-")[0])
        if code:
            return code
    return None


def read_accept_language(header: str) -> tuple[str | None, str]:
    """(our locale or None, our country) for a raw Accept-Language header.
    Browsers send a handful of distinct values, and parsing one for the
    language and again for the country was 5% of the product page: each is
    read once. Its first 200 characters are enough (a browser's are under
    100) and keep the memory bounded."""
    return _read_accept_language(header[:200])


@functools.lru_cache(maxsize=512)
def _read_accept_language(header: str) -> tuple[str | None, str]:
    parsed = parse_accept_header(header, LanguageAccept)
    return browser_locale(parsed), country_from_accept_language(parsed)


def select_locale() -> Locale:
    """The switcher's choice (the lang query parameter, then its cookie), else
    the browser's best match among ours, else English. Outside a request (a
    worker, a command), English: what a buyer reads there says its own locale,
    as receipts do with force_locale(order.locale)."""
    if not has_request_context():
        return _PARSED["en"]
    asked = request._get_current_object()  # one context lookup, not three
    return _PARSED[supported_locale(asked.args.get("lang"))
                   or supported_locale(asked.cookies.get(LANGUAGE_COOKIE))
                   or read_accept_language(asked.environ.get("HTTP_ACCEPT_LANGUAGE", ""))[0]
                   or "en"]


# What buyers read for the errors they can meet, instead of werkzeug's English.
ERROR_TITLES = {
    400: _l("Bad request"), 403: _l("Not allowed"), 404: _l("Page not found"),
    405: _l("Not allowed"), 413: _l("Too much data"), 429: _l("Too many requests"),
    500: _l("Something went wrong"),
}
ERROR_MESSAGES = {
    400: _l("We couldn't understand this request. Go back and try again."),
    403: _l("You can't open this page."),
    404: _l("There is nothing at this address. Check the link, or start again from the shop."),
    405: _l("This page can't be opened this way. Go back to the shop and try again."),
    413: _l("What was sent is too large."),
    500: _l("Something went wrong on our side. Please try again in a moment."),
}


def writing_locale() -> str:
    """How this answer writes money and numbers: the buyer's language as
    written in the country the page is about (g.buyer_country, which views
    that show prices set: the chosen country, the order's), see written_as."""
    return written_as(str(get_locale()), g.get("buyer_country"))


def for_a_sender() -> bool:
    """A provider's webhook: its errors are JSON for a program, not pages."""
    return request.path.startswith("/webhooks/")


def render_for_htmx(partial: str, page: str, status: int = 200, **context):
    """One template, two uses: htmx gets the partial, everyone else the page that includes it."""
    return make_response(render_template(partial if request.htmx else page, **context), status,
                         {"Vary": "HX-Request"})  # the after-request hook adds the rest


def init_app(app) -> None:
    from topup.web import admin, auth, limits, oidc, ops, orders, qr, shop, tokens, webhooks
    from topup.web.polls import StatusPolls

    # Inside the proxy fix (limits.init_app), so both see the buyer's scheme.
    app.wsgi_app = SecurityHeaders(StatusPolls(app.wsgi_app, orders.shown_now))
    limits.init_app(app)
    app.session_interface = tokens.SessionCookies()

    assets = Assets(ROOT / "static")
    app.register_blueprint(assets.blueprint)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(orders.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(admin.bp)
    oidc.init_app(app)  # sign-in with identity providers, and the buyer's /account
    app.register_blueprint(shop.bp)  # last: its /<slug> route is the catch-all
    app.extensions["csrf"].exempt(webhooks.bp)

    # What every template may use. Globals, not a context processor: those run
    # on every render, and a partial that shows no words need not pick a language.
    app.jinja_env.globals.update(
        asset=assets.url, languages=LANGUAGES, switcher_keeps=SWITCHER_KEEPS,
        locale=LazyString(lambda: str(get_locale())))  # a page's <html lang>: chosen when read

    @app.context_processor
    def per_render():
        # csrf_token here, not a global: it must win over Flask-WTF's own context
        # processor (topup.web.tokens says why ours).
        return {"shop_name": app.config["SHOP_NAME"], "csrf_token": tokens.csrf_token}

    app.add_template_filter(qr.qr_svg)

    @app.template_filter("money")
    def money_filter(money):
        return money.format(writing_locale())

    @app.template_filter("decimalformat")  # over Flask-Babel's: the buyer's country too
    def decimal_filter(number):
        return format_decimal(number, locale=writing_locale())

    csrf = app.extensions["csrf"]

    @app.before_request
    def check_csrf():
        """Flask-WTF's check, asking the method first: its own hook looked up
        the view's exemptions on every request, GETs included (5% of a hello's
        Python calls). Its exemptions and settings apply as before."""
        config = app.config
        if request.method in config["WTF_CSRF_METHODS"] and config["WTF_CSRF_ENABLED"]:
            csrf.protect(apply_exemptions=True)

    @app.before_request
    def refuse_nul_bytes():
        """NUL is never meaningful in our URLs or forms, and Postgres refuses it in text."""
        query = request.query_string  # parsed only when it may hold one
        if "\x00" in request.path or ((b"%00" in query or b"\x00" in query) and any(
                "\x00" in value for value in request.args.values())):
            abort(400, _("The address contains characters we can't accept."))
        if request.method != "GET" and request.mimetype in (
                "application/x-www-form-urlencoded", "multipart/form-data") and any(
                "\x00" in value for value in request.form.values()):
            abort(400, _("The form contains characters we can't accept."))

    @app.after_request
    def finish_response(response):
        """What every answer gets, in one pass over its headers (each hook and
        each `response.vary` edit re-parses them): the switcher's language
        cookie, Vary and compression. (The security headers come after, in
        topup.web.security.)"""
        chosen = supported_locale(request.args.get("lang"))
        if chosen and chosen != request.cookies.get(LANGUAGE_COOKIE):
            response.set_cookie(LANGUAGE_COOKIE, chosen, max_age=LANGUAGE_COOKIE_AGE,
                                samesite="Lax", httponly=True, secure=request.is_secure)
        compression.compress_response(response)
        # Pages are in the buyer's language (Accept-Language, the lang cookie).
        add_vary(response.headers, *(VARY_PAGE if response.mimetype == "text/html" else VARY_ANY))
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_template(
            "errors/error.html", title=_("This form has expired"),
            message=_("For your safety, forms expire. Go back, reload the page and try again.")), 400

    @app.errorhandler(429)
    def too_many_requests(error):
        message = _("You're going a bit fast. Please wait a minute, then try again.")
        wait = {"Retry-After": str(error.retry_after)} if getattr(error, "retry_after", None) else {}
        if request.htmx and request.endpoint == "shop.account":  # shown under the username field
            return render_template("shop/_account.html", account=None,
                                   errors={"account": message}), 429, wait
        return render_template("errors/error.html", title=_("Too many requests"),
                               message=message), 429, wait

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(MaxConnectionsExceeded)
    def database_unavailable(error):
        """The database is down, restarting, or out of connections: a change
        under way rolled back with its transaction, so say "try again shortly"
        with a 503 and Retry-After, which providers' webhooks retry on too (a
        Buy sent again with the same form finds its order, if it was made)."""
        log.error("database unavailable for %s %s: %s: %s", request.method, request.path,
                  type(error).__name__, error)
        wait = {"Retry-After": str(DATABASE_RETRY_AFTER), "Cache-Control": "no-store"}
        if for_a_sender():
            return {"error": "temporarily unavailable"}, 503, wait
        return render_template("errors/error.html", title=_("Temporarily unavailable"), message=_(
            "We can't reach our records right now. Please try again in a minute.")), 503, wait

    @app.errorhandler(HTTPException)
    def http_error(error):
        if for_a_sender():
            return {"error": error.name}, error.code
        message = error.description
        if message == type(error).description:  # werkzeug's own English, not ours
            message = ERROR_MESSAGES.get(error.code, message)
        return render_template("errors/error.html", title=ERROR_TITLES.get(error.code, error.name),
                               message=message), error.code
