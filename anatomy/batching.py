"""Batched encoding of prompt lists in memory, length-bucketed where that is exact.

Encoders whose outputs do not depend on padding (causal ones like the SAM3 teacher, or Hugging Face models
that mask padding) are run on rows sorted by length, each batch cut to its longest prompt: tests/test_embed.py
proves it equals padding to the full context. Bidirectional students attend to padding in the original, so
they keep the full context. Used by the embed cache (anatomy.embed) and the embedding store.
"""

from __future__ import annotations

import numpy as np

from anatomy.errors import AnatomyError

DEFAULT_BATCH = 256


def can_bucket(encoder) -> bool:
    """Whether cutting a batch to its longest prompt leaves every output unchanged (exact bucketing)."""
    return bool(encoder.causal or getattr(encoder, "masks_padding", False))


def resolve_bucket(encoder, bucket: bool | None) -> bool:
    if bucket is None:
        return can_bucket(encoder)
    if bucket and not can_bucket(encoder):
        raise AnatomyError(
            f"{encoder.name}: length bucketing is not exact for this bidirectional encoder (it attends to padding)",
            "leave bucketing automatic",
        )
    return bucket


def sequence_keep(encoder) -> int:
    """Content ids that fit between start and end at the encoder's context: two prompts whose first
    `keep` ids agree are packed to the same ids, so they have the same outputs."""
    return max(int(encoder.context_length) - 2, 1)


def distinct_content(encoder, prompts) -> tuple[list[list[int]], np.ndarray]:
    """The distinct content-id sequences of `prompts` after truncation to the context (first-seen order),
    and for each prompt the index of its sequence: encode the sequences once, scatter with `inverse`."""
    keep = sequence_keep(encoder)
    index: dict[tuple[int, ...], int] = {}
    inverse = np.fromiter(
        (index.setdefault(tuple(ids[:keep]), len(index)) for ids in encoder.tokenizer.encode(list(prompts))),
        dtype=np.int64,
        count=len(prompts),
    )
    return [list(key) for key in index], inverse


def plan_content(encoder, content, bucket) -> tuple[np.ndarray, np.ndarray]:
    """Valid lengths (start..end, capped at the context) and the processing order of content sequences."""
    lengths = np.fromiter((len(c) + 2 for c in content), dtype=np.int64, count=len(content))
    n_valid = np.minimum(lengths, encoder.context_length)
    order = np.argsort(n_valid, kind="stable") if bucket else np.arange(len(content))
    return n_valid, order


def embed_prompts(
    encoder,
    prompts: list[str],
    *,
    batch_size: int = DEFAULT_BATCH,
    bucket: bool | None = None,
    per_token: bool = False,
) -> dict[str, np.ndarray]:
    """In-memory embedding of a prompt list, in input order: {"pooled"[, "tokens", "mask"]}.

    The same batching, bucketing and once-per-distinct-sequence encoding as anatomy.embed.embed_corpus,
    without the cache (for the embedding store, samples and benchmarks). Repeated prompts (and prompts equal
    after truncation) get identical outputs.
    """
    bucket = resolve_bucket(encoder, bucket)
    content, inverse = distinct_content(encoder, prompts)
    n_valid, order = plan_content(encoder, content, bucket)
    width = int(n_valid.max()) if len(content) else 1
    arrays = embed_rows(encoder, content, n_valid, order, batch_size, bucket, width, per_token)
    position = np.empty_like(order)
    position[order] = np.arange(len(order))  # row of each distinct sequence in `arrays`
    return {name: value[position[inverse]] for name, value in arrays.items()}


def embed_rows(encoder, content, n_valid, rows, batch_size, bucket, width, per_token) -> dict:
    """Pooled [n, D] (and tokens [n, W, D], mask [n, W]) for the given corpus rows, batch by batch."""
    from anatomy.encoders.base import valid_mask
    from anatomy.tokenizer import pack

    tok = encoder.tokenizer
    pooled, tokens, masks = [], [], []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        length = int(n_valid[batch].max()) if bucket else encoder.context_length
        ids = pack([content[i] for i in batch], length, tok.sot_id, tok.eot_id, tok.pad_id)
        valid = valid_mask(ids, [len(content[i]) for i in batch])
        encoded = encoder.encode_ids(ids, valid)
        pooled.append(encoded.pooled.cpu().numpy().astype(np.float32, copy=False))
        if per_token:
            t = (encoded.tokens * encoded.mask.unsqueeze(-1)).cpu().numpy().astype(np.float32, copy=False)
            keep = min(width, t.shape[1])
            padded = np.zeros((len(batch), width, t.shape[2]), dtype=np.float32)
            padded[:, :keep] = t[:, :keep]
            mask = np.zeros((len(batch), width), dtype=bool)
            mask[:, :keep] = valid[:, :keep]
            tokens.append(padded)
            masks.append(mask)
    arrays = {"pooled": np.concatenate(pooled)}
    if per_token:
        arrays |= {"tokens": np.concatenate(tokens), "mask": np.concatenate(masks)}
    return arrays
