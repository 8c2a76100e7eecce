"""The one normalisation equals open_clip's tokenizer cleaning, on the fast ASCII path and the ftfy path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anatomy.corpus.normalize import normalize

ADVERSARIAL = [
    "White Dog",
    "  the man   in the red\tshirt \n on the left ",
    "caf\u00e9 cr\u00e8me",
    "na\u00efve",
    "\U0001f436 dog \U0001f1fa\U0001f1f8",
    "\u72ac and \u0441\u043e\u0431\u0430\u043a\u0430",
    "R&amp;D lab",
    "&lt;b&gt;bold&lt;/b&gt;",
    "&amp;amp;",
    "tom &amp; jerry",
    "it\u2019s a \u201cquote\u201d",
    "don't",
    "ctrl\x00char\x07s\x1b[31m",
    "\u00c3\u00a9t\u00e9 mojibake",
    "\ufb01ne ligature",
    "\uff37\uff49\uff44\uff45",
    "",
    "   ",
    "\t\n",
    "A" * 500,
    "a & b",
    "line\r\nbreak",
]


def reference(text: str) -> str:
    from open_clip.tokenizer import _clean_lower

    return _clean_lower(text)


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_matches_open_clip_cleaning(text):
    assert normalize(text) == reference(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_matches_open_clip_on_random_text(text):
    assert normalize(text) == reference(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=40))
def test_matches_open_clip_on_random_ascii(text):
    assert normalize(text) == reference(text)
