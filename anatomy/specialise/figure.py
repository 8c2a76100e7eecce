"""The Pareto figure of a bill: quality against latency and against parameters, one point per candidate and
runtime (prepare_pareto: a tidy table, tested exactly; draw_pareto: the Figure)."""

from __future__ import annotations

from typing import Any

from anatomy.specialise.recommend import Option


def prepare_pareto(options: list[Option]) -> list[dict[str, Any]]:
    """One row per option: label, quality (1 - drop), latency, parameters, bytes, on the Pareto front or not
    (no other option at least as good in quality and latency and better in one)."""
    rows = []
    for o in options:
        q = 1.0 - o.quality_drop
        dominated = any(
            (1.0 - p.quality_drop) >= q and p.latency_ms_p50 <= o.latency_ms_p50
            and ((1.0 - p.quality_drop) > q or p.latency_ms_p50 < o.latency_ms_p50)
            for p in options if p is not o
        )  # fmt: skip
        rows.append({"label": f"{o.candidate} {o.runtime}", "candidate": o.candidate, "runtime": o.runtime,
                     "quality": q, "latency_ms": o.latency_ms_p50, "parameters": o.parameters, "bytes": o.bytes,
                     "front": not dominated})  # fmt: skip
    return rows


MARKERS = {"torch": "o", "onnx": "s", "int8": "^"}


def draw_pareto(rows: list[dict[str, Any]], teacher_latency_ms: float | None, teacher_parameters: int | None):
    from anatomy.figures.style import new_figure

    fig, axes = new_figure(1, 2, size=(9.0, 3.6))
    candidates = sorted({r["candidate"] for r in rows})
    colours = {c: f"C{i % 10}" for i, c in enumerate(candidates)}
    panels = ((axes[0][0], "latency_ms", "batch-1 latency p50 (ms, log)", teacher_latency_ms),
              (axes[0][1], "parameters", "parameters (log)", teacher_parameters))  # fmt: skip
    for ax, key, label, ref in panels:
        for r in rows:
            ax.scatter(r[key], r["quality"], color=colours[r["candidate"]], marker=MARKERS.get(r["runtime"], "D"),
                       edgecolors="black" if r["front"] else "none", s=40, zorder=3)  # fmt: skip
        if ref:
            ax.axvline(ref, color="grey", linestyle="--", linewidth=1)
            ax.annotate("teacher", (ref, ax.get_ylim()[0]), fontsize=7, rotation=90, va="bottom", ha="right")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("pooled cosine to the teacher (test)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[c], marker="o", linestyle="", label=c) for c in candidates]
    handles += [Line2D([], [], color="grey", marker=m, linestyle="", label=rt) for rt, m in MARKERS.items()
                if any(r["runtime"] == rt for r in rows)]  # fmt: skip
    axes[0][1].legend(handles=handles, fontsize=7, loc="best")
    axes[0][0].set_title("quality vs latency (outlined: Pareto front)")
    axes[0][1].set_title("quality vs parameters")
    return fig
