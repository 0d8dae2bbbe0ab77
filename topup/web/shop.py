"""The buyer's shop: product list, product page, inline checks, Buy.

Every step is a plain form that works without JavaScript; htmx only swaps the
same partials in place (account check, country change, the total with a
custom amount and a promo code). Prices come from topup.pricing.
"""
from __future__ import annotations

import re
import time

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from topup import lookups, orders, pricing
from topup.accounts import KINDS, AccountIdInvalid
from topup.models import Package, Product, utcnow
from topup.regions import COUNTRIES
from topup.web import compression, read_accept_language, render_for_htmx
from topup.web.app import add_vary
from topup.web.limits import limit_lookups, limit_orders
from topup.web.tokens import csrf_token, token_urlsafe

bp = Blueprint("shop", __name__)

EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{2,63}")
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
PACKAGE_ID = re.compile(r"[0-9]{1,9}")
FORM_FIELDS = ("country", "account", "package", "method", "email", "quantity", "promo")
CUSTOM = "custom"  # the package radio's value for a custom amount


def form_values(source) -> dict:
    """The checkout form's fields from a query string or a posted form, trimmed and capped."""
    return {key: source.get(key, "").strip()[:300] for key in FORM_FIELDS}


def _to_full_page(slug: str):
    """A no-JS request for a partial: the full page, with the form's fields only."""
    fields = {key: value for key, value in form_values(request.args).items() if value}
    response = redirect(url_for("shop.product", slug=slug, **fields), 303)
    add_vary(response.headers, "HX-Request")
    return response


def registry():
    return current_app.extensions["topup"]


@bp.get("/")
@limit_lookups
def index():
    """The only product's page itself when there is one: on a slow network a
    redirect costs the buyer a whole round trip before anything shows."""
    products = list(Product.listed())
    if len(products) == 1:
        return _product_view(products[0])
    return render_template("shop/index.html", products=products)


def _product_or_404(slug: str) -> Product:
    """The product on sale at slug. Every partial asks, so a found product is
    kept PAGE_CACHE_SECONDS (building the query costs more than the answer)."""
    cache = current_app.extensions.setdefault("topup.products", {})
    hit = cache.get(slug)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    product = Product.get_or_none(Product.slug == slug, Product.enabled)
    if product is None:
        abort(404, _("There is no such product."))
    if current_app.config["PAGE_CACHE_SECONDS"] > 0:  # only found ones: slugs come from URLs
        cache[slug] = (time.monotonic() + current_app.config["PAGE_CACHE_SECONDS"], product)
    return product


def _country(value: str | None) -> str:
    """The country this page sells in: the buyer's choice, else a guess from
    their browser's languages. Its prices are written as that country writes
    them (topup.web.writing_locale)."""
    value = (value or "").upper()
    country = (value if value in COUNTRIES
               else read_accept_language(request.environ.get("HTTP_ACCEPT_LANGUAGE", ""))[1])
    g.buyer_country = country
    return country


def check_account(product: Product, raw: str) -> dict:
    """Normalise and look up an account: {"id", "nickname", "error"}."""
    try:
        account_id = KINDS[product.account_kind].normalise(raw)
    except AccountIdInvalid as invalid:
        return {"id": None, "nickname": None, "error": str(invalid.args[0])}
    backend = registry().backends.get(product.delivery_backend)
    failure = _l("We couldn't check this account right now. Please try again in a moment.")
    if backend is None:
        return {"id": account_id, "nickname": None, "error": str(failure)}
    try:
        info = lookups.lookup(backend, product, account_id)
    except Exception as exc:  # a broken backend is contained, the buyer told plainly
        registry().contain(backend.id, exc)
        return {"id": account_id, "nickname": None, "error": str(failure)}
    if not info.found:
        # A backend's reason is a fixed English sentence: shown in the buyer's
        # language when the catalogues have it (mark it with N_ for extraction).
        reason = _(info.reason) if info.reason else _("No such account.")
        return {"id": account_id, "nickname": None, "error": reason}
    return {"id": account_id, "nickname": info.nickname, "error": None}


def _custom(product: Product, currency: str) -> dict | None:
    """The custom amount offer in currency: {"package", "low", "high", "rate"}, or
    None when the product does not sell one there (or its backend cannot deliver)."""
    offer = pricing.custom_offer(product, currency)
    if offer is None:
        return None
    package = Package.get_or_none(Package.product == product.id, Package.quantity == Package.CUSTOM)
    if package is None or not registry().in_stock(product, package):
        return None
    low, high, rate = offer
    return {"package": package, "low": low, "high": high, "rate": rate}


def _options(product: Product, country: str) -> dict:
    currency = COUNTRIES[country].currency
    packages = [(package, package.price.money) for package in Package.priced_in(product, currency)
                if registry().in_stock(product, package)]
    return {"currency": currency, "packages": packages, "custom": _custom(product, currency),
            "methods": registry().payment_methods(country, currency)}


