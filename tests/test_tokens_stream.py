"""tokens.parquet written a row group at a time and the tokens statistics streamed over record batches equal
the one-piece computation (an independent reference below: the whole table in memory, blocks by row indices)
on a corpus whose repeated prompts sit in different batches, sources and subsets, with both weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from anatomy.analysis.tokens import TokensParams, _expanded
from anatomy.context import context_table, id_counts, length_stats, recommend_context, vocab_stats
from anatomy.corpus.corpus import CORPUS_COLUMNS
from anatomy.figures import tokens as figs
from anatomy.tokenizer import clip_tokenizer
from anatomy.tokens import analyse, tokenize_corpus

WORDS = ["dog", "red car", "the man on the left", "aerosol can", "café ☕", "a photo of a", "zebra", "x" * 40]


def write_corpus(path, n=600, seed=0, sources=("lvis", "refcoco", "text")):
    """Rows unique by (prompt, source, subset) as a corpus is, repeats scattered, counts 1..5."""
    rng = np.random.default_rng(seed)
    rows, seen = [], set()
    while len(rows) < n:
        k = rng.integers(1, 4)
        prompt = " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), k))
        source = sources[rng.integers(0, len(sources))]
        subset = f"s{rng.integers(0, 2)}"
        if (prompt, source, subset) not in seen:
            seen.add((prompt, source, subset))
            rows.append((prompt, prompt, source, subset, int(rng.integers(1, 6)), f"r{len(rows)}", ""))
    pd.DataFrame(rows, columns=list(CORPUS_COLUMNS)).to_parquet(path, index=False)
    return path


def reference(table, tok, config, contexts, counts):
    """The one-piece computation: every id of the corpus in memory, each block by its rows' indices."""
    ids = table.column("ids").combine_chunks()
    flat, offsets = ids.values.to_numpy(), ids.offsets.to_numpy()
    lengths = table.column("length").to_numpy()
    code = pc.dictionary_encode(table.column("prompt")).combine_chunks().indices.to_numpy()
    source = pc.dictionary_encode(table.column("source")).combine_chunks()
    scode, snames = source.indices.to_numpy(), source.dictionary.to_pylist()
    groups = [("overall", np.arange(len(code)))]
    groups += [
        (snames[s], np.flatnonzero(scode == s)) for s in sorted(range(len(snames)), key=snames.__getitem__)
    ]
    traffic = config.weight == "traffic"

    def block(rows, first, weighted):
        w = np.bincount(code[rows], weights=counts[rows], minlength=code.max() + 1)[code[first]].astype(
            np.int64
        )
        n = lengths[first].astype(np.int64)
        per_row = np.zeros(len(lengths))
        per_row[first] = w if weighted else 1
        c = np.rint(np.bincount(flat, weights=np.repeat(per_row, np.diff(offsets)), minlength=tok.vocab_size))
        c = (
            c.astype(np.int64)
            if weighted
            else id_counts(flat[np.repeat(per_row > 0, np.diff(offsets))], tok.vocab_size)
        )
        out = {"n_prompts": len(first), "length": length_stats(n, w if weighted else None),
               "context": context_table(n, contexts, w if weighted else None),
               "vocab": vocab_stats(c, int(w.sum()) if weighted else len(first), (tok.sot_id, tok.eot_id),
                                    tok.token_text, config.top_k, config.n_top_tokens)}  # fmt: skip
        if weighted:
            out["n_requests"] = int(w.sum())
        return out, n, c, w

    data = {"sources": {}}
    lengths_by, counts_by = {}, {}
    for name, rows in groups:
        first = np.sort(rows[np.unique(code[rows], return_index=True)[1]])
        out, n, c, w = block(rows, first, traffic)
        lengths_by[name], counts_by[name] = n, c
        if name == "overall":
            data["overall"], data["other"] = out, block(rows, first, not traffic)[0]
            lo, hi = config.recommend_range
            data["recommended_context"] = recommend_context(n, config.max_token_loss, config.max_truncation,
                                                            range(lo, hi + 1), w if traffic else None)  # fmt: skip
        else:
            data["sources"][name] = out
    shares = [b["vocab"]["special_share"] for b in data["sources"].values()]
    data["overall"]["vocab"]["special_share_mean_over_sources"] = float(np.mean(shares))
    return data, lengths_by, counts_by


