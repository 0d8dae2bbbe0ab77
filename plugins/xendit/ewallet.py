"""Xendit e-wallet charges: one payment method per wallet the buyer recognises.

Settings (PLUGINS["xendit"]):
    secret_key      Xendit secret API key (Basic auth username), e.g. {"$env": "XENDIT_SECRET_KEY"}
    callback_token  the Callback Verification Token from Xendit's dashboard
    api_base        optional, default https://api.xendit.co (tests point it at a fake)
    channels        optional list to enable a subset: provider ids ("xendit_dana") or
                    Xendit channel codes ("ID_DANA"); default all
    timeout         optional seconds per API call, default 15

Flow: start() creates a ONE_TIME_PAYMENT charge (POST /ewallets/charges) whose
reference_id is a hash of the order (never its secret public id) and sends the
buyer to the wallet's checkout URL. Xendit's callback ("ewallet.capture", header
x-callback-token) is checked against callback_token in constant time FIRST, and
then the charge is fetched again (GET /ewallets/charges/{id}): the fetched
status and amount decide, never the callback's body.

Xendit sends every e-wallet callback to the one URL set in its dashboard; point
it at /xendit/callback, which routes each charge to its wallet's method (each
/webhooks/xendit_<wallet> also accepts its own wallet's callbacks).

Left out: OVO and Jenius Pay, which need the buyer's phone number / $cashtag
(channel_properties.mobile_number / cashtag), which this shop does not collect.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
from decimal import Decimal
from urllib.parse import urlsplit

from flask import Blueprint, current_app, request

from topup import hookimpl
from topup.money import Money
from topup.payments import (NotConfigured, PaymentAction, PaymentEvent, PaymentProvider,
                            WebhookRejected)
from topup_plugins.qr.common import order_reference
from topup_plugins.xendit.client import (DEFAULT_API_BASE, WHOLE_UNIT_CURRENCIES, XenditClient,
                                         XenditError, api_amount, money_from_api)

log = logging.getLogger(__name__)

CALLBACK_HEADER = "x-callback-token"
CHARGE_ID = re.compile(r"ewc_[A-Za-z0-9-]{1,100}")
EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
MAX_BODY = 64 * 1024


class XenditEWallet(PaymentProvider):
    """Base class; each subclass is one wallet (channel_code)."""
    channel_code: str
    supports_refund = True

    def __init__(self, settings: dict):
        super().__init__(settings)
        missing = [key for key in ("secret_key", "callback_token")
                   if not str(settings.get(key) or "").strip()]
        if missing:
            raise NotConfigured(f"{self.id} needs settings: {', '.join(missing)}")
        channels = settings.get("channels")
        if channels is not None:
            wanted = {str(c).strip().lower() for c in channels}
            if not wanted & {self.id.lower(), self.channel_code.lower()}:
                raise NotConfigured(f"{self.id} is not in the xendit channels setting")
        self.callback_token = str(settings["callback_token"]).strip()
        self.client = XenditClient(str(settings["secret_key"]).strip(),
                                   str(settings.get("api_base") or DEFAULT_API_BASE),
                                   float(settings.get("timeout") or 15))

    def accepts(self, amount: Money) -> bool:
        if not super().accepts(amount):
            return False
        if amount.currency in WHOLE_UNIT_CURRENCIES:
            value = amount.to_decimal()
            return value == value.to_integral_value()
        return True

    # --- start ------------------------------------------------------------

    def start(self, order, return_url: str) -> PaymentAction:
        total = Money(order.amount, order.currency)
        if total.currency not in self.currencies:
            raise ValueError(f"{self.name} does not take {total.currency}")
        charge = self.client.create_charge({
            "reference_id": order_reference(order),
            "currency": total.currency,
            "amount": api_amount(total),
            "checkout_method": "ONE_TIME_PAYMENT",
            "channel_code": self.channel_code,
            "channel_properties": {"success_redirect_url": return_url,
                                   "failure_redirect_url": return_url},
        })
        charge_id = charge.get("id")
        if not isinstance(charge_id, str) or not CHARGE_ID.fullmatch(charge_id):
            raise XenditError(200, "BAD_RESPONSE", "charge without a valid id")
        if charge.get("status") not in ("PENDING", None):
            raise XenditError(200, "UNEXPECTED_STATUS", str(charge.get("status"))[:40])
        actions = charge.get("actions") or {}
        url = next((actions.get(key) for key in ("mobile_web_checkout_url",
                                                 "desktop_web_checkout_url",
                                                 "mobile_deeplink_checkout_url")
                    if _safe_url(actions.get(key))), None)
        if url is None:
            raise XenditError(200, "NO_CHECKOUT_URL", f"{self.channel_code} gave no checkout URL")
        return PaymentAction(kind="redirect", provider_ref=charge_id, url=url)

    # --- callbacks --------------------------------------------------------

    def verify(self, req) -> dict:
        """The callback's token, checked in constant time, then its JSON body."""
        given = req.headers.get(CALLBACK_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.callback_token.encode()):
            raise WebhookRejected("missing or wrong x-callback-token")
        if (req.content_length or 0) > MAX_BODY:
            raise WebhookRejected("body too large")
        try:
            body = json.loads(req.get_data(cache=True), parse_float=Decimal)
            if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
                raise ValueError("no data object")
            return body
        except ValueError as error:
            raise WebhookRejected(f"malformed callback: {error}") from None

    def parse_webhook(self, req) -> list[PaymentEvent]:
        body = self.verify(req)  # FIRST
        event, data = str(body.get("event", "")), body["data"]
        if not event.startswith("ewallet."):
            return []  # not about an e-wallet charge: acknowledged, nothing to do
        charge_id = data.get("charge_id") or data.get("id")
        if not isinstance(charge_id, str) or not CHARGE_ID.fullmatch(charge_id):
            raise WebhookRejected("callback names no e-wallet charge")
        callback_id = body.get("id")
        if callback_id is not None and not (isinstance(callback_id, str)
                                            and EVENT_ID.fullmatch(callback_id)):
            raise WebhookRejected("callback id must be a short identifier")
        try:
            charge = self.client.get_charge(charge_id)  # the API decides, not the callback
        except XenditError as error:
            if error.code == "DATA_NOT_FOUND" or error.status == 404:
                raise WebhookRejected("Xendit does not know this charge") from None
            raise  # 5xx/timeout: the webhook view answers 503 and Xendit retries
        if charge.get("channel_code") != self.channel_code:
            raise WebhookRejected(f"charge is for {charge.get('channel_code')!r}, "
                                  f"not {self.channel_code}; use /xendit/callback")
        result = self._event(charge, prefix=callback_id or charge_id)
        return [result] if result else []

    def _event(self, charge: dict, prefix: str) -> PaymentEvent | None:
        """What the charge as Xendit holds it means for our payment."""
        charge_id, status = charge.get("id"), str(charge.get("status", ""))
        if not isinstance(charge_id, str) or not CHARGE_ID.fullmatch(charge_id):
            raise XenditError(200, "BAD_RESPONSE", "charge without a valid id")
        currency = str(charge.get("currency", ""))
        paid = charge.get("capture_amount")
        if paid is None:
            paid = charge.get("charge_amount")
        amount = money_from_api(paid, currency) if paid is not None else None
        refunded = charge.get("refunded_amount") or 0
        if status in ("VOIDED", "REFUNDED") or (
                status == "SUCCEEDED" and paid and refunded and refunded >= paid):
            kind = "refunded"
        elif status == "SUCCEEDED":
            kind = "succeeded"
        elif status == "FAILED":
            kind = "failed"
        elif status == "PENDING":
            kind = "pending"
        else:
            log.warning("xendit charge %s has unknown status %r", charge_id, status[:40])
            return None
        return PaymentEvent(event_id=f"{prefix}:{kind}", kind=kind, payment_ref=charge_id,
                            amount=amount if kind == "succeeded" else None)

    # --- re-fetch and refund ----------------------------------------------

    def fetch_status(self, payment) -> PaymentEvent | None:
        if not payment.provider_ref:
            return None
        result = self._event(self.client.get_charge(payment.provider_ref),
                             prefix=payment.provider_ref)
        return None if result is None or result.kind == "pending" else result

    def refund(self, payment) -> PaymentEvent:
        total = Money(payment.amount, payment.currency)
        answer = self.client.refund_charge(payment.provider_ref, {
            "amount": api_amount(total), "reason": "REQUESTED_BY_CUSTOMER"})
        refund_id, status = str(answer.get("id", "")), str(answer.get("status", ""))
        if not EVENT_ID.fullmatch(refund_id):
            raise XenditError(200, "BAD_RESPONSE", "refund without a valid id")
        if status == "SUCCEEDED":
            return PaymentEvent(event_id=f"{refund_id}:refunded", kind="refunded",
                                payment_ref=payment.provider_ref)
        if status == "PENDING":  # the result comes later, by callback or fetch_status
            return PaymentEvent(event_id=f"{refund_id}:pending", kind="pending",
                                payment_ref=payment.provider_ref)
        raise XenditError(200, str(answer.get("failure_code") or "REFUND_FAILED"),
                          f"refund {status}")


