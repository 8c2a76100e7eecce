"""QA leftovers: a kNN overlap never reported on too few points as if it were kNN@10, no cosine verdict from a
handful of prompts in `anatomy check`, `audit --against` validated before any work, and rich tables printed
whole when stdout is not a terminal."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from typer.testing import CliRunner

from anatomy.cli import app


def test_knn_overlap_is_not_reported_on_too_few_points(caplog):
    """11 held-out prompts used to give kNN@10 = 1.0 (k shrank to 10 = n - 1: every other prompt a neighbour);
    below 2k + 1 = 21 points it is None with a warning, from 21 on it is measured at k = 10."""
    from anatomy.distill.evaluate import knn_min_points, knn_overlap

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40, 8)), rng.standard_normal((40, 8))
    assert knn_min_points(10) == 21
    with caplog.at_level(logging.WARNING, logger="anatomy.distill.evaluate"):
        for n in (2, 5, 11, 12, 20):
            assert knn_overlap(a[:n], b[:n], k=10, what="test prompts") is None
    assert "kNN@10 overlap not measured: 11 test prompts, it needs at least 21" in caplog.text
    assert knn_overlap(a[:21], a[:21], k=10) == 1.0  # the same outputs agree on every neighbour
    independent = knn_overlap(a, b, k=10)
    assert independent is not None and independent < 0.6  # independent outputs: about k / (n - 1) = 0.26


def test_a_distill_run_on_few_held_out_prompts_records_no_knn(tmp_path):
    """The run's metrics.jsonl says null (not 1.0) and its log says why; the agreement baseline and the
    deployment record read such a run."""
    import json

    from test_distill_train import make_tiny_setup

    from anatomy.analysis.agreement import run_baseline
    from anatomy.distill.train import DistillConfig, distill
    from anatomy.monitor.record import read_deployment

    tiny = make_tiny_setup(tmp_path / "tiny")
    cfg = DistillConfig(teacher=tiny["teacher"], student=tiny["student"], corpus=tiny["corpus"], context=16,
                        steps=2, batch_size=8, eval_every=1, eval_size=11, seed=0, warmup_steps=1)  # fmt: skip
    run = tmp_path / "run"
    result = distill(cfg, run, device="cpu")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["eval_knn_overlap10"] is None for r in rows)
    assert result["eval"]["eval_knn_overlap10"] is None
    assert "kNN@10 overlap not measured: 11 held-out prompts, it needs 21" in (run / "train.log").read_text()
    baseline, why = run_baseline(f"student:{run / 'checkpoints' / 'best'}")
    assert baseline is None and "measured no kNN@10" in why and "11 prompts" in why
    deployment = read_deployment(run)
    assert "eval_knn_overlap10" not in deployment.eval and "eval_token_cosine" in deployment.eval


def _quality(sample: int, token_prompts: int, token: float = 0.5, pooled: float = 0.5):
    from anatomy.monitor.quality import QualityCheck

    run = {"eval_pooled_cosine": 0.9, "eval_token_cosine": 0.9, "eval_knn_overlap10": 0.5}
    return QualityCheck("s", "t", sample, 0, token, pooled, None, run, token_prompts)


def test_check_gives_no_cosine_verdict_on_a_handful_of_prompts():
    """Token cosine over 3 sampled prompts that tokenize as the teacher does fell 0.4 below the run's figure:
    that was a fail; now it is information saying a verdict needs 30 such prompts."""
    from anatomy.monitor import verdicts

    found = {f.key: f for f in verdicts.quality_findings(_quality(sample=100, token_prompts=3))}
    token, pooled = found["check.quality.token_cosine"], found["check.quality.pooled_cosine"]
    assert token.mark == "info" and "over only 3 sampled log prompt(s)" in token.message
    assert (
        f"needs at least {verdicts.MIN_COSINE_PROMPTS}" in token.message
        and "--sample" in token.action
        and "from a log that holds them" in token.action
    )
    assert pooled.mark == "fail"  # over 100 prompts: a real verdict
    found = {f.key: f for f in verdicts.quality_findings(_quality(sample=12, token_prompts=12))}
    assert found["check.quality.pooled_cosine"].mark == "info"
    assert "21" in found["check.quality.knn_overlap10"].message
    found = {f.key: f for f in verdicts.quality_findings(_quality(sample=100, token_prompts=30))}
    assert found["check.quality.token_cosine"].mark == "fail"


def test_check_sample_below_what_a_verdict_needs_is_a_usage_error(tmp_path):
    (tmp_path / "log.txt").write_text("a dog\n", encoding="utf-8")
    args = ["check", str(tmp_path / "log.txt"), "--against", str(tmp_path), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--sample", "20"])
    assert result.exit_code == 2 and "--sample" in result.output


@pytest.mark.parametrize("kind", ["missing", "plain folder", "file"])
def test_audit_against_a_folder_that_is_no_deployment_fails_before_any_work(tmp_path, kind):
    (tmp_path / "log.txt").write_text("a dog\na cat\n", encoding="utf-8")
    against = tmp_path / "deployed"
    if kind == "plain folder":
        against.mkdir()
    elif kind == "file":
        against.write_text("x")
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["audit", str(tmp_path / "log.txt"), "--against", str(against),
                                      "--out", str(out), "-q"])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert ("not a directory" if kind != "plain folder" else "neither a student run") in result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing ingested, tokenized or encoded first


def test_wide_tables_are_printed_whole_when_stdout_is_not_a_terminal():
    """A 16-column table piped to a file kept 80 columns and cut its cells with an ellipsis."""
    import io

    from rich.console import Console
    from rich.table import Table

    from anatomy.cli.common import print_table

    table = Table(title="wide")
    cells = [f"column-{i}-value-{i * 1000}" for i in range(16)]
    for i in range(16):
        table.add_column(f"header-{i}")
    table.add_row(*cells)
    buffer = io.StringIO()
    console = Console(file=buffer, markup=False, highlight=False, soft_wrap=True)
    assert not console.is_terminal and console.width == 80
    print_table(table, console)
    text = buffer.getvalue()
    assert "…" not in text and all(c in text for c in cells) and all(f"header-{i}" in text for i in range(16))
    assert len(text.splitlines()) == 6  # title, three rules, header and one row: nothing wrapped


def test_hostile_paths_of_export_cost_table_and_specialise_are_one_line_errors(tmp_path):
    """A missing run folder passed to `export` said "unknown encoder"; a file instead of a run folder said its
    checkpoints/best was missing; a missing .onnx in `cost-table` said its sidecar was missing; a folder given
    as a --held-out set to `specialise` was accepted and failed after the first stages."""
    (tmp_path / "f.txt").write_text("a dog\n")
    (tmp_path / "dir").mkdir()
    cases = [
        (["export", str(tmp_path / "nowhere"), "--format", "onnx", "--out", str(tmp_path / "x.onnx")],
         "no such run directory, and not an encoder spec"),
        (["export", str(tmp_path / "f.txt"), "--format", "onnx", "--out", str(tmp_path / "x.onnx")],
         "a file, not a run directory"),
        (["cost-table", "-e", str(tmp_path / "gone.onnx"), "--out", str(tmp_path / "c")], "gone.onnx: no such file"),
        (["specialise", str(tmp_path / "f.txt"), "--held-out", str(tmp_path / "dir"), "--out", str(tmp_path / "s")],
         "a directory, not a prompt file"),
    ]  # fmt: skip
    for args, message in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2
    assert not (tmp_path / "s").exists() and not (tmp_path / "x.onnx").exists()
