"""HFTokenizer.encode calls the Rust tokenizer directly: the ids must equal transformers' own call."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from anatomy.encoders.registry import load_tokenizer

    return load_tokenizer("minilm")


def _reference(tok, texts):
    return tok._tok(list(texts), add_special_tokens=False)["input_ids"]


def test_equal_to_transformers_call_on_awkward_text(minilm_tokenizer):
    texts = ["white dog", "", "  the man in the RED shirt, on the left!  ", "café naïve", "日本の犬", "a\tb\nc",
             "x" * 600, "[CLS] literal [SEP]", "emoji 🐕‍🦺 dog"]  # fmt: skip
    assert minilm_tokenizer.encode(texts) == _reference(minilm_tokenizer, texts)


def test_preset_truncation_is_not_applied(minilm_tokenizer):
    """A tokenizer.json may carry truncation; transformers' call turns it off, and so must encode."""
    backend = minilm_tokenizer._tok.backend_tokenizer
    backend.enable_truncation(max_length=4)
    try:
        long = ["one two three four five six seven"]
        assert len(minilm_tokenizer.encode(long)[0]) == 7
        assert minilm_tokenizer.encode(long) == _reference(minilm_tokenizer, long)
    finally:
        backend.no_truncation()


def test_equal_to_transformers_call_on_real_prompts(minilm_tokenizer, shared_data):
    """Every RefCOCO/+/g expression and LVIS name with its synonyms of the shared data."""
    import csv
    import json

    texts = [
        c["name"].replace("_", " ")
        for c in json.loads((shared_data / "lvis" / "lvis_v1_categories.json").read_text())
    ]
    for path in sorted((shared_data / "refcoco").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            texts += [row["sent"] for row in csv.DictReader(handle)]
    texts = sorted(set(texts))
    assert len(texts) > 50_000
    assert minilm_tokenizer.encode(texts) == _reference(minilm_tokenizer, texts)
