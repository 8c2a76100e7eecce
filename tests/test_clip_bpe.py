"""The batched CLIP BPE (numpy, one rank round for all pieces at a time) against the per-piece BPE."""

from __future__ import annotations

import gzip
import random

import numpy as np
import pytest

from anatomy.bpe_batch import RankTable
from anatomy.clip_bpe import HEAP_BPE_FROM, N_MERGES, ClipBPE
from anatomy.errors import InputError
from anatomy.tokenizer import ClipTokenizer


@pytest.fixture(scope="module")
def bpe():
    return ClipBPE()


def _one_by_one(bpe, piece):
    """The per-piece path with the list BPE only (open_clip's rank-by-rank passes, no heap, no batch)."""
    done, ids = bpe._start(piece)
    return ids if done else bpe._merge(ids)


def test_batch_equals_per_piece_bpe_on_random_and_adversarial_pieces(bpe):
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz" * 3 + "éüß漢字😀'-0123456789!?.,"
    pieces = ["".join(rng.choices(alphabet, k=rng.randint(1, 70))) for _ in range(4000)]
    # runs of one pair (x x x: the first two merge), a long piece (heap path), specials, whole words, bytes
    pieces += ["aaaaaaa", "ssss", "lll" * 9, "a" * (HEAP_BPE_FROM - 1), "ab" * 40, "<start_of_text>"]
    pieces += ["dog", "photograph", "\x00\x01", "\u00ad", "zzzzqqqq"]
    got = bpe.many_piece_ids(pieces)
    assert got == [_one_by_one(bpe, p) for p in pieces]
    assert got == [bpe.piece_ids(p) for p in pieces]


def test_rank_table_finds_every_merge_and_no_other_pair(bpe):
    keys = bpe.merge_left * (1 << 16) + bpe.merge_right
    table = RankTable(keys, N_MERGES)
    assert (table.rank(keys) == np.arange(N_MERGES)).all()
    pairs = np.random.default_rng(0).integers(0, 49408, (20000, 2))  # mostly not merges, a few are
    expected = [bpe.pair_rank.get((int(a), int(b)), N_MERGES) for a, b in pairs]
    assert table.rank(pairs[:, 0] * (1 << 16) + pairs[:, 1]).tolist() == expected


def test_encode_flat_batch_path_equals_per_text_encoding():
    # Many new words for the batched BPE, with repeats and non-ASCII texts.
    rng = random.Random(3)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 12))) for _ in range(400)]
    texts = [
        " ".join(rng.choices(words, k=rng.randint(1, 6))) + rng.choice(["", "'s", " 3d", "!", " café"])
        for _ in range(600)
    ]
    flat, offsets = ClipTokenizer().encode_flat(texts)
    one = ClipTokenizer()
    assert [flat[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)] == [
        one.encode_one(t) for t in texts
    ]


def test_malformed_merges_file_is_a_clear_error(tmp_path):
    path = tmp_path / "merges.txt.gz"
    path.write_bytes(gzip.compress(b"#version: 0.2\nab c\nd\n"))
    with pytest.raises(InputError, match="not a CLIP BPE merges file"):
        ClipBPE(path)
