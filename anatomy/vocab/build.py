"""Build a specialised vocabulary from prompts, and measure its long-tail risk on prompts it never saw.

Everything works on words (the units a tokenizer encodes independently: space-free chunks of cleaned text
for CLIP BPE, pre-tokenised words for WordPiece), so a prompt's ids are the concatenation of its words' ids.
The texts are indexed once (distinct words, their full-tokenizer ids, each prompt's word list); a
vocabulary built from any subset of prompts is then set arithmetic, and measuring it on other prompts only
runs the specialised tokenizer on words the subset did not cover (covered words are exact by construction;
tests check that on the whole shared corpus).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from anatomy.vocab.store import Vocabulary, base_fingerprint, kind_of, specialise

TOP_EXAMPLES = 5


@dataclass
class WordIndex:
    texts: Sequence[str]  # a list, or a lazy sequence over Arrow strings (anatomy.analysis.vocab)
    words: list[str]  # distinct words
    full_len: np.ndarray  # full-tokenizer tokens per word
    tok_flat: np.ndarray  # original ids of all words, concatenated
    tok_word: np.ndarray  # the word of each entry of tok_flat
    word_flat: np.ndarray  # the words of all prompts, concatenated
    offsets: np.ndarray  # prompt i's words are word_flat[offsets[i]:offsets[i + 1]]

    @property
    def n_prompts(self) -> int:
        return len(self.texts)


def words_of(base):
    """text -> words, as `base` splits them before encoding each word alone."""
    if kind_of(base) == "clip-bpe":
        from anatomy.vocab.clip import SpecialisedClipTokenizer

        return SpecialisedClipTokenizer.words
    return base.words


def full_word_ids(base, words: Sequence[str]) -> list[list[int]]:
    if kind_of(base) == "clip-bpe":
        from anatomy.vocab.clip import full_clip_word_ids

        return full_clip_word_ids(base, words)
    return base.encode_words(words)


def index_texts(base, texts: Sequence[str]) -> WordIndex:
    from array import array

    split = words_of(base)
    position: dict[str, int] = {}
    flat = array("q")  # 8 bytes a word occurrence, not a Python int object and a list slot
    offsets = array("q", [0])
    for text in texts:
        for w in split(text):
            k = position.get(w)
            if k is None:
                k = position[w] = len(position)
            flat.append(k)
        offsets.append(len(flat))
    words = list(position)
    ids = full_word_ids(base, words)
    full_len = np.fromiter(map(len, ids), np.int64, count=len(ids))
    tok_flat = np.fromiter((t for w in ids for t in w), np.int64, count=int(full_len.sum()))
    return WordIndex(
        texts=texts if isinstance(texts, Sequence) else list(texts),  # a lazy sequence stays lazy
        words=words,
        full_len=full_len,
        tok_flat=tok_flat,
        tok_word=np.repeat(np.arange(len(words)), full_len),
        word_flat=np.frombuffer(flat, dtype=np.int64),
        offsets=np.frombuffer(offsets, dtype=np.int64),
    )


def _positions(offsets: np.ndarray, prompts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in word_flat of the given prompts' words, and which of `prompts` each belongs to."""
    start, n = offsets[prompts], offsets[prompts + 1] - offsets[prompts]
    owner = np.repeat(np.arange(len(prompts)), n)
    return np.repeat(start - (np.cumsum(n) - n), n) + np.arange(int(n.sum())), owner


PROMPT_CHUNK = 1 << 20  # prompts whose word positions are gathered at a time (16 bytes a word occurrence)


def _chunks(prompts: np.ndarray) -> list[np.ndarray]:
    return [prompts[i : i + PROMPT_CHUNK] for i in range(0, len(prompts), PROMPT_CHUNK)] or [prompts]


def word_counts(index: WordIndex, prompts: np.ndarray | None) -> np.ndarray:
    if prompts is None:
        return np.bincount(index.word_flat, minlength=len(index.words))
    counts = np.zeros(len(index.words), dtype=np.int64)
    for part in _chunks(prompts):
        counts += np.bincount(index.word_flat[_positions(index.offsets, part)[0]], minlength=len(index.words))
    return counts


def closure(base, used: np.ndarray) -> np.ndarray:
    if kind_of(base) == "clip-bpe":
        from anatomy.vocab.clip import clip_closure, merge_parts

        return clip_closure(used.tolist(), merge_parts(base.bpe))
    from anatomy.vocab.wordpiece import wordpiece_closure

    return wordpiece_closure(used.tolist(), base.full_pieces, base.original_ids[base.special_ids])


