"""SAM3 teacher: parity with open_clip's text transformer on checkpoints written in the official and the
Hugging Face layouts (the key maps here are written independently of anatomy.encoders.sam3)."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from anatomy.encoders import load
from anatomy.errors import CheckpointError, EncoderError

P = "detector.backbone.language_backbone."
PROMPTS = ["a photo of a dog", "aerosol can", "the man on the left holding a red umbrella", "x"]


def reference(width: int, layers: int, context: int = 32, seed: int = 0):
    """open_clip's causal text transformer (no pooling) and a resizer, all weights random (LN too).

    Built on the meta device and filled with uniform noise: the same architecture as open_clip's own init
    but several times faster at full size (353M values).
    """
    from open_clip.transformer import TextTransformer

    with torch.device("meta"):
        tower = TextTransformer(
            context_length=context,
            width=width,
            heads=width // 64,
            layers=layers,
            output_dim=512,
            pool_type="none",
            output_tokens=True,
            act_layer=torch.nn.GELU,
            norm_layer=torch.nn.LayerNorm,
        )
        resizer = torch.nn.Linear(width, 256)
    tower, resizer = tower.to_empty(device="cpu").eval(), resizer.to_empty(device="cpu").eval()
    tower.attn_mask = tower.build_causal_mask()  # a non-persistent buffer: rebuild it off the meta device
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in [
            *tower.named_parameters(),
            *(("resizer." + n, q) for n, q in resizer.named_parameters()),
        ]:
            p.uniform_(-2 / width**0.5, 2 / width**0.5, generator=generator)
            if "ln" in name and name.endswith("weight"):  # LayerNorm gains near 1, but not identity
                p.add_(1.0)
    return tower, resizer


def reference_tokens(tower, resizer, prompts, context=32):
    from open_clip.tokenizer import tokenize

    ids = tokenize(prompts, context_length=context)
    with torch.no_grad():
        _, tokens = tower(ids)
        return resizer(tokens)


def official_layout(tower, resizer) -> dict:
    state = {P + "encoder." + k: v for k, v in tower.state_dict().items() if k != "attn_mask"}
    state[P + "resizer.weight"], state[P + "resizer.bias"] = resizer.weight.data, resizer.bias.data
    state["detector.backbone.vision_backbone.trunk.weight"] = torch.zeros(3)  # other parts of sam3.pt
    return state


def hf_layout(tower, resizer, prefix="detector_model.") -> dict:
    t = "text_encoder.text_model."
    names = {
        "ln_1": "layer_norm1",
        "ln_2": "layer_norm2",
        "mlp.c_fc": "mlp.fc1",
        "mlp.c_proj": "mlp.fc2",
        "attn.out_proj": "self_attn.out_proj",
    }
    out = {}
    for key, value in tower.state_dict().items():
        if m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)", key):
            i, mod, kind = m.groups()
            base = f"{t}encoder.layers.{i}."
            if mod == "attn" or mod == "attn.in_proj":
                continue
            out[base + names[mod] + "." + kind] = value.clone()
        elif m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)", key):
            i, kind = m.groups()
            q, k, v = value.chunk(3)
            for c, piece in zip("qkv", (q, k, v), strict=True):
                out[f"{t}encoder.layers.{i}.self_attn.{c}_proj.{kind}"] = piece.clone()
    out[t + "embeddings.token_embedding.weight"] = tower.token_embedding.weight.data.clone()
    out[t + "embeddings.position_embedding.weight"] = tower.positional_embedding.data.clone()
    out[t + "final_layer_norm.weight"] = tower.ln_final.weight.data.clone()
    out[t + "final_layer_norm.bias"] = tower.ln_final.bias.data.clone()
    out["text_encoder.text_projection.weight"] = tower.text_projection.data.T.contiguous()
    out["text_projection.weight"], out["text_projection.bias"] = (
        resizer.weight.data.clone(),
        resizer.bias.data.clone(),
    )
    out["vision_encoder.dummy"] = torch.zeros(2)
    return {prefix + k: v for k, v in out.items()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tower, resizer = reference(width=128, layers=2)
    folder = tmp_path_factory.mktemp("sam3")
    torch.save({"model": official_layout(tower, resizer)}, folder / "sam3.pt")
    save_file(hf_layout(tower, resizer), str(folder / "model.safetensors"))
    return folder, reference_tokens(tower, resizer, PROMPTS)


@pytest.mark.parametrize("filename", ["sam3.pt", "model.safetensors"])
def test_small_checkpoint_matches_open_clip(small, filename):
    folder, expected = small
    encoder = load(f"sam3:{folder / filename}", device="cpu")
    got = encoder.encode(PROMPTS)
    assert got.tokens.shape == (4, 32, 256)
    torch.testing.assert_close(got.tokens, expected, atol=1e-5, rtol=1e-5)
    assert got.mask.sum(1).tolist() == [7, 5, 11, 3]  # SOT + content + EOT, by position
    assert encoder.trained and encoder.causal
    assert encoder.module.cfg.heads == 2 and encoder.module.cfg.layers == 2
    layout = "Hugging Face" if filename.endswith("safetensors") else "official sam3.pt"
    assert f"detected the {layout} layout" in encoder.load_notes


def test_shorter_context_is_the_first_positions(small):
    """Causal: at context 16 the outputs equal the first 16 positions of a 32-context run (no truncation)."""
    folder, expected = small
    encoder = load(f"sam3:{folder / 'sam3.pt'}", device="cpu", context_length=16)
    got = encoder.encode(PROMPTS)
    torch.testing.assert_close(got.tokens, expected[:, :16], atol=1e-5, rtol=1e-5)


def test_context_beyond_the_table_is_refused(small):
    folder, _ = small
    with pytest.raises(EncoderError, match="exceeds the teacher's 32 learned positions"):
        load(f"sam3:{folder / 'sam3.pt'}", context_length=77)


def test_missing_and_misshaped_keys_are_listed(small, tmp_path):
    folder, _ = small
    state = torch.load(folder / "sam3.pt")["model"]
    del state[P + "encoder.transformer.resblocks.1.mlp.c_fc.bias"]
    state[P + "encoder.ln_final.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError) as info:
        load(f"sam3:{tmp_path / 'broken.pt'}")
    text = str(info.value)
    assert "1 missing [transformer.resblocks.1.mlp.c_fc.bias" in text.replace("encoder.", "", 1)
    assert "encoder.ln_final.bias: checkpoint [7] vs model [128]" in text


def test_not_a_sam3_checkpoint(tmp_path):
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no SAM3 text encoder found"):
        load(f"sam3:{tmp_path / 'other.pt'}")


def test_parameter_breakdown_arithmetic(small):
    """Small-model breakdown follows the spec's formula: 12 w^2 + 13 w per block (MLP 4w)."""
    folder, _ = small
    parts = load(f"sam3:{folder / 'sam3.pt'}").parameter_breakdown()
    w = 128
    assert parts == {
        "token_embedding": 49408 * w,
        "positional_embedding": 32 * w,
        "blocks": 2 * (12 * w * w + 13 * w),
        "ln_final": 2 * w,
        "text_projection (unused)": w * 512,
        "resizer": w * 256 + 256,
    }


