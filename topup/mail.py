"""Sending e-mail through the operator's SMTP server (settings SMTP_*).

One small function on the standard library: receipts, operator alerts and any
plugin share it. No SMTP_HOST: mail is switched off and send() says so.
"""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from flask import current_app


class MailNotConfigured(Exception):
    """SMTP_HOST is not set."""


def enabled() -> bool:
    return bool(current_app.config.get("SMTP_HOST"))


def send(to: str, subject: str, text: str, html: str | None = None,
         headers: dict | None = None) -> str:
    """Send one message (plain text, with an HTML alternative if given); returns
    its Message-ID. Raises smtplib/OSError on failure, for the caller to retry."""
    config = current_app.config
    if not enabled():
        raise MailNotConfigured("SMTP_HOST is not set")
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    headers = dict(headers or {})  # a caller's stable Message-ID lets mail clients spot a resend
    message["Message-ID"] = headers.pop("Message-ID", None) or make_msgid(
        domain=config["MAIL_FROM"].rpartition("@")[2].strip(">") or None)
    for name, value in headers.items():
        message[name] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    security = config["SMTP_SECURITY"]  # "starttls", "tls" or "none"
    context = ssl.create_default_context()
    smtp_class = smtplib.SMTP_SSL if security == "tls" else smtplib.SMTP
    kwargs = {"context": context} if security == "tls" else {}
    with smtp_class(config["SMTP_HOST"], config["SMTP_PORT"],
                    timeout=config["SMTP_TIMEOUT_SECONDS"], **kwargs) as smtp:
        if security == "starttls":
            smtp.starttls(context=context)
        if config.get("SMTP_USERNAME"):
            smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"])
        smtp.send_message(message)
    return message["Message-ID"]
