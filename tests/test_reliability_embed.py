"""The embeddings cache under hostile conditions: each distinct sequence encoded once (identical vectors for
repeated prompts), damaged resume chunks re-encoded, a failed run that leaves the good cache as it was, a
garbage manifest rebuilt with a warning, and readers that verify the arrays' sha256 (once per process)."""

from __future__ import annotations

import errno
import logging

import numpy as np
import pandas as pd
import pytest
from tiny_teacher import tiny_sam3_teacher

import anatomy.encoders.registry
from anatomy.embed import embed_corpus, load_embeddings
from anatomy.embed_store import EmbeddingStore
from anatomy.encoders import load
from anatomy.errors import AnatomyError, InputError

LONG = "a very long referring expression about the man on the left " * 4  # over the 32-token context
PROMPTS = ["dog", "a photo of a dog", "zebra", LONG + "one", "red", "two birds on a branch", LONG + "two",
           "cat", "dog", "zebra", "a photo of a dog", "dog"]  # fmt: skip
DISTINCT = 7  # the two LONG prompts are equal after truncation; "dog", "zebra", "a photo of a dog" repeat


def write_corpus(path, prompts=PROMPTS):
    n = len(prompts)
    frame = pd.DataFrame({"prompt": prompts, "raw": prompts, "source": "text", "subset": [f"s{i}" for i in range(n)],
                          "count": 1, "ref": [f"l{i}" for i in range(n)], "meta": ""})  # fmt: skip
    frame.to_parquet(path)
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return tiny_sam3_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture
def counting(monkeypatch):
    """Wrap every loaded encoder so the rows it encodes are counted."""
    calls: list[int] = []
    real = anatomy.encoders.registry.load

    def load_counting(*args, **kwargs):
        encoder = real(*args, **kwargs)
        encode_ids = encoder.encode_ids

        def counted(ids, valid):
            calls.append(len(ids))
            return encode_ids(ids, valid)

        encoder.encode_ids = counted
        return encoder

    monkeypatch.setattr(anatomy.encoders.registry, "load", load_counting)
    return calls


@pytest.mark.parametrize("chunk_rows", [2, None])
def test_each_distinct_sequence_is_encoded_once_and_repeats_are_identical(
    teacher, tmp_path, counting, chunk_rows
):
    corpus = write_corpus(tmp_path / "c.parquet")
    result = embed_corpus(
        corpus, teacher, tmp_path / "e", per_token=True, batch_size=3, chunk_rows=chunk_rows
    )
    assert sum(counting) == DISTINCT and result.manifest["distinct_sequences"] == DISTINCT
    got = load_embeddings(tmp_path / "e")
    for prompt in ("dog", "zebra", "a photo of a dog"):
        rows = [i for i, p in enumerate(PROMPTS) if p == prompt]
        for name in ("pooled", "tokens", "mask"):
            values = getattr(got, name)
            assert all(np.array_equal(values[rows[0]], values[r]) for r in rows[1:]), (prompt, name)
    assert np.array_equal(got.pooled[3], got.pooled[6])  # equal after truncation to the context
    encoder = load(teacher, device="cpu")
    for i in range(len(PROMPTS)):  # and every row is its own prompt's output, in corpus order
        one = encoder.encode([PROMPTS[i]])
        np.testing.assert_allclose(got.pooled[i], one.pooled[0].numpy(), rtol=1e-5, atol=1e-6)


def test_embed_prompts_encodes_distinct_sequences_once(teacher, counting):
    from anatomy.batching import embed_prompts

    encoder = anatomy.encoders.registry.load(teacher, device="cpu")
    got = embed_prompts(encoder, PROMPTS, batch_size=2, per_token=True)
    assert sum(counting) == DISTINCT and got["pooled"].shape == (len(PROMPTS), 256)
    assert np.array_equal(got["pooled"][0], got["pooled"][11]) and np.array_equal(
        got["tokens"][2], got["tokens"][9]
    )


