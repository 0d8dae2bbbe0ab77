"""The catalog: products, their packages and per-currency prices, their custom
amount settings; and, read only, the payment methods buyers of each country
see with their fees.

Amounts are typed in major units ("12.34") and stored exactly in minor units
(topup.money). A form with a mistake changes nothing and comes back with 422.
"""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from peewee import IntegrityError

from topup.db import database
from topup.models import CustomRate, Package, Price, Product
from topup.regions import COUNTRIES
from topup.web.admin import bp, forms

CURRENCIES = tuple(sorted({country.currency for country in COUNTRIES.values()}))
MAX_QUANTITY = 10**9
MAX_SORT = 10**6
MAX_ID = 2**31 - 1  # ids are 32-bit integer columns on Postgres; larger ones name nothing


def registry():
    return current_app.extensions["topup"]


def product_or_404(product_id: int) -> Product:
    product = Product.get_or_none(Product.id == product_id) if product_id <= MAX_ID else None
    if product is None:
        abort(404, _("There is no such product."))
    return product


def package_or_404(package_id: int) -> Package:
    package = Package.get_or_none(Package.id == package_id) if package_id <= MAX_ID else None
    if package is None:
        abort(404, _("There is no such package."))
    return package


def method_rows() -> list[dict]:
    """Per country: each payment method offered there, with its fee setting."""
    rows = []
    for country in COUNTRIES.values():
        methods = [{"id": p.id, "name": p.name, "percent": p.fee_percent,
                    "fixed": p.fixed_fee(country.currency), "refunds": p.supports_refund}
                   for p in registry().payment_methods(country.code, country.currency)]
        rows.append({"country": country, "methods": methods})
    return rows


@bp.get("/catalog")
def catalog():
    products = list(Product.select().order_by(Product.sort, Product.id))
    return render_template("admin/catalog.html", products=products, methods=method_rows(),
                           not_configured=registry().not_configured)


def product_page(product: Product, status: int = 200, errors=None, values=None):
    packages = list(Package.select().where(Package.product == product,
                                           Package.quantity != Package.CUSTOM)
                    .order_by(Package.sort, Package.quantity))
    rates = {rate.currency: rate.per_thousand
             for rate in CustomRate.select().where(CustomRate.product == product)}
    prices = {}
    for price in Price.select().where(Price.package.in_([p.id for p in packages] or [0])):
        prices.setdefault(price.package_id, []).append(price)
    for listed in prices.values():
        listed.sort(key=lambda price: price.currency)
    backends = sorted(set(registry().backends) | {product.delivery_backend})
    return render_template("admin/product.html", product=product, packages=packages,
                           prices=prices, backends=backends, rates=rates,
                           loaded=set(registry().backends), currencies=CURRENCIES,
                           major=forms.major, errors=errors or {},
                           values=values or {}), status


def refused(product: Product, key: str, problems: list[str]):
    return product_page(product, 422, errors={key: problems}, values={key: request.form})


@bp.get("/catalog/<int:product_id>")
def product(product_id):
    return product_page(product_or_404(product_id))


@bp.post("/catalog/<int:product_id>")
def update_product(product_id):
    product = product_or_404(product_id)
    form, problems = request.form, []
    name = forms.text(form.get("name"), 101)
    if not 0 < len(name) <= 100:
        problems.append(_("A name has 1 to 100 characters."))
    backend = form.get("delivery_backend", "")
    if backend not in registry().backends and backend != product.delivery_backend:
        problems.append(_("Choose a delivery backend from the list."))
    try:
        sort = forms.integer(form.get("sort"), -MAX_SORT, MAX_SORT, _("Sort"))
    except forms.FormError as error:
        problems.append(str(error))
    if problems:
        return refused(product, "product", problems)
    Product.update(name=name, delivery_backend=backend, sort=sort,
                   enabled="enabled" in form).where(Product.id == product.id).execute()
    flash(_("Saved %(name)s.", name=name))
    return redirect(url_for("admin.product", product_id=product.id), 303)


def package_fields(form, problems: list[str]) -> dict:
    fields = {"enabled": "enabled" in form}
    for name, low, high, label in (("quantity", 1, MAX_QUANTITY, _("Quantity")),
                                   ("sort", -MAX_SORT, MAX_SORT, _("Sort"))):
        try:
            fields[name] = forms.integer(form.get(name), low, high, label)
        except forms.FormError as error:
            problems.append(str(error))
    return fields


@bp.post("/catalog/<int:product_id>/packages")
def add_package(product_id):
    product = product_or_404(product_id)
    problems = []
    fields = package_fields(request.form, problems)
    if problems:
        return refused(product, "new-package", problems)
    Package.create(product=product, **fields)
    flash(_("Added a package of %(quantity)s. Give it prices to sell it.",
            quantity=fields["quantity"]))
    return redirect(url_for("admin.product", product_id=product.id), 303)


