"""Find and redact personal data and secrets with patterns plus validation.

Numbers are validated, not just matched: a card number must pass Luhn, an IBAN its mod-97
checksum, an SSN the SSA's never-issued rules, an IPv4 address must have octets <= 255. A
16-digit order number that fails Luhn is not a card. Where spans overlap, the more specific type
wins (a card number is not also reported as a phone number).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

PII_TYPES = ("email", "phone", "credit_card", "iban", "ssn", "ip_address", "secret")
PLACEHOLDERS = {t: f"[{t.upper()}]" for t in PII_TYPES}


@dataclass(frozen=True)
class Span:
    type: str
    start: int
    end: int


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    code = text.replace(" ", "").upper()
    if not 15 <= len(code) <= 34:
        return False
    moved = code[4:] + code[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _card(match: str) -> bool:
    digits = re.sub(r"[ -]", "", match)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone(match: str) -> bool:
    groups = match.split()
    # Space-separated groups of four digits are account or card fragments, not phone numbers.
    if len(groups) > 2 and all(len(g) == 4 and g.isdigit() for g in groups):
        return False
    return 9 <= sum(ch.isdigit() for ch in match) <= 15


# The order is the priority on overlaps: the most specific, validated types first.
PATTERNS: list[tuple[str, re.Pattern, Callable[[str], bool] | None]] = [
    ("secret", re.compile(
        r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"
        r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key id
        r"|\bgh[pousr]_[A-Za-z0-9]{36}\b|\bgithub_pat_[A-Za-z0-9_]{60,}"  # GitHub tokens
        r"|\bxox[baprs]-[A-Za-z0-9-]{10,}"  # Slack
        r"|\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}"  # OpenAI-style keys
        r"|\b[rs]k_live_[A-Za-z0-9]{16,}"  # Stripe
        r"|\bAIza[0-9A-Za-z_-]{35}"  # Google API key
        r"|\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"  # JWT
    ), None),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), None),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), iban_ok),
    ("credit_card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card),
    ("ssn", re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"), None),
    ("ip_address", re.compile(
        r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.]|\.\d)"), None),
    # Separators are required between groups, so bare digit runs (ids, amounts) are not phones.
    ("phone", re.compile(
        r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?![\w-]|\.\d)"), _phone),
]

_DIGIT_OR_AT = re.compile(r"[\d@]")
_SECRET_HINTS = ("-----BEGIN", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox",
                 "sk-", "k_live_", "AIza", "eyJ")


def _worth_trying(name: str, text: str) -> bool:
    """Cheap substring tests that rule a pattern out before its (slower) regex runs."""
    if name == "secret":
        return any(h in text for h in _SECRET_HINTS)
    if name == "email":
        return "@" in text
    return True


def find_pii(text: str) -> list[Span]:
    """Every validated finding in ``text``, by start offset, without overlaps."""
    # Most rows hold no digit, no @ and no key prefix: skip them with one character-class scan.
    if not text or not (_DIGIT_OR_AT.search(text) or any(h in text for h in _SECRET_HINTS)):
        return []
    found: list[Span] = []
    taken: list[tuple[int, int]] = []
    for name, pattern, valid in PATTERNS:
        if not _worth_trying(name, text):
            continue
        pos = 0
        while m := pattern.search(text, pos):
            if valid is not None and not valid(m.group()):
                # A failed candidate (a card number run into a phone number) must not hide a valid
                # match that starts inside it, so search again from the next character.
                pos = m.start() + 1
                continue
            pos = m.end()
            s, e = m.span()
            if not any(s < te and ts < e for ts, te in taken):
                taken.append((s, e))
                found.append(Span(name, s, e))
    return sorted(found, key=lambda sp: sp.start)


def redact(text: str, spans: list[Span] | None = None) -> str:
    """Replace each finding with its typed placeholder, e.g. ``[EMAIL]``."""
    spans = find_pii(text) if spans is None else spans
    for sp in sorted(spans, key=lambda sp: sp.start, reverse=True):
        text = text[: sp.start] + PLACEHOLDERS[sp.type] + text[sp.end :]
    return text
