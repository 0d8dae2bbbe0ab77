"""Xendit e-wallets (DANA, ShopeePay, GCash, Maya, GrabPay, MoMo, TrueMoney...):
one payment method per wallet, all sharing one plain-HTTP client (no SDK)."""
from topup_plugins.xendit.ewallet import register_blueprints, register_payment_providers

__all__ = ["register_blueprints", "register_payment_providers"]
