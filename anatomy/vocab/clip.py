"""CLIP BPE restricted to the tokens a workload uses: exact on its words, byte fallback everywhere else.

Kept: the 512 byte-level base tokens (each byte, alone and word-final), the two specials, and the closure
of the merges that tokenizing the corpus applied. Every merge application joins exactly the pair that
defines its product, so the merges applied to a word are the decomposition trees of its final tokens.
BPE that applies only kept merges, in the original rank order, therefore repeats the full tokenizer's
steps on every corpus word (at each step the full BPE's best merge is kept, hence also the best kept one)
and on any other word stops at kept pieces, down to bytes: no id is ever unknown.

New ids are dense and follow the original order, so the byte tokens keep ids 0..511 (pad stays 0) and
the specials are the last two, as in CLIP.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from anatomy.corpus.normalize import normalize
from anatomy.tokenizer import (
    CLIP_SPECIALS,
    CLIP_VOCAB_SIZE,
    END_OF_WORD,
    FIRST_MERGE_ID,
    HEAP_BPE_FROM,
    ClipBPE,
    ClipTokenizer,
    clip_tokenizer,
)
from anatomy.vocab.ids import KeptIds

N_BASE = FIRST_MERGE_ID  # 256 bytes and their 256 word-final forms
SPECIAL_IDS = (CLIP_VOCAB_SIZE - 2, CLIP_VOCAB_SIZE - 1)


@functools.lru_cache(maxsize=4)
def merge_parts(bpe: ClipBPE) -> np.ndarray:
    """[n_merges, 2] original ids of the two parts of each merge, by rank (merge r makes id 512 + r)."""
    parts = np.zeros((len(bpe.pair_rank), 2), dtype=np.int64)
    for (a, b), rank in bpe.pair_rank.items():
        parts[rank] = (a, b)
    return parts


def clip_closure(used: Iterable[int], parts: np.ndarray) -> np.ndarray:
    """Sorted original ids: the used ids, every part of every merge that made them, the base and specials."""
    kept = set(range(N_BASE)) | set(SPECIAL_IDS)
    stack = [int(i) for i in used]
    while stack:
        token = stack.pop()
        if token in kept:
            continue
        kept.add(token)
        if FIRST_MERGE_ID <= token < SPECIAL_IDS[0]:
            stack.extend(int(p) for p in parts[token - FIRST_MERGE_ID])
    return np.array(sorted(kept), dtype=np.int64)


class _KeptBPE(ClipBPE):
    """ClipBPE over the kept tokens only: piece_ids returns new (dense) ids; merges run in original ids."""

    def __init__(self, full: ClipBPE, kept: np.ndarray):  # noqa: D107 - no file to read: shares `full`
        self.full = full
        self.sha256 = full.sha256
        self.byte_char, self.char_byte, self.byte_id = full.byte_char, full.char_byte, full.byte_id
        self.whole_words = full.whole_words
        # a subset of merges keeps the property that makes the heap BPE exact (a merge only makes pairs of
        # higher rank), so long words take the O(n log n) path here too
        self.heap_exact = full.heap_exact
        self.kept = kept
        self.new_of = {int(o): n for n, o in enumerate(kept)}
        self.symbols = [full.symbols[int(o)] for o in kept]
        self.ids = {symbol: n for n, symbol in enumerate(self.symbols)}
        kept_merge = self.new_of.__contains__
        self.pair_rank = {p: r for p, r in full.pair_rank.items() if kept_merge(FIRST_MERGE_ID + r)}

    def piece_ids(self, piece: str) -> list[int]:
        if piece in CLIP_SPECIALS:
            return [self.ids[piece]]
        data = piece.encode("utf-8")
        if self.whole_words:  # a kept whole-word token: its whole merge tree is kept, so BPE ends there too
            printable_ascii = piece.isascii() and piece.isprintable()
            symbol = piece if printable_ascii else "".join([self.byte_char[b] for b in data])
            whole = self.ids.get(symbol + END_OF_WORD)
            if whole is not None:
                return [whole]
        ids = [self.byte_id[b] for b in data]
        ids[-1] += 256
        long = len(ids) >= HEAP_BPE_FROM and self.heap_exact
        merged = self._merge_heap(ids) if long else self._merge(ids)
        new_of = self.new_of
        return [new_of[i] for i in merged]

    def readable(self, token_id: int) -> str:
        return self.full.readable(int(self.kept[int(token_id)]))


def decode_clip(bpe: ClipBPE, ids: Sequence[int]) -> str:
    """Text of CLIP ids (of `bpe`'s vocabulary): bytes joined, a space after each word-final token."""
    out = bytearray()
    for i in ids:
        symbol = bpe.symbols[int(i)]
        if symbol in CLIP_SPECIALS:
            out += symbol.encode() + b" "
            continue
        end = symbol.endswith(END_OF_WORD)
        out += bytes(bpe.char_byte[c] for c in (symbol[: -len(END_OF_WORD)] if end else symbol))
        if end:
            out += b" "
    return out.decode("utf-8", errors="replace").strip()


class SpecialisedClipTokenizer(KeptIds, ClipTokenizer):
    """CLIP BPE over kept tokens (dense new ids); the full tokenizer's cleaning, split, caches and batch path.

    It reuses ClipTokenizer's machinery by replacing its `bpe` with the kept-merges BPE, so it is exactly as
    fast per distinct word; `original_ids[new]` is the full tokenizer's id of each kept token.
    """

    kind = "clip-bpe"

    def __init__(self, kept: Sequence[int], base: ClipTokenizer | None = None):  # noqa: D107
        base = base or clip_tokenizer()
        self.base = base
        self._set_kept(kept, CLIP_VOCAB_SIZE)
        self.bpe = _KeptBPE(base.bpe, self.original_ids)
        self._split = base._split
        self._chunks: dict[str, list[int]] = {}
        self._pieces: dict[str, list[int]] = {}
        self.name = "clip-specialised"
        self.vocab_size = len(self.original_ids)
        self.sot_id, self.eot_id = (self.bpe.ids[s] for s in CLIP_SPECIALS)
        self.pad_id = self.bpe.new_of[base.pad_id]

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.original_ids.astype("<i8").tobytes()).hexdigest()[:16]
        return f"{self.base.fingerprint}/kept:{len(self.original_ids)}:{digest}"

    def decode(self, ids: Sequence[int]) -> str:
        return decode_clip(self.bpe, ids)

    # --- word-level access for the long-tail measurement (words = the space-free chunks of cleaned text)

    @staticmethod
    def words(text: str) -> list[str]:
        return [w for w in normalize(text).split(" ") if w]

    def encode_words(self, words: Sequence[str]) -> list[list[int]]:
        """New ids of each word (a chunk of already cleaned text, as `words` gives)."""
        cache, miss = self._chunks, self._chunk_ids
        return [cache.get(w) or miss(w) for w in words]


def full_clip_word_ids(base: ClipTokenizer, words: Sequence[str]) -> list[list[int]]:
    """The full tokenizer's ids of each cleaned chunk (what its encode concatenates per prompt)."""
    cache, miss = base._chunks, base._chunk_ids
    return [cache.get(w) or miss(w) for w in words]
