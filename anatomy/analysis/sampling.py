"""Which prompts an encoder analysis looks at: distinct token sequences of a corpus, sampled with a seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from anatomy.errors import InputError

# Fewer distinct points than this in a source: no per-source estimate (k = 20 neighbours need company).
MIN_SOURCE_POINTS = 50
SEQUENCE_BATCH = 8_192  # prompts tokenized at a time (a fast tokenizer keeps KBs per prompt of a batch)


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
    """Tokenized batch by batch over the sorted distinct prompts; a sequence is kept as the bytes of its
    ids (not a tuple of Python ints), and rows are mapped through Arrow, so the memory per prompt is a few
    hundred bytes rather than the tokenizer's whole output for the corpus at once."""
    from array import array

    import pyarrow.compute as pc

    from anatomy.corpus.corpus import read_corpus_table

    table = read_corpus_table(corpus, ["prompt", "source"])  # checked; Arrow, not Python strings
    prompt_col = table.column("prompt").combine_chunks()
    distinct = pc.unique(prompt_col)
    distinct = distinct.take(pc.array_sort_indices(distinct))  # code-point order, as sorted() gives
    if not len(distinct):
        raise InputError(f"{corpus}: the corpus has no prompts", "ingest prompts into it first")
    index: dict[bytes, int] = {}
    representative: list[str] = []
    seq_of_prompt = np.empty(len(distinct), dtype=np.int64)
    for start in range(0, len(distinct), SEQUENCE_BATCH):
        prompts = distinct.slice(start, SEQUENCE_BATCH).to_pylist()
        for i, (prompt, key) in enumerate(zip(prompts, store.keys(prompts), strict=True), start):
            packed = array("q", key).tobytes()
            at = index.setdefault(packed, len(representative))
            if at == len(representative):
                representative.append(prompt)
            seq_of_prompt[i] = at
    index.clear()
    row_seq = seq_of_prompt[pc.index_in(prompt_col, value_set=distinct).to_numpy()]
    source = pc.dictionary_encode(table.column("source")).combine_chunks()
    codes, names = source.indices.to_numpy(), source.dictionary.to_pylist()
    by_source = {
        str(names[s]): np.unique(row_seq[codes == s])
        for s in sorted(range(len(names)), key=lambda s: names[s])
    }
    return representative, by_source, len(distinct)
