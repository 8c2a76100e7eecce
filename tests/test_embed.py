"""embed_corpus: rows aligned, bucketing exact, reuse, resume after a kill, sharding, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_teacher import tiny_sam3_teacher
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.embed import embed_corpus, load_embeddings
from anatomy.encoders import load
from anatomy.errors import AnatomyError

PROMPTS = [
    "dog",
    "a photo of a dog",
    "aerosol can",
    "the man on the left holding a red umbrella",
    "zebra",
    "the second small white plate behind the bowl of soup",
    # longer than the 32-token context: truncated, last id forced to end-of-text
    "a very long referring expression " * 8,
    "cat",
    "a person riding a horse on the beach at sunset with a dog running beside them",
    "traffic light",
    "red",
    "two birds sitting on a branch",
]


def write_corpus(path, prompts):
    frame = pd.DataFrame(
        {
            "prompt": prompts,
            "raw": prompts,
            "source": "text",
            "subset": "test",
            "count": 1,
            "ref": [f"line {i}" for i in range(len(prompts))],
            "meta": "{}",
        }
    )
    frame.to_parquet(path)
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A small SAM3-layout teacher (causal) written as the official checkpoint."""
    return tiny_sam3_teacher(tmp_path_factory.mktemp("teacher"), layers=2, mlp_width=256)


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus.parquet", PROMPTS)


def test_bucketing_equals_full_context_padding(teacher, corpus, tmp_path):
    bucketed = embed_corpus(corpus, teacher, tmp_path / "b", per_token=True, batch_size=4, quiet=True)
    padded = embed_corpus(
        corpus, teacher, tmp_path / "p", per_token=True, batch_size=4, bucket=False, quiet=True
    )
    assert bucketed.manifest["bucketed"] and not padded.manifest["bucketed"]
    a, b = load_embeddings(tmp_path / "b"), load_embeddings(tmp_path / "p")
    np.testing.assert_allclose(a.pooled, b.pooled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.tokens, b.tokens, rtol=1e-5, atol=1e-6)
    assert np.array_equal(a.mask, b.mask)
    assert a.tokens.shape == (12, 32, 256)  # the truncated prompt fills the whole context
    assert a.mask.sum(1).tolist()[:3] == [3, 7, 5]


def test_rows_are_aligned_with_the_corpus(teacher, corpus, tmp_path):
    embed_corpus(corpus, teacher, tmp_path / "e", per_token=True, batch_size=5, quiet=True)
    got = load_embeddings(tmp_path / "e")
    encoder = load(teacher, device="cpu")
    for i in (0, 3, 6, 11):
        one = encoder.encode([PROMPTS[i]])
        np.testing.assert_allclose(got.pooled[i], one.pooled[0].numpy(), rtol=1e-5, atol=1e-6)
        n = int(one.mask.sum())
        np.testing.assert_allclose(got.tokens[i, :n], one.tokens[0, :n].numpy(), rtol=1e-5, atol=1e-6)
        assert not got.tokens[i, n:].any()  # zero outside the mask
    assert got.manifest["rows"] == 12 and got.manifest["dim"] == 256 and got.manifest["encoder"]["trained"]


def test_reused_while_unchanged_and_redone_when_the_corpus_changes(teacher, corpus, tmp_path):
    out = tmp_path / "e"
    first = embed_corpus(corpus, teacher, out, quiet=True)
    before = (out / "pooled.npy").stat().st_mtime_ns
    again = embed_corpus(corpus, teacher, out, quiet=True)
    assert again.reused and not first.reused
    assert (out / "pooled.npy").stat().st_mtime_ns == before
    write_corpus(corpus, PROMPTS[:5])
    changed = embed_corpus(corpus, teacher, out, quiet=True)
    assert not changed.reused and load_embeddings(out).pooled.shape == (5, 256)


def test_a_killed_run_resumes_where_it_stopped(teacher, corpus, tmp_path):
    out = tmp_path / "e"
    seen = []

    def kill_after_two_chunks(done, total):
        seen.append(done)
        if done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_corpus(
            corpus, teacher, out, chunk_rows=3, batch_size=2, quiet=True, on_progress=kill_after_two_chunks
        )
    assert not (out / "embeddings.json").exists()  # nothing claims to be finished
    resumed = []
    embed_corpus(
        corpus,
        teacher,
        out,
        chunk_rows=3,
        batch_size=2,
        quiet=True,
        on_progress=lambda d, t: resumed.append(d),
    )
    assert resumed[0] == 6 and resumed[-1] == 12  # started after the two finished chunks
    reference = embed_corpus(corpus, teacher, tmp_path / "ref", quiet=True)
    np.testing.assert_allclose(
        load_embeddings(out).pooled, np.load(reference.out_dir / "pooled.npy"), atol=1e-6
    )
    assert not list(out.glob(".partial-*"))


