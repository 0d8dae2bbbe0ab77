"""Offline QR and bank-transfer payment methods: Pix, PromptPay, QRIS, UPI, SEPA."""
