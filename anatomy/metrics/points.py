"""Loading and checking a point cloud for the intrinsic-dimension estimators (`anatomy dims --embeddings`).

Everything that is not a finite real matrix of enough distinct points is refused with an InputError naming
the file and what was found: a text file named .npy, a pickle, an object/string/complex array, a shape
other than [n, d] with d >= 1, NaN or inf rows, and fewer distinct points than the estimators need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anatomy.errors import InputError

MIN_POINTS = 3  # TwoNN needs each point's two nearest distinct neighbours


class PointsError(InputError, ValueError):
    """Points the estimators cannot use (an InputError; also a ValueError for numeric callers)."""


def load_points(path: str | Path) -> np.ndarray:
    """A checked [n, d] float array (memory-mapped when possible) from a .npy file."""
    path = Path(path)
    if not path.is_file():
        raise PointsError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as err:
        raise PointsError(f"{path}: cannot read ({err.strerror or err})") from None
    if magic != b"\x93NUMPY":
        raise PointsError(
            f"{path}: not a NumPy .npy file",
            "save the points with numpy.save(path, array) as an [n, d] array",
        )
    try:
        points = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        if any(t in str(err) for t in ("allow_pickle", "Object arrays", "Python objects")):
            raise PointsError(
                f"{path}: holds Python objects, not numbers", "save a numeric [n, d] array"
            ) from None
        raise PointsError(f"{path}: not a readable .npy array ({err})") from None
    except OSError as err:
        raise PointsError(f"{path}: not a readable .npy array ({err})") from None
    return check_array(points, str(path))


def check_array(points, name: str = "points") -> np.ndarray:
    """`points` as a finite real [n, d] array (d >= 1), or InputError saying what it is instead."""
    x = np.asarray(points)
    if x.dtype.names is not None:
        raise PointsError(f"{name}: a structured array ({x.dtype}), expected plain numbers")
    kind = x.dtype.kind
    if kind == "c":
        raise PointsError(
            f"{name}: complex values ({x.dtype}); intrinsic dimension needs real coordinates",
            "pass the real and imaginary parts as separate columns if that is what you mean",
        )
    if kind not in "biuf":
        raise PointsError(f"{name}: holds {x.dtype} values, expected numbers (float or int)")
    if x.ndim != 2:
        raise PointsError(f"{name}: expected a 2-D array [points, dims], got shape {x.shape}")
    if x.shape[1] == 0:
        raise PointsError(f"{name}: the points have no coordinates (shape {x.shape})")
    if kind == "f":
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise PointsError(
                f"{name}: {len(rows):,} row(s) hold NaN or inf (first: row {int(rows[0])})",
                "drop or fix those rows first",
            )
        if x.size:  # every squared distance <= d * (largest coordinate range)^2 must stay finite in float64
            span = float((x.max(axis=0).astype(np.float64) - x.min(axis=0)).max()) * np.sqrt(x.shape[1])
            if not span < 2.0**510:  # with room for |a|^2 + |b|^2 + 2|a.b| in float64 Gram values
                raise PointsError(
                    f"{name}: the points spread over {span:.3g}: their squared distances overflow float64",
                    "divide the points by a constant first (distances scale with it, dimension estimates do "
                    "not)",
                )
    return x


def check_points(x: np.ndarray, k: int | None = None, name: str = "points") -> None:
    """Raise InputError unless `x` (already deduplicated) has enough distinct points for the estimators.

    TwoNN needs at least MIN_POINTS; the MLE's k is reduced to n - 1 when fewer points than k + 1 are given
    (the estimator does this itself), so k only sets the message.
    """
    n = len(x)
    if n < MIN_POINTS:
        uses = f"; k = {k} neighbours are used when there are more than {k}" if k else ""
        raise PointsError(
            f"{name}: only {n} distinct point(s); the intrinsic-dimension estimators need at least "
            f"{MIN_POINTS} distinct points{uses}",
            "give more points (identical rows count once)",
        )
