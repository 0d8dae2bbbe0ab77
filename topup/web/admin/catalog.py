"""The catalog: products, their packages and per-currency prices; and, read
only, the payment methods buyers of each country see with their fees.

Amounts are typed in major units ("12.34") and stored exactly in minor units
(topup.money). A form with a mistake changes nothing and comes back with 422.
"""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from peewee import IntegrityError

from topup.db import database
from topup.models import Package, Price, Product
from topup.regions import COUNTRIES
from topup.web.admin import bp, forms

CURRENCIES = tuple(sorted({country.currency for country in COUNTRIES.values()}))
MAX_QUANTITY = 10**9
MAX_SORT = 10**6


def registry():
    return current_app.extensions["topup"]


def product_or_404(product_id: int) -> Product:
    product = Product.get_or_none(Product.id == product_id)
    if product is None:
        abort(404, _("There is no such product."))
    return product


def package_or_404(package_id: int) -> Package:
    package = Package.get_or_none(Package.id == package_id)
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
    packages = list(Package.select().where(Package.product == product)
                    .order_by(Package.sort, Package.quantity))
    prices = {}
    for price in Price.select().where(Price.package.in_([p.id for p in packages] or [0])):
        prices.setdefault(price.package_id, []).append(price)
    for listed in prices.values():
        listed.sort(key=lambda price: price.currency)
    backends = sorted(set(registry().backends) | {product.delivery_backend})
    return render_template("admin/product.html", product=product, packages=packages,
                           prices=prices, backends=backends,
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
