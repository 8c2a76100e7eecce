"""The vectorised CLIP tokenizer path (anatomy.bpe_batch, ClipBPE.piece_table, encode_flat) against open_clip
and the one-piece-at-a-time BPE, on edge cases and on merges files other than open_clip's own."""

from __future__ import annotations

import functools
import gzip
import random

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anatomy.bpe_batch import RankTable, batch_merge, ragged_sums, ragged_take
from anatomy.clip_bpe import FIRST_MERGE_ID, N_MERGES, ClipBPE, merges_path
from anatomy.corpus.normalize import PLAIN_ASCII
from anatomy.errors import InputError
from anatomy.tokenizer import ClipTokenizer, not_plain

TEXTS = [
    "a photo of a dog",
    "",
    "   ",
    "the  man's   dog's ball, it'll 3d! 1,000",
    "naïve café façade 😀 犬",
    "&amp; tom &lt;3 jerry",
    "<start_of_text> hi <end_of_text>",
    "aaaaaaa ssss llllllllllll zzzzqqqq",
    "a" * 100 + " " + "xyz" * 30,
    "x\x00y\tz\x7f",
]


@pytest.fixture(scope="module")
def reference():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def _unflatten(flat, offsets) -> list[list[int]]:
    return [flat[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def test_ragged_take_and_sums_known_answers():
    flat, starts, lens = np.array([7, 8, 9, 5]), np.array([3, 0, 2]), np.array([1, 2, 0])
    got, got_lens = ragged_take(flat, starts, lens, np.array([1, 0, 2, 1]))
    assert got.tolist() == [7, 8, 5, 7, 8] and got_lens.tolist() == [2, 1, 0, 2]
    empty, empty_lens = ragged_take(flat, starts, lens, np.array([], dtype=np.int64))
    assert empty.size == 0 and empty_lens.size == 0
    assert ragged_sums(np.array([1, 2, 3, 4]), np.array([2, 0, 1, 1])).tolist() == [3, 0, 3, 4]


def test_rank_table_edge_cases():
    keys = np.array([5, 5 + (1 << 20), 7, 2**32 - 2], dtype=np.int64)  # keys, some sharing a home slot
    table = RankTable(keys, missing=99)
    assert table.rank(keys).tolist() == [0, 1, 2, 3]
    assert table.rank(np.array([6, 2**32 - 1, 0])).tolist() == [99, 99, 99]  # the free-slot key included
    assert RankTable(np.array([], dtype=np.int64), missing=3).rank(np.array([1, 2])).tolist() == [3, 3]


def test_batch_merge_of_nothing_and_of_single_ids():
    table = RankTable(np.array([(1 << 16) + 2]), missing=1)  # one merge: (1, 2) -> FIRST_MERGE_ID
    flat, starts, lens = batch_merge(
        np.array([1, 2, 1, 2, 1, 2, 2]), np.array([1, 3, 3]), table, FIRST_MERGE_ID
    )
    got = [flat[s : s + n].tolist() for s, n in zip(starts, lens, strict=True)]
    assert got == [[1], [2, FIRST_MERGE_ID], [FIRST_MERGE_ID, 2]]
    flat, starts, lens = batch_merge(np.array([], dtype=np.int64), np.array([], dtype=np.int64), table, 512)
    assert flat.size == starts.size == lens.size == 0


@functools.cache
def _bpe() -> ClipBPE:
    return ClipBPE()


_PIECE = st.lists(st.sampled_from(list("aaeessllnnttrrxq") + ["é", "ß", "犬", "😀"]), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None)
@given(st.lists(_PIECE.map("".join), min_size=1, max_size=80))
def test_piece_table_equals_the_list_bpe(pieces):
    bpe = _bpe()
    expected = []
    for piece in pieces:
        done, ids = bpe._start(piece)
        expected.append(ids if done else bpe._merge(ids))
    assert bpe.many_piece_ids(pieces) == expected


def test_plain_byte_test_equals_normalize_fast_path():
    chars = [chr(c) for c in range(0x300)] + ["😀", "\u2028", "\ufeff", "\U0010ffff"]
    texts = pa.array(["ok", *(f"a{c}b" for c in chars), ""], pa.large_string())
    odd = [1 + i for i, c in enumerate(chars) if not PLAIN_ASCII.fullmatch(c)]
    assert len(odd) == len(chars) - 94 and not_plain(texts).tolist() == odd  # 94: 0x20-0x7e but '&'
    assert not_plain(texts.slice(1)).tolist() == [i - 1 for i in odd]


def test_encode_flat_edge_cases_match_open_clip(reference):
    for texts in ([], [""], [""] * 300, TEXTS, TEXTS * 30):
        flat, offsets = ClipTokenizer().encode_flat(texts)
        assert flat.dtype == np.int32 and offsets.tolist()[0] == 0 and offsets[-1] == flat.size
        assert _unflatten(flat, offsets) == [reference.encode(t) for t in texts]
    column = pa.array(["pad"] + TEXTS, pa.string()).slice(1)  # another string type, an offset slice
    assert _unflatten(*ClipTokenizer().encode_flat(column)) == [reference.encode(t) for t in TEXTS]


def test_batch_results_reach_the_chunk_cache(reference):
    rng = random.Random(5)
    words = ["".join(rng.choices("abcdefghij", k=rng.randint(2, 9))) for _ in range(300)]
    first = [" ".join(rng.choices(words, k=4)) + rng.choice(["", "'s", "!"]) for _ in range(400)]
    second = [" ".join(rng.choices(words, k=3)) + " zq" * rng.randint(0, 2) for _ in range(400)]
    tok = ClipTokenizer()
    assert _unflatten(*tok.encode_flat(first)) == [reference.encode(t) for t in first]
    assert tok._pending and not tok._chunks  # the chunk table waits for a lookup that needs it
    assert tok.encode_one(first[0]) == reference.encode(first[0])
    assert not tok._pending and len(tok._chunks) > 300  # moved into the cache by the first miss
    # cached and new chunks together
    assert _unflatten(*tok.encode_flat(second + first)) == [reference.encode(t) for t in second + first]
    assert tok.encode(second) == [reference.encode(t) for t in second]
    again = ClipTokenizer()  # two batch calls in a row: the second finds the first's chunks pending
    again.encode_flat(first)
    assert _unflatten(*again.encode_flat(second + first)) == [reference.encode(t) for t in second + first]
    assert len(again._pending) == 1 and len(again._chunks) > 300


def _merges_lines() -> list[bytes]:
    return gzip.decompress(merges_path().read_bytes()).split(b"\n")


def _write(tmp_path, lines: list[bytes], name: str = "merges.txt.gz"):
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"\n".join(lines), compresslevel=1))
    return path


