"""Tokenization against the deployment: which requests tokenize differently under the deployed vocabulary,
which are cut at its context, and which tokens the training corpus never had, ranked by traffic.

"Differently" compares the deployed tokenizer's ids (mapped back to the full tokenizer's) with the full
tokenizer's: with no specialised vocabulary nothing differs. A prompt is truncated when its tokens plus
start and end exceed the context. A token is new when the training data never had it: no training prompt's
(full) tokenization uses it (`known_ids`; where the training prompts are not at hand, the deployed vocabulary's
own per-token corpus counts). Keeping a token is not having it: a specialised WordPiece vocabulary keeps every
single character and the special tokens whatever the corpus held. The unknown token ([UNK]) and the other
special tokens are never known: where a request's text tokenizes to one, the tokenizer had no piece for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

TOP = 20  # new tokens and example prompts listed


@dataclass
class Ranked:
    text: str
    requests: int
    prompts: int = 1


@dataclass
class TokenizationCheck:
    context: int
    vocabulary: str  # "full" or the vocab.json the deployment uses
    prompts: int
    requests: int
    changed_prompts: float  # shares of distinct prompts ...
    changed_requests: float  # ... and of requests
    truncated_prompts: float
    truncated_requests: float
    new_token_prompts: float  # prompts using at least one new token
    new_token_requests: float
    new_tokens: list[Ranked] = field(default_factory=list)  # by the requests of the prompts that use them
    changed_examples: list[Ranked] = field(default_factory=list)
    truncated_examples: list[Ranked] = field(default_factory=list)


def _flat(content: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, content), np.int64, count=len(content))
    flat = np.fromiter((t for ids in content for t in ids), np.int64, count=int(lengths.sum()))
    return flat, lengths


def top_by_traffic(
    prompts: Sequence[str], requests: np.ndarray, mask: np.ndarray, n: int = TOP
) -> list[Ranked]:
    """The `n` prompts under `mask` with the most requests (ties by text)."""
    at = np.flatnonzero(mask)
    order = at[np.lexsort((at, -requests[at]))][:n]  # prompts are sorted, so index order is text order
    return [Ranked(prompts[i], int(requests[i])) for i in order]


def special_ids(base) -> list[int]:
    """The base tokenizer's special ids ([UNK], [CLS], ... for WordPiece; start and end for CLIP)."""
    ids = set(getattr(getattr(base, "_tok", None), "all_special_ids", None) or [])  # a Hugging Face tokenizer
    ids |= {getattr(base, name, None) for name in ("sot_id", "eot_id", "unk_id")}
    return sorted(int(i) for i in ids if isinstance(i, int | np.integer) and 0 <= i < base.vocab_size)


def known_ids(base, train: Sequence[str], vocab=None) -> np.ndarray | None:
    """Per base id, whether the training data had it: used by a training prompt's tokenization, or, with no
    training prompts, counted by the deployed vocabulary (anatomy.vocab.store.Vocabulary: kept ids with a
    corpus count above 0). Special ids are never known. None: neither is at hand."""
    if len(train):
        train_flat, _ = _flat(base.encode(list(train)))
        known = np.bincount(train_flat, minlength=base.vocab_size)[: base.vocab_size] > 0
    elif vocab is not None:
        known = np.zeros(base.vocab_size, dtype=bool)
        kept, counts = np.asarray(vocab.kept, dtype=np.int64), np.asarray(vocab.counts, dtype=np.int64)
        known[kept[counts > 0]] = True
    else:
        return None
    known[special_ids(base)] = False
    return known


def check_tokenization(prompts: Sequence[str], requests: np.ndarray, base, context: int, train: Sequence[str],
                       specialised=None, vocabulary: str = "full",
                       known: np.ndarray | None = None) -> tuple[TokenizationCheck, dict]:  # fmt: skip
    """The check, and per-prompt flags (changed, truncated, new) for the per-period figures. `known`: per base
    id, whether the training data had it (default: `known_ids(base, train)`)."""
    flat, lengths = _flat(base.encode(list(prompts)))
    owner = np.repeat(np.arange(len(prompts)), lengths)
    changed = np.zeros(len(prompts), dtype=bool)
    if specialised is not None:
        spec_flat, spec_lengths = _flat(specialised.encode(list(prompts)))
        mapped = np.asarray(specialised.original_ids, dtype=np.int64)[spec_flat]
        changed = spec_lengths != lengths
        same = np.flatnonzero(~changed)  # equal lengths: compare id by id
        n = lengths[same]
        within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        full_at = np.repeat((np.cumsum(lengths) - lengths)[same], n) + within
        spec_at = np.repeat((np.cumsum(spec_lengths) - spec_lengths)[same], n) + within
        differ = flat[full_at] != mapped[spec_at]
        changed[same[np.repeat(np.arange(len(same)), n)[differ]]] = True
    if known is None:
        known = known_ids(base, train)
    if known is None:  # no training prompts: every token is one the training data never had
        known = np.zeros(base.vocab_size, dtype=bool)
    truncated = lengths + 2 > context
    is_new = ~known[flat]
    pairs = np.unique(owner[is_new] * base.vocab_size + flat[is_new])  # (prompt, token) once each
    new_owner, new_id = pairs // base.vocab_size, pairs % base.vocab_size
    uses_new = np.zeros(len(prompts), dtype=bool)
    uses_new[new_owner] = True
    by_requests = np.bincount(new_id, weights=requests[new_owner], minlength=base.vocab_size)
    by_prompts = np.bincount(new_id, minlength=base.vocab_size)
    ids = np.unique(new_id)
    ranked = ids[np.lexsort((ids, -by_requests[ids]))][:TOP]
    total = max(int(requests.sum()), 1)

    def share(mask: np.ndarray) -> tuple[float, float]:
        return float(mask.mean()) if len(mask) else 0.0, float(requests[mask].sum() / total)

    (cp, cr), (tp, tr), (np_, nr) = share(changed), share(truncated), share(uses_new)
    result = TokenizationCheck(
        context=context, vocabulary=vocabulary, prompts=len(prompts), requests=int(requests.sum()),
        changed_prompts=cp, changed_requests=cr, truncated_prompts=tp, truncated_requests=tr,
        new_token_prompts=np_, new_token_requests=nr,
        new_tokens=[Ranked(base.token_text(int(t)), int(by_requests[t]), int(by_prompts[t])) for t in ranked],
        changed_examples=top_by_traffic(prompts, requests, changed),
        truncated_examples=top_by_traffic(prompts, requests, truncated),
    )  # fmt: skip
    return result, {"changed": changed, "truncated": truncated, "new_token": uses_new}