@pytest.mark.slow
def test_full_size_teacher_matches_open_clip_in_both_layouts(tmp_path):
    """Width 1024, 24 layers, 16 heads, context 32: 353,724,672 parameters, two layouts, 1e-5 fp32."""
    torch.set_num_threads(2)
    tower, resizer = reference(width=1024, layers=24)
    prompts = PROMPTS[:2]
    expected = reference_tokens(tower, resizer, prompts)
    torch.save(official_layout(tower, resizer), tmp_path / "sam3.pt")
    save_file(hf_layout(tower, resizer, prefix=""), str(tmp_path / "model.safetensors"))
    del tower, resizer
    for filename in ("sam3.pt", "model.safetensors"):
        encoder = load(f"sam3:{tmp_path / filename}", device="cpu")
        assert encoder.n_parameters == 353_724_672
        assert encoder.module.cfg.heads == 16
        torch.testing.assert_close(encoder.encode(prompts).tokens, expected, atol=1e-5, rtol=1e-5)
        del encoder


def test_transformers_own_sam3_text_layout(tmp_path):
    """A second, independent reference: transformers' CLIPTextModelWithProjection (what its Sam3Model uses
    as `text_encoder`) plus the 256-d `text_projection`, saved under Sam3Model's prefix `detector_model.`."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(3)
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=128,
        intermediate_size=512,
        projection_dim=512,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,
        hidden_act="gelu",
        eos_token_id=49407,
    )
    text_encoder = CLIPTextModelWithProjection(config).eval()
    with torch.no_grad():
        for p in text_encoder.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # LayerNorms off identity, biases non-zero
    resizer = torch.nn.Linear(128, 256).eval()
    state = {"detector_model.text_encoder." + k: v for k, v in text_encoder.state_dict().items()}
    state |= {"detector_model.text_projection." + k: v for k, v in resizer.state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))

    from open_clip.tokenizer import tokenize

    with torch.no_grad():
        expected = resizer(text_encoder(input_ids=tokenize(PROMPTS, context_length=32)).last_hidden_state)
    got = load(f"sam3:{tmp_path / 'model.safetensors'}", device="cpu").encode(PROMPTS).tokens
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
