"""Image comparison of the key figures against committed baselines (tests/baseline_images/), with a tolerance.

The inputs are seeded synthetic tables, so a failure means the drawing changed, not the data. matplotlib is
pinned in pyproject.toml to the range these baselines hold for. After an intended change to a figure, rewrite
the baselines with `ANATOMY_UPDATE_BASELINES=1 make test` and look at the new PNGs before committing them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

BASELINES = Path(__file__).parent / "baseline_images"
TOLERANCE = 2.0  # RMS difference over 0-255 pixel values (matplotlib.testing.compare)
UPDATE = os.environ.get("ANATOMY_UPDATE_BASELINES") == "1"


def _lengths() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    blocks = {"lvis": 3 + rng.poisson(1.5, 800), "refcoco": 4 + rng.poisson(5.0, 1200)}
    return {"overall": np.concatenate(list(blocks.values())), **blocks}


def _length_histogram():
    from anatomy.figures.tokens import draw_length_histogram, prepare_length_histogram

    return draw_length_histogram(prepare_length_histogram(_lengths()))


def _context_tradeoff():
    from anatomy.figures.tokens import draw_context_tradeoff, prepare_context_tradeoff

    table = prepare_context_tradeoff(_lengths(), range(1, 41))
    return draw_context_tradeoff(table, marks=(8, 16, 32), recommended={"pooled": {"L": 16}})


def _vocab_rank():
    from anatomy.figures.tokens import draw_vocab_rank, prepare_vocab_rank

    rng = np.random.default_rng(1)
    counts = np.zeros(49408, dtype=np.int64)
    used = rng.choice(49408, 6000, replace=False)
    counts[used] = (2e4 / np.arange(1, 6001) ** 1.1).astype(np.int64) + 1
    return draw_vocab_rank(prepare_vocab_rank({"overall": counts, "half": counts // 2}))


def _positional_similarity():
    from anatomy.figures.representation import draw_positions_heatmap

    rng = np.random.default_rng(2)
    steps = np.cumsum(rng.standard_normal((32, 64)) * np.linspace(1.0, 0.1, 32)[:, None], axis=0)
    unit = steps / np.linalg.norm(steps, axis=1, keepdims=True)
    return draw_positions_heatmap(unit @ unit.T)


def _intrinsic_dimension():
    import pandas as pd

    from anatomy.figures.representation import draw_dims

    rows = [
        {"group": g, "estimator": e, "value": v, "low": v - 0.6, "high": v + 0.5, "n_points": 1000}
        for g, base in (("overall", 17.0), ("lvis", 14.0), ("refcoco", 19.0))
        for e, v in (("TwoNN", base), ("MLE", base - 2.0), ("erank", base * 3))
    ]
    return draw_dims(pd.DataFrame(rows))


FIGURES = {
    "token_lengths": _length_histogram,
    "context_tradeoff": _context_tradeoff,
    "vocab_rank": _vocab_rank,
    "positional_similarity": _positional_similarity,
    "intrinsic_dimension": _intrinsic_dimension,
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_matches_baseline(name: str, tmp_path: Path) -> None:
    from matplotlib.testing.compare import compare_images

    from anatomy.figures.style import save_figure

    actual = save_figure(FIGURES[name](), tmp_path / f"{name}.png")
    expected = BASELINES / f"{name}.png"
    if UPDATE:
        shutil.copyfile(actual, expected)
    assert expected.exists(), f"no baseline {expected}: run with ANATOMY_UPDATE_BASELINES=1 and review it"
    diff = compare_images(str(expected), str(actual), tol=TOLERANCE)
    assert diff is None, diff


def test_comparison_can_fail(tmp_path: Path) -> None:
    """The tolerance is tight enough to see a real change: another figure's baseline does not match."""
    from matplotlib.testing.compare import compare_images

    from anatomy.figures.style import save_figure

    actual = save_figure(_length_histogram(), tmp_path / "token_lengths.png")
    other = tmp_path / "other.png"
    shutil.copyfile(BASELINES / "context_tradeoff.png", other)
    # compare_images needs equal sizes to measure RMS: a different figure fails by size or by RMS
    try:
        result = compare_images(str(other), str(actual), tol=TOLERANCE)
    except Exception as error:  # ImageComparisonFailure: sizes differ
        result = str(error)
    assert result is not None
