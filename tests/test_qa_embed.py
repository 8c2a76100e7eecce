"""Issue 24's `embed` point, checked end to end: on a corpus whose repeated prompts fall in different length
buckets, each distinct token sequence is encoded once, every repeat gets bit-identical vectors, and
scikit-dimension's MLE on the distinct rows of `embed`'s output equals ours (anatomy.metrics.intrinsic_dim,
which dedupes the same rows) to 1e-9, as the README says of `anatomy dims`."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import skdim
from tiny_teacher import tiny_sam3_teacher

import anatomy.encoders.registry
from anatomy.embed import embed_corpus, load_embeddings
from anatomy.metrics.intrinsic_dim import intrinsic_dim

WORDS = ["red", "small", "old", "wooden", "striped", "shiny", "broken", "tall"]
NOUNS = ["car", "dog", "cup", "chair", "boat", "lamp", "shoe", "kite", "bench", "tree"]


def _prompts() -> tuple[list[str], int]:
    """Distinct prompts of 1 to 6 words (different buckets), each repeated 1-3 times in a shuffled order."""
    rng = np.random.default_rng(0)
    distinct = sorted({" ".join(rng.choice(WORDS, rng.integers(0, 5)).tolist() + [str(rng.choice(NOUNS))])
                       for _ in range(600)})  # fmt: skip
    rows = [p for p in distinct for _ in range(int(rng.integers(1, 4)))]
    return [rows[i] for i in rng.permutation(len(rows))], len(distinct)


def test_repeats_are_identical_and_dims_equal_scikit_dimension_on_embed_output(tmp_path, monkeypatch):
    prompts, n_distinct = _prompts()
    assert len(prompts) > 1.5 * n_distinct > 300
    frame = pd.DataFrame({"prompt": prompts, "raw": prompts, "source": "text", "subset": "s",
                          "count": 1, "ref": [f"l{i}" for i in range(len(prompts))], "meta": ""})  # fmt: skip
    frame.to_parquet(tmp_path / "c.parquet")
    teacher = tiny_sam3_teacher(tmp_path)

    encoded: list[int] = []
    real = anatomy.encoders.registry.load

    def counting(*args, **kwargs):
        encoder = real(*args, **kwargs)
        inner = encoder.encode_ids
        encoder.encode_ids = lambda ids, valid: encoded.append(len(ids)) or inner(ids, valid)
        return encoder

    monkeypatch.setattr(anatomy.encoders.registry, "load", counting)
    embed_corpus(tmp_path / "c.parquet", teacher, tmp_path / "e", batch_size=16)
    assert sum(encoded) == n_distinct  # one encoded row per distinct token sequence
    pooled = np.asarray(load_embeddings(tmp_path / "e", per_token=False).pooled)
    for prompt in set(prompts):  # every repeat bit-identical to the first
        rows = [i for i, p in enumerate(prompts) if p == prompt]
        assert all(np.array_equal(pooled[rows[0]], pooled[r]) for r in rows[1:]), prompt
    x = pooled.astype(np.float64)
    unique = np.unique(x, axis=0)
    assert len(unique) == n_distinct
    ours = intrinsic_dim(x, n_boot=0)
    assert ours.n_points == n_distinct and ours.n_duplicates == len(prompts) - n_distinct
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_harmonic = skdim.id.MLE().fit(unique).dimension_
        ref_mean = skdim.id.MLE().fit(unique, comb="mean").dimension_
    assert abs(ours.mle_harmonic - ref_harmonic) <= 1e-9 * abs(ref_harmonic)
    assert abs(ours.mle_mean - ref_mean) <= 1e-9 * abs(ref_mean)
