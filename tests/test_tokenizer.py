"""The CLIP BPE tokenizer: known answers, and exact id parity with open_clip's SimpleTokenizer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anatomy.errors import InputError
from anatomy.tokenizer import CLIP_EOT, CLIP_SOT, ClipTokenizer, clip_tokenizer, lengths, merges_path, pack

ADVERSARIAL = [
    "a photo of a dog",
    "",
    "   ",
    " \t\n\r\x0b\x0c ",
    "\u00a0\u2003\u3000",  # non-breaking, em and ideographic spaces
    "Café naïve résumé Ångström façade",
    "cafe\u0301 (combining accent)",
    "😀 🐕‍🦺 👩🏽‍🚀 🇫🇷 dog😀cat",
    "日本語のテキスト 中文 한국어 русский ελληνικά עברית العربية हिन्दी ไทย",
    "mixed: dogСobaka 犬dog",
    "&amp; &lt;b&gt;bold&lt;/b&gt; &amp;amp; &#39;quoted&#39; &nbsp;x &copy; &bogus;",
    "Tom &amp; Jerry",
    "\x00\x01\x07 ctrl\x1c\x1d\x1e\x1f chars \x7f\x80\x9f",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "man's dog's it'll we've they're I'm he'd can't o'clock rock'n'roll",
    "MAN'S DOG'S IT'LL",
    "curly ’s quotes “like this” ‘and this’",
    "ﬁ ﬂ ligatures Ｆｕｌｌｗｉｄｔｈ ①②③ ½ ²",
    "mojibake: CafÃ© donâ€™t",
    "numbers 12345 3.14 1,000,000 ٣٤ ४५",
    "punctuation!!! ??? ... --- ___ *** ### @@@ $$$ %%% ^^^",
    "<start_of_text> hi <end_of_text> !<start_of_text> <START_OF_TEXT>",
    "under_scored_name aerosol_can",
    "ſ 'ſ ǅ İstanbul ß ẞ",
    "the " * 40,
    "supercalifragilisticexpialidocious" * 12,
    "a very long referring expression " * 12,
    "x",
    "'",
    "\u0000",
    "lone \ud800 surrogate",  # ftfy replaces it with U+FFFD on both sides
]


@pytest.fixture(scope="module")
def reference():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


@pytest.fixture(scope="module")
def tok():
    return ClipTokenizer()


def test_known_answers(tok):
    assert tok.encode(["a photo of a dog", "aerosol can"]) == [
        [320, 1125, 539, 320, 1929],
        [10196, 9941, 753],
    ]
    assert tok(["a photo of a dog"], 8).tolist() == [[CLIP_SOT, 320, 1125, 539, 320, 1929, CLIP_EOT, 0]]
    assert (tok.vocab_size, tok.sot_id, tok.eot_id, tok.pad_id) == (49408, 49406, 49407, 0)
    assert len(tok.bpe.ids) == 49408 and len(tok.bpe.pair_rank) == 48894


def test_token_text(tok):
    dog = tok.encode(["dog café 😀"])[0]
    assert [tok.token_text(i) for i in dog] == ["dog</w>", "café</w>", "😀</w>"]
    assert tok.token_text(CLIP_SOT) == "<start_of_text>" and tok.token_text(CLIP_EOT) == "<end_of_text>"
    assert tok.token_text(0) == "!"


def test_clip_tokenizer_is_shared_and_merges_ship_with_open_clip():
    assert clip_tokenizer() is clip_tokenizer()
    assert merges_path().name == "bpe_simple_vocab_16e6.txt.gz"


def test_missing_merges_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="merges"):
        ClipTokenizer(tmp_path / "nope.txt.gz")


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_adversarial_parity(tok, reference, text):
    assert tok.encode([text]) == [reference.encode(text)]


@pytest.mark.parametrize("context_length", [1, 2, 3, 5, 8, 16, 32, 77])
def test_padded_parity_with_open_clip_tokenize(tok, context_length):
    import open_clip

    expected = open_clip.tokenize(ADVERSARIAL, context_length=context_length).numpy()
    got = tok(ADVERSARIAL, context_length)
    assert got.dtype == np.int64 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_pack_and_lengths_by_position():
    content = [[], [5], [1, 2, 3, 4, 5, 6]]
    assert lengths(content).tolist() == [2, 3, 8]
    assert pack(content, 5, 90, 91).tolist() == [[90, 91, 0, 0, 0], [90, 5, 91, 0, 0], [90, 1, 2, 3, 91]]
    assert pack(content, 5, 90, 91, pad=7)[0].tolist() == [90, 91, 7, 7, 7]
    assert pack([], 4, 90, 91).shape == (0, 4)


_ALPHABET = st.sampled_from(
    list("abz AZ'’s.,!-_&;#<>0159éüßñ😀犬ДΩ\t\n\u00a0\u200b") + ["&amp;", "'ll", "</w>"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=25).map("".join))
def test_random_strings_parity(tok, reference, text):
    assert tok.encode([text])[0] == reference.encode(text)


@pytest.mark.slow
def test_builtin_imagenet_prompts_parity(tok, reference):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    prompts = [template(c) for template in OPENAI_IMAGENET_TEMPLATES for c in IMAGENET_CLASSNAMES]
    assert len(prompts) == 80_000
    ours = tok.encode(prompts)
    mismatches = [p for p, ids in zip(prompts, ours, strict=True) if ids != reference.encode(p)]
    assert mismatches == []


def shared_prompt_texts(root: Path) -> list[str]:
    """Every prompt-like string in the shared data, raw (as the upstream files spell it), in file order."""
    texts: list[str] = []
    for cat in json.loads((root / "lvis" / "lvis_v1_categories.json").read_text()):
        texts += [cat["name"], cat["name"].replace("_", " "), *cat["synonyms"], cat["def"]]
    for group in ("lvis/yoloworld_lvis_v1_class_texts.json", "coco/yoloworld_coco_class_texts.json"):
        texts += [t for names in json.loads((root / group).read_text()) for t in names]
    for path in sorted((root / "refcoco").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            texts += [row["sent"] for row in csv.DictReader(handle)]
    saco = json.loads((root / "saco" / "toy_saco_veval_sav_test_gt.json").read_text())
    texts += [c["name"] for c in saco["categories"]] + [a["noun_phrase"] for a in saco["annotations"]]
    for entry in json.loads((root / "rf100vl" / "rf100v1_labels_names.json").read_text()):
        texts += list(entry["classes"])
    texts += list(json.loads((root / "rf100vl" / "dataset_name_to_category.json").read_text()))
    texts += (
        (root / "v3det" / "category_name_13204_v3det_2023_v1.txt").read_text(encoding="utf-8").splitlines()
    )
    return texts


@pytest.mark.slow
def test_shared_corpus_parity(tok, reference, shared_data):
    texts = list(dict.fromkeys(shared_prompt_texts(shared_data)))
    assert len(texts) > 100_000
    ours = tok.encode(texts)
    mismatches = [t for t, ids in zip(texts, ours, strict=True) if ids != reference.encode(t)]
    assert mismatches == []
    # The whole padded batch too, at the teacher's and the students' contexts.
    import open_clip

    sample = texts[::50]
    for context_length in (16, 32):
        np.testing.assert_array_equal(
            tok(sample, context_length), open_clip.tokenize(sample, context_length).numpy()
        )


def test_every_word_token_encodes_to_itself(tok):
    """Backs the whole-word shortcut: each word-final vocabulary token w</w> is BPE's own answer for w."""
    bpe = tok.bpe
    assert bpe.whole_words
    failures = []
    for symbol, token_id in bpe.ids.items():
        if not symbol.endswith("</w>") or symbol in ("<end_of_text>",):
            continue
        ids = [bpe.byte_id[bpe.char_byte[c]] for c in symbol[: -len("</w>")]]
        ids[-1] += 256
        if bpe._merge(ids) != [token_id]:
            failures.append(symbol)
    assert failures == []


def test_batch_and_single_paths_agree_with_open_clip(reference):
    import pyarrow as pa

    texts = ADVERSARIAL * 12  # above the batch threshold, with repeats
    expected = [reference.encode(t) for t in texts]
    assert ClipTokenizer().encode(texts) == expected  # vectorised path
    single = ClipTokenizer()
    assert [single.encode_one(t) for t in texts] == expected  # one text at a time
    clean = [t for t in texts if "\ud800" not in t]  # Arrow cannot hold a lone surrogate
    flat, offsets = ClipTokenizer().encode_flat(
        pa.chunked_array([pa.array(clean[:100]), pa.array(clean[100:])])
    )
    assert flat.dtype == np.int32 and offsets[0] == 0 and offsets[-1] == flat.size
    got = [flat[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    assert got == [reference.encode(t) for t in clean]
