"""PII: validated numbers only, typed placeholders, no overlapping findings."""

from __future__ import annotations

import pytest

from tunewise.data.pii import find_pii, iban_ok, luhn_ok, redact


def _types(text: str) -> list[tuple[str, str]]:
    return [(s.type, text[s.start : s.end]) for s in find_pii(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("mail j.doe+x@mail.example.co.uk now", [("email", "j.doe+x@mail.example.co.uk")]),
    ("card 4111-1111-1111-1111.", [("credit_card", "4111-1111-1111-1111")]),
    ("iban DE89370400440532013000 ok", [("iban", "DE89370400440532013000")]),
    ("ssn 078-05-1120", [("ssn", "078-05-1120")]),
    ("from 10.0.0.255 at", [("ip_address", "10.0.0.255")]),
    ("call (415) 555-0123", [("phone", "(415) 555-0123")]),
    ("token ghp_" + "a" * 36, [("secret", "ghp_" + "a" * 36)]),
    ("-----BEGIN RSA PRIVATE KEY-----", [("secret", "-----BEGIN RSA PRIVATE KEY-----")]),
    ("sk-proj-abcdefghijklmnopqrstuvwx", [("secret", "sk-proj-abcdefghijklmnopqrstuvwx")]),
])
def test_positives(text, expected):
    assert _types(text) == expected


@pytest.mark.parametrize("text", [
    "order 4111111111111112 shipped",  # 16 digits, fails Luhn
    "iban GB82 WEST 1234 5698 7654 33",  # checksum off by one
    "ssn 000-12-3456 and 666-12-3456",  # never issued
    "version 1.2.3.4.5 and 300.1.1.1",  # not an IPv4 address
    "on 2024-01-15 at 10:30, total $1,234.56, ticket 123456",
    "",
])
def test_negatives(text):
    assert find_pii(text) == []


def test_validators():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB82WEST")


def test_card_next_to_a_phone_number_is_still_found():
    text = "call (917) 585-7785 3794 9950 3686 8656 now"
    assert ("credit_card", "3794 9950 3686 8656") in _types(text)


def test_redact_uses_typed_placeholders():
    text = "a@b.io paid with 4111 1111 1111 1111 from 8.8.8.8"
    assert redact(text) == "[EMAIL] paid with [CREDIT_CARD] from [IP_ADDRESS]"
