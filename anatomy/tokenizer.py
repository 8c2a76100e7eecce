"""Tokenizers behind one protocol; the CLIP BPE tokenizer shared by the SAM3 teacher and its students.

`ClipTokenizer` gives exactly the ids of open_clip's SimpleTokenizer (tested on every shared prompt and on
adversarial strings) but does the per-prompt work once per distinct *word*: after cleaning, prompts hold
single spaces only, and no piece of the CLIP split pattern spans a space, so a prompt's ids are the
concatenation of its space-separated chunks' ids. Each chunk is split, byte-mapped and merged once and then
served from a dict. Cleaning is `anatomy.corpus.normalize.normalize` (ASCII fast path, ftfy for the rest).
The BPE merges come from the file that ships inside open_clip_torch, located without importing open_clip
(which would import torch).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import gzip
import hashlib
import heapq
import importlib.util
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from anatomy.corpus.normalize import PLAIN_ASCII, normalize
from anatomy.errors import InputError

CLIP_VOCAB_SIZE = 49408
CLIP_SOT, CLIP_EOT, CLIP_PAD = 49406, 49407, 0
CLIP_SPECIALS = ("<start_of_text>", "<end_of_text>")
MERGES_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = CLIP_VOCAB_SIZE - 2 * 256 - len(CLIP_SPECIALS)  # 48,894: the first lines after the header
END_OF_WORD = "</w>"
FIRST_MERGE_ID = 2 * 256  # merges follow the 256 byte tokens and their 256 end-of-word forms
# In this merges file (open_clip's) every word-final token w</w> BPE-encodes to itself, so a piece that is a
# whole vocabulary word maps straight to its id; tests/test_tokenizer.py checks all 34,483 such tokens.
WHOLE_WORDS_VERIFIED_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
# Texts that `normalize` cleans by lowercasing and collapsing spaces alone (its own fast-path test, in RE2).
_PLAIN_ASCII_RE2 = f"^(?:{PLAIN_ASCII.pattern})$"
BATCH_THRESHOLD = 256  # from this many texts on, encode() takes the vectorised path
HEAP_BPE_FROM = 48  # pieces of this many bytes or more are merged by the O(n log n) heap BPE
# The CLIP split: specials, English contractions, letter runs, single digits, other non-space runs.
_SPLIT_PATTERN = r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while building many small acyclic lists and dicts.

    Allocation-heavy loops trigger full collections that walk every object in the process (millions once
    torch is imported), for nothing: these structures hold no reference cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Tokenizer(Protocol):
    name: str
    vocab_size: int
    sot_id: int
    eot_id: int
    pad_id: int

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Content ids of each text (cleaned as the tokenizer cleans), without start/end tokens."""

    def __call__(self, texts: Sequence[str], context_length: int) -> np.ndarray:
        """[N, L] int64: start + content + end, truncated to L with the last id forced to end, zero-padded."""

    def token_text(self, token_id: int) -> str:
        """A readable form of one id (for top-token tables)."""


def pack(
    content: Sequence[Sequence[int]], context_length: int, sot: int, eot: int, pad: int = 0
) -> np.ndarray:
    """Start + ids + end per row, truncated to L keeping the first L and forcing the last to end, padded."""
    if context_length < 1:
        raise ValueError(f"context_length must be positive, got {context_length}")
    n = len(content)
    out = np.full((n, context_length), pad, dtype=np.int64)
    if n == 0:
        return out
    keep = np.minimum(lengths(content), context_length)  # tokens per row after truncation, SOT/EOT included
    out[:, 0] = sot
    out[np.arange(n), keep - 1] = eot
    body = np.maximum(keep - 2, 0)  # content ids that fit between SOT and the (possibly forced) EOT
    flat = np.fromiter((t for ids, b in zip(content, body.tolist(), strict=True) for t in ids[:b]), np.int64)
    rows = np.repeat(np.arange(n), body)
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(body) - body, body) + 1
    out[rows, cols] = flat
    return out


def lengths(content: Sequence[Sequence[int]]) -> np.ndarray:
    """Token counts including start and end (the n_i of metrics.md)."""
    return np.fromiter((len(ids) + 2 for ids in content), dtype=np.int64, count=len(content))


