"""Stock keeping: importing codes from a CSV file, counting what is left,
re-encrypting after a key change, and warning when a package runs low."""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field

from flask import current_app
from peewee import IntegrityError, fn

from topup import mail
from topup.db import database
from topup.models import Package, Product, utcnow

from topup_plugins.vouchers.crypto import InvalidToken, Vault, normalise
from topup_plugins.vouchers.models import VoucherCode, VoucherStockAlert

log = logging.getLogger(__name__)

MAX_CODE_LENGTH = 200
CHUNK = 500  # rows per IN (...) or multi-row INSERT: well under SQLite's variable limit


# --- import ---------------------------------------------------------------------


class BadFile(Exception):
    """The file cannot be imported as it is; `problems` says where (never what)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def read_codes(path: str) -> list[tuple[int, str]]:
    """(line number, code) for each code: the first column of each row, stripped;
    blank rows skipped, and a first row reading "code" taken as the header.
    Raises BadFile listing every unusable line, so nothing is half-imported."""
    codes, problems = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            try:
                for row in reader:
                    cells = [cell.strip() for cell in row]
                    if not any(cells):
                        continue
                    line, code = reader.line_num, cells[0]
                    if not codes and not problems and code.casefold() == "code":
                        continue  # the header
                    if not code:
                        problems.append(f"line {line}: no code in the first column")
                    elif len(code) > MAX_CODE_LENGTH:
                        problems.append(f"line {line}: longer than {MAX_CODE_LENGTH} characters")
                    elif not code.isprintable():
                        problems.append(f"line {line}: holds control characters")
                    elif not normalise(code):
                        problems.append(f"line {line}: only dashes, not a code")
                    else:
                        codes.append((line, code))
            except csv.Error as exc:
                problems.append(f"line {reader.line_num}: {exc}")
    except UnicodeDecodeError:
        raise BadFile(["the file is not UTF-8 text"]) from None
    if problems:
        raise BadFile(problems)
    return codes


@dataclass
class ImportReport:
    imported: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line, why), by line


def import_codes(vault: Vault, package: Package, codes: list[tuple[int, str]],
                 batch: str | None = None) -> ImportReport:
    """Add the codes to the package's stock in one transaction, refusing any
    already in the file or already imported (for any package, by fingerprint).
    A concurrent import of the same codes raises IntegrityError: nothing added."""
    report = ImportReport()
    first_line: dict[str, int] = {}
    fresh = []
    for line, code in codes:
        same = first_line.setdefault(normalise(code), line)
        if same != line:
            report.refused.append((line, f"repeats line {same}"))
        else:
            fresh.append((line, vault.fingerprints(code), vault.encrypt(code)))
    now = utcnow()
    with database.atomic():
        known = _known_fingerprints([fp for _, fingerprints, _ in fresh for fp in fingerprints])
        rows = []
        for line, fingerprints, ciphertext in fresh:
            if known.intersection(fingerprints):
                report.refused.append((line, "already imported"))
            else:
                rows.append({"package": package.id, "ciphertext": ciphertext,
                             "fingerprint": fingerprints[0], "batch": batch, "imported_at": now})
        for start in range(0, len(rows), CHUNK):
            VoucherCode.insert_many(rows[start:start + CHUNK]).execute()
    report.imported = len(rows)
    report.refused.sort()
    return report


def _known_fingerprints(fingerprints: list[str]) -> set[str]:
    known = set()
    for start in range(0, len(fingerprints), CHUNK):
        query = (VoucherCode.select(VoucherCode.fingerprint)
                 .where(VoucherCode.fingerprint.in_(fingerprints[start:start + CHUNK])))
        known.update(fingerprint for (fingerprint,) in query.tuples())
    return known


def rotate(vault: Vault) -> int:
    """Re-encrypt every code under the first key and store its fingerprint
    under that key, so older keys can be removed. Batches, each in its own
    transaction: safe to run on a live shop, and again after an interruption."""
    done, after = 0, 0
    while True:
        with database.atomic():
            batch = list(VoucherCode.select(VoucherCode.id, VoucherCode.ciphertext)
                         .where(VoucherCode.id > after).order_by(VoucherCode.id).limit(CHUNK))
            for code in batch:
                try:
                    ciphertext = vault.rotate(code.ciphertext)
                    fingerprint = vault.fingerprint(vault.decrypt(ciphertext))
                except InvalidToken:
                    raise InvalidToken(f"voucher #{code.id} opens with none of the keys") from None
                (VoucherCode.update(ciphertext=ciphertext, fingerprint=fingerprint)
                 .where(VoucherCode.id == code.id).execute())
        if not batch:
            return done
        done += len(batch)
        after = batch[-1].id


# --- counting -------------------------------------------------------------------------


def levels() -> dict[int, tuple[int, int]]:
    """package id -> (free, allocated), for packages that ever had a code."""
    rows = (VoucherCode.select(VoucherCode.package, fn.COUNT(VoucherCode.id),
                               fn.COUNT(VoucherCode.order_ref))
            .group_by(VoucherCode.package).tuples())
    return {package: (total - allocated, allocated) for package, total, allocated in rows}


def stocked_packages():
    """Packages sold through vouchers, and any other package holding codes."""
    holding = VoucherCode.select(VoucherCode.package).distinct()
    return (Package.select(Package, Product).join(Product)
            .where((Product.delivery_backend == "vouchers") | Package.id.in_(holding))
            .order_by(Product.sort, Product.id, Package.sort, Package.quantity))


def on_sale_packages():
    return (Package.select(Package, Product).join(Product)
            .where(Product.delivery_backend == "vouchers", Product.enabled, Package.enabled)
            .order_by(Product.sort, Product.id, Package.sort, Package.quantity))


# --- low stock ---------------------------------------------------------------------------


def check_low_stock(threshold: int, alert_email: str | None) -> None:
    """Warn once each time a package on sale falls under `threshold` free codes
    (log, and e-mail alert_email when mail is on); forget it once restocked."""
    counts, low = levels(), {}
    for package in on_sale_packages():
        free = counts.get(package.id, (0, 0))[0]
        if free < threshold:
            low[package.id] = (package, free)

    gone = [alert.id for alert in VoucherStockAlert.select(VoucherStockAlert.id)
            .where(VoucherStockAlert.package.not_in(list(low)))]
    if gone:  # restocked, or no longer sold: the next crossing is news again
        VoucherStockAlert.delete().where(VoucherStockAlert.id.in_(gone)).execute()
        log.info("voucher stock: %d package(s) no longer low", len(gone))

    reported = {package_id for (package_id,) in VoucherStockAlert.select(
        VoucherStockAlert.package).tuples()}
    for package_id, (package, free) in low.items():
        if package_id in reported:
            continue
        try:
            with database.atomic():
                VoucherStockAlert.create(package=package_id, free=free)
        except IntegrityError:
            continue  # another worker's sweep saw this crossing first
        log.warning("voucher stock low: %s %s has %d free code(s), under %d",
                    package.product.slug, package.quantity, free, threshold)

    if low and alert_email and mail.enabled():
        _mail_alerts(alert_email, low, threshold)


def _mail_alerts(alert_email: str, low: dict, threshold: int) -> None:
    """One message for every crossing not yet e-mailed. Each alert is claimed by
    compare-and-set first, so two sweeps never both send; a failed send is
    released, to be tried again at the next sweep."""
    waiting = (VoucherStockAlert.select()
               .where(VoucherStockAlert.mailed_at.is_null(),
                      VoucherStockAlert.package.in_(list(low))))
    claimed = [alert for alert in waiting
               if VoucherStockAlert.update(mailed_at=utcnow())
               .where(VoucherStockAlert.id == alert.id, VoucherStockAlert.mailed_at.is_null())
               .execute() == 1]
    if not claimed:
        return
    entries = [low[alert.package_id] for alert in claimed]
    names = [f"{package.product.name} {package.quantity}" for package, _ in entries]
    subject = (f"Low voucher stock: {names[0]}" if len(names) == 1
               else f"Low voucher stock: {len(names)} packages")
    lines = [f"- {name}: {free} free code(s) left"
             + (f" (import more: topup vouchers import {package.product.slug} "
                f"{package.quantity} FILE.csv)")
             for name, (package, free) in zip(names, entries)]
    text = (f"These packages of {current_app.config['SHOP_NAME']} have fewer than {threshold} "
            "voucher codes left. With none left, their orders wait for you.\n\n"
            + "\n".join(lines) + "\n\nRun `topup vouchers stock` to see all packages.\n")
    try:
        mail.send(alert_email, subject, text)
    except Exception:
        (VoucherStockAlert.update(mailed_at=None)
         .where(VoucherStockAlert.id.in_([alert.id for alert in claimed])).execute())
        raise
