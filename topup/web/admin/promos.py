"""Promo codes: the list with usage counts, a new code, editing a code's
limits and window, enabling and disabling it.

A code is case-insensitive (stored upper-case) and fixed once created (orders
record it). Percent discounts are typed in percent ("12.5") and stored in
basis points; fixed discounts per currency in major units, stored exactly in
minor units. Dates are whole UTC days, the last one included. A form with a
mistake changes nothing and comes back with 422.
"""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from peewee import IntegrityError, fn

from topup import pricing
from topup.db import database
from topup.models import Product, PromoCode, PromoUse
from topup.regions import COUNTRIES
from topup.web.admin import bp, forms
from topup.web.admin.catalog import CURRENCIES, MAX_ID

MAX_USES = 10**9
PERCENT = re.compile(r"[0-9]{1,3}(\.[0-9]{1,2})?")


def promo_or_404(typed: str | None) -> PromoCode:
    """The code whose id was typed (the edit link's query, a form's hidden field)."""
    typed = (typed or "").strip()
    promo = (PromoCode.get_or_none(PromoCode.id == int(typed))
             if typed.isdigit() and len(typed) <= 10 and int(typed) <= MAX_ID else None)
    if promo is None:
        abort(404, _("There is no such promo code."))
    return promo


def per_email_counts() -> dict[int, int]:
    """Per code: how many different e-mail addresses used it."""
    query = (PromoUse.select(PromoUse.promo, fn.COUNT(PromoUse.email.distinct()))
             .group_by(PromoUse.promo).tuples())
    return dict(query)


def page(status: int = 200, *, editing: PromoCode | None = None, errors=None, values=None):
    promos = list(PromoCode.select().order_by(PromoCode.created_at.desc(), PromoCode.id.desc()))
    return render_template("admin/promos.html", promos=promos, editing=editing,
                           emails=per_email_counts(),
                           products=list(Product.select().order_by(Product.sort, Product.id)),
                           countries=COUNTRIES.values(), currencies=CURRENCIES,
                           major=forms.major, shown=shown, errors=errors or [],
                           values=values), status


def shown(promo: PromoCode) -> dict:
    """The code's settings as its form shows them."""
    until = promo.valid_until - timedelta(days=1) if promo.valid_until else None
    return {"code": promo.code, "kind": promo.kind,
            "percent": str((Decimal(promo.percent_bp or 0) / 100).normalize())
            if promo.kind == "percent" else "",
            **{f"fixed-{c}": forms.major(amount, c) for c, amount in (promo.fixed or {}).items()},
            "product": str(promo.product_id or ""), "country": promo.country or "",
            "currency": promo.currency or "",
            "valid_from": promo.valid_from.date().isoformat() if promo.valid_from else "",
            "valid_until": until.date().isoformat() if until else "",
            "max_uses": str(promo.max_uses or ""),
            "max_uses_per_email": str(promo.max_uses_per_email or ""),
            **({"enabled": "on"} if promo.enabled else {})}


def optional_integer(form, name: str, high: int, what: str, problems: list[str]) -> int | None:
    if not (form.get(name) or "").strip():
        return None
    try:
        return forms.integer(form.get(name), 1, high, what)
    except forms.FormError as error:
        problems.append(str(error))
        return None


def discount_fields(form, problems: list[str]) -> dict:
    kind = form.get("kind", "")
    if kind == "percent":
        typed = (form.get("percent") or "").strip()
        try:
            if not PERCENT.fullmatch(typed):
                raise InvalidOperation
            basis_points = int(Decimal(typed) * 100)
            if not 0 < basis_points <= 10000:
                raise InvalidOperation
        except InvalidOperation:
            problems.append(_("A percent discount is more than 0 and at most 100, with at most "
                              "2 decimals (12.5)."))
            return {"kind": kind}
        return {"kind": kind, "percent_bp": basis_points, "fixed": None}
    if kind == "fixed":
        fixed = {}
        for currency in CURRENCIES:
            typed = (form.get(f"fixed-{currency}") or "").strip()
            if typed:
                try:
                    fixed[currency] = forms.amount(typed, currency)
                except forms.FormError as error:
                    problems.append(f"{currency}: {error}")
        if not fixed and not problems:
            problems.append(_("A fixed discount needs an amount in at least one currency."))
        return {"kind": kind, "fixed": fixed, "percent_bp": None}
    problems.append(_("Choose a percent or a fixed discount."))
    return {}


