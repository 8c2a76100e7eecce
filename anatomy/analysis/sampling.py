"""Which prompts an encoder analysis looks at: distinct token sequences of a corpus, sampled with a seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from anatomy.errors import InputError

# Fewer distinct points than this in a source: no per-source estimate (k = 20 neighbours need company).
MIN_SOURCE_POINTS = 50


def sample(indices: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Up to n of `indices` (all when n is None), drawn without replacement, in ascending order."""
    if n is None or len(indices) <= n:
        return np.asarray(indices)
    return np.sort(np.random.default_rng(seed).choice(indices, size=n, replace=False))


def require_distinct(corpus: Path, n: int, minimum: int, why: str) -> None:
    """InputError naming the corpus when it has fewer than `minimum` distinct token sequences (checked before
    anything is encoded)."""
    if n < minimum:
        raise InputError(
            f"{corpus}: only {n} distinct prompt(s) (token sequences as the encoder sees them); {why} needs at "
            f"least {minimum}",
            "give a corpus with more distinct prompts",
        )


def distinct_sequences(corpus: Path, store: Any) -> tuple[list[str], dict[str, np.ndarray], int]:
    """(one prompt per distinct token sequence, indices of each source's sequences, distinct prompts).

    Two prompts with the same ids (as the encoder sees them, truncated to its context) give the same outputs,
    so they are one point. Computed once per corpus and store: every analysis of an audit reads the same.
    """
    key = ("distinct_sequences", str(Path(corpus).resolve()))
    if key not in store.memo:
        store.memo[key] = _distinct_sequences(Path(corpus), store)
    return store.memo[key]


def _distinct_sequences(corpus: Path, store: Any) -> tuple[list[str], dict[str, np.ndarray], int]:
    from anatomy.corpus import load_corpus

    frame = load_corpus(corpus)
    prompts = sorted(set(frame["prompt"]))
    if not prompts:
        raise InputError(f"{corpus}: the corpus has no prompts", "ingest prompts into it first")
    index: dict[tuple[int, ...], int] = {}
    representative: list[str] = []
    seq_of_prompt: dict[str, int] = {}
    for prompt, key in zip(prompts, store.keys(prompts), strict=True):
        if key not in index:
            index[key] = len(representative)
            representative.append(prompt)
        seq_of_prompt[prompt] = index[key]
    by_source = {
        str(source): np.unique([seq_of_prompt[p] for p in group["prompt"]])
        for source, group in frame.groupby("source", sort=True)
    }
    return representative, by_source, len(prompts)
