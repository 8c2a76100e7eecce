"""`anatomy cost-table` (and its older form `anatomy cost -e`): exact parameter accounting by component,
memory measured per fresh process (the model's resident share tracks its weight bytes and does not leak
between rows), ratios to the first row, ONNX Runtime rows, option checking before any work, accumulated list
options, fixed recorded threads, the load average beside every row, and failures kept apart from the rows
already measured."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.cost.compare import CostSettings, measure_costs
from anatomy.cost.measure import group_components
from anatomy.encoders.student import StudentConfig, build_student, save_student

QUICK = CostSettings(batches=(1, 4), warmup=1, repeats=3, max_repeats=6, throughput_repeats=1)


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
    result = measure_costs(["litetext-s0", small], [16], QUICK, tmp_path / "out").to_json()
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
    assert result["machine"]["cores"] >= 1 and result["machine"]["torch_threads"] == 1
    assert result["machine"]["device_name"]
    # every row: its fixed thread count, the load average around it, how settled its latency is
    for row in (s0, tiny):
        assert row["threads"] == 1 and row["torch_threads"] == 1
        assert len(row["load_before"]) == 3 and len(row["load_after"]) == 3
        assert 3 <= row["latency_repeats"] <= 6 and row["latency_spread"] >= 0
        assert row["latency_reliable"] == (row["latency_spread"] <= QUICK.max_spread)
        assert isinstance(row["busy"], bool)


def test_onnx_and_int8_rows_beside_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    small = _student(tmp_path / "small", layers=2, width=128, heads=2)
    settings = CostSettings(batches=(1, 8), warmup=1, repeats=3, runtimes=("torch", "onnx", "int8"))
    result = measure_costs([small], [], settings, tmp_path / "out").to_json()
    torch_row, onnx_row, int8_row = result["rows"]
    assert [r["runtime"] for r in result["rows"]] == ["torch", "onnx", "int8"]
    assert onnx_row["parameters"] == torch_row["parameters"]  # the same module's
    # the linear weights (2 layers x 128 x (384 + 128 + 512 + 512)) and the token-embedding table
    # (49,408 x 128) went from 4 bytes to 1
    linear, table = 2 * 128 * (384 + 128 + 512 + 512), 49_408 * 128
    assert onnx_row["file_bytes"] - int8_row["file_bytes"] > 0.9 * 3 * (linear + table)
    assert (
        int8_row["quantised"]["largest_table"] in ("int8", "uint8")
        and "Gather" in int8_row["quantised"]["ops"]
    )
    sidecar = json.loads(next((tmp_path / "out" / "onnx").glob("*-int8.onnx.json")).read_text())
    assert sidecar["int8_vs_fp32"]["pooled_cosine_mean"] > 0.9
    # an existing export is measured as it is
    path = next((tmp_path / "out" / "onnx").glob("*-onnx.onnx"))
    again = measure_costs([str(path)], [], QUICK, tmp_path / "out2").rows[0]
    assert again["runtime"] == "onnx" and again["context"] == 16 and again["parameters"] is None


@pytest.mark.parametrize(
    "args",
    [
        ["--batch", "0,4"],
        ["--batch", "1,x"],
        ["--batch", "1", "--batch", "5000"],
        ["--context", "0"],
        ["--repeats", "0"],
        ["--threads", "0"],
        ["--max-spread", "0"],
        ["--runtime", "tflite"],
        ["--runtime", "torch", "--runtime", "tflite"],
        ["--device", "tpu"],
    ],  # fmt: skip
)
@pytest.mark.parametrize("command", ["cost-table", "cost"])
def test_bad_options_are_usage_errors(tmp_path, args, command):
    result = CliRunner().invoke(app, [command, "-e", "litetext-s0", "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "cost.json").exists()


def test_cli_writes_json_and_table_and_reports_bad_specs(tmp_path):
    small = _student(tmp_path / "small", layers=1, width=32, heads=2)
    args = [
        "cost-table",
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


def test_list_options_accumulate_and_the_older_form_still_works(tmp_path):
    small = _student(tmp_path / "small", layers=1, width=32, heads=2)
    args = ["-e", small, "--batch", "1", "--batch", "2,3", "--repeats", "2", "--max-repeats", "2", "--warmup", "0",
            "--runtime", "torch", "--runtime", "torch", "--context", "8", "--context", "12", "--json", "-q"]  # fmt: skip
    for command in ("cost-table", "cost"):  # `anatomy cost -e ...` is `anatomy cost-table -e ...`
        result = CliRunner().invoke(app, [command, *args, "--out", str(tmp_path / command)])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["settings"]["batches"] == [1, 2, 3] and data["settings"]["runtimes"] == ["torch"]
        assert [(r["context"], r["runtime"]) for r in data["rows"]] == [(8, "torch"), (12, "torch")]
        assert all(set(r["texts_per_s"]) == {"1", "2", "3"} for r in data["rows"])
        assert data["settings"]["threads"] == CostSettings().threads == 1  # fixed by default, recorded


def test_a_failed_configuration_keeps_the_rows_already_measured(tmp_path):
    small = _student(tmp_path / "small", layers=1, width=32, heads=2)
    absent = f"student:{tmp_path / 'absent'}"
    args = ["cost-table", "-e", small, "-e", absent, "--repeats", "2", "--max-repeats", "2", "--batch", "1"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 1 and "1 configuration(s) not measured" in result.output
    assert "Traceback" not in result.output
    data = json.loads((tmp_path / "o" / "cost.json").read_text())
    assert [r["encoder"] for r in data["rows"]] == [small]
    assert data["failures"][0]["encoder"] == absent and "absent" in data["failures"][0]["error"]
    assert "not measured: " in (tmp_path / "o" / "cost.txt").read_text()


def test_busy_rule_and_its_warning():
    from anatomy.cost.compare import CostTable, busy, warnings_of

    # 2 cores, 1 thread measuring: other work above half of the one free core is busy
    assert not busy(1.4, 1, 2) and busy(1.6, 1, 2) and not busy(None, 1, 2)
    assert not busy(8.4, 1, 16) and busy(8.6, 1, 16)
    row = {"encoder": "e", "context": 16, "runtime": "torch", "busy": True, "load_before": [3.0, 1, 1],
           "load_after": [3.5, 1, 1], "latency_reliable": False}  # fmt: skip
    table = CostTable({"cores_available": 2}, "", {"max_repeats": 9, "max_spread": 0.2}, [row], {})
    busy_line, shaky_line = warnings_of(table)
    assert "busy while measuring e @ 16 (torch)" in busy_line and "up to 3.5 on 2 cores" in busy_line
    assert "did not settle within 9 calls" in shaky_line


def test_the_pair_analysis_and_cost_table_measure_the_same_way(tmp_path, monkeypatch):
    """`audit --teacher --student` (the cost analysis) and `anatomy cost-table` send identical configurations
    to the measuring process: same threads, warm-up, repeats, spread target, batches, contexts."""
    from anatomy.analysis.cost import CostParams, MeasureParams
    from anatomy.cost import compare

    sent = []

    def fake_child(config, timeout):
        sent.append(config)
        return {"context_length": 16, "parameters": 1, "rss_runtime_mib": 1.0, "rss_loaded_mib": 2.0,
                "peak_batch_mib": 2.0, "latency_ms_p50": 1.0, "latency_ms_p95": 1.0,
                "texts_per_s": {"1": 1.0, "64": 1.0}}  # fmt: skip

    monkeypatch.setattr(compare, "run_child", fake_child)
    compare.measure_costs(["litetext-s0", "litetext-s1"], (), CostParams().settings("cpu"))
    by_pair = list(sent)
    sent.clear()
    CliRunner().invoke(
        app, ["cost-table", "-e", "litetext-s0", "-e", "litetext-s1", "--out", str(tmp_path), "-q"]
    )
    assert sent == by_pair and len(sent) == 2
    assert MeasureParams().settings() == CostSettings() and by_pair[0]["threads"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_device_cuda_without_a_gpu_is_a_usage_error(tmp_path):
    for command in ("cost-table", "cost"):
        result = CliRunner().invoke(
            app, [command, "-e", "litetext-s0", "--device", "cuda", "--out", str(tmp_path)]
        )
        assert result.exit_code == 2 and "CUDA is not available" in result.output


def test_modules_import_in_a_fresh_interpreter():
    import subprocess
    import sys

    modules = ["anatomy.analysis.cost", "anatomy.cost.compare", "anatomy.cost.measure", "anatomy.cost.table",
               "anatomy.cost.figure", "anatomy.cli.cost", "anatomy.distill.export", "anatomy.distill.onnx_export",
               "anatomy.distill.onnx_sidecar"]  # fmt: skip
    for module in modules:
        run = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        assert run.returncode == 0, f"{module}: {run.stderr.strip().splitlines()[-1:]}"


def test_an_onnx_file_refuses_a_context_or_runtime_it_cannot_honour(tmp_path, monkeypatch):
    """`cost-table -e FILE.onnx --context 16` used to measure the graph at its own context 8 without a word
    (likewise --runtime int8 on an fp32 graph): an ONNX graph has one context and one format, so another is a
    usage error naming the graph's; its own (or none) is measured as before."""
    from anatomy.cost import compare
    from anatomy.distill import onnx_sidecar

    graph = tmp_path / "student.onnx"
    graph.write_bytes(b"not read: the sidecar and the measuring process are faked")
    monkeypatch.setattr(onnx_sidecar, "read_sidecar", lambda path: {"context_length": 8, "format": "onnx"})
    sent = []

    def fake_child(config, timeout):
        sent.append(config)
        return {"context_length": 8, "rss_runtime_mib": 1.0, "rss_loaded_mib": 2.0, "peak_batch_mib": 2.0,
                "latency_ms_p50": 1.0, "latency_ms_p95": 1.0, "texts_per_s": {"1": 1.0}}  # fmt: skip

    monkeypatch.setattr(compare, "run_child", fake_child)
    base = ["cost-table", "-e", str(graph), "--batch", "1", "--out", str(tmp_path / "o"), "-q"]
    for extra, words in ((["--context", "16"], "fixed context of 8: it cannot be measured at 16"),
                         (["--context", "8", "--context", "16"], "at 8, 16"),
                         (["--runtime", "int8"], "onnx format, measured as it is: --runtime int8 does not")):  # fmt: skip
        result = CliRunner().invoke(app, [*base, *extra], env={"COLUMNS": "300"})
        assert result.exit_code == 2, result.output
        assert words in " ".join(result.output.split()) and not sent
    for extra in ([], ["--context", "8"], ["--runtime", "onnx"], ["--runtime", "torch,onnx"]):
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code == 0, result.output
        assert [(c["context"], c["runtime"]) for c in sent] == [(8, "onnx")]
        sent.clear()
