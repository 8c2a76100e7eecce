"""`anatomy export` round trips: the exported files load back (through our loaders and open_clip's own
TextTransformer) and give the student's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.encoders.student import StudentConfig, build_student, load_student, save_student

PROMPTS = [
    "a photo of a dog",
    "aerosol can",
    "the man on the left holding a red umbrella near the bus",
    "kite",
]


def _run_dir(folder, cfg: StudentConfig, seed: int = 0):
    """A run directory as distill leaves it (only what export reads): checkpoints/best."""
    torch.manual_seed(seed)
    module = build_student(cfg)
    with torch.no_grad():  # move the projector off its zero-bias init so every tensor matters
        module.projector.bias.normal_()
    save_student(module, cfg, folder / "checkpoints" / "best", provenance={"teacher": "test"})
    return folder


def _outputs(encoder):
    return encoder.encode(PROMPTS).tokens.numpy()


def test_litetext_export_loads_back_as_a_litetext_student(tmp_path):
    from anatomy.encoders.registry import load

    run = _run_dir(tmp_path / "run", StudentConfig("litetext-s0", context_length=16))
    result = CliRunner().invoke(
        app, ["export", str(run), "--format", "litetext", "--out", str(tmp_path / "s0.pt"), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["load_as"] == f"litetext-s0:{tmp_path / 's0.pt'}"
    raw = torch.load(tmp_path / "s0.pt", weights_only=True)["model"]
    assert "detector.backbone.language_backbone.encoder.transformer.0.token_mixer.layer_scale" in raw
    exported = load(summary["load_as"], device="cpu")
    original = load_student(run / "checkpoints" / "best", device="cpu")
    np.testing.assert_allclose(_outputs(exported), _outputs(original), rtol=1e-5, atol=1e-5)


def test_open_clip_export_matches_open_clip_and_our_loader(tmp_path):
    import open_clip
    from open_clip.model import CLIPTextCfg, _build_text_tower
    from safetensors.torch import load_file

    from anatomy.encoders.openclip import load_open_clip

    cfg = StudentConfig("custom", layers=2, width=64, heads=4, context_length=16)
    run = _run_dir(tmp_path / "run", cfg)
    out = tmp_path / "oc"
    result = CliRunner().invoke(app, ["export", str(run), "--format", "open_clip", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model_cfg = json.loads((out / "open_clip_config.json").read_text())["model_cfg"]
    weights = load_file(str(out / "open_clip_model.safetensors"))
    original = load_student(run / "checkpoints" / "best", device="cpu")
    ids, valid = original.tokenize(PROMPTS)
    expected = _outputs(original)

    # open_clip's own TextTransformer, built from the exported config, strict load, per-token outputs
    tower = _build_text_tower(model_cfg["embed_dim"], CLIPTextCfg(**model_cfg["text_cfg"])).eval()
    tower.load_state_dict({k.removeprefix("text."): v for k, v in weights.items()}, strict=True)
    with torch.no_grad():
        np.testing.assert_allclose(tower(torch.from_numpy(ids)).numpy(), expected, rtol=1e-4, atol=1e-5)

    # our open_clip loader (registered config name): hidden states, which the projector maps to the outputs
    config_file = tmp_path / "anatomy-export-test.json"
    config_file.write_text(json.dumps(model_cfg))
    open_clip.add_model_config(config_file)
    ours = load_open_clip("anatomy-export-test", out / "open_clip_model.safetensors", name="t", device="cpu")
    hidden = ours.encode(PROMPTS).tokens
    projected = hidden @ weights["text.text_projection.weight"].T + weights["text.text_projection.bias"]
    np.testing.assert_allclose(projected.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_export_refuses_what_the_format_cannot_hold(tmp_path):
    custom = _run_dir(tmp_path / "custom", StudentConfig("custom", layers=1, width=32, heads=2))
    result = CliRunner().invoke(
        app, ["export", str(custom), "--format", "litetext", "--out", str(tmp_path / "x.pt")]
    )
    assert result.exit_code == 1 and "LiteText layout holds only" in result.output
    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "nothing"), "--format", "open_clip", "--out", str(tmp_path / "d")]
    )
    assert result.exit_code == 1 and "nothing: no such directory" in result.output
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "empty"), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]
    )
    assert result.exit_code == 1 and "no 'best' student checkpoint" in result.output
    result = CliRunner().invoke(
        app, ["export", str(custom), "--format", "tflite", "--out", str(tmp_path / "d")]
    )
    assert result.exit_code == 2 and "'tflite' is not one of" in " ".join(
        result.output.split()
    )  # usage error


@pytest.mark.slow
def test_s0_cannot_go_to_open_clip(tmp_path):
    run = _run_dir(tmp_path / "run", StudentConfig("litetext-s0"))
    result = CliRunner().invoke(
        app, ["export", str(run), "--format", "open_clip", "--out", str(tmp_path / "d")]
    )
    assert result.exit_code == 1 and "RepMixer" in result.output


def test_a_refused_export_hints_only_formats_that_take_the_student():
    """A minilm-tokenized student is refused by litetext and open_clip alike: the hint names onnx, never the
    other refusing layout (sweep item 9)."""
    from types import SimpleNamespace

    from anatomy.distill.export import _other_formats

    minilm = SimpleNamespace(architecture="litetext-s1", tokenizer="minilm", output_dim=384)
    assert _other_formats(minilm, "litetext") == "onnx or int8"
    assert _other_formats(minilm, "open_clip") == "onnx or int8"
    s0 = SimpleNamespace(architecture="litetext-s0", tokenizer="clip", output_dim=256)
    assert _other_formats(s0, "open_clip") == "litetext or onnx or int8"
    custom = SimpleNamespace(architecture="custom", tokenizer="clip", output_dim=256)
    assert _other_formats(custom, "litetext") == "open_clip or onnx or int8"
