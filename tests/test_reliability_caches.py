"""Caches are verified before reuse: truncated or bit-flipped arrays are rebuilt with a warning, and the
temporaries of a killed writer are removed by the next run."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from tiny_teacher import tiny_sam3_teacher

from anatomy.cachecheck import check_file, check_npy, file_record
from anatomy.embed import embed_corpus, load_embeddings
from anatomy.errors import InputError
from anatomy.tokenizer import clip_tokenizer
from anatomy.tokens import tokenize_corpus

PROMPTS = ["dog", "a photo of a dog", "aerosol can", "zebra", "two birds on a branch", "red"] + [
    f"prompt number {i}" for i in range(400)
]


def write_corpus(path, prompts=PROMPTS):
    n = len(prompts)
    frame = pd.DataFrame(
        {
            "prompt": prompts,
            "raw": prompts,
            "source": "text",
            "subset": "t",
            "count": 1,
            "ref": [f"l{i}" for i in range(n)],
            "meta": "",
        }
    )
    frame.to_parquet(path)
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return tiny_sam3_teacher(tmp_path_factory.mktemp("teacher"))


def _flip(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x55
    path.write_bytes(data)


@pytest.mark.parametrize("damage", ["truncate", "flip", "header", "extend"])
def test_damaged_embeddings_are_rebuilt_with_a_warning(teacher, tmp_path, caplog, damage):
    corpus = write_corpus(tmp_path / "c.parquet")
    out = tmp_path / "e"
    embed_corpus(corpus, teacher, out, quiet=True, per_token=True)
    good = {n: (out / n).read_bytes() for n in ("pooled.npy", "tokens.npy", "mask.npy")}
    pooled = out / "pooled.npy"
    if damage == "truncate":
        pooled.write_bytes(good["pooled.npy"][:-7])
    elif damage == "flip":
        _flip(pooled, len(good["pooled.npy"]) // 2)  # a value, not the header: only the sha256 sees it
    elif damage == "header":
        _flip(pooled, 3)
    else:
        pooled.write_bytes(good["pooled.npy"] + b"\0" * 8)
    with pytest.raises(InputError, match="damaged"):
        load_embeddings(out)  # readers verify too: structure, and the sha256 for a flipped value
    with caplog.at_level(logging.WARNING, logger="anatomy.embed"):
        again = embed_corpus(corpus, teacher, out, quiet=True, per_token=True)
    assert not again.reused
    assert "do not verify" in caplog.text and "pooled.npy" in caplog.text
    assert {n: (out / n).read_bytes() for n in good} == good
    assert embed_corpus(corpus, teacher, out, quiet=True, per_token=True).reused


def test_a_killed_embed_leaves_nothing_behind_the_next_run(teacher, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet")
    out = tmp_path / "e"
    out.mkdir()
    partial = out / ".partial-0123456789abcdef-2048"
    partial.mkdir()
    leftovers = [
        out / ".pooled.k1ll3d_x.npy",
        out / ".embeddings.json.abcd1234.tmp",
        partial / ".chunk-000000.npz.abcd1234.tmp",
    ]
    for p in leftovers:
        p.write_bytes(b"half")
    embed_corpus(corpus, teacher, out, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == ["embeddings.json", "pooled.npy"]


def test_damaged_tokens_parquet_is_rebuilt(tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet")
    tok = clip_tokenizer()
    path, reused = tokenize_corpus(corpus, tmp_path, tok, tok.fingerprint)
    assert not reused and path == tmp_path / "tokens.parquet"
    table = pq.read_table(path)
    good = path.read_bytes()
    assert tokenize_corpus(corpus, tmp_path, tok, tok.fingerprint)[1]
    for at in (100, len(good) // 3):
        _flip(path, at)
        again, reused = tokenize_corpus(corpus, tmp_path, tok, tok.fingerprint)
        assert not reused and pq.read_table(again).equals(table)
        assert path.read_bytes() == good
    path.write_bytes(good[: len(good) - 50])
    assert not tokenize_corpus(corpus, tmp_path, tok, tok.fingerprint)[1]


def test_file_and_npy_checks(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((4, 3), np.float32))
    record = file_record(path)
    assert check_file(path, record) is None and check_npy(path, (4, 3), np.float32) is None
    assert "shape (4, 3), expected (5, 3)" in check_npy(path, (5, 3), np.float32)
    assert "holds float32, expected float64" in check_npy(path, (4, 3), np.float64)
    _flip(path, path.stat().st_size - 1)
    assert "sha256" in check_file(path, record) and check_npy(path, (4, 3), np.float32) is None
    path.write_text("not an array", encoding="utf-8")
    assert "no readable .npy header" in check_npy(path)
    assert "bytes" in check_file(path, record)