def _chosen(product: Product, currency: str, values: dict, custom: dict | None):
    """The package (or custom amount) values choose: (package, quantity, price,
    problem); problem is a message for the buyer, keyed "package" or "quantity"."""
    if values["package"] == CUSTOM:
        if custom is None:
            return None, None, None, ("package", _("Custom amounts are not sold in that currency. "
                                                   "Please choose a package."))
        try:
            quantity = pricing.parse_quantity(values["quantity"], custom["low"], custom["high"])
            price = pricing.custom_price(quantity, custom["rate"], currency)
        except pricing.PricingError as error:
            return custom["package"], None, None, ("quantity", str(error))
        return custom["package"], quantity, price, None
    package = None
    if PACKAGE_ID.fullmatch(values["package"]):
        package = Package.priced(product, currency, int(values["package"]))
    if package is None:
        return None, None, None, ("package", _("Choose a package."))
    if not registry().in_stock(product, package):
        return None, None, None, ("package", _("This package just sold out. Please choose another."))
    return package, package.quantity, package.price.money, None


def _promo(product: Product, country: str, currency: str, values: dict):
    """The promo code values name, checked for this order: (promo, problem)."""
    if not values["promo"]:
        return None, None
    email = values["email"] if EMAIL.fullmatch(values["email"]) else None
    try:
        promo = pricing.find_promo(values["promo"])
        pricing.check_promo(promo, product=product, country=country, currency=currency,
                            email=email, now=utcnow())
    except pricing.PricingError as error:
        return None, str(error)
    return promo, None


def _summary(product: Product, country: str, options: dict, values: dict) -> dict:
    """What the total box shows: the quote for the choices so far, and why not."""
    currency = options["currency"]
    promo, promo_error = _promo(product, country, currency, values)
    summary = {"quote": None, "promo": promo, "promo_error": promo_error, "problem": None}
    if not values["package"]:
        return summary
    _package, quantity, price, problem = _chosen(product, currency, values, options["custom"])
    if problem is not None:
        summary["problem"] = problem[1]
        return summary
    provider = next((m for m in options["methods"] if m.id == values["method"]), None)
    summary["quote"] = pricing.quote(quantity=quantity, price=price, promo=promo, provider=provider)
    return summary


def _page_context(product: Product, values: dict, errors: dict | None = None, account=None) -> dict:
    country = _country(values.get("country"))
    options = _options(product, country)
    summary = (_summary(product, country, options, values)
               if values.get("package") or values.get("promo") else None)
    return {"product": product, "kind": KINDS[product.account_kind], "countries": COUNTRIES.values(),
            "country": country, "values": values, "errors": errors or {}, "account": account,
            "idempotency_key": token_urlsafe(24), "summary": summary, **options}


def _product_page(product: Product, values: dict, *, account=None, errors=None, status=200):
    """The full product page. It carries this visitor's CSRF token and a fresh
    idempotency key, so no shared cache may keep it."""
    headers = {"Cache-Control": "private, no-cache"}
    if account is None and errors is None and not any(values.values()):
        body, encoding = _landing(product, values)
        if encoding:
            headers["Content-Encoding"] = encoding
        return body, status, headers
    html = render_template("shop/product.html",
                           **_page_context(product, values, errors, account=account))
    return html, status, headers


CSRF_SLOT, KEY_SLOT = "@@topup-csrf@@", "@@topup-idempotency@@"


class Landing:
    """The landing page rendered once around its two per-visitor slots, and,
    once a browser accepts gzip, its gzip body made once too: filling in the
    tokens then costs a CRC instead of compressing the page again (brotli took
    about a third of the page's CPU for a browser)."""

    def __init__(self, html: str):
        head, rest = html.split(CSRF_SLOT, 1)
        middle, tail = rest.split(KEY_SLOT, 1)
        self.parts = [part.encode() for part in (head, middle, tail)]
        self.gzipped = None

    def body(self, gzip: bool) -> bytes:
        """For this visitor: their CSRF token and a fresh idempotency key."""
        values = (csrf_token().encode(), token_urlsafe(24).encode())
        if gzip:
            if self.gzipped is None:  # two threads may both build it: the same bytes
                self.gzipped = compression.GzipAround(self.parts)
            return self.gzipped.fill(*values)
        head, middle, tail = self.parts
        return b"".join((head, values[0], middle, values[1], tail))


