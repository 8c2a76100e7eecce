"""Token-anatomy figures: length histogram per source, the context trade-off, vocabulary rank-frequency.

Each `prepare_*` turns per-block arrays (block = "overall" or a source name) into a tidy DataFrame; each
`draw_*` turns that table into a Figure. Blocks keep the order they are given in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from anatomy.context import context_curve
from anatomy.figures.style import new_figure
from anatomy.tokenizer import CLIP_VOCAB_SIZE


def prepare_length_histogram(lengths_by_block: Mapping[str, np.ndarray]):
    """Columns block, length, count, share (of the block's prompts); one row per length that occurs."""
    import pandas as pd

    frames = []
    for block, n in lengths_by_block.items():
        values, counts = np.unique(np.asarray(n, dtype=np.int64), return_counts=True)
        frames.append(
            pd.DataFrame({"block": block, "length": values, "count": counts, "share": counts / counts.sum()})
        )
    return pd.concat(frames, ignore_index=True)


def draw_length_histogram(table):
    fig, axes = new_figure(size=(6.4, 3.6))
    ax = axes[0, 0]
    for block, rows in table.groupby("block", sort=False):
        ax.step(
            rows["length"],
            rows["share"],
            where="mid",
            label=f"{block} (mean {_mean(rows):.1f})",
            linewidth=2.0 if block == "overall" else 1.2,
        )
    ax.set_xlabel("tokens per prompt (start and end included)")
    ax.set_ylabel("share of prompts")
    ax.set_title("Prompt length")
    ax.legend(fontsize=7)
    return fig


def _mean(rows) -> float:
    return float((rows["length"] * rows["count"]).sum() / rows["count"].sum())


def prepare_context_tradeoff(
    lengths_by_block: Mapping[str, np.ndarray], contexts: Iterable[int] = range(1, 78)
):
    """Columns block, L, density, padding, truncation, token_loss, token_loss_per_prompt."""
    import pandas as pd

    frames = []
    for block, n in lengths_by_block.items():
        curve = context_curve(n, contexts)
        frames.append(pd.DataFrame({"block": block, **curve}))
    return pd.concat(frames, ignore_index=True)


def draw_context_tradeoff(table, marks: Sequence[int] = (), recommended: Mapping | None = None):
    fig, axes = new_figure(1, 2, size=(8.0, 3.4))
    density_ax, loss_ax = axes[0]
    for block, rows in table.groupby("block", sort=False):
        width = 2.0 if block == "overall" else 1.0
        density_ax.plot(rows["L"], rows["density"], label=block, linewidth=width)
        loss_ax.plot(rows["L"], rows["token_loss"], label=block, linewidth=width)
    for ax in (density_ax, loss_ax):
        for L in marks:
            ax.axvline(L, color="0.8", linewidth=0.6, zorder=0)
        ax.set_xlabel("context length L")
    pooled = (recommended or {}).get("pooled", {})
    if pooled.get("L"):
        loss_ax.axvline(
            pooled["L"], color="black", linestyle="--", linewidth=0.9, label=f"recommended L={pooled['L']}"
        )
    density_ax.set_ylabel("information density")
    density_ax.set_title("Density (1 - padding)")
    loss_ax.set_ylabel("token loss (pooled)")
    loss_ax.set_title("Tokens lost to truncation")
    loss_ax.legend(fontsize=7)
    return fig


def prepare_vocab_rank(counts_by_block: Mapping[str, np.ndarray]):
    """Columns block, rank (1 = most frequent), token_id, count, share, coverage (cumulative share).

    One row per id that occurs in the block (content tokens: start/end excluded); ties in id order.
    """
    import pandas as pd

    frames = []
    for block, counts in counts_by_block.items():
        counts = np.asarray(counts, dtype=np.int64)
        order = np.argsort(-counts, kind="stable")
        order = order[counts[order] > 0]
        c = counts[order]
        total = c.sum()
        frames.append(
            pd.DataFrame(
                {
                    "block": block,
                    "rank": np.arange(1, len(c) + 1),
                    "token_id": order,
                    "count": c,
                    "share": c / total,
                    "coverage": np.cumsum(c) / total,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def draw_vocab_rank(table, vocab_size: int = CLIP_VOCAB_SIZE):
    fig, axes = new_figure(1, 2, size=(8.0, 3.4))
    freq_ax, cover_ax = axes[0]
    for block, rows in table.groupby("block", sort=False):
        width = 2.0 if block == "overall" else 1.0
        shown = rows.iloc[_log_spaced(len(rows))]  # ~300 points per curve: the same picture, drawn fast
        freq_ax.loglog(shown["rank"], shown["share"], label=f"{block} ({len(rows):,} ids)", linewidth=width)
        cover_ax.semilogx(shown["rank"], shown["coverage"], label=block, linewidth=width)
    freq_ax.set_xlabel("rank")
    freq_ax.set_ylabel("share of content tokens")
    freq_ax.set_title("Rank-frequency")
    freq_ax.legend(fontsize=7)
    for k in (10, 100, 1000):
        cover_ax.axvline(k, color="0.8", linewidth=0.6, zorder=0)
    cover_ax.set_xlim(1, vocab_size)
    _plain_log_labels(freq_ax.xaxis, freq_ax.yaxis, cover_ax.xaxis)
    cover_ax.set_xlabel("top-k ids")
    cover_ax.set_ylabel("cumulative coverage")
    cover_ax.set_title(f"Coverage (vocabulary {vocab_size:,})")
    return fig


def _log_spaced(n: int, points: int = 300) -> np.ndarray:
    """Row positions 0..n-1 spaced evenly in log(rank), first and last included."""
    if n <= points:
        return np.arange(n)
    return np.unique(np.geomspace(1, n, points).round().astype(np.int64) - 1)


def _plain_log_labels(*axes) -> None:
    """Plain numbers and no minor ticks on log axes (mathtext labels and minor ticks cost ~1 s to lay out)."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    for axis in axes:
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_locator(NullLocator())
