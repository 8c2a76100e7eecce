"""The one normalisation: the CLIP tokenizer's cleaning.

ftfy.fix_text, html.unescape twice, strip, collapse whitespace, lowercase: exactly what open_clip's
SimpleTokenizer does before BPE, so a corpus deduplicated on this form is deduplicated the way the
encoder sees it. Printable ASCII without '&' is left unchanged by ftfy and html.unescape, so it takes a
fast path (99.99% of real prompts); parity with open_clip is tested on both paths.
"""

from __future__ import annotations

import html
import re

PLAIN_ASCII = re.compile(r"[\x20-\x25\x27-\x7e]*")  # printable ASCII except '&'; the tokenizer shares it
_WHITESPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Clean `text` the way the CLIP tokenizer does (ftfy, html unescape x2, whitespace, lowercase)."""
    if PLAIN_ASCII.fullmatch(text):
        return " ".join(text.split()).lower()
    import ftfy

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()