def _landing(product: Product, values: dict) -> tuple[bytes, str | None]:
    """The page most buyers get (nothing typed yet), rendered once per product,
    country, language and path for PAGE_CACHE_SECONDS, then given this
    visitor's CSRF token and idempotency key: (body, its Content-Encoding).
    Buy re-checks price and stock, so a few seconds of staleness can never
    sell at a wrong price."""
    ttl = current_app.config["PAGE_CACHE_SECONDS"]
    cache = current_app.extensions.setdefault("topup.page_cache", {})
    key = (product.id, _country(None), str(get_locale()), request.path)
    hit = cache.get(key)
    if hit is None or hit[0] < time.monotonic():
        context = _page_context(product, values)
        context.update(idempotency_key=KEY_SLOT, csrf_token=lambda: CSRF_SLOT)
        hit = (time.monotonic() + ttl, Landing(render_template("shop/product.html", **context)))
        if ttl > 0:
            cache[key] = hit
    # Uncached, the usual compression after the view is as cheap.
    gzip = ttl > 0 and "gzip" in compression.accepted(request.environ.get("HTTP_ACCEPT_ENCODING"))
    return hit[1].body(gzip), "gzip" if gzip else None


@bp.get("/<slug>")
@limit_lookups
def product(slug):
    """The whole page. Its query string (a "Try again" link, or a partial's
    no-JS fallback) fills the form in."""
    return _product_view(_product_or_404(slug))


def _product_view(product: Product):
    values = form_values(request.args)
    account = check_account(product, values["account"]) if values.get("account") else None
    return _product_page(product, values, account=account)


@bp.get("/<slug>/account")
@limit_lookups
def account(slug):
    product = _product_or_404(slug)
    if not request.htmx:
        return _to_full_page(slug)
    raw = form_values(request.args)["account"]
    account = check_account(product, raw) if raw else None
    # Runs as the buyer types: the partial needs only the answer, not the page's queries.
    return render_for_htmx("shop/_account.html", "shop/product.html", account=account, errors={})


@bp.get("/<slug>/options")
def options(slug):
    product = _product_or_404(slug)
    if not request.htmx:
        return _to_full_page(slug)
    return render_for_htmx("shop/_options.html", "shop/product.html",
                           **_page_context(product, form_values(request.args)))


@bp.get("/<slug>/total")
def total(slug):
    """The total box (price, discount, fee, total), as the buyer chooses."""
    product = _product_or_404(slug)
    if not request.htmx:
        return _to_full_page(slug)
    values = form_values(request.args)
    country = _country(values["country"])
    options = _options(product, country)
    return render_for_htmx("shop/_total.html", "shop/product.html", product=product,
                           values=values, errors={}, currency=options["currency"],
                           summary=_summary(product, country, options, values))


@bp.post("/<slug>")
@limit_orders
def buy(slug):
    product = _product_or_404(slug)
    form = request.form
    values = form_values(form)
    if form.get("intent") == "refresh":  # the no-JS "Show prices" / "Check username" buttons
        account = check_account(product, values["account"]) if values["account"] else None
        return _product_page(product, values, account=account)
    errors = {}
    country = values["country"].upper()
    if country not in COUNTRIES:
        errors["country"] = _("Choose your country.")
        country = _country(None)
    currency = COUNTRIES[country].currency

    account = check_account(product, values["account"])
    if account["error"]:
        errors["account"] = account["error"]

    package, quantity, price, problem = _chosen(product, currency, values,
                                                _custom(product, currency))
    if problem is not None:
        errors[problem[0]] = problem[1]

    promo, promo_error = _promo(product, country, currency, values)
    if promo_error:
        errors["promo"] = promo_error

    provider = registry().providers.get(values["method"])
    if provider is None or provider not in registry().payment_methods(country, currency):
        errors["method"] = _("Choose a payment method.")
    elif price is not None and provider not in registry().payment_methods(
            country, currency, pricing.quote(quantity=quantity, price=price, promo=promo).subtotal):
        errors["method"] = _("%(method)s can't be used for this amount. Please choose another.",
                             method=provider.name)

    email = values["email"] or None
    if email and not EMAIL.fullmatch(email):
        errors["email"] = _("This e-mail address doesn't look right.")

    key = form.get("idempotency_key", "")
    if not IDEMPOTENCY_KEY.fullmatch(key):
        errors["form"] = _("Please reload the page and try again.")

    if not errors:
        try:
            order, created = orders.create_order(
                product=product, package=package, country=country, currency=currency,
                account_id=account["id"], account_nickname=account["nickname"],
                payment_method=provider.id, email=email, locale=str(get_locale()),
                idempotency_key=key, quantity=quantity,
                promo_code=promo.code if promo is not None else None)
            if created:
                orders.start_payment(order, provider,
                                     return_url=url_for("orders.show", public_id=order.public_id,
                                                        _external=True))
            return redirect(url_for("orders.show", public_id=order.public_id), 303)
        except orders.OrderRefused as refused:
            errors["form"] = str(refused)
    return _product_page(product, values, account=account, errors=errors, status=422)

