"""Which prompts an encoder analysis looks at: distinct token sequences of a corpus, sampled with a seed."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class Drawn:
    """A seeded draw of a corpus's distinct token sequences (one prompt each), per group."""

    prompts: list[str]  # one prompt per distinct token sequence drawn (the first in code-point order)
    groups: dict[str, np.ndarray]  # "overall" (and each source) -> sorted indices into prompts
    n_prompts: int  # distinct prompts in the corpus
    duplicates: int  # prompts of the overall draw dropped as the same token sequence as another


def draw_sequences(corpus: Path, store: Any, n: int | None, seed: int, by_source: bool = False) -> Drawn:
    """Up to n distinct token sequences of the corpus (every one when n is None), overall and, with by_source,
    within each source, as seen by `store`'s encoder (ids truncated to its context: two prompts with the same
    ids give the same outputs, so they are one point).

    Sample first, then tokenize: the corpus's distinct prompts (code-point order) are drawn in a seeded
    order, only the drawn ones are tokenized, and a prompt whose sequence was already drawn is replaced by the
    next one, until n sequences are held or the prompts run out. Memory and tokenizer work follow n, not the
    corpus (which is read once as Arrow strings to find its distinct prompts). Computed once per corpus,
    store and arguments: every analysis of an audit that asks the same reads the same.
    """
    key = ("draw_sequences", str(Path(corpus).resolve()), n, seed, by_source)
    if key not in store.memo:
        store.memo[key] = _draw(Path(corpus), store, n, seed, by_source)
    return store.memo[key]


def _distinct_prompts(corpus: Path, by_source: bool):
    """(the corpus's distinct prompts in code-point order as Arrow, {source: indices of its prompts, or None
    where the source holds every prompt})."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from anatomy.corpus.stream import corpus_batches, sorted_distinct

    columns = ["prompt", "source"] if by_source else ["prompt"]
    table = pa.Table.from_batches(list(corpus_batches(corpus, columns, 65_536)))  # checked
    sources: dict[str, np.ndarray | None] = {}
    names: list = []
    if by_source:
        source = pc.dictionary_encode(table.column("source")).combine_chunks()
        codes, names = source.indices.to_numpy(), source.dictionary.to_pylist()
    # code-point order, as sorted() gives; the row-to-prompt map only where sources must be told apart
    distinct, position = sorted_distinct(table.column("prompt"), positions=len(names) > 1)
    if len(names) == 1:  # one source (a log): its prompts are the corpus's
        return distinct, {str(names[0]): None}
    if position is not None:
        for s in sorted(range(len(names)), key=lambda s: names[s]):
            sources[str(names[s])] = np.unique(position[codes == s])
    return distinct, sources


def _draw(corpus: Path, store: Any, n: int | None, seed: int, by_source: bool) -> Drawn:
    from array import array

    import pyarrow as pa

    distinct, sources = _distinct_prompts(corpus, by_source)
    keys: dict[int, bytes] = {}  # prompt index -> its ids as bytes, for the drawn prompts only

    def tokenize(picks: np.ndarray) -> None:
        new = [int(i) for i in picks if int(i) not in keys]
        for start in range(0, len(new), SEQUENCE_BATCH):
            part = new[start : start + SEQUENCE_BATCH]
            texts = distinct.take(pa.array(part, pa.int64())).to_pylist()
            for i, ids in zip(part, store.keys(texts), strict=True):
                keys[i] = array("q", ids).tobytes()

    chosen: dict[str, np.ndarray] = {}
    duplicates = 0
    for name, group in {"overall": np.arange(len(distinct)), **sources}.items():
        if group is None:  # the same prompts as overall: the same draw
            chosen[name] = chosen["overall"]
            continue
        candidates = group
        want = len(candidates) if n is None else min(n, len(candidates))
        rng = np.random.default_rng(seed)
        tried = np.zeros(len(candidates), dtype=bool)
        taken: list[int] = []
        held: set[bytes] = set()
        while len(held) < want and not tried.all():
            # the first draw is the one `sample` makes (the same prompts where no two share a sequence);
            # a prompt whose sequence is already held is replaced by a draw from the untried rest
            rest = np.flatnonzero(~tried) if tried.any() else None
            k = min(want - len(held), len(candidates) - int(tried.sum()))
            if rest is None and k == len(candidates):
                at = np.arange(k)
            else:
                at = np.sort(rng.choice(rest if rest is not None else len(candidates), size=k, replace=False))
            tried[at] = True
            picks = candidates[at]
            tokenize(picks)
            for i in picks.tolist():
                if keys[i] not in held:
                    held.add(keys[i])
                    taken.append(i)
                elif name == "overall":
                    duplicates += 1
        chosen[name] = np.sort(np.asarray(taken, dtype=np.int64))
    first: dict[bytes, int] = {}  # each sequence's first drawn prompt in code-point order
    for i in sorted({int(i) for picks in chosen.values() for i in picks}):
        first.setdefault(keys[i], i)
    rep = sorted(first.values())
    seq_of = {keys[i]: s for s, i in enumerate(rep)}
    prompts = distinct.take(pa.array(rep, pa.int64())).to_pylist() if rep else []
    groups = {name: np.unique([seq_of[keys[int(i)]] for i in picks]).astype(np.int64)
              for name, picks in chosen.items()}  # fmt: skip
    return Drawn(prompts, groups, len(distinct), duplicates)
