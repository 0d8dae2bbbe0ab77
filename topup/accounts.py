"""What a well-formed account id looks like, per kind of product.

Checked before any backend is asked, so a typo never costs a lookup.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l


class AccountIdInvalid(ValueError):
    pass


@dataclass(frozen=True)
class AccountKind:
    label: object
    placeholder: str
    pattern: re.Pattern
    rule: object  # shown when the pattern does not match
    strip_prefix: str = ""

    def normalise(self, raw: str) -> str:
        """The canonical id, or AccountIdInvalid with a message for the buyer."""
        value = (raw or "").strip()
        if self.strip_prefix and value.startswith(self.strip_prefix):
            value = value[len(self.strip_prefix):]
        value = value.lower()
        if not value:
            raise AccountIdInvalid(_l("Enter a username."))
        if not self.pattern.fullmatch(value):
            raise AccountIdInvalid(self.rule)
        if value.endswith("."):
            raise AccountIdInvalid(_l("Usernames can't end with a period."))
        return value


KINDS = {
    "tiktok": AccountKind(
        label=_l("TikTok username"),
        placeholder="@username",
        pattern=re.compile(r"[a-z0-9_.]{2,24}"),
        rule=_l("Usernames are 2–24 letters, digits, _ or ."),
        strip_prefix="@",
    ),
}