def _safe_url(url) -> bool:
    """A checkout URL we may put in an href: http(s) only (never javascript:)."""
    return isinstance(url, str) and len(url) < 2048 and urlsplit(url).scheme in ("https", "http")


# --- the wallets -------------------------------------------------------------------
# Limits per Xendit's channel pages (major units): DANA Rp100-20,000,000; GCash
# PHP 1-100,000; TrueMoney THB 1-50,000; ZaloPay / Viettel Pay VND 1-50,000,000.
# Elsewhere the e-wallet charge reference gives the minimum (Rp100, PHP 1) and
# leaves the maximum to the wallet's holding limit.

def _wallet(cls_name, provider_id, name, channel, country, currency, low, high=None):
    digits = 100  # minor units per major unit for IDR, PHP and THB (ISO)
    if currency == "VND":
        digits = 1
    attrs = {"id": provider_id, "name": name, "channel_code": channel,
             "countries": frozenset({country}), "currencies": frozenset({currency}),
             "min_amount": {currency: low * digits},
             "max_amount": {currency: high * digits} if high else {}}
    return type(cls_name, (XenditEWallet,), attrs)


WALLETS = [
    _wallet("XenditDana", "xendit_dana", "DANA", "ID_DANA", "ID", "IDR", 100, 20_000_000),
    _wallet("XenditShopeePayID", "xendit_shopeepay", "ShopeePay", "ID_SHOPEEPAY", "ID", "IDR", 100),
    _wallet("XenditLinkAja", "xendit_linkaja", "LinkAja", "ID_LINKAJA", "ID", "IDR", 100),
    _wallet("XenditAstraPay", "xendit_astrapay", "AstraPay", "ID_ASTRAPAY", "ID", "IDR", 100),
    _wallet("XenditGCash", "xendit_gcash", "GCash", "PH_GCASH", "PH", "PHP", 1, 100_000),
    _wallet("XenditGrabPayPH", "xendit_grabpay_ph", "GrabPay", "PH_GRABPAY", "PH", "PHP", 1),
    _wallet("XenditMaya", "xendit_paymaya", "Maya", "PH_PAYMAYA", "PH", "PHP", 1),
    _wallet("XenditShopeePayPH", "xendit_shopeepay_ph", "ShopeePay", "PH_SHOPEEPAY", "PH", "PHP", 1),
    _wallet("XenditTrueMoney", "xendit_truemoney", "TrueMoney", "TH_TRUEMONEY", "TH", "THB", 1, 50_000),
    _wallet("XenditLinePay", "xendit_linepay", "LINE Pay", "TH_LINEPAY", "TH", "THB", 1),
    _wallet("XenditShopeePayTH", "xendit_shopeepay_th", "ShopeePay", "TH_SHOPEEPAY", "TH", "THB", 1),
    _wallet("XenditMomo", "xendit_momo", "MoMo", "VN_MOMO", "VN", "VND", 1),
    _wallet("XenditZaloPay", "xendit_zalopay", "ZaloPay", "VN_ZALOPAY", "VN", "VND", 1, 50_000_000),
    _wallet("XenditViettelPay", "xendit_viettelpay", "Viettel Pay", "VN_VIETTELPAY", "VN", "VND", 1,
            50_000_000),
    _wallet("XenditShopeePayVN", "xendit_shopeepay_vn", "ShopeePay", "VN_SHOPEEPAY", "VN", "VND", 1),
]
BY_CHANNEL = {cls.channel_code: cls for cls in WALLETS}