@pytest.mark.parametrize("change", ["header", "repeat"])
def test_other_merges_files_match_open_clip(tmp_path, change):
    """Another header: not the verified file, so no whole-word shortcut (everything is merged in the batch).
    A repeated merge: repeated symbols, so no heap or batch BPE (one piece at a time, the last symbol wins)."""
    from open_clip.tokenizer import SimpleTokenizer

    lines = _merges_lines()
    if change == "header":
        lines[0] = b"#version: 0.2 (a copy)"
    else:
        lines[N_MERGES] = lines[N_MERGES - 5]  # the last merge repeats an earlier one
    path = _write(tmp_path, lines)
    ours, reference = ClipTokenizer(path), SimpleTokenizer(bpe_path=str(path))
    assert not ours.bpe.whole_words and ours.bpe.heap_exact == (change == "header")
    texts = TEXTS * 30 + ["photograph of a tabby cat", "refrigerators"] * 200
    assert _unflatten(*ours.encode_flat(texts)) == [reference.encode(t) for t in texts]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda lines: [line + b"\r" for line in lines], "not a CLIP BPE merges file"),
        (lambda lines: lines[:1] + [b"\xff\xfe b"] + lines[2:], "not UTF-8"),
        (lambda lines: lines[:1] + ["€€ x".encode()] + lines[2:], "no symbol of the vocabulary"),
        (lambda lines: lines[:1] + [b"ab"] + lines[2:], "not a CLIP BPE merges file"),
    ],
)
def test_damaged_merges_files_are_clear_errors(tmp_path, damage, message):
    with pytest.raises(InputError, match=message):
        ClipBPE(_write(tmp_path, damage(_merges_lines())))
