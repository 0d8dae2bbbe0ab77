"""Account ids are normalised and checked before any backend is asked."""
from __future__ import annotations

import pytest

from topup.accounts import KINDS, AccountIdInvalid

TIKTOK = KINDS["tiktok"]
RULE = "Usernames are 2–24 letters, digits, _ or ."


def refusal(raw) -> str:
    with pytest.raises(AccountIdInvalid) as info:
        TIKTOK.normalise(raw)
    return str(info.value.args[0])


@pytest.mark.parametrize("raw, expected", [
    ("demo_user", "demo_user"),
    ("@demo_user", "demo_user"),
    ("@Maria.Santos", "maria.santos"),
    ("DEMO_USER", "demo_user"),
    ("  @Demo.User  ", "demo.user"),
    ("\t@ab\n", "ab"),
    ("ab", "ab"),
    ("a" * 24, "a" * 24),
    ("@" + "a" * 24, "a" * 24),  # the @ does not count
    ("user_123.x", "user_123.x"),
    ("123", "123"),
    (".dot_first", ".dot_first"),
])
def test_normalise_accepts(raw, expected):
    assert TIKTOK.normalise(raw) == expected


@pytest.mark.parametrize("raw", [
    "a", "@a", "a" * 25, "@" + "a" * 25, "bad name!", "user-name", "user name", "mañana",
    "@@user", "user@home", "emoji🙂", "tab\tinside", "DROP TABLE;", "ü" * 3, "a\u200bb",
])
def test_normalise_refuses_with_the_rule(raw):
    assert refusal(raw) == RULE


@pytest.mark.parametrize("raw", ["", "   ", "@", " @ ", None])
def test_normalise_asks_for_a_username_when_empty(raw):
    assert refusal(raw) == "Enter a username."


@pytest.mark.parametrize("raw", ["name.", "@Name.", "ab.", "a_b.c."])
def test_a_trailing_period_is_refused(raw):
    assert refusal(raw) == "Usernames can't end with a period."