def restriction_fields(form, problems: list[str]) -> dict:
    fields = {"product": None, "country": None, "currency": None}
    product = (form.get("product") or "").strip()
    if product:
        found = (Product.get_or_none(Product.id == int(product))
                 if product.isdigit() and int(product) <= MAX_ID else None)
        if found is None:
            problems.append(_("Choose a product from the list."))
        fields["product"] = found
    country = (form.get("country") or "").strip().upper()
    if country:
        if country not in COUNTRIES:
            problems.append(_("Choose a country from the list."))
        fields["country"] = country
    currency = (form.get("currency") or "").strip().upper()
    if currency:
        if currency not in CURRENCIES:
            problems.append(_("Choose a currency from the list."))
        fields["currency"] = currency
    return fields


def limit_fields(form, problems: list[str]) -> dict:
    """The window (whole UTC days, the last included) and the usage limits."""
    fields = {}
    try:
        start = forms.day(form.get("valid_from"), _("Valid from"))
        end = forms.day(form.get("valid_until"), _("Valid until"))
    except forms.FormError as error:
        problems.append(str(error))
        start = end = None
    if start and end and end < start:
        problems.append(_("The last valid day cannot be before the first."))
    fields["valid_from"] = datetime.combine(start, time()) if start else None
    fields["valid_until"] = datetime.combine(end, time()) + timedelta(days=1) if end else None
    fields["max_uses"] = optional_integer(form, "max_uses", MAX_USES, _("Uses in all"), problems)
    fields["max_uses_per_email"] = optional_integer(form, "max_uses_per_email", MAX_USES,
                                                    _("Uses per e-mail"), problems)
    fields["enabled"] = "enabled" in form
    return fields


def promo_fields(form, problems: list[str]) -> dict:
    return {**discount_fields(form, problems), **restriction_fields(form, problems),
            **limit_fields(form, problems)}


@bp.get("/promos")
def promo_list():
    """The list, and the form: a new code, or ?edit=<id> to change one."""
    if "edit" in request.args:
        return page(editing=promo_or_404(request.args.get("edit")))
    return page()


@bp.post("/promos")
def create_promo():
    form, problems = request.form, []
    code = pricing.normalise_code(form.get("code"))
    if not pricing.PROMO.fullmatch(code):
        problems.append(_("A code has 1 to 32 letters, digits, _ or -."))
    fields = promo_fields(form, problems)
    if not problems:
        try:
            with database.atomic():
                PromoCode.create(code=code, **fields)
        except IntegrityError:
            problems.append(_("The code %(code)s exists already: change it in the list.",
                              code=code))
    if problems:
        return page(422, errors=problems, values=form)
    flash(_("Created the promo code %(code)s.", code=code))
    return redirect(url_for("admin.promo_list"), 303)


@bp.post("/promos/edit")
def update_promo():
    """Everything but the code itself (orders record it) and the usage count."""
    promo = promo_or_404(request.form.get("id"))
    problems = []
    fields = promo_fields(request.form, problems)
    if problems:
        return page(422, editing=promo, errors=problems, values=request.form)
    PromoCode.update(**fields).where(PromoCode.id == promo.id).execute()
    flash(_("Saved the promo code %(code)s.", code=promo.code))
    return redirect(url_for("admin.promo_list"), 303)


@bp.post("/promos/enabled")
def toggle_promo():
    promo = promo_or_404(request.form.get("id"))
    enabled = request.form.get("enabled") == "1"
    PromoCode.update(enabled=enabled).where(PromoCode.id == promo.id).execute()
    flash(_("Enabled %(code)s.", code=promo.code) if enabled else
          _("Disabled %(code)s.", code=promo.code))
    return redirect(url_for("admin.promo_list"), 303)
