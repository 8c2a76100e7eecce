"""Streaming over a corpus's prompts (anatomy/corpus/stream.py, sampling.draw_sequences) gives the numbers
the whole-corpus code gave: the ids the corpus uses and the distinct token sequences, on the shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anatomy.analysis import sampling
from anatomy.corpus.corpus import ingest, load_corpus
from anatomy.corpus.stream import prompt_batches, used_ids
from anatomy.errors import InputError
from anatomy.tokenizer import clip_tokenizer


class ClipStore:
    """The two things draw_sequences asks of an embedding store: keys (ids cut to a context) and a memo."""

    def __init__(self, keep: int = 3):
        self.tok, self._keep, self.memo = clip_tokenizer(), keep, {}

    def keys(self, prompts):
        return [tuple(ids[: self._keep]) for ids in self.tok.encode(list(prompts))]


def reference_sequences(corpus: Path, store):
    """The earlier whole-corpus implementation, kept here as the reference."""
    frame = load_corpus(corpus)
    prompts = sorted(set(frame["prompt"]))
    index, representative, seq_of_prompt = {}, [], {}
    for prompt, key in zip(prompts, store.keys(prompts), strict=True):
        if key not in index:
            index[key] = len(representative)
            representative.append(prompt)
        seq_of_prompt[prompt] = index[key]
    by_source = {
        str(s): np.unique([seq_of_prompt[p] for p in g["prompt"]])
        for s, g in frame.groupby("source", sort=True)
    }
    return representative, by_source, len(prompts)


@pytest.fixture(scope="module")
def shared_corpus(shared_data: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stream") / "c.parquet"
    ingest("text", [str(shared_data / "v3det" / "category_name_13204_v3det_2023_v1.txt")], out)
    ingest("refcoco", [str(shared_data / "refcoco" / "refcoco_unc_val.csv")], out)
    ingest("lvis", [str(shared_data / "lvis" / "lvis_v1_categories.json")], out)
    return out


def test_drawing_every_sequence_equals_the_whole_corpus_form(shared_corpus: Path, monkeypatch) -> None:
    monkeypatch.setattr(sampling, "SEQUENCE_BATCH", 997)  # many batches, one ending mid-way
    got = sampling.draw_sequences(shared_corpus, ClipStore(), None, 0, by_source=True)
    want = reference_sequences(shared_corpus, ClipStore())
    assert got.prompts == want[0] and got.n_prompts == want[2]
    assert got.groups.keys() == {"overall", *want[1]} and len(want[1]) == 3
    np.testing.assert_array_equal(got.groups["overall"], np.arange(len(want[0])))
    for source in want[1]:
        np.testing.assert_array_equal(got.groups[source], want[1][source])
    assert len(got.prompts) < got.n_prompts  # truncation to 3 ids merged some prompts


class CountingStore(ClipStore):
    def __init__(self, keep: int = 3):
        super().__init__(keep)
        self.tokenized = 0

    def keys(self, prompts):
        self.tokenized += len(prompts)
        return super().keys(prompts)


def test_a_sample_tokenizes_only_what_it_draws(shared_corpus: Path) -> None:
    """n distinct sequences per group (duplicates replaced by further draws), from the group's own prompts,
    seeded; the tokenizer sees a few times n prompts, not the corpus."""
    full = sampling.draw_sequences(shared_corpus, ClipStore(2), None, 0, by_source=True)
    store = CountingStore(2)  # the first two ids: many prompts share a sequence
    got = sampling.draw_sequences(shared_corpus, store, 300, 7, by_source=True)
    assert store.tokenized < 5 * 300 * 4 < full.n_prompts
    keys = store.keys(got.prompts)
    assert len(set(keys)) == len(got.prompts)  # one prompt per sequence
    everything = set(store.keys(full.prompts))
    assert set(keys) <= everything and got.duplicates > 0
    for name, idx in got.groups.items():
        assert len(idx) == min(300, len(full.groups[name]))
        mine = {keys[i] for i in idx}
        assert len(mine) == len(idx)
        assert mine <= {store.keys([full.prompts[i]])[0] for i in full.groups[name]}  # drawn from the group
    again = sampling.draw_sequences(shared_corpus, ClipStore(2), 300, 7, by_source=True)
    assert again.prompts == got.prompts
    other = sampling.draw_sequences(shared_corpus, ClipStore(2), 300, 8, by_source=True)
    assert other.prompts != got.prompts
    assert (
        sampling.draw_sequences(shared_corpus, store, 300, 7, by_source=True) is got
    )  # memo: once per store


def test_used_ids_in_batches_equal_the_whole_corpus_form(shared_corpus: Path) -> None:
    tok = clip_tokenizer()
    content = tok.encode(sorted(set(load_corpus(shared_corpus)["prompt"])))
    want = np.union1d(
        np.unique(np.fromiter((i for ids in content for i in ids), np.int64)), [tok.sot_id, tok.eot_id]
    )
    np.testing.assert_array_equal(used_ids(shared_corpus, tok, tok.vocab_size, batch=1000), want)


def test_prompt_batches_refuse_what_is_not_a_corpus(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pytest.raises(InputError, match="no such corpus"):
        list(prompt_batches(tmp_path / "none.parquet"))
    pq.write_table(pa.table({"prompt": ["a"]}), tmp_path / "x.parquet")
    with pytest.raises(InputError, match="missing columns"):
        list(prompt_batches(tmp_path / "x.parquet"))


def test_tokenizers_without_encode_flat_encode_in_batches(monkeypatch) -> None:
    import pyarrow as pa

    import anatomy.tokens as tokens

    class ListsOnly:  # a tokenizer that returns Python lists (as the Hugging Face ones do)
        def __init__(self, tok):
            self.encode = tok.encode

    tok = clip_tokenizer()
    prompts = pa.array(["a dog", "the red car on the left", "", "café ☕", "x" * 90] * 400, pa.large_string())
    monkeypatch.setattr(tokens, "ENCODE_BATCH", 333)
    flat, offsets = tokens._encode_distinct(ListsOnly(tok), prompts)
    want_flat, want_offsets = tok.encode_flat(prompts)
    np.testing.assert_array_equal(offsets, want_offsets)
    np.testing.assert_array_equal(flat, want_flat)
    assert flat.dtype == np.int32 and offsets.dtype == np.int64


def test_summary_in_batches_equals_the_frame_form(shared_corpus: Path) -> None:
    from anatomy.corpus.corpus import corpus_summary
    from anatomy.corpus.stream import summary

    want = corpus_summary(load_corpus(shared_corpus))
    assert summary(shared_corpus, batch=999) == want
    assert len(want["sources"]) == 3 and want["distinct_prompts"] < want["rows"]


def test_a_one_source_corpus_draws_its_source_as_the_whole(shared_data: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "one.parquet"
    ingest("text", [str(shared_data / "v3det" / "category_name_13204_v3det_2023_v1.txt")], corpus)
    for n in (None, 500):
        got = sampling.draw_sequences(corpus, ClipStore(2), n, 3, by_source=True)
        alone = sampling.draw_sequences(corpus, ClipStore(2), n, 3)
        assert got.groups.keys() == {"overall", "text"} and got.prompts == alone.prompts
        np.testing.assert_array_equal(got.groups["text"], got.groups["overall"])
        np.testing.assert_array_equal(got.groups["overall"], alone.groups["overall"])
    full = reference_sequences(corpus, ClipStore(2))
    assert sampling.draw_sequences(corpus, ClipStore(2), None, 0, by_source=True).prompts == full[0]


def test_sorted_distinct_equals_unique_and_index_in() -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from anatomy.corpus.stream import sorted_distinct

    words = ["dog", "Dog", "café", "cafe", "zebra", "ä", "a", "☕", "a b", "ab", "dog"]
    rng = np.random.default_rng(0)
    strings = pa.chunked_array([pa.array(list(rng.choice(words, 40))) for _ in range(3)])
    distinct, position = sorted_distinct(strings)
    assert distinct.to_pylist() == sorted(set(strings.to_pylist()))
    np.testing.assert_array_equal(position, pc.index_in(strings, value_set=distinct).to_numpy())
    assert sorted_distinct(strings, positions=False)[1] is None


def test_counts_are_checked_whichever_columns_are_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from anatomy.corpus.schema import CORPUS_COLUMNS
    from anatomy.corpus.stream import corpus_batches

    columns = {c: ["a", "b"] for c in CORPUS_COLUMNS} | {"count": pa.array([1, 0], pa.int64())}
    pq.write_table(pa.table(columns), tmp_path / "zero.parquet")
    for asked in (["prompt"], ["prompt", "source", "subset"], ["count"]):
        with pytest.raises(InputError, match="column 'count' has values below 1"):
            list(corpus_batches(tmp_path / "zero.parquet", asked))
    columns["count"] = pa.array([1, 2], pa.int64())
    pq.write_table(pa.table(columns), tmp_path / "ok.parquet")
    (got,) = corpus_batches(tmp_path / "ok.parquet", ["source", "prompt"])
    assert got.schema.names == ["source", "prompt"]  # only what was asked, in that order