def build(
    base, spec: str, index: WordIndex, prompts: np.ndarray | None = None, min_count: int = 1,
    corpus: dict | None = None,
) -> tuple[Vocabulary, np.ndarray]:  # fmt: skip
    """The vocabulary of the given prompts (all when None): tokens of words seen at least min_count times.

    Returns it with the per-word coverage mask (True: the word's tokenization is exact by construction).
    """
    counts = word_counts(index, prompts)
    covered = counts >= max(min_count, 1)
    used = np.unique(index.tok_flat[covered[index.tok_word]])
    kept = closure(base, used)
    token_counts = np.bincount(index.tok_flat, weights=counts[index.tok_word], minlength=base.vocab_size)
    vocab = Vocabulary(
        tokenizer=spec,
        kind=kind_of(base),
        base_fingerprint=base_fingerprint(base),
        original_size=int(base.vocab_size),
        kept=kept.tolist(),
        counts=np.rint(token_counts[kept]).astype(np.int64).tolist(),
        min_count=int(min_count),
        corpus=dict(corpus or {}),
    )
    return vocab, covered


# ------------------------------------------------------------------------------------------- risk


@dataclass
class Example:
    text: str
    full_tokens: int  # content tokens with the full tokenizer
    specialised_tokens: int


@dataclass
class Risk:
    label: str  # what was held out: "lvis", "5 folds", a file name
    kind: str  # leave-one-source-out | k-fold | held-out
    prompts: int  # prompts measured
    train_prompts: int  # prompts the vocabulary was built from (mean over folds)
    kept: int  # its size (mean over folds, rounded)
    changed_share: float  # share of prompts whose ids differ from the full tokenizer's
    inflation_mean: float  # mean of specialised / full length (start and end tokens included)
    inflation_p99: float
    fallback_token_share: float  # share of specialised tokens that come from words not tokenized exactly
    examples: list[Example] = field(default_factory=list)  # the most inflated prompts
    # "traffic": shares over requests; None: over distinct prompts (left out of the JSON, as before weights)
    weight: str | None = field(default=None, metadata={"omit_none": True})


@dataclass
class _Measured:
    prompts: np.ndarray  # indices into the index's texts
    full_n: np.ndarray  # tokens per prompt with start and end
    spec_n: np.ndarray
    fallback: np.ndarray  # specialised tokens from words whose tokenization changed
    changed: np.ndarray  # bool per prompt


def measure(base, vocab: Vocabulary, covered: np.ndarray, index: WordIndex, prompts: np.ndarray) -> _Measured:
    """Tokenize `prompts` with the vocabulary's specialised tokenizer (only the words it did not cover);
    the prompts' word positions are gathered PROMPT_CHUNK prompts at a time."""
    seen = np.zeros(len(index.words), dtype=bool)
    for part in _chunks(prompts):
        seen[index.word_flat[_positions(index.offsets, part)[0]]] = True
    spec_len = index.full_len.copy()
    changed = np.zeros(len(index.words), dtype=bool)
    novel = np.flatnonzero(seen & ~covered)
    if len(novel):
        tok = specialise(vocab, base)
        original = tok.original_ids
        start = np.concatenate([[0], np.cumsum(index.full_len)])
        for w, ids in zip(novel.tolist(), tok.encode_words([index.words[w] for w in novel]), strict=True):
            spec_len[w] = len(ids)
            full = index.tok_flat[start[w] : start[w + 1]]
            changed[w] = len(ids) != len(full) or bool((original[ids] != full).any())
    full_n, spec_n, fallback, hit = [], [], [], []
    for part in _chunks(prompts):
        pos, owner = _positions(index.offsets, part)
        occ, n = index.word_flat[pos], len(part)
        full_n.append((np.bincount(owner, weights=index.full_len[occ], minlength=n) + 2).astype(np.int64))
        spec_n.append((np.bincount(owner, weights=spec_len[occ], minlength=n) + 2).astype(np.int64))
        fallback.append(
            np.bincount(owner, weights=spec_len[occ] * changed[occ], minlength=n).astype(np.int64)
        )
        hit.append(np.bincount(owner, weights=changed[occ], minlength=n) > 0)
    return _Measured(prompts, *(np.concatenate(x) for x in (full_n, spec_n, fallback, hit)))