def merges_path() -> Path:
    """The BPE merges file inside the installed open_clip_torch (found without importing the package)."""
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        if (Path(folder) / MERGES_FILE).is_file():
            return Path(folder) / MERGES_FILE
    raise InputError(
        f"the CLIP BPE merges file {MERGES_FILE} was not found in the open_clip_torch package",
        "install the project's dependencies (`make install`), which include open_clip_torch",
    )


def _byte_alphabet() -> tuple[list[int], list[str]]:
    """Bytes in CLIP's vocabulary order, and the printable character standing for each byte value.

    Bytes that are already visible Latin-1 characters stand for themselves and come first; the other 68
    (controls, space, soft hyphen, ...) follow in byte order as code points 256, 257, ...
    """
    visible = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    hidden = sorted(set(range(256)) - set(visible))
    char_of = {b: chr(b) for b in visible} | {b: chr(256 + k) for k, b in enumerate(hidden)}
    return visible + hidden, [char_of[b] for b in range(256)]


class ClipBPE:
    """The CLIP vocabulary and merge ranks, and BPE of one pre-split piece (used on cache misses only)."""

    def __init__(self, path: str | Path | None = None):
        path = Path(path) if path else merges_path()
        if not path.is_file():
            raise InputError(
                f"{path}: CLIP BPE merges file not found", "leave the merges path unset to use open_clip's"
            )
        raw = path.read_bytes()
        self.sha256 = hashlib.sha256(raw).hexdigest()
        lines = gzip.decompress(raw).decode("utf-8").split("\n")[1 : 1 + N_MERGES]
        merges = [tuple(line.split()) for line in lines]
        order, self.byte_char = _byte_alphabet()
        chars = [self.byte_char[b] for b in order]
        self.char_byte = {c: b for b, c in enumerate(self.byte_char)}
        vocab = chars + [c + END_OF_WORD for c in chars] + ["".join(m) for m in merges] + list(CLIP_SPECIALS)
        self.symbols = vocab
        self.ids = {symbol: i for i, symbol in enumerate(vocab)}
        # BPE runs on ids: merge r joins the pair (left id, right id) into id FIRST_MERGE_ID + r.
        self.byte_id = [0] * 256
        for i, byte in enumerate(order):
            self.byte_id[byte] = i
        self.pair_rank = {(self.ids[a], self.ids[b]): r for r, (a, b) in enumerate(merges)}
        self.whole_words = self.sha256 == WHOLE_WORDS_VERIFIED_SHA256
        # The heap BPE equals open_clip's rank-by-rank passes when a merge never creates a pair of lower or
        # equal rank: true when every merge joins tokens made before it (checked, not assumed).
        self.heap_exact = all(max(pair) < FIRST_MERGE_ID + r for pair, r in self.pair_rank.items()) and len(
            self.pair_rank
        ) == len(merges)

    def piece_ids(self, piece: str) -> list[int]:
        """Ids of one piece of the split pattern (specials map to themselves)."""
        if piece in CLIP_SPECIALS:
            return [self.ids[piece]]
        data = piece.encode("utf-8")  # lone surrogates never get here: ftfy replaces them
        if self.whole_words:  # most pieces are whole vocabulary words: skip the merge loop for them
            printable_ascii = piece.isascii() and piece.isprintable()  # such bytes stand for themselves
            symbol = piece if printable_ascii else "".join([self.byte_char[b] for b in data])
            whole = self.ids.get(symbol + END_OF_WORD)
            if whole is not None:
                return [whole]
        ids = [self.byte_id[b] for b in data]
        ids[-1] += 256  # the last byte carries the end-of-word mark
        if len(ids) >= HEAP_BPE_FROM and self.heap_exact:
            return self._merge_heap(ids)
        return self._merge(ids)

    def _merge_heap(self, ids: list[int]) -> list[int]:
        """The same merges as `_merge` in O(n log n): a heap of (rank, position) over a linked list.

        Popping the lowest rank, leftmost first, and skipping entries whose pair has changed applies every
        occurrence of the best pair left to right before any later rank, as open_clip does; a merge only
        creates pairs of higher rank (`heap_exact`), so no pass is interrupted. Words of 100,000 bytes take
        well under a second instead of minutes (the list version is quadratic).
        """
        rank_of = self.pair_rank.get
        n = len(ids)
        sym = ids[:]  # -1 marks a position merged into its left neighbour
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        stride = n + 1  # heap entries are rank * stride + position: ints order like (rank, position)
        heap = [
            r * stride + i
            for i, r in enumerate(map(rank_of, zip(ids, ids[1:], strict=False)))
            if r is not None
        ]
        heapq.heapify(heap)
        pop, push = heapq.heappop, heapq.heappush
        while heap:
            r, i = divmod(pop(heap), stride)
            a = sym[i]
            if a < 0:
                continue
            j = nxt[i]
            if j >= n or rank_of((a, sym[j])) != r:
                continue  # stale: the pair at i changed since this entry was pushed
            new = FIRST_MERGE_ID + r
            sym[i], sym[j] = new, -1
            k = nxt[j]
            nxt[i] = k
            if k < n:
                prv[k] = i
                right = rank_of((new, sym[k]))
                if right is not None:
                    push(heap, right * stride + i)
            p = prv[i]
            if p >= 0:
                left = rank_of((sym[p], new))
                if left is not None:
                    push(heap, left * stride + p)
        return [t for t in sym if t >= 0]

    def _merge(self, ids: list[int]) -> list[int]:
        """Apply the best-ranked adjacent merge at each of its occurrences, left to right, until none applies.

        `ranks[j]` is the merge rank of the pair (ids[j], ids[j+1]); a merge changes only its neighbours'
        ranks, so they alone are looked up again. A merge's product never forms the same pair again, and
        an overlapping run (x, x, x) merges its first two: the same result as open_clip's rescan per rank.
        """
        rank_of = self.pair_rank.get
        ranks = list(map(rank_of, zip(ids, ids[1:], strict=False), itertools.repeat(N_MERGES, len(ids) - 1)))
        while ranks:
            best = min(ranks)
            if best == N_MERGES:
                break
            new_id, at = FIRST_MERGE_ID + best, ranks.index(best)
            while True:
                ids[at : at + 2] = [new_id]
                del ranks[at]
                if at > 0:
                    ranks[at - 1] = rank_of((ids[at - 1], new_id), N_MERGES)
                if at < len(ranks):
                    ranks[at] = rank_of((new_id, ids[at + 1]), N_MERGES)
                if best not in ranks:  # (a test, not an exception: most words hold a pair once)
                    break
                at = ranks.index(best, at)
        return ids

    def readable(self, token_id: int) -> str:
        """The token's text with bytes decoded (invalid partial UTF-8 shown escaped) and </w> kept."""
        symbol = self.symbols[int(token_id)]
        if symbol in CLIP_SPECIALS:
            return symbol
        end = symbol.endswith(END_OF_WORD)
        body = symbol[: -len(END_OF_WORD)] if end else symbol
        text = bytes(self.char_byte[c] for c in body).decode("utf-8", errors="backslashreplace")
        return text + (END_OF_WORD if end else "")


