"""Tokenizers behind one protocol; the CLIP BPE tokenizer shared by the SAM3 teacher and its students.

`ClipTokenizer` gives exactly the ids of open_clip's SimpleTokenizer (tested on every shared prompt and on
adversarial strings) but does the per-prompt work once per distinct *word*: after cleaning, prompts hold
single spaces only, and no piece of the CLIP split pattern spans a space, so a prompt's ids are the
concatenation of its space-separated chunks' ids. Each chunk is split, byte-mapped and merged once and then
served from a dict. Cleaning is `anatomy.corpus.normalize.normalize` (ASCII fast path, ftfy for the rest).
`encode_flat` does the same for many texts in Arrow and numpy: distinct chunks, their distinct pieces, one
batched BPE, ids gathered back as ragged tables (`anatomy.bpe_batch`). The BPE itself (vocabulary, merges,
per-piece and batched merging) is `anatomy.clip_bpe`; its merges come from the file that ships inside
open_clip_torch, located without importing open_clip (which would import torch).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from anatomy.bpe_batch import ragged_sums, ragged_take, string_bytes
from anatomy.clip_bpe import (  # re-exported: other modules import these from here
    CLIP_SPECIALS as CLIP_SPECIALS,
)
from anatomy.clip_bpe import (
    CLIP_VOCAB_SIZE as CLIP_VOCAB_SIZE,
)
from anatomy.clip_bpe import (
    END_OF_WORD as END_OF_WORD,
)
from anatomy.clip_bpe import (
    FIRST_MERGE_ID as FIRST_MERGE_ID,
)
from anatomy.clip_bpe import (
    HEAP_BPE_FROM as HEAP_BPE_FROM,
)
from anatomy.clip_bpe import (
    MERGES_FILE as MERGES_FILE,
)
from anatomy.clip_bpe import (
    N_MERGES as N_MERGES,
)
from anatomy.clip_bpe import (
    WHOLE_WORDS_VERIFIED_SHA256 as WHOLE_WORDS_VERIFIED_SHA256,
)
from anatomy.clip_bpe import (
    ClipBPE as ClipBPE,
)
from anatomy.clip_bpe import (
    merges_path as merges_path,
)
from anatomy.corpus.normalize import normalize
from anatomy.errors import InputError

CLIP_SOT, CLIP_EOT, CLIP_PAD = 49406, 49407, 0
BATCH_THRESHOLD = 256  # from this many texts on, encode() takes the vectorised path
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


def not_plain(texts) -> np.ndarray:
    """Indices of the texts of an Arrow large_string array that `normalize` does not take as PLAIN_ASCII.

    A byte test in numpy: printable ASCII (0x20-0x7e) except '&' is plain; any other byte (controls, DEL,
    any byte of a multi-byte character) is not.
    """
    data, offsets = string_bytes(texts)
    data = data[offsets[0] : offsets[-1]]
    odd = np.flatnonzero(((data - np.uint8(0x20)) > 0x5E) | (data == ord("&")))  # (uint8 wraps below 0x20)
    return np.unique(np.searchsorted(offsets, offsets[0] + odd, side="right") - 1)


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

    # Chunk tables of `encode_flat` not yet in the chunk cache: a batch call that is never followed by
    # another never pays for a dict entry per chunk; the next lookup that misses moves them in (`_settle`).
    _pending: tuple[tuple[Any, np.ndarray, np.ndarray, np.ndarray], ...] = ()

    def _settle(self) -> None:
        """Move the pending chunk tables into the chunk cache."""
        pending, self._pending = self._pending, ()
        with _gc_paused():
            for chunks, flat, starts, lens in pending:
                ids, spans = flat.tolist(), zip(starts.tolist(), lens.tolist(), strict=True)
                self._chunks.update(zip(chunks.to_pylist(), (ids[a : a + n] for a, n in spans), strict=True))

    def _chunk_ids(self, chunk: str) -> list[int]:
        if self._pending:
            self._settle()
            found = self._chunks.get(chunk)
            if found is not None:
                return found
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

    def _chunk_table(self, chunks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ids of each distinct chunk of an Arrow string array, as a ragged table (flat, starts, lens).

        Cached chunks come from the chunk cache, the others from `_new_chunk_table`.
        """
        import pyarrow as pa

        self._settle()
        if not self._chunks:
            return self._new_chunk_table(chunks)
        found = [self._chunks.get(c) for c in chunks.to_pylist()]
        known = np.fromiter((f is not None for f in found), bool, count=len(found))
        flat, starts, lens = self._new_chunk_table(chunks.filter(pa.array(~known)))
        old = [f for f in found if f is not None]  # the cached chunks' ids go first in the table
        old_lens = np.fromiter(map(len, old), np.int64, count=len(old))
        old_flat = np.fromiter(itertools.chain.from_iterable(old), np.int32, count=int(old_lens.sum()))
        all_starts, all_lens = np.empty(known.size, dtype=np.int64), np.empty(known.size, dtype=np.int64)
        all_starts[known], all_lens[known] = np.cumsum(old_lens) - old_lens, old_lens
        all_starts[~known], all_lens[~known] = old_flat.size + starts, lens
        return np.concatenate([old_flat, flat]), all_starts, all_lens

    def _new_chunk_table(self, chunks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_chunk_table` of chunks not in the cache; the table joins the cache (pending: see `_settle`).

        Each chunk is split into pieces (an ASCII letter run is its own one piece; the pattern splits the
        rest), and the distinct pieces of all of them go through `ClipBPE.piece_table` together.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        letters = pc.ascii_is_alpha(chunks).to_numpy(zero_copy_only=False)
        split = [self._split(c) for c in chunks.filter(pa.array(~letters)).to_pylist()]
        # Pieces: the letter-run chunks, then the split ones' pieces; per chunk, its first piece and count.
        counts = np.ones(len(chunks), dtype=np.int64)
        counts[~letters] = np.fromiter(map(len, split), np.int64, count=len(split))
        first = np.empty(len(chunks), dtype=np.int64)
        first[letters] = np.arange(int(letters.sum()))
        first[~letters] = int(letters.sum()) + np.cumsum(counts[~letters]) - counts[~letters]
        spelled = pa.array(list(itertools.chain.from_iterable(split)), pa.large_string())
        pieces = pc.dictionary_encode(pa.concat_arrays([chunks.filter(pa.array(letters)), spelled]))
        piece_of = pieces.indices.to_numpy().astype(np.int64)
        order, _ = ragged_take(np.arange(piece_of.size), first, counts, np.arange(len(chunks)))
        piece_flat, piece_starts, piece_lens = self.bpe.piece_table(pieces.dictionary)
        flat, piece_lens = ragged_take(piece_flat.astype(np.int32), piece_starts, piece_lens, piece_of[order])
        lens = ragged_sums(piece_lens, counts)
        starts = np.cumsum(lens) - lens
        self._pending = (*self._pending, (chunks, flat, starts, lens))
        return flat, starts, lens

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
        distinct chunks; `normalize` cleans the rest. Only the distinct chunks that are not one ASCII
        letter run reach Python (to be split), and numpy gathers the ids back into text order. `texts` may
        be a list or an Arrow/pandas string column.
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
        if len(column) and string_bytes(column)[1][0]:  # a slice: Arrow's ascii_lower misreads those
            column = pa.concat_arrays([column])  # (a copy whose offsets start at 0)
        cleaned = pc.ascii_lower(column)  # the plain texts' cleaning (the others are replaced next)
        others = not_plain(column)
        if others.size:
            fixed = pa.array([normalize(column[int(i)].as_py()) for i in others], pa.large_string())
            mask = np.zeros(len(column), dtype=bool)
            mask[others] = True
            cleaned = pc.replace_with_mask(cleaned, pa.array(mask), fixed)
        split = pc.split_pattern(cleaned, " ")
        encoded = pc.dictionary_encode(split.flatten())
        with _gc_paused():
            table = self._chunk_table(encoded.dictionary)
        flat, occurrence_lens = ragged_take(*table, encoded.indices.to_numpy())
        # Tokens per text: sum of its chunks' lengths (list offsets delimit each text's chunks).
        offsets = np.r_[0, np.cumsum(occurrence_lens)][split.offsets.to_numpy()]
        return flat, offsets

    def __call__(self, texts: Sequence[str], context_length: int) -> np.ndarray:
        return pack(self.encode(texts), context_length, self.sot_id, self.eot_id, self.pad_id)

    def token_text(self, token_id: int) -> str:
        return self.bpe.readable(token_id)


@functools.cache
def clip_tokenizer() -> ClipTokenizer:
    return ClipTokenizer()
