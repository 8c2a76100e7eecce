"""Degenerate point clouds for `dims`: each is one InputError naming the file and what is wrong."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from anatomy.errors import InputError
from anatomy.metrics.intrinsic_dim import dedupe_rows, intrinsic_dim
from anatomy.metrics.points import check_points, load_points

rng = np.random.default_rng(0)
GOOD = rng.normal(size=(40, 5))
NAN_ROW = GOOD.copy()
NAN_ROW[7, 2] = np.nan
INF_ROW = GOOD.copy()
INF_ROW[3, 0] = -np.inf


@pytest.mark.parametrize(
    ("array", "phrase"),
    [
        (np.zeros((0, 5)), "only 0 distinct point(s)"),
        (GOOD[:1], "only 1 distinct point(s)"),
        (GOOD[:2], "only 2 distinct point(s)"),
        (np.ones((50, 4)), "only 1 distinct point(s)"),  # identical rows count once
        (np.zeros((10, 0)), "the points have no coordinates"),
        (GOOD[0], "expected a 2-D array"),
        (GOOD.reshape(8, 5, 5), "expected a 2-D array"),
        (NAN_ROW, "1 row(s) hold NaN or inf (first: row 7)"),
        (INF_ROW, "(first: row 3)"),
        (np.array([["a", "b"], ["c", "d"]]), "holds <U1 values, expected numbers"),
        (GOOD.astype(np.complex128) + 1j, "complex values"),
        (np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]), "a structured array"),
    ],
)
def test_degenerate_points_are_one_clear_error(tmp_path, array, phrase):
    path = tmp_path / "points.npy"
    np.save(path, array)
    with pytest.raises(InputError) as info:
        distinct, _ = dedupe_rows(load_points(path))
        check_points(distinct, 20, name=str(path))
    assert phrase in str(info.value) and str(path) in str(info.value)
    if array.dtype.kind in "fiu" and array.ndim == 2:  # the estimator itself says the same
        with pytest.raises(InputError):
            intrinsic_dim(array, n_boot=0)


def test_a_text_file_named_npy_is_not_described_as_a_pickle(tmp_path):
    path = tmp_path / "notes.npy"
    path.write_text("just some notes\n", encoding="utf-8")
    with pytest.raises(InputError, match="not a NumPy .npy file") as info:
        load_points(path)
    assert "pickle" not in str(info.value)


def test_a_pickle_and_an_object_array_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.npy"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(InputError, match="not a NumPy .npy file"):
        load_points(path)
    np.save(path, np.array([[1, "x"], [2, None]], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="holds Python objects"):
        load_points(path)


def test_truncated_npy_and_missing_file(tmp_path):
    path = tmp_path / "points.npy"
    np.save(path, GOOD)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(InputError, match="not a readable .npy array"):
        load_points(path)
    with pytest.raises(InputError, match="no such file"):
        load_points(tmp_path / "absent.npy")


def test_good_points_pass_through_unchanged(tmp_path):
    path = tmp_path / "points.npy"
    np.save(path, GOOD.astype(np.float32))
    x = load_points(path)
    np.testing.assert_array_equal(x, GOOD.astype(np.float32))
    check_points(x, 20)
    ints = np.arange(30).reshape(10, 3)  # integer coordinates are numbers too
    np.save(path, ints)
    np.testing.assert_array_equal(load_points(path), ints)
