"""`topup vouchers import | stock | rotate`: the operator's side of the stock."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from peewee import IntegrityError

from topup.models import Package, Product

from topup_plugins.vouchers import stock
from topup_plugins.vouchers.backend import DEFAULT_LOW_STOCK, VoucherDelivery
from topup_plugins.vouchers.crypto import InvalidToken


def loaded_backend() -> VoucherDelivery | None:
    """The app's vouchers backend; None when it is not set up (no key)."""
    backend = current_app.extensions["topup"].backends.get(VoucherDelivery.id)
    return backend if isinstance(backend, VoucherDelivery) else None


def _require_backend() -> VoucherDelivery:
    backend = loaded_backend()
    if backend is None:
        raise click.ClickException(
            'The vouchers plugin has no key: set PLUGINS["vouchers"]["key"] (see '
            "docs/backends/vouchers.md), or run `topup plugins` to see why it did not load.")
    return backend


def _package(product_slug: str, quantity: int) -> Package:
    product = Product.get_or_none(Product.slug == product_slug)
    if product is None:
        raise click.ClickException(f"No product {product_slug!r}.")
    matches = list(Package.select().where(Package.product == product,
                                          Package.quantity == quantity))
    if len(matches) != 1:
        have = ", ".join(str(p.quantity) for p in product.packages.order_by(Package.quantity))
        raise click.ClickException(
            f"{product.name} has {'no' if not matches else 'more than one'} package of "
            f"{quantity} {product.unit} (its packages: {have or 'none'}).")
    return matches[0]


@click.group("vouchers")
def vouchers():
    """Voucher code stock: import codes, see what is left, change the key."""


@vouchers.command("import")
@click.argument("product_slug")
@click.argument("quantity", type=int)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--batch", help="A label for these codes, e.g. the supplier's invoice number.")
@with_appcontext
def import_codes(product_slug, quantity, file, batch):
    """Add the codes in FILE (CSV, one code per row in the first column) to a package.

    Codes already in the file or already imported are refused; any other
    problem imports nothing."""
    backend = _require_backend()
    package = _package(product_slug, quantity)
    if batch is not None and not 0 < len(batch.strip()) <= 100:
        raise click.ClickException("A --batch label has 1 to 100 characters.")
    try:
        codes = stock.read_codes(file)
    except stock.BadFile as bad:
        raise click.ClickException("Nothing imported. Fix these and import the file again:\n"
                                   + "\n".join(f"  {problem}" for problem in bad.problems))
    try:
        report = stock.import_codes(backend.vault, package, codes,
                                     batch and batch.strip())
    except IntegrityError:
        raise click.ClickException("Nothing imported: another import added some of the same "
                                   "codes at the same moment. Import the file again.") from None
    click.echo(f"imported {report.imported}, refused {len(report.refused)} duplicate(s)")
    for line, why in report.refused:
        click.echo(f"  line {line}: {why}")
    if package.product.delivery_backend != VoucherDelivery.id:
        click.echo(f"Note: {package.product.name} delivers with "
                   f"{package.product.delivery_backend!r}, so these codes are not sold until it "
                   f"delivers with {VoucherDelivery.id!r}.", err=True)


@vouchers.command("stock")
@with_appcontext
def show_stock():
    """Free and allocated codes per package; LOW under the low_stock setting."""
    backend = loaded_backend()
    threshold = backend.low_stock if backend else int(
        current_app.config["PLUGINS"].get("vouchers", {}).get("low_stock", DEFAULT_LOW_STOCK))
    counts = stock.levels()
    rows = [(package.product.slug, package.quantity, *counts.get(package.id, (0, 0)))
            for package in stock.stocked_packages()]
    if not rows:
        click.echo("No product delivers with vouchers, and no codes are imported.")
        return
    width = max(len("PRODUCT"), *(len(slug) for slug, *_ in rows))
    click.echo(f"{'PRODUCT':<{width}}  {'PACKAGE':>8}  {'FREE':>6}  {'ALLOCATED':>9}")
    for slug, quantity, free, allocated in rows:
        mark = "  LOW" if free < threshold else ""
        click.echo(f"{slug:<{width}}  {quantity:>8}  {free:>6}  {allocated:>9}{mark}")
    if backend is None:
        click.echo("Note: the vouchers plugin has no key, so nothing is delivered.", err=True)


@vouchers.command("rotate")
@with_appcontext
def rotate_keys():
    """Re-encrypt every code under the first of the `keys`, so the others can go."""
    backend = _require_backend()
    try:
        count = stock.rotate(backend.vault)
    except InvalidToken as exc:
        raise click.ClickException(f"Stopped: {exc}. Put its key back in `keys` and run this "
                                   "again.") from None
    click.echo(f"re-encrypted {count} code(s) under the first key; "
               "the other keys can now be removed")
