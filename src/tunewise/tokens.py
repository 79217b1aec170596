"""Words in any script: the one tokenizer of text metrics, content words and near-duplicates.

Scripts written with spaces (Latin, Cyrillic, Greek, Arabic, Hebrew, Devanagari, ...) give runs of
letters and digits, combining marks kept inside the word; Arabic's optional vowel marks are dropped
so a vocalised and a plain spelling are one word. Chinese, Japanese and Korean put no spaces
between words (Korean spaces phrases, not words): each character is a word, the character-level
reading that CJK metrics use without a segmenter. Thai writes no spaces either: each character
cluster (a consonant with its vowel and tone marks) is a word, so a mark never stands alone. Text is
casefolded and NFKC-normalised (full-width digits and letters become ordinary ones); apostrophes are
dropped first so "don't" == "dont"; other punctuation separates words.
"""

from __future__ import annotations

import re
import string
import unicodedata

_ONE_CHAR = ("\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
             "\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
             "\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff")  # CJK, kana, Hangul; Lao, Myanmar, Khmer
_THAI_BASE = "\u0e01-\u0e30\u0e32\u0e33\u0e3f-\u0e46\u0e4f-\u0e5b"
_THAI_MARK = "\u0e31\u0e34-\u0e3a\u0e47-\u0e4e"
_MARKS = ("\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u06d6-\u06ed\u0900-\u0903\u093a-\u094f"
          "\u0951-\u0957\u0962\u0963\u0981-\u0983\u09bc-\u09d7")
_TOKEN = re.compile(rf"[{_ONE_CHAR}]|[{_THAI_BASE}][{_THAI_MARK}]*|[{_THAI_MARK}]+"
                    rf"|(?:(?![{_ONE_CHAR}\u0e00-\u0e7f])[^\W_]|[{_MARKS}])+")
_ARABIC_VOWELS = re.compile("[\u064b-\u065f\u0670]")
_ASCII = str.maketrans({**{c: " " for c in string.punctuation}, "'": None})


def words(text: str | None) -> list[str]:
    """The words of a text in any script (see the module docstring)."""
    text = text or ""
    if text.isascii():  # the same words as the regex, three times faster
        return text.lower().translate(_ASCII).split()
    text = unicodedata.normalize("NFKC", text).casefold().replace("'", "").replace("\u2019", "")
    return _TOKEN.findall(_ARABIC_VOWELS.sub("", text))


class RougeTokenizer:
    """``words`` in the shape rouge_score's scorer takes (its own keeps ASCII letters only)."""

    def tokenize(self, text: str) -> list[str]:
        return words(text)
