"""Issue 24's `cost` points, checked: list options accumulate in every command that measures (cost, cost-table,
specialise), the int8 export's sidecar, cost table and bill say what stays fp32, the specialise bill costs the
teacher at the students' context and states --budget's assumed rate, and it marks latencies that did not
settle."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.errors import AnatomyError


class _Stop(AnatomyError):
    pass


def test_specialise_cost_batches_accumulate(tmp_path, monkeypatch):
    """`--cost-batches 1 --cost-batches 4` kept only the last ("4": refused, no batch 1); now it is 1,4."""
    import anatomy.specialise.pipeline as pipeline

    seen = []

    def fake(cfg, out_dir, say):
        seen.append(cfg)
        raise _Stop("stopped before any work")

    monkeypatch.setattr(pipeline, "run_specialise", fake)
    base = ["specialise", "--out", str(tmp_path / "o"), "-q"]
    for extra, want in ((["--cost-batches", "1", "--cost-batches", "4"], (1, 4)),
                        (["--cost-batches", "64,1", "--cost-batches", "8"], (1, 8, 64)),
                        ([], (1, 64))):  # fmt: skip
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code == 1 and "stopped before any work" in result.output, result.output
        assert seen[-1].cost_batches == want
    result = CliRunner().invoke(app, [*base, "--student", "s0,s1", "--student", "l", "--export", "onnx",
                                      "--export", "int8"])  # fmt: skip
    assert (
        result.exit_code == 1
        and seen[-1].students == ("s0", "s1", "l")
        and seen[-1].exports == ("onnx", "int8")
    )
    for bad in (["--cost-batches", "4"], ["--cost-batches", "1,0"], ["--cost-batches", "1", "--cost-batches", "x"],
                ["--cost-batches", "1,5000"]):  # fmt: skip
        result = CliRunner().invoke(app, [*base, *bad])
        assert result.exit_code == 2 and "--cost-batches" in result.output, result.output


def test_the_pair_cost_command_accumulates_its_list_options(tmp_path, monkeypatch):
    import anatomy.cli.analyses as analyses

    seen = []

    def fake(analysis, params, **kwargs):
        seen.append(params)
        raise _Stop("stopped before any work")

    monkeypatch.setattr(analyses, "run_command", fake)
    (tmp_path / "c.parquet").write_bytes(b"x")
    args = ["cost", "--teacher", "minilm", "--student", "minilm", "--corpus", str(tmp_path / "c.parquet"),
            "--out", str(tmp_path / "o"), "--batch", "1", "--batch", "8,4", "--context", "8", "--context", "16",
            "--runtime", "torch", "--runtime", "int8", "-q"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "stopped before any work" in result.output, result.output
    (params,) = seen
    assert params.batches == (1, 8, 4) and params.contexts == (8, 16) and params.runtimes == ("torch", "int8")
    assert params.settings().batches == (1, 4, 8)


def test_specialise_budget_states_its_assumed_rate():
    from anatomy.specialise.bill import _training_plan
    from anatomy.specialise.plan import ASSUMED_STEPS_PER_S, SpecialiseConfig, steps_for
    from anatomy.specialise.render import _training_line

    result = CliRunner().invoke(app, ["specialise", "--help"], env={"COLUMNS": "200"})
    assert f"ASSUMED {ASSUMED_STEPS_PER_S:g} steps/s" in " ".join(result.output.split())
    cfg = SpecialiseConfig(budget=2.0)
    assert steps_for(cfg, 2) == int(2.0 * 60 * ASSUMED_STEPS_PER_S / 2) == 240
    plan = _training_plan(cfg, 2)
    assert plan == {"steps": 240, "how": "--budget", "budget_minutes": 2.0, "assumed_steps_per_s": 4.0,
                    "candidates": 2}  # fmt: skip
    line = _training_line(SimpleNamespace(training_plan=plan, config={}, candidates=[]))
    assert "from --budget 2 min at an assumed 4 steps/s (not measured) shared by 2 candidate(s)" in line


def _cost(context, p50, reliable=True):
    from anatomy.specialise.bill import Cost

    return Cost("torch", p50, p50 * 1.5, {"1": 1000 / p50, "4": 4000 / p50}, 100.0, 50.0,
                {"latency_p50": p50 / 2.0, "texts_per_s": {"4": 1.0}, "peak_batch_mib": 1.0}, context, 1, reliable,
                0.5 if not reliable else 0.05, [3.0, 2.0, 1.0], True)  # fmt: skip


def test_the_bill_marks_unsettled_latencies_and_names_the_teachers_contexts():
    from anatomy.specialise.bill import Row
    from anatomy.specialise.render import _teacher_contexts, _threads, summary_table

    teacher = Row("minilm", "teacher", 256, 30522, 10, {}, 40, cost=[_cost(12, 2.0), _cost(256, 20.0, False)])
    bill = SimpleNamespace(teacher=teacher, candidates=[])
    table = summary_table(bill)
    assert [r[2] for r in table.rows] == ["12", "256"]  # each row at its own context
    assert table.rows[0][9] == "2.00 (1x)" and table.rows[1][9] == "20.00 (10x) !"
    assert "did not settle" in table.caption and "at the students' context" in table.caption
    line = _teacher_contexts(bill, 12)
    assert "students' context 12 (the baseline of every ratio" in line and "its own 256" in line
    assert "p50 20.00 ms against 2.00 ms" in line
    assert "own context only (256)" in _teacher_contexts(SimpleNamespace(teacher=Row(
        "t", "teacher", 256, None, 1, {}, 4, cost=[_cost(256, 1.0)])), 12)  # fmt: skip
    assert _threads(bill) == "1 thread(s) per measuring process, 1-min load average before a row up to 3.00"


def test_a_teacher_that_cannot_run_at_the_students_context_is_the_only_row_allowed_to_fail(
    tmp_path, monkeypatch
):
    from anatomy.cost import compare
    from anatomy.errors import EncoderError
    from anatomy.specialise.costing import measure_cost
    from anatomy.specialise.plan import SpecialiseConfig

    def fake_child(config, timeout):
        if config["context"] == 99 or config["spec"] == "litetext-s1":
            raise EncoderError(f"context {config['context']} is longer than the model's")
        return {"context_length": config["context"] or 16, "parameters": 1, "rss_runtime_mib": 1.0,
                "rss_loaded_mib": 2.0, "peak_batch_mib": 2.0, "latency_ms_p50": 1.0, "latency_ms_p95": 1.0,
                "texts_per_s": {"1": 1.0}}  # fmt: skip

    monkeypatch.setattr(compare, "run_child", fake_child)
    cfg = SpecialiseConfig(cost_batches=(1,), threads=1)
    got = measure_cost([("litetext-s0", 99), "litetext-s0", "litetext-s0"], cfg, tmp_path, optional=1)
    assert len(got["rows"]) == 2 and got["failures"][0]["context"] == 99
    with pytest.raises(EncoderError, match="2 of 3 configurations"):
        measure_cost([("litetext-s0", 99), "litetext-s0", "litetext-s0"], cfg, tmp_path)
    with pytest.raises(EncoderError, match="litetext-s1"):
        measure_cost([("litetext-s0", 8), "litetext-s0", "litetext-s1"], cfg, tmp_path, optional=1)
    pinned = measure_cost([("litetext-s0", 8), "litetext-s0"], cfg, tmp_path)
    assert [r["context"] for r in pinned["rows"]] == [8, 16]


@pytest.mark.slow
def test_int8_sidecar_cost_table_and_bill_say_what_stays_fp32(tmp_path):
    """S0's int8 export: the 1x1 and depthwise convolutions of its two RepMixer blocks (4,216,832 weights, as
    many as the PyTorch module's Conv2d kernels) and its positional table stay fp32; the sidecar groups them,
    the export summary, the cost table and the bill say so in one line."""
    pytest.importorskip("onnxruntime")
    from anatomy.cost.table import precision_notes
    from anatomy.distill.export import export
    from anatomy.encoders.student import StudentConfig, build_student, save_student
    from anatomy.specialise.bill import _stays_fp32

    cfg = StudentConfig("litetext-s0", context_length=16)
    torch.manual_seed(0)
    module = build_student(cfg)
    conv = sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    run = tmp_path / "run"
    save_student(module, cfg, run / "checkpoints" / "best", provenance={})
    summary = export(run, "int8", tmp_path / "s.int8.onnx", "best")
    sidecar = json.loads((tmp_path / "s.int8.onnx.json").read_text())
    kept = sidecar["quantised"]["stays_fp32"]
    assert kept["parts"]["Conv kernels (not quantised)"] == conv == 4_216_832
    assert kept["parts"]["positional embedding"] == 16 * 512
    assert kept["weights"] == sum(kept["parts"].values()) == sidecar["quantised"]["weights_by_type"]["float"]
    assert kept["share"] == pytest.approx(
        kept["weights"] / sum(sidecar["quantised"]["weights_by_type"].values())
    )
    assert (
        "stays fp32: 10.0% of the weights (4,230,418: Conv kernels (not quantised) 4,216,832"
        in summary["load_as"]
    )
    row = {"encoder": "s0", "context": 16, "runtime": "int8", "quantised": sidecar["quantised"]}
    (note,) = precision_notes({"rows": [row, {"encoder": "t", "context": 16, "runtime": "torch"}]})
    assert note.startswith("s0 @ 16 (int8): stays fp32: 10.0% of the weights")
    assert _stays_fp32(tmp_path / "s.int8.onnx") == note.split(": ", 1)[1]


def test_batch1_latency_repeats_until_it_settles_or_is_marked_unreliable():
    """The measuring loop itself: a steady call stops after one round; one whose times alternate 1 ms / 20 ms
    is repeated up to max_repeats and marked unreliable; the load average and threads are recorded."""
    import time

    from anatomy.cost.measure import _timed

    cfg = {"warmup": 1, "repeats": 6, "max_repeats": 18, "max_spread": 1.0, "batches": [1, 2],
           "throughput_repeats": 1, "threads": 1}  # fmt: skip
    calls = []

    def steady(n):
        calls.append(n)
        time.sleep(0.002)

    got = _timed(steady, cfg)
    assert got["latency_repeats"] == 6 and got["latency_reliable"] and got["threads"] == 1
    assert len(got["load_before"]) == 3 and set(got["texts_per_s"]) == {"1", "2"}
    flips = iter(range(10_000))

    def unsteady(n):
        time.sleep(0.001 if next(flips) % 2 else 0.02)

    got = _timed(unsteady, cfg)
    assert got["latency_repeats"] == 18 and not got["latency_reliable"] and got["latency_spread"] > 1.0


def test_the_cost_table_text_flags_unsettled_latencies_and_busy_rows():
    from anatomy.cost.compare import CostTable, add_ratios, warnings_of
    from anatomy.cost.table import table_lines

    def row(encoder, p50, reliable, busy):
        return {"encoder": encoder, "context": 16, "runtime": "torch", "threads": 1, "parameters": 10,
                "weight_bytes": {"fp32": 40}, "rss_runtime_mib": 1.0, "rss_loaded_mib": 3.0, "peak_batch_mib": 4.0,
                "latency_ms_p50": p50, "latency_ms_p95": p50, "latency_spread": 0.1 if reliable else 0.9,
                "latency_reliable": reliable, "texts_per_s": {"1": 1 / p50}, "paper_texts_per_s": None,
                "load_before": [3.2 if busy else 0.1, 1, 1], "load_after": [0.1, 1, 1], "busy": busy}  # fmt: skip

    rows = [row("a", 2.0, True, False), row("b", 1.0, False, True)]
    add_ratios(rows)
    table = CostTable({"device_name": "cpu", "cores_available": 2}, "", {"threads": 1, "max_repeats": 200,
                      "max_spread": 0.2}, rows, {"device": "gpu", "source": "paper"})  # fmt: skip
    table.warnings = warnings_of(table)
    header, a, b, caption, busy_line, shaky_line = table_lines(table.to_json())
    assert "threads" in header and "spread" in header and "load" in header
    assert "1.00 (0.50x) !" in b and "90%" in b and b.rstrip().endswith("3.20 !") and " !" not in a
    assert "1 thread(s) per measurement" in caption
    assert busy_line.startswith("warning: the machine was busy while measuring b @ 16 (torch)")
    assert "did not settle within 200 calls" in shaky_line
