"""Atomic writes and results provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anatomy.errors import InputError
from anatomy.io import atomic_write, dumps_json, read_json, write_json, write_result


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "x.json"
    write_json(target, {"a": 1})
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_write(target, "w", encoding="utf-8") as handle:
        handle.write("{half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary left behind


def test_json_converts_numpy_and_nan():
    text = dumps_json({"n": np.int64(3), "x": np.float32(0.5), "arr": np.arange(3), "bad": float("nan")})
    assert json.loads(text) == {"n": 3, "x": 0.5, "arr": [0, 1, 2], "bad": None}


def test_write_result_is_byte_identical_and_path_free(tmp_path):
    corpus = tmp_path / "in" / "corpus.parquet"
    corpus.parent.mkdir()
    corpus.write_bytes(b"data")
    paths = []
    for run in ("a", "b"):
        paths.append(
            write_result(
                tmp_path / run,
                "tokens",
                {"overall": {"n": 1}},
                command="tokens",
                params={"k": 2},
                inputs={"corpus": corpus},
            )
        )
    assert paths[0].read_bytes() == paths[1].read_bytes()
    payload = read_json(paths[0])
    assert payload["provenance"]["inputs"]["corpus"]["name"] == "corpus.parquet"
    assert str(tmp_path) not in paths[0].read_text()
    assert payload["params"] == {"k": 2} and payload["overall"] == {"n": 1}


def test_read_json_names_file_and_position(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }')
    with pytest.raises(InputError, match=r"bad.json: invalid JSON at line 2, column 7"):
        read_json(bad)


def test_atomic_files_get_normal_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = write_json(tmp_path / "r.json", {})
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
