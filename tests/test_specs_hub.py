"""Encoder specs as users write them: `hf:ORG/NAME`, `open_clip:hf-hub:ORG/NAME` and `open_clip:MODEL:TAG`,
loaded with the hub offline from a cache directory this test populates in huggingface_hub's real layout
(blobs + snapshots/<commit> symlinks + refs/main); nothing cached is a one-line error naming the model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from anatomy.errors import EncoderError

pytest.importorskip("transformers")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROMPTS = ["a photo of a dog", "aerosol can", "the red kite on the left"]


def populate(cache, repo: str, source_dir) -> None:
    """Put every file of source_dir into the hub cache as repo@main (blobs by sha256, snapshot symlinks)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(source_dir.iterdir()):
        data = file.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(f"../../blobs/{blob.name}")
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 and an empty hub cache at tmp_path/hub (set where huggingface_hub reads them)."""
    from huggingface_hub import constants

    import anatomy.encoders.hub as hub

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import; the switch the library uses
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "USER_OFFLINE", "1")  # the user's switch, as read at import
    return cache


def _tiny_bert(folder):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "dog", "aerosol", "can", "the",
             "red", "kite", "on", "left"]  # fmt: skip
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=24).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=24)  # fmt: skip
    BertModel(config).save_pretrained(str(folder))
    return folder


def test_hf_hub_id_loads_from_the_offline_cache(tmp_path, offline_cache):
    from anatomy.encoders.hf import load_hf, load_hf_tokenizer

    source = _tiny_bert(tmp_path / "src")
    populate(offline_cache, "tiny-org/tiny-bert", source)
    from_hub = load_hf("tiny-org/tiny-bert", name="hf:tiny-org/tiny-bert", device="cpu")
    local = load_hf(source, name="hf:local", device="cpu")
    np.testing.assert_array_equal(
        from_hub.encode(PROMPTS).pooled.numpy(), local.encode(PROMPTS).pooled.numpy()
    )
    assert str(offline_cache) in str(from_hub.module.model.name_or_path)  # really the cached snapshot
    assert load_hf_tokenizer("tiny-org/tiny-bert").name == "hf:tiny-org/tiny-bert"


def test_hf_hub_id_not_cached_is_one_line_naming_the_model(offline_cache):
    from anatomy.encoders.hf import load_hf

    with pytest.raises(EncoderError) as caught:
        load_hf("nobody/absent-model", name="hf:nobody/absent-model", device="cpu")
    assert "nobody/absent-model" in caught.value.message and "offline" in caught.value.message
    assert "\n" not in caught.value.message and "HF_HUB_CACHE" in caught.value.hint


TEXT_CFG = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}


def _tiny_open_clip(folder):
    """An open_clip hub repository: open_clip_config.json + a full CLIP state dict (text keys at the top)."""
    from open_clip.model import CLIPTextCfg, _build_text_tower
    from safetensors.torch import save_file

    folder.mkdir()
    model_cfg = {"embed_dim": 24, "text_cfg": TEXT_CFG, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16}}  # fmt: skip
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    torch.manual_seed(1)
    tower = _build_text_tower(24, CLIPTextCfg(**TEXT_CFG))
    state = {k: v.contiguous() for k, v in tower.state_dict().items() if k != "attn_mask"}
    state["visual.proj"] = torch.zeros(2, 2)
    state["logit_scale"] = torch.ones(())
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return tower, model_cfg


def _reference(tower, prompts):
    from anatomy.tokenizer import clip_tokenizer

    ids = torch.as_tensor(clip_tokenizer()(prompts, 16))
    with torch.no_grad():
        x, mask = tower._embeds(ids)
        return tower.ln_final(tower.transformer(x, attn_mask=mask)).numpy()


def test_open_clip_hf_hub_repository_from_the_offline_cache(tmp_path, offline_cache):
    from anatomy.encoders.openclip import load_open_clip

    tower, _ = _tiny_open_clip(tmp_path / "src")
    populate(offline_cache, "tiny-org/tiny-clip", tmp_path / "src")
    encoder = load_open_clip(
        "hf-hub", "tiny-org/tiny-clip", name="open_clip:hf-hub:tiny-org/tiny-clip", device="cpu"
    )
    assert encoder.trained and encoder.output_dim == 32
    assert any("image-tower" in note for note in encoder.load_notes)
    np.testing.assert_allclose(encoder.encode(PROMPTS).tokens.numpy(), _reference(tower, PROMPTS), atol=1e-5)


def test_open_clip_pretrained_tag_resolves_through_open_clip(tmp_path, offline_cache, monkeypatch):
    """A tag in open_clip's own table (here one added for a tiny config) is downloaded by open_clip from
    the cache; the real tables hold only full-size models, too big for a unit test."""
    import open_clip
    from open_clip import pretrained

    from anatomy.encoders.openclip import load_open_clip

    tower, model_cfg = _tiny_open_clip(tmp_path / "src")
    populate(offline_cache, "tiny-org/tiny-clip", tmp_path / "src")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "Tiny-Anatomy.json").write_text(json.dumps(model_cfg))
    open_clip.add_model_config(configs / "Tiny-Anatomy.json")
    monkeypatch.setitem(
        pretrained._PRETRAINED, "Tiny-Anatomy", {"tinytag": pretrained._pcfg(hf_hub="tiny-org/tiny-clip/")}
    )
    encoder = load_open_clip("Tiny-Anatomy", "tinytag", name="open_clip:Tiny-Anatomy:tinytag", device="cpu")
    np.testing.assert_allclose(encoder.encode(PROMPTS).tokens.numpy(), _reference(tower, PROMPTS), atol=1e-5)
    with pytest.raises(EncoderError, match="neither a file nor one of open_clip's pretrained tags"):
        load_open_clip("Tiny-Anatomy", "nosuchtag", name="x", device="cpu")


def test_real_open_clip_tag_not_cached_is_one_line(offline_cache):
    from anatomy.encoders.openclip import load_open_clip

    with pytest.raises(EncoderError) as caught:
        load_open_clip(
            "ViT-B-32", "laion2b_s34b_b79k", name="open_clip:ViT-B-32:laion2b_s34b_b79k", device="cpu"
        )
    assert caught.value.message.startswith(
        "open_clip:ViT-B-32:laion2b_s34b_b79k: not in the Hugging Face cache"
    )
    assert "offline" in caught.value.message
    assert "\n" not in caught.value.message and "HF_HUB_CACHE" in caught.value.hint