def test_shards_merge_into_the_single_process_result(teacher, corpus, tmp_path):
    out = tmp_path / "sharded"
    r1 = embed_corpus(corpus, teacher, out, chunk_rows=4, rank=1, world_size=2, quiet=True)
    assert r1.manifest is None and not (out / "embeddings.json").exists()
    r0 = embed_corpus(corpus, teacher, out, chunk_rows=4, rank=0, world_size=2, quiet=True)
    single = embed_corpus(corpus, teacher, tmp_path / "single", quiet=True)
    np.testing.assert_allclose(np.load(out / "pooled.npy"), np.load(single.out_dir / "pooled.npy"), atol=1e-6)
    assert r0.manifest["rows"] == 12


def test_rank_zero_reports_missing_shards(teacher, corpus, tmp_path):
    with pytest.raises(AnatomyError, match="chunks still missing"):
        embed_corpus(corpus, teacher, tmp_path / "e", chunk_rows=4, rank=0, world_size=2, merge_timeout_s=0)


def test_bidirectional_students_keep_the_full_context(corpus, tmp_path):
    with pytest.raises(AnatomyError, match="not exact for this bidirectional encoder"):
        embed_corpus(corpus, "litetext-s0", tmp_path / "e", bucket=True, quiet=True)


def test_minilm_bucketing_is_exact_too(tmp_path):
    """Hugging Face encoders mask padding, so bucketing is exact for them as well."""
    torch.set_num_threads(2)
    corpus = write_corpus(tmp_path / "c.parquet", PROMPTS)
    a = embed_corpus(corpus, "minilm", tmp_path / "a", context_length=64, quiet=True)
    b = embed_corpus(corpus, "minilm", tmp_path / "b", context_length=64, bucket=False, quiet=True)
    assert a.manifest["bucketed"] and not b.manifest["bucketed"] and a.manifest["dim"] == 384
    np.testing.assert_allclose(
        np.load(tmp_path / "a/pooled.npy"), np.load(tmp_path / "b/pooled.npy"), atol=1e-5
    )


def test_embed_command(teacher, corpus, tmp_path):
    args = [
        "embed",
        "--corpus",
        str(corpus),
        "--encoder",
        teacher,
        "--out",
        str(tmp_path / "e"),
        "--per-token",
        "--quiet",
    ]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["rows"] == 12 and manifest["per_token"] and manifest["token_width"] == 32
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "reused" in again.stdout
    bad = CliRunner().invoke(
        app, ["embed", "-c", str(corpus), "--encoder", "nope", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 1 and "unknown encoder 'nope'" in bad.output


def test_embed_prompts_in_memory_keeps_input_order(teacher):
    from anatomy.batching import embed_prompts

    encoder = load(teacher, device="cpu")
    bucketed = embed_prompts(encoder, PROMPTS, batch_size=3, per_token=True)
    padded = embed_prompts(encoder, PROMPTS, batch_size=3, bucket=False, per_token=True)
    np.testing.assert_allclose(bucketed["tokens"], padded["tokens"], rtol=1e-5, atol=1e-6)
    one = encoder.encode([PROMPTS[3]]).pooled[0].numpy()
    np.testing.assert_allclose(bucketed["pooled"][3], one, rtol=1e-5, atol=1e-6)


def test_embed_command_under_torchrun_environment(teacher, corpus, tmp_path):
    """torchrun sets RANK/WORLD_SIZE: rank 1 writes its (here empty) share, rank 0 merges and reports."""
    out = str(tmp_path / "e")
    args = ["embed", "--corpus", str(corpus), "-e", teacher, "--out", out]
    rank1 = CliRunner().invoke(app, args, env={"RANK": "1", "WORLD_SIZE": "2"})
    assert rank1.exit_code == 0 and "shard written; rank 0 merges" in rank1.stderr
    assert not (tmp_path / "e" / "embeddings.json").exists()
    rank0 = CliRunner().invoke(app, [*args, "--json"], env={"RANK": "0", "WORLD_SIZE": "2"})
    assert rank0.exit_code == 0, rank0.output
    assert json.loads(rank0.stdout)["rows"] == 12
