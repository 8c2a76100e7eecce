"""The cost frontier: quality (kNN overlap, pooled cosine) against model memory and batch-1 latency."""

from __future__ import annotations

from typing import Any


def draw_frontier(result: Any):
    """Two panels (memory, latency); the teacher at quality 1 as the reference, the student where it lands."""
    from anatomy.figures.style import new_figure

    fig, grid = new_figure(1, 2, size=(9.0, 3.6))
    axes = grid[0]
    teacher, student = result.pair()  # the teacher at the student's context where it was measured there
    quality = {f"kNN@{result.k} overlap": result.knn_overlap}
    if result.pooled_cosine is not None:
        quality["pooled cosine"] = result.pooled_cosine
    for ax, key, label in (
        (axes[0], lambda r: r["rss_loaded_mib"] - r["rss_runtime_mib"], "model memory (MiB, resident)"),
        (axes[1], lambda r: r["latency_ms_p50"], "batch-1 latency p50 (ms)"),
    ):
        ax.scatter(
            [key(teacher)], [1.0], marker="*", s=120, color="black", label=f"teacher {teacher['encoder']}"
        )
        for i, (name, value) in enumerate(quality.items()):
            ax.scatter([key(student)], [value], s=50, color=f"C{i}", label=f"student: {name}")
            ax.plot([key(student), key(teacher)], [value, 1.0], color=f"C{i}", alpha=0.3, linewidth=1)
        ax.set_xlabel(label)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("agreement with the teacher")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"cost vs quality on {result.machine['device_name']}", fontsize=9)
    return fig
