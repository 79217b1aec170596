"""Whether a text can still become a JSON document, and the shortest text that completes it: what
the decode engine needs to keep an answer JSON while it is decoded (``response_format``).

:func:`json_prefix` scans the text once: a stack of open objects and arrays, where inside a value
it is (a string and its escapes, a number's grammar, a literal), and what may come next. The
completion it returns closes what is open with the fewest characters (``0`` for a missing value,
``"":0`` for a missing key), so an answer with ``k`` tokens of budget left can always be closed if
the completion is at most ``k`` characters long (every one of them is a token of its own in a
byte-level vocabulary).
"""

from __future__ import annotations

from typing import NamedTuple

WS = " \t\n\r"
DIGITS = "0123456789"
HEX = "0123456789abcdefABCDEF"
ESCAPES = '"\\/bfnrtu'
LITERALS = {"t": "true", "f": "false", "n": "null"}
# A number's states: the ones a number may end in, and what each needs to be whole.
NUMBER_ENDS = {"zero", "int", "frac", "exp"}
NUMBER_NEEDS = {"sign": "0", "dot": "0", "e": "0", "esign": "0"}


class Prefix(NamedTuple):
    ok: bool  # some JSON document starts with the text
    complete: bool  # the text is a whole document (its top-level object or array is closed)
    closer: str  # the shortest text that makes it whole ("" when complete)


BAD = Prefix(False, False, "")


def json_prefix(text: str, top: str = "{[") -> Prefix:
    """Scan ``text`` as the start of a JSON document whose top-level value opens with one of the
    characters of ``top`` (``"{"``: an object)."""
    stack: list[str] = []  # "{" or "["
    state = "top"  # top, value, first (after "[": a value or "]"), key_or_end, key, colon, after, done
    string = None  # while in a string: "key" or "value"
    escape = 0  # in a string: 0, or 1 after a backslash, or 2..5 in a \u escape (hex digits still due + 1)
    number = None  # while in a number: its state
    literal = ""  # while in a literal: what is still due
    for c in text:
        if string is not None:
            if escape == 1:
                if c not in ESCAPES:
                    return BAD
                escape = 5 if c == "u" else 0
            elif escape > 1:
                if c not in HEX:
                    return BAD
                escape = 0 if escape == 2 else escape - 1
            elif c == "\\":
                escape = 1
            elif c == '"':
                state, string = ("colon" if string == "key" else "after"), None
            elif c < " ":  # control characters must be escaped
                return BAD
            continue
        if literal:
            if c != literal[0]:
                return BAD
            literal = literal[1:]
            if not literal:
                state = "after"
            continue
        if number is not None:
            step = _number(number, c)
            if step is not None:
                number = step
                continue
            if number not in NUMBER_ENDS:
                return BAD
            number, state = None, "after"  # and c is read as what follows the number
        if c in WS:
            continue
        if state == "done":
            return BAD
        if state in ("top", "value", "first"):
            if state == "top" and c not in top:
                return BAD
            if c == "]" and state == "first":
                stack.pop()
                state = _closed(stack)
            elif c in "{[":
                stack.append(c)
                state = "key_or_end" if c == "{" else "first"
            elif c == '"':
                string = "value"
            elif c in DIGITS or c == "-":
                number = "sign" if c == "-" else "zero" if c == "0" else "int"
            elif c in LITERALS:
                literal = LITERALS[c][1:]
            else:
                return BAD
        elif state in ("key_or_end", "key"):
            if c == '"':
                string = "key"
            elif c == "}" and state == "key_or_end":
                stack.pop()
                state = _closed(stack)
            else:
                return BAD
        elif state == "colon":
            if c != ":":
                return BAD
            state = "value"
        elif state == "after":
            if c == ",":
                state = "key" if stack[-1] == "{" else "value"
            elif c == ("}" if stack[-1] == "{" else "]"):
                stack.pop()
                state = _closed(stack)
            else:
                return BAD
    if state == "done":
        return Prefix(True, True, "")
    closer = ""
    if string is not None:
        closer += ("0" * (escape - 1) if escape > 1 else "n" if escape == 1 else "") + '"'
        state = "colon" if string == "key" else "after"
    elif literal:
        closer, state = literal, "after"
    elif number is not None:
        closer, state = NUMBER_NEEDS.get(number, ""), "after"
    closer += {"top": "{}" if "{" in top else "[]", "value": "0", "key": '"":0', "colon": ":0"}.get(state, "")
    closer += "".join("}" if s == "{" else "]" for s in reversed(stack))
    return Prefix(True, False, closer)


def _closed(stack: list[str]) -> str:
    return "after" if stack else "done"


def _number(state: str, c: str) -> str | None:
    """A number's state after ``c``, or None if ``c`` does not continue it."""
    if c in DIGITS:
        return {"sign": "zero" if c == "0" else "int", "int": "int", "dot": "frac", "frac": "frac",
                "e": "exp", "esign": "exp", "exp": "exp"}.get(state)
    if c == "." and state in ("zero", "int"):
        return "dot"
    if c in "eE" and state in ("zero", "int", "frac"):
        return "e"
    if c in "+-" and state == "e":
        return "esign"
    return None