@bp.post("/catalog/packages/<int:package_id>")
def update_package(package_id):
    """The package's fields and its prices at once; an emptied price stops
    selling the package in that currency."""
    package = package_or_404(package_id)
    key, problems = f"package-{package.id}", []
    fields = package_fields(request.form, problems)
    amounts = {}
    for price in Price.select().where(Price.package == package):
        typed = request.form.get(f"price-{price.currency}")
        if typed is None:  # not on the page the operator saw (added meanwhile): kept
            continue
        if not typed.strip():
            amounts[price.id] = None
            continue
        try:
            amounts[price.id] = forms.amount(typed, price.currency)
        except forms.FormError as error:
            problems.append(f"{price.currency}: {error}")
    if problems:
        return refused(package.product, key, problems)
    with database.atomic():
        Package.update(**fields).where(Package.id == package.id).execute()
        for price_id, minor in amounts.items():
            if minor is None:
                Price.delete().where(Price.id == price_id).execute()
            else:
                Price.update(amount=minor).where(Price.id == price_id).execute()
    flash(_("Saved the package of %(quantity)s.", quantity=fields["quantity"]))
    return redirect(url_for("admin.product", product_id=package.product_id,
                            _anchor=key), 303)


@bp.post("/catalog/packages/<int:package_id>/prices")
def add_price(package_id):
    package = package_or_404(package_id)
    key, problems = f"price-{package.id}", []
    currency = request.form.get("currency", "").strip().upper()
    if currency not in CURRENCIES:
        problems.append(_("Choose a currency from the list."))
    else:
        try:
            minor = forms.amount(request.form.get("amount"), currency)
        except forms.FormError as error:
            problems.append(str(error))
    if not problems:
        try:
            with database.atomic():
                Price.create(package=package, currency=currency, amount=minor)
        except IntegrityError:
            problems.append(_("This package has a price in %(currency)s already: change it "
                              "above.", currency=currency))
    if problems:
        return refused(package.product, key, problems)
    flash(_("Added a price in %(currency)s.", currency=currency))
    return redirect(url_for("admin.product", product_id=package.product_id,
                            _anchor=f"package-{package.id}"), 303)


# --- custom amounts ----------------------------------------------------------------
# The buyer types a quantity from min to max; each currency's rate is the price
# of 1,000 units, typed in major units and stored exactly in minor units
# (CustomRate.per_thousand). topup.pricing rounds quantity x rate per currency.


def custom_fields(form, problems: list[str]) -> tuple[dict, dict]:
    """(product columns, {currency: per_thousand or None}) from the custom amount form."""
    fields = {"custom_enabled": "custom_enabled" in form}
    for name, label in (("custom_min", _("Smallest amount")), ("custom_max", _("Largest amount"))):
        if not fields["custom_enabled"] and not (form.get(name) or "").strip():
            fields[name] = None  # not selling custom amounts: the range may stay empty
            continue
        try:
            fields[name] = forms.integer(form.get(name), 1, MAX_QUANTITY, label)
        except forms.FormError as error:
            problems.append(str(error))
            fields[name] = None
    if fields["custom_min"] and fields["custom_max"] and fields["custom_min"] > fields["custom_max"]:
        problems.append(_("The smallest amount cannot be more than the largest."))
    rates = {}
    for currency in CURRENCIES:
        typed = (form.get(f"rate-{currency}") or "").strip()
        if not typed:
            rates[currency] = None
            continue
        try:
            rates[currency] = forms.amount(typed, currency)
        except forms.FormError as error:
            problems.append(f"{currency}: {error}")
    if fields["custom_enabled"] and not any(rates.values()) and not problems:
        problems.append(_("Give the price of 1,000 in at least one currency to sell custom "
                          "amounts."))
    return fields, rates


@bp.post("/catalog/<int:product_id>/custom")
def update_custom(product_id):
    product = product_or_404(product_id)
    problems = []
    fields, rates = custom_fields(request.form, problems)
    if problems:
        return refused(product, "custom", problems)
    with database.atomic():
        Product.update(**fields).where(Product.id == product.id).execute()
        Package.custom_for(product)  # the hidden package custom orders refer to
        for currency, per_thousand in rates.items():
            query = CustomRate.select().where(CustomRate.product == product,
                                              CustomRate.currency == currency)
            if per_thousand is None:
                CustomRate.delete().where(CustomRate.product == product,
                                          CustomRate.currency == currency).execute()
            elif query.exists():
                (CustomRate.update(per_thousand=per_thousand)
                 .where(CustomRate.product == product, CustomRate.currency == currency).execute())
            else:
                CustomRate.create(product=product, currency=currency, per_thousand=per_thousand)
    flash(_("Saved the custom amount settings."))
    return redirect(url_for("admin.product", product_id=product.id, _anchor="custom"), 303)