def _most_inflated(ratio: np.ndarray, grown: np.ndarray, text_of) -> list[int]:
    """The TOP_EXAMPLES prompts that grew, by ratio, then tokens added, then text: numpy narrows them to the
    ties of the last place before Python sorts (no key tuple per measured prompt)."""
    candidates = np.flatnonzero(grown > 0)
    if len(candidates) > TOP_EXAMPLES:
        r, g = ratio[candidates], grown[candidates]
        last = np.lexsort((-g, -r))[TOP_EXAMPLES - 1]
        candidates = candidates[(r > r[last]) | ((r == r[last]) & (g >= g[last]))]
    key = lambda i: (-ratio[i], -grown[i], text_of(i))  # noqa: E731
    return sorted(candidates.tolist(), key=key)[:TOP_EXAMPLES]


def summarise(label: str, kind: str, parts: list[_Measured], index: WordIndex, train: list[int], kept: list[int],
              weights: np.ndarray | None = None) -> Risk:  # fmt: skip
    """The risk over the measured prompts; with `weights` (requests per indexed text) every share and the mean
    inflation are over requests (weight "traffic"), else over distinct prompts."""
    prompts = np.concatenate([p.prompts for p in parts])
    full_n = np.concatenate([p.full_n for p in parts])
    spec_n = np.concatenate([p.spec_n for p in parts])
    fallback = np.concatenate([p.fallback for p in parts])
    changed = np.concatenate([p.changed for p in parts])
    n = len(prompts)
    ratio = spec_n / full_n if n else np.zeros(0)
    examples = [
        Example(index.texts[int(prompts[i])], int(full_n[i] - 2), int(spec_n[i] - 2))
        for i in _most_inflated(ratio, spec_n - full_n, lambda i: index.texts[int(prompts[i])])
    ]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)[prompts]
    content = float(((spec_n - 2) * w).sum())
    p99 = 1.0
    if n:
        ranked = np.argsort(ratio, kind="stable")
        ends = np.cumsum(w[ranked])
        p99 = (
            float(ratio[ranked][min(np.searchsorted(ends, 0.99 * ends[-1]), n - 1)])
            if weights is not None
            else float(np.percentile(ratio, 99))
        )
    return Risk(
        label=label,
        kind=kind,
        prompts=n,
        train_prompts=int(round(float(np.mean(train)))) if train else 0,
        kept=int(round(float(np.mean(kept)))) if kept else 0,
        changed_share=float((changed * w).sum() / w.sum()) if n else 0.0,
        inflation_mean=float((ratio * w).sum() / w.sum()) if n else 1.0,
        inflation_p99=p99,
        fallback_token_share=float((fallback * w).sum() / content) if content else 0.0,
        examples=examples,
        weight=None if weights is None else "traffic",
    )


def held_out_risk(base, spec: str, index: WordIndex, train: np.ndarray, test: np.ndarray, label: str,
                  kind: str, min_count: int) -> Risk:  # fmt: skip
    vocab, covered = build(base, spec, index, train, min_count)
    got = measure(base, vocab, covered, index, test)
    return summarise(label, kind, [got], index, [len(train)], [vocab.size])


def k_fold_risk(base, spec: str, index: WordIndex, prompts: np.ndarray, folds: int, seed: int,
                min_count: int) -> Risk:  # fmt: skip
    """Seeded k-fold by prompt, over distinct prompts (k_fold_risks counts requests too)."""
    return k_fold_risks(base, spec, index, prompts, folds, seed, min_count)[0]


def k_fold_risks(base, spec: str, index: WordIndex, prompts: np.ndarray, folds: int, seed: int,
                 min_count: int, weights: tuple[np.ndarray | None, ...] = (None,)) -> list[Risk]:  # fmt: skip
    """Seeded k-fold by prompt: each fold is measured with the vocabulary of the other folds; one Risk per
    entry of `weights` (None: distinct prompts; an array: requests per indexed text)."""
    order = np.random.default_rng(seed).permutation(prompts)
    chunks = np.array_split(order, folds)
    parts, train, kept = [], [], []
    for k, test in enumerate(chunks):
        rest = np.sort(np.concatenate([c for j, c in enumerate(chunks) if j != k]))
        vocab, covered = build(base, spec, index, rest, min_count)
        parts.append(measure(base, vocab, covered, index, np.sort(test)))
        train.append(len(rest))
        kept.append(vocab.size)
    return [summarise(f"{folds} folds", "k-fold", parts, index, train, kept, w) for w in weights]
