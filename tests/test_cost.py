"""`anatomy cost`: exact parameter accounting by component, memory measured per fresh process (the model's
resident share tracks its weight bytes and does not leak between rows), ratios to the first row, ONNX
Runtime rows, and option checking before any work."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.cost.compare import CostSettings, run_cost
from anatomy.cost.measure import group_components
from anatomy.encoders.student import StudentConfig, build_student, save_student

QUICK = CostSettings(batches=(1, 4), warmup=1, repeats=3, throughput_repeats=1)


def _student(folder, **shape):
    cfg = StudentConfig("custom", context_length=16, **shape)
    torch.manual_seed(0)
    save_student(build_student(cfg), cfg, folder, provenance={})
    return f"student:{folder}"


def test_components_group_every_family_exactly():
    from anatomy.encoders.registry import describe_all

    rows = {r["name"]: r for r in describe_all(16)}
    sam3 = group_components(rows["sam3"]["components"])
    assert sam3 == {"token_embedding": 49408 * 1024, "positional": 32 * 1024,
                    "transformer": 302_309_376 + 2048, "projection": 1024 * 512 + 1024 * 256 + 256}  # fmt: skip
    assert sum(sam3.values()) == 353_724_672
    s0 = group_components(rows["litetext-s0"]["components"])
    assert s0["token_embedding"] == 49408 * 512 and s0["positional"] == 16 * 512
    assert s0["projection"] == 512 * 512 + 512 * 256 + 256 and sum(s0.values()) == 42_541_312
    # Hugging Face names (BERT-style) land in the same four groups
    hf = {"embeddings.word_embeddings": 10, "embeddings.position_embeddings": 3, "embeddings.LayerNorm": 2,
          "encoder": 100, "pooler": 7}  # fmt: skip
    assert group_components(hf) == {
        "token_embedding": 10,
        "positional": 3,
        "transformer": 102,
        "projection": 7,
    }


def test_bare_student_row_is_exact_and_its_memory_is_its_weights(tmp_path):
    small = _student(tmp_path / "small", layers=1, width=64, heads=2)
    result = run_cost(["litetext-s0", small], [16], QUICK, tmp_path / "out")
    s0, tiny = result["rows"]
    assert s0["parameters"] == 42_541_312 and s0["context"] == 16 and s0["runtime"] == "torch"
    assert s0["weight_bytes"] == {"fp32": 4 * 42_541_312, "fp16": 2 * 42_541_312, "int8": 42_541_312}
    assert sum(s0["components"].values()) == s0["parameters"]
    n_tiny = sum(
        p.numel() for p in build_student(StudentConfig("custom", layers=1, width=64, heads=2)).parameters()
    )
    assert tiny["parameters"] == n_tiny
    # measured, per process: S0's fp32 weights (162 MiB) show up in its resident memory, the tiny one's do not
    s0_model = s0["rss_loaded_mib"] - s0["rss_runtime_mib"]
    tiny_model = tiny["rss_loaded_mib"] - tiny["rss_runtime_mib"]
    assert 0.8 * 4 * 42_541_312 / 2**20 < s0_model < 3 * 4 * 42_541_312 / 2**20
    assert tiny_model < 0.5 * s0_model  # measured after S0, in its own process: nothing leaked
    assert s0["peak_reset"] and s0["peak_batch_mib"] >= s0["rss_runtime_mib"]
    # ratios against the first row
    assert s0["ratios"]["parameters"] == 1.0 and s0["ratios"]["latency_p50"] == 1.0
    assert tiny["ratios"]["parameters"] == pytest.approx(n_tiny / 42_541_312)
    assert set(tiny["texts_per_s"]) == {"1", "4"} and all(v > 0 for v in tiny["texts_per_s"].values())
    assert s0["paper_texts_per_s"] == 495.3 and tiny["paper_texts_per_s"] is None
    assert result["machine"]["cores"] >= 1 and result["machine"]["torch_threads"] >= 1
    assert result["machine"]["device_name"]


def test_onnx_and_int8_rows_beside_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    small = _student(tmp_path / "small", layers=2, width=128, heads=2)
    settings = CostSettings(batches=(1, 8), warmup=1, repeats=3, runtimes=("torch", "onnx", "int8"))
    result = run_cost([small], [], settings, tmp_path / "out")
    torch_row, onnx_row, int8_row = result["rows"]
    assert [r["runtime"] for r in result["rows"]] == ["torch", "onnx", "int8"]
    assert onnx_row["parameters"] == torch_row["parameters"]  # the same module's
    # the transformer's linear weights (2 layers x 128 x (384 + 128 + 512 + 512)) went from 4 bytes to 1
    linear = 2 * 128 * (384 + 128 + 512 + 512)
    assert onnx_row["file_bytes"] - int8_row["file_bytes"] > 0.9 * 3 * linear
    sidecar = json.loads(next((tmp_path / "out" / "onnx").glob("*-int8.onnx.json")).read_text())
    assert sidecar["int8_vs_fp32"]["pooled_cosine_mean"] > 0.9
    # an existing export is measured as it is
    path = next((tmp_path / "out" / "onnx").glob("*-onnx.onnx"))
    again = run_cost([str(path)], [], QUICK, tmp_path / "out2")["rows"][0]
    assert again["runtime"] == "onnx" and again["context"] == 16 and again["parameters"] is None


@pytest.mark.parametrize(
    "args",
    [
        ["--batch", "0,4"],
        ["--batch", "1,x"],
        ["--context", "0"],
        ["--repeats", "0"],
        ["--runtime", "tflite"],
        ["--device", "tpu"],
    ],  # fmt: skip
)
def test_bad_options_are_usage_errors(tmp_path, args):
    result = CliRunner().invoke(app, ["cost", "-e", "litetext-s0", "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "cost.json").exists()


def test_cli_writes_json_and_table_and_reports_bad_specs(tmp_path):
    small = _student(tmp_path / "small", layers=1, width=32, heads=2)
    args = [
        "cost",
        "-e",
        small,
        "--batch",
        "1,2",
        "--repeats",
        "2",
        "--warmup",
        "0",
        "--out",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(app, [*args, "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads((tmp_path / "o" / "cost.json").read_text())
    assert "ratios (x) against the first row" in (tmp_path / "o" / "cost.txt").read_text()
    bad = CliRunner().invoke(app, ["cost", "-e", "nonsense", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 1 and "unknown encoder 'nonsense'" in bad.output
    # an error inside the measuring process comes back as one user error
    missing = CliRunner().invoke(
        app, ["cost", "-e", f"student:{tmp_path / 'absent'}", "--out", str(tmp_path / "c")]
    )
    assert missing.exit_code == 1 and "absent" in missing.output and "Traceback" not in missing.output
