"""`anatomy ablate` on a tiny teacher and student, and the distillation figures' tables."""

from __future__ import annotations

import json

import pytest
from test_distill_train import make_tiny_setup
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.figures.distill import (
    draw_ablation,
    draw_training_curves,
    prepare_ablation,
    prepare_training_curves,
)


def test_ablate_runs_both_ablations_and_writes_table_and_figure(tmp_path):
    import torch

    torch.set_num_threads(1)
    tiny = make_tiny_setup(tmp_path / "tiny")
    out = tmp_path / "ablate"
    args = [
        "ablate", "--teacher", tiny["teacher"], "--student", tiny["student"], "--corpus", tiny["corpus"],
        "--out", str(out), "--budget", "12", "--batch-size", "16", "--lr", "0.1", "--eval-size", "32",
        "--device", "cpu", "--quiet",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results" / "ablation.json").read_text())
    rows = {(r["ablation"], r["variant"]): r for r in saved["rows"]}
    assert list(rows) == [
        ("loss", "mse"), ("loss", "mse+cos"), ("loss", "mse+cos+cons"),
        ("context", "8"), ("context", "16"), ("context", "32"),
    ]  # fmt: skip
    assert (rows["loss", "mse"]["w_cos"], rows["loss", "mse"]["w_cons"]) == (0.0, 0.0)
    assert rows["loss", "mse+cos"]["w_cos"] == 2.0 and rows["loss", "mse+cos"]["w_cons"] == 0.0
    assert rows["loss", "mse+cos+cons"]["w_cons"] == 0.1
    # the context-16 row is the full-loss run itself, not a second run
    assert rows["context", "16"]["pooled_cosine_full"] == rows["loss", "mse+cos+cons"]["pooled_cosine_full"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "context-32", "context-8", "loss-mse", "loss-mse+cos", "loss-mse+cos+cons",
    ]  # fmt: skip
    # at the reference context the 'full prompt' score is the run's own pooled cosine
    assert rows["context", "32"]["pooled_cosine_full"] == pytest.approx(
        rows["context", "32"]["eval_pooled_cosine"], abs=1e-6
    )
    assert (out / "figures" / "ablation.png").stat().st_size > 5000
    assert saved["params"]["budget"] == 12 and saved["provenance"]["command"] == "ablate"
    assert "ablation" in result.stdout and "mse+cos+cons" in result.stdout


def test_prepare_ablation_table_is_exact():
    result = {
        "rows": [
            {"ablation": "context", "variant": "32", "context": 32, "eval_token_cosine": 0.5, "pooled_cosine_full": 0.6, "knn_overlap10_full": 0.1},
            {"ablation": "loss", "variant": "mse", "context": 16, "eval_token_cosine": 0.7, "pooled_cosine_full": 0.8, "knn_overlap10_full": 0.2},
            {"ablation": "context", "variant": "8", "context": 8, "eval_token_cosine": 0.9, "pooled_cosine_full": None, "knn_overlap10_full": 0.3},
        ]
    }  # fmt: skip
    frame = prepare_ablation(result)
    assert list(frame.columns) == ["ablation", "variant", "context", "metric", "value"]
    assert frame[["ablation", "variant", "metric", "value"]].values.tolist() == [
        ["loss", "mse", "eval_token_cosine", 0.7],
        ["loss", "mse", "knn_overlap10_full", 0.2],
        ["loss", "mse", "pooled_cosine_full", 0.8],
        ["context", "8", "eval_token_cosine", 0.9],
        ["context", "8", "knn_overlap10_full", 0.3],
        ["context", "32", "eval_token_cosine", 0.5],
        ["context", "32", "knn_overlap10_full", 0.1],
        ["context", "32", "pooled_cosine_full", 0.6],
    ]
    fig = draw_ablation(frame)
    assert [ax.get_title() for ax in fig.axes] == ["loss ablation", "context ablation"]


def test_prepare_training_curves_is_exact():
    runs = {
        "a": [{"step": 0, "eval_token_cosine": 0.1, "eval_pooled_cosine": 0.2, "eval_knn_overlap10": 0.3}],
        "b": [{"step": 5, "eval_token_cosine": 0.4}],
    }
    frame = prepare_training_curves(runs)
    assert frame.values.tolist() == [
        ["a", 0, "eval_token_cosine", 0.1],
        ["a", 0, "eval_pooled_cosine", 0.2],
        ["a", 0, "eval_knn_overlap10", 0.3],
        ["b", 5, "eval_token_cosine", 0.4],
    ]
    fig = draw_training_curves(frame)
    assert len(fig.axes) == 3 and fig.axes[0].get_title() == "token cosine (own context)"
