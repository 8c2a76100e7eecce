"""Pathological prompt lengths: the heap BPE used for long pieces gives exactly the ids of the list BPE and of
open_clip's SimpleTokenizer, on random and on long words."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anatomy.tokenizer import HEAP_BPE_FROM, ClipTokenizer


@pytest.fixture(scope="module")
def tok():
    return ClipTokenizer()


@pytest.fixture(scope="module")
def reference():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def _byte_ids(bpe, word: str) -> list[int]:
    ids = [bpe.byte_id[b] for b in word.encode("utf-8")]
    ids[-1] += 256
    return ids


def test_merges_file_allows_the_heap_bpe(tok):
    assert tok.bpe.heap_exact  # every merge joins tokens made before it


# Letters that form many merges (and repeats: "aaaa", "ssss"), plus multi-byte characters.
_LETTERS = st.sampled_from(list("aaeeiioonnrrsstthhllmmccdduupbgkwyvxzqjf") + ["é", "ß", "ж", "犬", "ø"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_LETTERS, min_size=1, max_size=300).map("".join))
def test_heap_bpe_equals_list_bpe_on_random_words(tok, word):
    bpe = tok.bpe
    ids = _byte_ids(bpe, word)
    assert bpe._merge_heap(ids[:]) == bpe._merge(ids[:])


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=200))
def test_heap_bpe_equals_list_bpe_on_any_bytes(tok, text):
    bpe = tok.bpe
    ids = _byte_ids(bpe, text)
    assert bpe._merge_heap(ids[:]) == bpe._merge(ids[:])


@pytest.mark.parametrize("seed", range(3))
def test_long_words_match_open_clip(tok, reference, seed):
    """Words of a few thousand characters (heap path) against open_clip's own BPE, through encode."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz" if seed < 2 else "aab"  # and a highly repetitive one
    word = "".join(rng.choices(alphabet, k=3000))
    assert len(word) >= HEAP_BPE_FROM
    text = f"a {word} photo"
    assert ClipTokenizer().encode([text])[0] == reference.encode(text)


def test_a_long_word_gives_the_same_ids_as_the_list_bpe(tok):
    rng = random.Random(7)
    word = "".join(rng.choices("etaoinshrdlu", k=20_000))
    ids = _byte_ids(tok.bpe, word)
    assert tok.bpe.piece_ids(word) == tok.bpe._merge(ids)