# --- the one callback URL Xendit's dashboard takes ---------------------------------

bp = Blueprint("xendit", __name__, url_prefix="/xendit")
bp.record_once(lambda state: state.app.extensions["csrf"].exempt(bp))


@bp.post("/callback")
def callback():
    """Verify the token, then hand the callback to its wallet's webhook endpoint
    (which verifies again, re-fetches the charge and applies the event)."""
    from topup.web.webhooks import receive

    providers = current_app.extensions["topup"].providers
    wallets = [p for p in providers.values() if isinstance(p, XenditEWallet)]
    if not wallets:
        return {"error": "unknown provider"}, 404
    try:
        body = wallets[0].verify(request)
    except WebhookRejected as rejected:
        log.warning("rejected xendit callback from %s: %s", request.remote_addr, rejected)
        return {"error": "rejected", "reason": str(rejected)}, 400
    if not str(body.get("event", "")).startswith("ewallet."):
        return {"ok": True, "outcomes": []}, 200
    cls = BY_CHANNEL.get(str(body["data"].get("channel_code", "")))
    provider = next((p for p in wallets if type(p) is cls), None)
    if provider is None:
        return {"error": "rejected", "reason": "wallet not enabled here"}, 400
    return receive(provider.id)


@hookimpl
def register_payment_providers():
    return WALLETS


@hookimpl
def register_blueprints():
    return [bp]
