"""`anatomy tokens`: the pipeline, its results shape, reuse of tokens.parquet, the figures and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from anatomy.analysis import ANALYSES, runner
from anatomy.analysis.base import Inputs
from anatomy.cli import app
from anatomy.context import context_table, length_stats
from anatomy.corpus.corpus import CORPUS_COLUMNS
from anatomy.figures import tokens as figs

# (prompt, source, subset): "a photo of a dog" is 5 content ids (n=7), "aerosol can" 3 (n=5), "dog" 1 (n=3).
ROWS = [
    ("a photo of a dog", "builtin", "imagenet"),
    ("aerosol can", "lvis", "names"),
    ("aerosol can", "lvis", "synonyms"),  # same source, two subsets: counted once for lvis
    ("dog", "lvis", "names"),
    ("dog", "refcoco", "val"),  # two sources: counted once overall
    ("the man on the left in a red shirt holding a very long umbrella over his head", "refcoco", "val"),
]


def write_corpus(path, rows=ROWS):
    frame = pd.DataFrame(
        [(p, p, s, sub, 1, f"r{i}", "") for i, (p, s, sub) in enumerate(rows)], columns=list(CORPUS_COLUMNS)
    )
    frame.to_parquet(path, index=False)
    return path


def run_tokens(corpus, out, progress=None, **values) -> dict:
    """Run the registered tokens analysis into out; return results/tokens.json as written."""
    tokens = ANALYSES["tokens"]
    inputs = Inputs(corpus=corpus, progress=progress or (lambda _message: None))
    runner.run(tokens, inputs, tokens.params_from(values), out)
    return json.loads((out / "results" / "tokens.json").read_text())


@pytest.fixture()
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus.parquet")


def test_results_shape_and_numbers(corpus, tmp_path):
    from anatomy.tokenizer import clip_tokenizer

    out = tmp_path / "out"
    result = run_tokens(corpus, out, contexts=(8, 16))
    long_n = len(clip_tokenizer().encode([ROWS[-1][0]])[0]) + 2
    assert long_n > 16
    overall = result["overall"]
    assert overall["n_prompts"] == 4
    assert overall["length"] == length_stats([7, 5, 3, long_n])
    assert overall["context"] == context_table([7, 5, 3, long_n], [8, 16])
    assert set(overall["context"]["8"]) == {
        "density",
        "padding",
        "truncation",
        "token_loss",
        "token_loss_per_prompt",
    }
    assert {s: b["n_prompts"] for s, b in result["sources"].items()} == {
        "builtin": 1,
        "lvis": 2,
        "refcoco": 2,
    }
    assert result["sources"]["lvis"]["length"]["histogram"] == {"3": 1, "5": 1}

    vocab = overall["vocab"]
    assert set(vocab["top_k_coverage"]) == {"10", "100", "1000"}
    assert vocab["special_share"] == pytest.approx(8 / (15 + long_n))
    assert vocab["top_tokens"][0] == ["a</w>", 4]  # "a" twice in the dog photo and twice in the long prompt
    content_ids = set().union(*map(set, clip_tokenizer().encode([p for p, _, _ in ROWS])))
    assert vocab["used"] == len(content_ids) + 2  # start and end occur too
    shares = [b["vocab"]["special_share"] for b in result["sources"].values()]
    assert vocab["special_share_mean_over_sources"] == pytest.approx(np.mean(shares))

    rec = result["recommended_context"]
    assert rec["pooled"]["L"] == long_n  # one prompt of four is long: any cut loses > 1% of tokens
    assert result["paper"]["vocab"]["used"] == 17_300 and "paper" in result["paper"]["label"]
    assert result["params"]["contexts"] == [8, 16] and result["params"]["tokenizer"] == "clip"
    assert result["provenance"]["inputs"]["corpus"]["name"] == "corpus.parquet"
    assert set(result) == {
        "schema_version", "overall", "sources", "recommended_context", "conventions", "paper", "params",
        "provenance",
    }  # fmt: skip
    assert set(rec) == {"rule", "max_token_loss", "max_truncation", "pooled", "per_prompt"}


def test_tokens_parquet_holds_exact_ids(corpus, tmp_path):
    import pyarrow.parquet as pq

    run_tokens(corpus, tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "tokens.parquet").to_pydict()
    assert table["prompt"] == [p for p, _, _ in ROWS] and table["source"] == [s for _, s, _ in ROWS]
    assert table["ids"][0] == [320, 1125, 539, 320, 1929] and table["ids"][1] == [10196, 9941, 753]
    assert table["length"][:3] == [7, 5, 5]


def test_reuse_and_byte_identical_rerun(corpus, tmp_path):
    out = tmp_path / "out"
    said: list[str] = []
    run_tokens(corpus, out, said.append)
    assert "tokenized" in said[-1]
    first = {
        p.name: p.read_bytes()
        for p in [out / "results" / "tokens.json", *sorted((out / "figures").glob("*.png"))]
    }
    assert set(first) == {"tokens.json", "tokens_lengths.png", "tokens_context.png", "tokens_vocab.png"}
    stamp = (out / "tokens.parquet").stat().st_mtime_ns
    run_tokens(corpus, out, said.append)
    assert "reused" in said[-1]
    assert (out / "tokens.parquet").stat().st_mtime_ns == stamp
    again = {
        p.name: p.read_bytes()
        for p in [out / "results" / "tokens.json", *sorted((out / "figures").glob("*.png"))]
    }
    assert again == first
    write_corpus(corpus, ROWS[:3])  # a changed corpus is tokenized again
    result = run_tokens(corpus, out)
    assert result["overall"]["n_prompts"] == 2 and (out / "tokens.parquet").stat().st_mtime_ns != stamp


def test_prepare_tables_exactly():
    lengths = {"overall": np.array([3, 3, 5]), "lvis": np.array([5])}
    hist = figs.prepare_length_histogram(lengths)
    expected = pd.DataFrame(
        {
            "block": ["overall", "overall", "lvis"],
            "length": [3, 5, 5],
            "count": [2, 1, 1],
            "share": [2 / 3, 1 / 3, 1.0],
        }
    )
    pd.testing.assert_frame_equal(hist, expected)

    trade = figs.prepare_context_tradeoff({"overall": np.array([3, 3, 5])}, [2, 4])
    assert list(trade.columns) == [
        "block",
        "L",
        "density",
        "padding",
        "truncation",
        "token_loss",
        "token_loss_per_prompt",
    ]
    np.testing.assert_allclose(trade["density"], [1.0, 10 / 12])
    np.testing.assert_allclose(trade["token_loss"], [5 / 11, 1 / 11])
    np.testing.assert_allclose(trade["truncation"], [1.0, 1 / 3])

    counts = np.zeros(10, dtype=np.int64)
    counts[[4, 2, 7]] = [5, 3, 3]
    rank = figs.prepare_vocab_rank({"overall": counts})
    assert rank["token_id"].tolist() == [4, 2, 7] and rank["rank"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(rank["coverage"], [5 / 11, 8 / 11, 1.0])
    np.testing.assert_allclose(rank["share"], [5 / 11, 3 / 11, 3 / 11])


def test_draw_functions_return_figures():
    lengths = {"overall": np.array([3, 4, 9, 20]), "lvis": np.array([3, 4])}
    counts = {"overall": np.bincount([1, 1, 2, 5], minlength=8)}
    for fig in (
        figs.draw_length_histogram(figs.prepare_length_histogram(lengths)),
        figs.draw_context_tradeoff(
            figs.prepare_context_tradeoff(lengths), marks=(8, 16), recommended={"pooled": {"L": 9}}
        ),
        figs.draw_vocab_rank(figs.prepare_vocab_rank(counts), vocab_size=8),
    ):
        assert fig.axes and all(ax.lines for ax in fig.axes)


def test_cli_tables_and_json(corpus, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    human = runner.invoke(
        app, ["tokens", "--corpus", str(corpus), "--out", str(out), "--context", "8,16", "--quiet"]
    )
    assert human.exit_code == 0, human.output
    assert (
        "padding" in human.stdout
        and "token loss" in human.stdout
        and "recommended context" in human.stdout
        and "paper" in human.stdout
    )
    as_json = runner.invoke(
        app, ["tokens", "--corpus", str(corpus), "--out", str(out), "--context", "8,16", "--json", "-q"]
    )
    assert as_json.exit_code == 0
    written = json.loads((out / "results" / "tokens.json").read_text())
    # --json prints the result; the file adds what produced it (params, provenance)
    assert json.loads(as_json.stdout) == {
        k: v for k, v in written.items() if k not in ("params", "provenance")
    }


def test_cli_errors(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(
        app, ["tokens", "-c", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "o")]
    )
    assert missing.exit_code == 1 and "nope.parquet" in missing.output  # a data error naming the file
    (tmp_path / "bad.parquet").write_text("not parquet")
    bad = runner.invoke(app, ["tokens", "-c", str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "o")])
    assert bad.exit_code == 1 and "Parquet" in bad.output
    usage = runner.invoke(
        app, ["tokens", "-c", str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "o"), "--context", "8,x"]
    )
    assert usage.exit_code == 2


def test_cli_unknown_tokenizer_spec(corpus, tmp_path):
    result = CliRunner().invoke(
        app, ["tokens", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--tokenizer", "nonsense"]
    )
    text = " ".join(result.output.replace("│", " ").split())  # the usage box wraps the line
    assert result.exit_code == 2 and "'nonsense' is not a tokenizer" in text and "unknown encoder" in text


@pytest.mark.slow
def test_encoder_tokenizer_minilm(corpus, tmp_path):
    """--tokenizer ENCODER_SPEC: the encoder's own tokenizer (WordPiece; [CLS]/[SEP] as start/end)."""
    pytest.importorskip("transformers")
    from anatomy.encoders.registry import load

    try:
        tok = load("minilm").tokenizer
    except Exception as error:  # the weights package is an optional extra
        pytest.skip(f"minilm encoder unavailable: {error}")
    result = run_tokens(corpus, tmp_path / "out", contexts=(8,), tokenizer="minilm")
    prompts = sorted({p for p, _, _ in ROWS})
    expected = sorted(len(ids) + 2 for ids in tok.encode(prompts))
    assert (
        sorted(int(k) for k, c in result["overall"]["length"]["histogram"].items() for _ in range(c))
        == expected
    )
    assert result["params"]["tokenizer"] == "minilm"
    assert result["params"]["tokenizer_fingerprint"].startswith("minilm|")


def test_a_count_below_one_leaves_nothing_behind(tmp_path):
    """The counts are checked while tokens.parquet is written, so a bad corpus fails before it is committed."""
    frame = pd.DataFrame(
        [(p, p, s, sub, 0 if i == 3 else 1, f"r{i}", "") for i, (p, s, sub) in enumerate(ROWS)],
        columns=list(CORPUS_COLUMNS),
    )
    frame.to_parquet(tmp_path / "zero.parquet", index=False)
    out = tmp_path / "o"
    result = CliRunner().invoke(
        app, ["tokens", "--corpus", str(tmp_path / "zero.parquet"), "--out", str(out)]
    )
    assert result.exit_code == 1 and "column 'count' has values below 1" in result.output
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))
    out.mkdir()  # an existing folder: left as it was, without tokens.parquet or temporaries
    result = CliRunner().invoke(
        app, ["tokens", "--corpus", str(tmp_path / "zero.parquet"), "--out", str(out)]
    )
    assert result.exit_code == 1 and list(out.iterdir()) == []