def _killed_after(corpus, teacher, out, chunks: int):
    def stop(done, _total):
        if done >= 2 * chunks:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_corpus(corpus, teacher, out, chunk_rows=2, batch_size=2, on_progress=stop)
    (partial,) = out.glob(".partial-*")
    return partial


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign", "not a zip"])
def test_damaged_resume_chunks_are_encoded_again_with_a_warning(teacher, tmp_path, caplog, damage):
    corpus = write_corpus(tmp_path / "c.parquet")
    out = tmp_path / "e"
    partial = _killed_after(corpus, teacher, out, chunks=2)
    first, second = partial / "chunk-000000.npz", partial / "chunk-000001.npz"
    data = first.read_bytes()
    if damage == "flip":
        first.write_bytes(data[:200] + bytes([data[200] ^ 0x40]) + data[201:])
    elif damage == "truncate":
        first.write_bytes(data[: len(data) // 2])
    elif damage == "foreign":
        first.write_bytes(second.read_bytes())  # a whole, valid chunk of other rows
    else:
        first.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="anatomy.embed"):
        embed_corpus(corpus, teacher, out, chunk_rows=2, batch_size=2)
    assert "resume chunk does not verify" in caplog.text and "chunk-000000.npz" in caplog.text
    reference = embed_corpus(corpus, teacher, tmp_path / "ref")
    np.testing.assert_allclose(
        load_embeddings(out).pooled, load_embeddings(reference.out_dir).pooled, atol=1e-6
    )
    assert not list(out.glob(".partial-*"))
    assert embed_corpus(corpus, teacher, out, chunk_rows=2, batch_size=2).reused


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("stage", ["encoding", "commit"])
def test_a_failed_run_leaves_the_good_cache_as_it_was(teacher, tmp_path, monkeypatch, stage):
    import anatomy.embed

    corpus = write_corpus(tmp_path / "c.parquet")
    out = tmp_path / "e"
    embed_corpus(corpus, teacher, out)
    before = _files(out)
    if stage == "encoding":  # the encoder fails half-way (out of memory, a bad prompt, Ctrl-C)
        monkeypatch.setattr(
            anatomy.embed, "embed_rows", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
        )
        raises = pytest.raises(RuntimeError, match="boom")
    else:  # the disk fills up while the new arrays are written

        def full(_path):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(anatomy.embed, "file_record", full)
        raises = pytest.raises(AnatomyError, match="nothing was changed|No space")
    with raises:
        embed_corpus(corpus, teacher, out, per_token=True)
    assert _files(out) == before  # embeddings.json included: the hint's "nothing changed" is true
    monkeypatch.undo()
    assert embed_corpus(corpus, teacher, out).reused
    assert load_embeddings(out).pooled.shape == (len(PROMPTS), 256)


@pytest.mark.parametrize("garbage", [b"{not json", b"[]", b'{"key": 7}', b"\xff\xfe"])
def test_a_garbage_manifest_is_rebuilt_with_a_warning(teacher, tmp_path, caplog, garbage):
    corpus = write_corpus(tmp_path / "c.parquet")
    out = tmp_path / "e"
    embed_corpus(corpus, teacher, out)
    (out / "embeddings.json").write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="anatomy.embed"):
        again = embed_corpus(corpus, teacher, out)
    assert not again.reused and "embeddings.json" in caplog.text and "rebuilding" in caplog.text
    assert embed_corpus(corpus, teacher, out).reused


def test_readers_verify_the_sha256_once_per_process(teacher, tmp_path, monkeypatch, caplog):
    import anatomy.cachecheck

    corpus = write_corpus(tmp_path / "c.parquet")
    out = tmp_path / "embeddings" / "e"
    embed_corpus(corpus, teacher, out)
    hashed = []
    real = anatomy.cachecheck.file_sha256
    monkeypatch.setattr(anatomy.cachecheck, "file_sha256", lambda p: hashed.append(p) or real(p))
    load_embeddings(out)
    load_embeddings(out)
    assert len(hashed) == 1  # a second analysis reading the same cache does not hash it again
    pooled = out / "pooled.npy"
    data = bytearray(pooled.read_bytes())
    data[-3] ^= 0x10  # a value, not the header: the shape is right, only the sha256 can tell
    pooled.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256"):
        load_embeddings(out)
    encoder = load(teacher, device="cpu")
    store = EmbeddingStore(encoder)
    with caplog.at_level(logging.WARNING, logger="anatomy.embed_store"):
        assert not store.load_cache(out, corpus)  # the analyses' reader refuses it and encodes instead
    assert "sha256" in caplog.text
    fresh = store.pooled(["dog"])
    np.testing.assert_allclose(fresh[0], encoder.encode(["dog"]).pooled[0].numpy(), rtol=1e-5, atol=1e-6)