class ClipTokenizer:
    """CLIP BPE with open_clip's exact ids; a per-chunk cache makes repeated words nearly free."""

    name = "clip"
    vocab_size = CLIP_VOCAB_SIZE
    sot_id, eot_id, pad_id = CLIP_SOT, CLIP_EOT, CLIP_PAD

    def __init__(self, merges: str | Path | None = None):
        import regex

        with _gc_paused():
            self.bpe = ClipBPE(merges)
        self._split = regex.compile(_SPLIT_PATTERN, regex.IGNORECASE).findall
        self._chunks: dict[str, list[int]] = {}  # space-free chunk -> ids
        self._pieces: dict[str, list[int]] = {}  # pattern piece -> ids (chunks share pieces: "dog", "dog's")

    @property
    def fingerprint(self) -> str:
        """Identifies the vocabulary: changes if the merges file does."""
        return f"clip-bpe:{self.bpe.sha256[:16]}"

    def _chunk_ids(self, chunk: str) -> list[int]:
        pieces, bpe = self._pieces, self.bpe.piece_ids
        # An ASCII letter run is one piece of the split; anything else goes through the pattern.
        letters = chunk.isascii() and chunk.isalpha()
        if letters and self.bpe.whole_words:  # the commonest miss: a whole vocabulary word
            whole = self.bpe.ids.get(chunk + END_OF_WORD)
            if whole is not None:
                ids = self._chunks[chunk] = [whole]
                return ids
        ids = []
        for piece in (chunk,) if letters else self._split(chunk):
            found = pieces.get(piece)
            if found is None:
                found = pieces[piece] = bpe(piece)
            ids += found
        self._chunks[chunk] = ids
        return ids

    def encode_one(self, text: str) -> list[int]:
        """Content ids of one text."""
        cache, miss = self._chunks, self._chunk_ids
        ids: list[int] = []
        for chunk in normalize(text).split(" "):
            found = cache.get(chunk)
            ids += found if found is not None else miss(chunk)
        return ids

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts; wrap a single text in a list")
        if len(texts) < BATCH_THRESHOLD:
            return [self.encode_one(t) for t in texts]
        flat, offsets = self.encode_flat(texts)
        with _gc_paused():
            flat_list, bounds = flat.tolist(), offsets.tolist()
            return [flat_list[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def encode_flat(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """Content ids of many texts at once: (ids int32 [total], offsets int64 [N + 1]).

        Text i's ids are ids[offsets[i]:offsets[i + 1]]. Arrow's string kernels clean and split the plain
        ASCII texts (lowercase; runs of spaces only make empty chunks, which have no ids) and find the
        distinct chunks; `normalize` cleans the rest. Only distinct chunks reach Python, and numpy gathers
        their ids back into text order. `texts` may be a list or an Arrow/pandas string column.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(texts, pa.ChunkedArray | pa.Array):
            column = texts
        else:
            try:
                column = pa.array(texts, pa.large_string())
            except UnicodeEncodeError:  # a lone surrogate: Arrow cannot hold it; ftfy (normalize) fixes it
                column = pa.array([normalize(t) for t in texts], pa.large_string())
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        column = column.cast(pa.large_string())
        if column.null_count:
            raise InputError(
                f"{column.null_count} of {len(column)} texts are missing (null)", "drop them first"
            )
        plain = pc.match_substring_regex(column, _PLAIN_ASCII_RE2)
        cleaned = pc.utf8_lower(column)
        if not pc.all(plain).as_py():
            others = np.flatnonzero(~plain.to_numpy(zero_copy_only=False))
            fixed = pa.array([normalize(column[int(i)].as_py()) for i in others], pa.large_string())
            cleaned = pc.replace_with_mask(cleaned, pc.invert(plain), fixed)
        split = pc.split_pattern(cleaned, " ")
        encoded = pc.dictionary_encode(split.flatten())
        which = encoded.indices.to_numpy()  # occurrence -> distinct chunk
        cache, miss = self._chunks, self._chunk_ids
        with _gc_paused():
            per_chunk = [cache.get(c) or miss(c) for c in encoded.dictionary.to_pylist()]

        chunk_len = np.fromiter(map(len, per_chunk), np.int64, count=len(per_chunk))
        chunk_start = np.cumsum(chunk_len) - chunk_len
        chunk_ids = np.fromiter(
            itertools.chain.from_iterable(per_chunk), np.int32, count=int(chunk_len.sum())
        )
        occ_len = chunk_len[which]
        occ_start = np.cumsum(occ_len) - occ_len
        gather = np.repeat(chunk_start[which] - occ_start, occ_len) + np.arange(int(occ_len.sum()))
        flat = chunk_ids[gather]
        # Tokens per text: sum of its chunks' lengths (list offsets delimit each text's chunks).
        chunk_bounds = split.offsets.to_numpy()
        occ_end = np.concatenate([[0], np.cumsum(occ_len)])
        offsets = occ_end[chunk_bounds].astype(np.int64)
        return flat, offsets

    def __call__(self, texts: Sequence[str], context_length: int) -> np.ndarray:
        return pack(self.encode(texts), context_length, self.sot_id, self.eot_id, self.pad_id)

    def token_text(self, token_id: int) -> str:
        return self.bpe.readable(token_id)


@functools.cache
def clip_tokenizer() -> ClipTokenizer:
    return ClipTokenizer()
