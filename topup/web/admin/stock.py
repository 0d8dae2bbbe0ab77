"""Voucher stock: free and allocated codes per package, and a CSV upload
that runs the same reading and import as `topup vouchers import`.

Shown only while the vouchers plugin is loaded; its tables may not exist
otherwise, so nothing of it is queried then.
"""
from __future__ import annotations

import os
import tempfile

from flask import current_app, render_template, request
from flask_babel import gettext as _
from peewee import IntegrityError

from topup.models import Package, Product
from topup.web.admin import bp, forms

PLUGIN = "vouchers"


def enabled() -> bool:
    return current_app.extensions["topup"].pm.get_plugin(PLUGIN) is not None


def levels() -> dict:
    """The stock table and the upload form's choices (the plugin is loaded)."""
    from topup_plugins.vouchers import stock
    from topup_plugins.vouchers.backend import DEFAULT_LOW_STOCK
    from topup_plugins.vouchers.cli import loaded_backend

    backend = loaded_backend()
    threshold = backend.low_stock if backend else int(
        current_app.config["PLUGINS"].get(PLUGIN, {}).get("low_stock", DEFAULT_LOW_STOCK))
    counts = stock.levels()
    rows = [{"package": package, "free": counts.get(package.id, (0, 0))[0],
             "allocated": counts.get(package.id, (0, 0))[1]}
            for package in stock.stocked_packages()]
    choices = list(Package.select(Package, Product).join(Product)
                   .order_by(Product.sort, Product.id, Package.sort, Package.quantity))
    return {"rows": rows, "threshold": threshold, "configured": backend is not None,
            "choices": choices}


def page(status: int = 200, **context):
    if not enabled():
        return render_template("admin/stock.html", enabled=False), status
    shown = {"limit": current_app.config.get("MAX_CONTENT_LENGTH"), "report": None,
             "imported_to": None, "problems": [], "values": {}, **levels(), **context}
    return render_template("admin/stock.html", enabled=True, **shown), status


@bp.get("/stock")
def stock_page():
    return page()


@bp.post("/stock/import")
def import_stock():
    if not enabled():
        return page(404)
    from topup_plugins.vouchers import stock
    from topup_plugins.vouchers.cli import loaded_backend

    form, problems = request.form, []
    backend = loaded_backend()
    if backend is None:
        problems.append(_('The vouchers plugin has no key, so codes cannot be stored: set '
                          'PLUGINS["vouchers"]["key"] (see docs/backends/vouchers.md).'))
    package = None
    try:
        package_id = forms.integer(form.get("package"), 1, 10**9, _("Package"))
        package = Package.get_or_none(Package.id == package_id)
    except forms.FormError:
        pass
    if package is None:
        problems.append(_("Choose the package these codes are for."))
    batch = forms.text(form.get("batch"), 101) or None
    if batch is not None and len(batch) > 100:
        problems.append(_("A batch label has at most 100 characters."))
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        problems.append(_("Choose a CSV file of codes."))
    codes = []
    if not problems:
        try:
            codes = read(upload)
        except stock.BadFile as bad:
            problems.append(_("Nothing imported. Fix these lines and upload the file again:"))
            problems.extend(bad.problems)
        else:
            if not codes:
                problems.append(_("The file holds no codes."))
    if problems:
        return page(422, problems=problems, values=form)
    try:
        report = stock.import_codes(backend.vault, package, codes, batch)
    except IntegrityError:
        return page(409, problems=[_("Nothing imported: another import added some of the "
                                     "same codes at the same moment. Upload the file again.")],
                    values=form)
    return page(report=report, imported_to=package)


def read(upload) -> list[tuple[int, str]]:
    """The plugin's own CSV reader, which takes a path: the upload goes
    through a private temporary file, removed at once."""
    from topup_plugins.vouchers import stock

    handle, path = tempfile.mkstemp(suffix=".csv")
    try:
        with os.fdopen(handle, "wb") as out:
            upload.save(out)
        return stock.read_codes(path)
    finally:
        os.unlink(path)
