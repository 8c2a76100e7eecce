"""`--init SPEC`: a student starts from a pretrained tower: every body tensor copied exactly, the positional
table resized to the student's context, the projector new; open_clip towers map back onto the layout."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from anatomy.distill.init import POS_KEY, initialise_from
from anatomy.encoders.student import StudentConfig, build_student, save_student
from anatomy.errors import AnatomyError, CheckpointError


def _saved(folder, cfg, seed=0):
    torch.manual_seed(seed)
    module = build_student(cfg)
    save_student(module, cfg, folder, provenance={})
    return module


def test_student_source_copies_the_body_and_resizes_positions(tmp_path):
    source = _saved(tmp_path / "s1", StudentConfig("litetext-s1", context_length=16))
    torch.manual_seed(5)
    student = build_student(StudentConfig("litetext-s1", context_length=24, output_dim=384))
    projector_before = student.projector.weight.detach().clone()
    notes = initialise_from(f"student:{tmp_path / 's1'}", student, 24)
    src, dst = source.state_dict(), student.state_dict()
    for key in src:
        if key.startswith("projector.") or key == POS_KEY:
            continue
        assert torch.equal(src[key], dst[key]), key
    expected = F.interpolate(
        src[POS_KEY], size=(24, src[POS_KEY].shape[3]), mode="bilinear", align_corners=False
    )
    assert torch.allclose(dst[POS_KEY], expected)
    assert (
        torch.equal(student.projector.weight, projector_before) and student.projector.weight.shape[0] == 384
    )
    assert any("resized from 16 to the student's context 24" in n for n in notes)
    assert any("projector to width 384 is new" in n for n in notes)


def test_open_clip_tower_maps_back_onto_the_student(tmp_path):
    import open_clip

    from anatomy.distill.export import export

    cfg = StudentConfig("custom", layers=2, width=64, heads=2, context_length=16)
    original = _saved(tmp_path / "run" / "checkpoints" / "best", cfg)
    export(tmp_path / "run", "open_clip", tmp_path / "oc")
    model_cfg = json.loads((tmp_path / "oc" / "open_clip_config.json").read_text())["model_cfg"]
    (tmp_path / "Init-Test-Tower.json").write_text(json.dumps(model_cfg))
    open_clip.add_model_config(tmp_path / "Init-Test-Tower.json")
    student = build_student(StudentConfig("custom", layers=2, width=64, heads=2, context_length=16))
    spec = f"open_clip:Init-Test-Tower:{tmp_path / 'oc' / 'open_clip_model.safetensors'}"
    notes = initialise_from(spec, student, 16)
    src, dst = original.state_dict(), student.state_dict()
    for key in dst:
        if not key.startswith("projector.") and key != "encoder.projection_layer":
            assert torch.equal(src[key], dst[key]), key
    assert any("open_clip" in n for n in notes)


def test_shapes_must_match_and_weights_must_be_trained(tmp_path):
    _saved(tmp_path / "s1", StudentConfig("litetext-s1", context_length=16))
    narrow = build_student(StudentConfig("custom", layers=12, width=256, heads=4, context_length=16))
    with pytest.raises(CheckpointError, match="shapes differ"):
        initialise_from(f"student:{tmp_path / 's1'}", narrow, 16)
    shallow = build_student(StudentConfig("custom", layers=4, width=512, heads=8, context_length=16))
    with pytest.raises(CheckpointError, match="has no place in the student"):
        initialise_from(f"student:{tmp_path / 's1'}", shallow, 16)
    with pytest.raises(AnatomyError, match="untrained"):
        initialise_from("litetext-s0", build_student(StudentConfig("litetext-s0")), 16)


def test_distill_init_starts_the_run_from_the_tower_and_records_it(tmp_path):
    """`anatomy distill --init student:PATH`: step 0 holds the source body; config.json says where it started."""
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from anatomy.cli import app
    from tests.test_distill_train import make_tiny_setup

    tiny = make_tiny_setup(tmp_path / "tiny")
    source = _saved(tmp_path / "src", StudentConfig("custom", layers=1, width=32, heads=2, context_length=16))
    args = ["distill", "--teacher", tiny["teacher"], "--student", tiny["student"], "--corpus", tiny["corpus"],
            "--steps", "1", "--lr", "1e-12", "--eval-every", "1", "--batch-size", "8", "--device", "cpu",
            "--init", f"student:{tmp_path / 'src'}", "--out", str(tmp_path / "run"), "-q"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["init"] == f"student:{tmp_path / 'src'}" and config["init_notes"]
    trained = load_file(str(tmp_path / "run" / "checkpoints" / "latest" / "model.safetensors"))
    body = {k: v for k, v in source.state_dict().items() if not k.startswith("projector.")}
    for (
        key,
        value,
    ) in body.items():  # one step at lr 1e-12 leaves the copied body as it was, to float precision
        assert torch.allclose(trained[key], value, atol=1e-6), key
