"""A real SMTP server on loopback (aiosmtpd) for tests of e-mail: receipts,
operator alerts. Not started until start(); until then its port refuses
connections, which is how tests play "the mail server is down"."""
from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import socket

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A free loopback port (aiosmtpd's ready check cannot use port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """Keeps every message it is sent: (recipients, parsed message)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.delay = 0.0  # seconds each DATA takes: widens race windows
        self.controller = None

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(
            envelope.original_content, policy=email.policy.default)))
        return "250 OK"

    def start(self) -> Inbox:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def received(self) -> list[email.message.EmailMessage]:
        return [message for _, message in self.messages]

    def config(self) -> dict:
        """The app settings that send mail here."""
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": self.port, "SMTP_SECURITY": "none",
                "SMTP_TIMEOUT_SECONDS": 5}