@pytest.mark.parametrize(("weight", "sources"), [("distinct", 3), ("traffic", 3), ("distinct", 1)])
def test_streamed_statistics_equal_the_one_piece_reference(tmp_path, weight, sources):
    names = ("lvis", "refcoco", "text")[-sources:]
    corpus = write_corpus(tmp_path / "corpus.parquet", n=600 if sources > 1 else 400, sources=names)
    tok = clip_tokenizer()
    whole, _ = tokenize_corpus(corpus, tmp_path / "whole", tok, tok.fingerprint, batch=1_000_000)
    path, reused = tokenize_corpus(corpus, tmp_path, tok, tok.fingerprint, batch=37)
    assert not reused and pq.ParquetFile(path).num_row_groups == (
        17 if sources > 1 else 11
    )  # 37 rows a group
    assert pq.ParquetFile(whole).num_row_groups == 1
    table = pq.read_table(path)
    assert table.equals(pq.read_table(whole))  # the same rows, ids and lengths however it was cut
    config = TokensParams(weight=weight)
    contexts = (8, 16, 32, 77)
    counts = pq.read_table(corpus, columns=["count"]).column(0).to_numpy()
    assert counts.max() > 1 and len(set(table.column("prompt").to_pylist())) < table.num_rows
    got, lengths_by, counts_by = analyse(path, tok, config, contexts, counts, batch=53)
    want, want_lengths, want_counts = reference(table, tok, config, contexts, counts.astype(np.int64))
    assert got["overall"] == want["overall"]
    assert got["other_weight"]["block"] == want["other"]
    assert got["sources"].keys() == want["sources"].keys() == set(names)
    for name, block in want["sources"].items():
        assert got["sources"][name] == block
    assert got["recommended_context"] == want["recommended_context"]
    expanded = _expanded(lengths_by)
    assert expanded.keys() == want_lengths.keys()
    for name, n in want_lengths.items():
        np.testing.assert_array_equal(expanded[name], np.sort(n))
        np.testing.assert_array_equal(counts_by[name], want_counts[name])
    pd.testing.assert_frame_equal(
        figs.prepare_length_histogram(expanded), figs.prepare_length_histogram(want_lengths)
    )
    pd.testing.assert_frame_equal(
        figs.prepare_context_tradeoff(expanded), figs.prepare_context_tradeoff(want_lengths)
    )
    pd.testing.assert_frame_equal(figs.prepare_vocab_rank(counts_by), figs.prepare_vocab_rank(want_counts))
    # the same whatever the batch of the read
    assert analyse(path, tok, config, contexts, counts, batch=10_000)[0] == got


def test_a_damaged_row_group_is_rebuilt(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.parquet", n=300)
    tok = clip_tokenizer()
    path, _ = tokenize_corpus(corpus, tmp_path, tok, tok.fingerprint, batch=50)
    good = path.read_bytes()
    assert tokenize_corpus(corpus, tmp_path, tok, tok.fingerprint, batch=50)[1]
    meta = pq.ParquetFile(path).metadata
    at = meta.row_group(4).column(4).data_page_offset + 40  # inside the ids of a late row group
    data = bytearray(good)
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    _, reused = tokenize_corpus(corpus, tmp_path, tok, tok.fingerprint, batch=50)
    assert not reused and path.read_bytes() == good


def test_vocab_over_arrow_texts_equals_the_list_form(tmp_path, monkeypatch):
    """compute_vocab reads the prompts as Arrow strings through ArrowTexts and measures them in chunks;
    batches and chunks of 7 give the result a plain list of Python strings in one chunk gives (the form
    before), traffic-weighted k-fold included."""
    from anatomy.analysis import vocab as analysis
    from anatomy.vocab import build

    corpus = write_corpus(tmp_path / "corpus.parquet")
    params = analysis.VocabParams(weight="traffic", held_out=("builtin:imagenet-classes",), curve=(1, 2))
    monkeypatch.setattr(analysis.ArrowTexts, "BATCH", 7)
    monkeypatch.setattr(build, "PROMPT_CHUNK", 7)  # word positions gathered 7 prompts at a time
    got = analysis.compute_vocab(corpus, params)
    as_list = build.index_texts
    monkeypatch.setattr(analysis, "index_texts", lambda base, texts: as_list(base, list(texts)))
    monkeypatch.setattr(build, "PROMPT_CHUNK", 1 << 40)
    want = analysis.compute_vocab(corpus, params)
    assert got.to_json() == want.to_json() and got.k_fold_other is not None
    texts = analysis.ArrowTexts(pa.array(["a", "b", "c"]), ["x"])
    assert list(texts) == ["a", "b", "c", "x"] and texts[-1] == "x" and texts[1:3] == ["b", "c"]
    with pytest.raises(IndexError):
        texts[4]


def test_most_inflated_equals_the_full_sort():
    from anatomy.vocab.build import TOP_EXAMPLES, _most_inflated

    rng = np.random.default_rng(3)
    full = rng.integers(3, 8, 5000)
    spec = full + rng.integers(-1, 3, 5000)  # many ties in ratio and in tokens added
    texts = [f"p{i % 977}" for i in range(5000)]
    ratio, grown = spec / full, spec - full
    order = sorted(range(5000), key=lambda i: (-ratio[i], -grown[i], texts[i]))
    want = [i for i in order[:TOP_EXAMPLES] if spec[i] > full[i]]
    assert _most_inflated(ratio, grown, texts.__getitem__) == want and len(want) == TOP_EXAMPLES
