"""Figures of distillation: held-out agreement during training, and the loss / context ablations.

`prepare_*` take what the library returns (or reads back from metrics.jsonl / results/ablation.json) and give
tidy DataFrames; `draw_*` turn those into Figures; style.save_figure writes the PNG deterministically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from anatomy.figures.style import new_figure

CURVE_METRICS = ("eval_token_cosine", "eval_pooled_cosine", "eval_knn_overlap10")
ABLATION_METRICS = ("eval_token_cosine", "pooled_cosine_full", "knn_overlap10_full")
LABELS = {
    "eval_token_cosine": "token cosine (own context)",
    "eval_pooled_cosine": "pooled cosine",
    "eval_knn_overlap10": "kNN@10 overlap",
    "pooled_cosine_full": "pooled cosine vs full prompt",
    "knn_overlap10_full": "kNN@10 overlap vs full prompt",
}


def prepare_training_curves(runs: Mapping[str, Sequence[Mapping]]):
    """Long table (run, step, metric, value) from each run's metrics.jsonl rows."""
    import pandas as pd

    rows = [
        {"run": name, "step": int(r["step"]), "metric": m, "value": float(r[m])}
        for name, metrics in runs.items()
        for r in metrics
        for m in CURVE_METRICS
        if r.get(m) is not None  # kNN@10 is None on fewer than 21 held-out prompts (not measured)
    ]
    return pd.DataFrame(rows, columns=["run", "step", "metric", "value"])


def draw_training_curves(frame):
    metrics = [m for m in CURVE_METRICS if m in set(frame["metric"])]
    fig, axes = new_figure(1, len(metrics), size=(3.3 * len(metrics), 3.2))
    for ax, metric in zip(axes[0], metrics, strict=True):
        part = frame[frame["metric"] == metric]
        for run, group in part.groupby("run", sort=True):
            ax.plot(group["step"], group["value"], marker="o", markersize=3, label=run)
        ax.set(title=LABELS[metric], xlabel="step")
    axes[0, 0].set_ylabel("held-out agreement with the teacher")
    axes[0, -1].legend(fontsize=7)
    return fig


def prepare_ablation(result: Mapping):
    """Long table (ablation, variant, context, metric, value); loss variants in order, contexts ascending."""
    import pandas as pd

    rows = [
        {
            "ablation": r["ablation"],
            "variant": str(r["variant"]),
            "context": int(r["context"]),
            "metric": m,
            "value": float(r[m]),
        }
        for r in result["rows"]
        for m in ABLATION_METRICS
        if r.get(m) is not None
    ]
    frame = pd.DataFrame(rows, columns=["ablation", "variant", "context", "metric", "value"])
    order = {"loss": 0, "context": 1}
    return frame.sort_values(
        ["ablation", "context", "metric"],
        key=lambda s: s.map(order) if s.name == "ablation" else s,
        kind="stable",
    ).reset_index(drop=True)


def draw_ablation(frame):
    import numpy as np

    fig, axes = new_figure(1, 2, size=(8.0, 3.4))
    for ax, ablation in zip(axes[0], ("loss", "context"), strict=True):
        part = frame[frame["ablation"] == ablation]
        variants = list(dict.fromkeys(part["variant"]))
        metrics = [m for m in ABLATION_METRICS if m in set(part["metric"])]
        width = 0.8 / max(len(metrics), 1)
        for k, metric in enumerate(metrics):
            values = [
                part[(part["variant"] == v) & (part["metric"] == metric)]["value"].mean() for v in variants
            ]
            ax.bar(
                np.arange(len(variants)) + (k - (len(metrics) - 1) / 2) * width,
                values,
                width,
                label=LABELS[metric],
            )
        ax.set_xticks(np.arange(len(variants)), variants)
        ax.set(
            title=f"{ablation} ablation",
            xlabel="loss" if ablation == "loss" else "context length",
            ylim=(0, 1),
        )
    axes[0, 0].set_ylabel("held-out agreement with the teacher")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=7)
    return fig
