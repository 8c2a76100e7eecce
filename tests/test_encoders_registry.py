"""Encoder specs, parameter accounting, refusal of untrained encoders, and minilm against sentence-transformers."""

from __future__ import annotations

import json
import os

import pytest
import torch
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.encoders import describe_all, load, require_trained
from anatomy.encoders.registry import Spec, parse_spec
from anatomy.errors import EncoderError

PROMPTS = [
    "a photo of a dog",
    "aerosol can",
    "the man on the left holding a red umbrella",
    "zebra",
    "a very long referring expression about the second small white plate behind the bowl of soup on the table",
]


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("sam3:ckpt/sam3.pt", Spec("sam3", path="ckpt/sam3.pt")),
        ("sam3", Spec("sam3")),
        ("litetext-s1:a.pt", Spec("litetext", path="a.pt", kind="s1")),
        ("litetext-l", Spec("litetext", kind="l")),
        ("open_clip:ViT-B-32", Spec("open_clip", kind="ViT-B-32")),
        ("open_clip:ViT-B-32:w.bin", Spec("open_clip", path="w.bin", kind="ViT-B-32")),
        ("hf:models/m", Spec("hf", path="models/m")),
        ("minilm", Spec("minilm")),
        ("student:run/student", Spec("student", path="run/student")),
    ],
)
def test_parse_spec(spec, parsed):
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["bert", "litetext-s2", "sam3:", "clip:x", "litetext-m:x.pt"])
def test_bad_specs_are_refused_with_the_grammar(spec):
    with pytest.raises(EncoderError) as info:
        parse_spec(spec)
    assert "sam3:PATH" in info.value.hint


def test_missing_checkpoint_is_named():
    with pytest.raises(EncoderError, match="nowhere/sam3.pt does not exist"):
        load("sam3:nowhere/sam3.pt")


def test_trained_flags():
    assert not parse_spec("sam3").trained and not parse_spec("litetext-s0").trained
    assert parse_spec("sam3:x.pt").trained and parse_spec("minilm").trained


EXPECTED_TOTALS = {
    "sam3": 353_724_672,
    "litetext-s0": 42_541_312,
    "litetext-s1": 63_528_192,
    "litetext-l": 123_800_320,
}


def test_describe_all_totals_match_the_spec():
    rows = describe_all()
    assert {r["name"]: r["parameters"] for r in rows} == EXPECTED_TOTALS
    sam3 = rows[0]["components"]
    assert sam3["token_embedding"] == 50_593_792 and sam3["blocks"] == 24 * 12_596_224
    assert all(sum(r["components"].values()) == r["parameters"] for r in rows)


def test_encoders_command_json():
    result = CliRunner().invoke(app, ["encoders", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["name"]: r["parameters"] for r in rows} == EXPECTED_TOTALS
    assert set(rows[0]) >= {"name", "parameters", "components"}


def test_encoders_command_table():
    result = CliRunner().invoke(app, ["encoders"])
    assert result.exit_code == 0, result.output
    assert "353,724,672" in result.stdout and "42,541,312" in result.stdout


def test_untrained_encoders_are_refused_by_analyses():
    bare = load("litetext-s0", device="cpu")
    assert bare.trained is False
    with pytest.raises(EncoderError, match="'litetext-s0' is an untrained architecture"):
        require_trained(bare, "spectrum")


@pytest.fixture(scope="module")
def minilm():
    torch.set_num_threads(2)
    return load("minilm", device="cpu")


@pytest.fixture(scope="module")
def sentence_transformer():
    """The package's own sentence-transformers model: the independent reference."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    from anatomy.encoders.hf import minilm_dir

    return SentenceTransformer(str(minilm_dir()), device="cpu")


def test_minilm_matches_sentence_transformers(minilm, sentence_transformer):
    reference = sentence_transformer.encode(PROMPTS, convert_to_tensor=True)
    ours = minilm.encode(PROMPTS)
    cosine = torch.nn.functional.cosine_similarity(ours.pooled, reference.float(), dim=1)
    assert cosine.min().item() >= 0.9999, cosine
    assert minilm.output_dim == 384 and minilm.context_length == 256 and minilm.trained
    require_trained(minilm)  # a real encoder passes


def test_minilm_real_prompts_match(minilm, sentence_transformer, shared_data):
    """The same on real LVIS names and RefCOCO expressions (a few, to stay quick)."""
    import pandas as pd

    names = json.loads((shared_data / "lvis" / "lvis_v1_categories.json").read_text())
    prompts = [c["name"].replace("_", " ") for c in names[:24]]
    prompts += pd.read_csv(shared_data / "refcoco" / "refcocog_umd_val.csv")["sent"].head(24).tolist()
    reference = sentence_transformer.encode(prompts, convert_to_tensor=True)
    cosine = torch.nn.functional.cosine_similarity(minilm.encode(prompts).pooled, reference.float(), dim=1)
    assert cosine.min().item() >= 0.9999


def test_hf_tokenizer_protocol(minilm):
    tok = minilm.tokenizer
    assert (tok.sot_id, tok.eot_id, tok.pad_id) == (101, 102, 0)  # [CLS], [SEP], [PAD] in BERT's vocabulary
    ids = tok(["a photo of a dog"], 4)
    assert ids[0, 0] == 101 and ids[0, -1] == 102  # truncated: last forced to [SEP]
    assert [tok.token_text(i) for i in tok.encode(["a photo of a dog"])[0]] == [
        "a",
        "photo",
        "of",
        "a",
        "dog",
    ]


def test_hf_directory_spec_equals_minilm(minilm):
    from anatomy.encoders.hf import minilm_dir

    other = load(f"hf:{minilm_dir()}", device="cpu", context_length=32)
    assert other.context_length == 32
    torch.testing.assert_close(other.encode(PROMPTS[:3]).pooled, minilm.encode(PROMPTS[:3]).pooled)


def test_hf_spec_needs_a_model_directory(tmp_path):
    with pytest.raises(EncoderError, match="not a Hugging Face model directory"):
        load(f"hf:{tmp_path}")
