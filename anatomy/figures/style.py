"""One plotting style and one deterministic savefig for every figure the toolkit writes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from anatomy.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

STYLE: dict[RcKeyType, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "prompt-anatomy",
}


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.0, 3.6)):
    """A Figure (not pyplot-managed, so nothing leaks between calls) with the house style applied."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=size, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a PNG atomically with no timestamps or software tags in it (byte-identical reruns)."""
    import matplotlib

    path = Path(path)
    with matplotlib.rc_context(STYLE), atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return path
