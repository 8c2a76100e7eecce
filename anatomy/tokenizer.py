"""Tokenizers behind one protocol; the CLIP BPE tokenizer shared by the SAM3 teacher and its students.

PLACEHOLDER IMPLEMENTATION: delegates to open_clip's SimpleTokenizer; the token-anatomy issue replaces the
internals with a fast exact implementation behind the same API.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Protocol

import numpy as np

CLIP_VOCAB_SIZE = 49408
CLIP_SOT, CLIP_EOT, CLIP_PAD = 49406, 49407, 0


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


def pack(content: Sequence[Sequence[int]], context_length: int, sot: int, eot: int, pad: int = 0) -> np.ndarray:
    """Start + ids + end per row, truncated to L keeping the first L and forcing the last to end, padded."""
    out = np.full((len(content), context_length), pad, dtype=np.int64)
    for i, ids in enumerate(content):
        row = [sot, *ids, eot][:context_length]
        row[-1] = eot
        out[i, : len(row)] = row
    return out


def lengths(content: Sequence[Sequence[int]]) -> np.ndarray:
    """Token counts including start and end (the n_i of metrics.md)."""
    return np.fromiter((len(ids) + 2 for ids in content), dtype=np.int64, count=len(content))


class ClipTokenizer:
    name = "clip"
    vocab_size = CLIP_VOCAB_SIZE
    sot_id, eot_id, pad_id = CLIP_SOT, CLIP_EOT, CLIP_PAD

    def __init__(self):
        from open_clip.tokenizer import SimpleTokenizer

        self._tok = SimpleTokenizer()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [self._tok.encode(t) for t in texts]

    def __call__(self, texts: Sequence[str], context_length: int) -> np.ndarray:
        return pack(self.encode(texts), context_length, self.sot_id, self.eot_id, self.pad_id)

    def token_text(self, token_id: int) -> str:
        return self._tok.decoder[int(token_id)]


@functools.cache
def clip_tokenizer() -> ClipTokenizer:
    return ClipTokenizer()
