"""Traffic: ingest keeps request counts and days; every weighted figure has a hand-computed answer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.context import context_table, length_stats
from anatomy.corpus import ingest, load_corpus
from anatomy.corpus.sources import ReadOptions
from anatomy.corpus.traffic import parse_count, parse_day, read_traffic, traffic_path

LONG = " ".join(["dog"] * 38)  # 38 CLIP tokens: 40 with start and end


def _log(tmp_path, rows: list[tuple], header=("prompt", "count", "ts")):
    path = tmp_path / "log.csv"
    lines = [",".join(header)] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_known_answer_one_short_prompt_1000_times_one_long_prompt_once(tmp_path):
    from anatomy.analysis import ANALYSES, runner
    from anatomy.analysis.base import Inputs

    log = _log(tmp_path, [("person", 1000), (LONG, 1)], header=("prompt", "count"))
    corpus = tmp_path / "c.parquet"
    ingest("text", [str(log)], corpus, ReadOptions(count="count"))
    assert sorted(load_corpus(corpus)["count"]) == [1, 1000]
    tokens = ANALYSES["tokens"]
    params = tokens.params_from({"contexts": (16, 32), "weight": "traffic"})
    result = runner.run(tokens, Inputs(corpus=corpus), params, tmp_path / "out")
    # lengths with start/end: person -> 3 (x1000), LONG -> 40 (x1)
    traffic = result.overall.context["16"]
    assert traffic.density == pytest.approx((1000 * 3 + 16) / (1001 * 16))
    assert traffic.truncation == pytest.approx(1 / 1001)
    assert traffic.token_loss == pytest.approx(24 / (1000 * 3 + 40))
    assert traffic.token_loss_per_prompt == pytest.approx((24 / 40) / 1001)
    assert result.overall.length.mean == pytest.approx((3000 + 40) / 1001) and result.overall.length.p99 == 3
    assert result.overall.n_requests == 1001
    distinct = result.other_weight.block.context["16"]  # reported beside it, since prompts repeat
    assert result.other_weight.weight == "distinct"
    assert (distinct.density, distinct.truncation) == (pytest.approx(19 / 32), pytest.approx(0.5))
    assert distinct.token_loss == pytest.approx(24 / 43)
    # the vocabulary counts requests: "person" 1000 times, "dog" 38 times, start and end 1001 times each
    vocab = result.overall.vocab
    assert vocab.top_tokens[0] == ["person</w>", 1000] and vocab.top_tokens[1] == ["dog</w>", 38]
    assert vocab.special_share == pytest.approx(2002 / (2002 + 1038))
    keys = {f.key: f for f in tokens.findings(result, "tokens")}
    assert (
        "by traffic" in keys["tokens.truncation"].message and "requests" in keys["tokens.truncation"].message
    )
    assert "distinct prompts" in keys["tokens.truncation.distinct"].message
    assert keys["tokens.truncation.distinct"].value == pytest.approx(0.5)
    # the study's numbers sit beside the distinct block only
    mean_row = next(r for r in tokens.paper_rows(result) if r.measure.startswith("mean tokens per prompt"))
    assert mean_row.ours == f"{43 / 2:.2f}"
    # the same corpus counted by distinct prompts: the other block is the traffic one
    plain = runner.run(tokens, Inputs(corpus=corpus), tokens.params_from({"contexts": (16,)}), tmp_path / "d")
    assert plain.weight is None and plain.other_weight.weight == "traffic"
    assert plain.other_weight.block.context["16"] == traffic
    saved = json.loads((tmp_path / "d" / "results" / "tokens.json").read_text())
    assert "weight" not in saved and saved["other_weight"]["weight"] == "traffic"


def test_no_repeats_no_second_block(tmp_path):
    from anatomy.analysis import ANALYSES, runner
    from anatomy.analysis.base import Inputs

    (tmp_path / "p.txt").write_text("a dog\na cat\n", encoding="utf-8")
    ingest("text", [str(tmp_path / "p.txt")], tmp_path / "c.parquet")
    result = runner.run(ANALYSES["tokens"], Inputs(corpus=tmp_path / "c.parquet"),
                        ANALYSES["tokens"].params_from({}), tmp_path / "o")  # fmt: skip
    assert result.other_weight is None
    assert not any(
        "(" in f.message and "traffic" in f.message for f in ANALYSES["tokens"].findings(result, "t")
    )


def test_weighted_lengths_equal_the_expanded_lengths():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = rng.integers(1, 40, size=int(rng.integers(1, 30)))
        w = rng.integers(1, 6, size=n.size)
        expanded = np.repeat(n, w)
        got, want = length_stats(n, w), length_stats(expanded)
        assert got.pop("histogram") == want.pop("histogram")
        assert got == pytest.approx(want)
        got_table, want_table = context_table(n, [4, 8, 16], w), context_table(expanded, [4, 8, 16])
        for key in want_table:
            assert got_table[key] == pytest.approx(want_table[key])


def test_weighted_vocab_risk_equals_the_repeated_prompts():
    from anatomy.vocab.build import build, index_texts, measure, summarise
    from anatomy.vocab.store import base_tokenizer

    base = base_tokenizer("clip")
    texts = ["a red car", "a dog", "zebra crossing", "an aardvark in snow", "a red dog"]
    index = index_texts(base, texts)
    vocab, covered = build(base, "clip", index, np.array([0, 1]))
    w = np.array([1, 1, 7, 2, 3])
    test = np.array([2, 3, 4])
    weighted = summarise("x", "held-out", [measure(base, vocab, covered, index, test)], index, [2], [1], w)
    repeated = np.repeat(test, w[test])
    plain = summarise("x", "held-out", [measure(base, vocab, covered, index, repeated)], index, [2], [1])
    assert weighted.weight == "traffic" and plain.weight is None
    for name in ("changed_share", "inflation_mean", "fallback_token_share", "inflation_p99"):
        assert getattr(weighted, name) == pytest.approx(getattr(plain, name)), name


def test_ingest_counts_days_and_merges(tmp_path):
    log = _log(tmp_path, [("person", 1000, "2024-05-01T10:00:00Z"), ("a red car", 1, "2024-05-08"),
                          ("Person", 5, 1714953600), ("bad", 0, "2024-05-01"), ("when", 2, "yesterday")])  # fmt: skip
    corpus = tmp_path / "c.parquet"
    report = ingest("text", [str(log)], corpus, ReadOptions(count="count", time="ts"))
    stats = report.files[0]
    assert (stats.read, stats.kept, stats.merged, stats.skipped) == (5, 2, 1, 2)
    assert set(stats.skips) == {"count is not a positive whole number", "unreadable timestamp"}
    frame = load_corpus(corpus).set_index("prompt")
    assert frame.loc["person", "count"] == 1005 and frame.loc["a red car", "count"] == 1
    days = read_traffic(corpus)
    got = {(p, str(d.date())): c for p, d, c in zip(days["prompt"], days["day"], days["count"], strict=True)}
    assert got == {
        ("person", "2024-05-01"): 1000,
        ("person", "2024-05-06"): 5,
        ("a red car", "2024-05-08"): 1,
    }
    before = traffic_path(corpus).read_bytes()
    ingest("text", [str(log)], corpus, ReadOptions(count="count", time="ts"))  # already ingested: unchanged
    assert traffic_path(corpus).read_bytes() == before
    (tmp_path / "more.txt").write_text("person\nperson\n", encoding="utf-8")  # untimed: counts, no days
    ingest("text", [str(tmp_path / "more.txt")], corpus)
    assert load_corpus(corpus).groupby("prompt")["count"].sum()["person"] == 1007
    assert read_traffic(corpus)["count"].sum() == 1006  # the timed days survive the merge


def test_jsonl_count_and_time_fields(tmp_path):
    path = tmp_path / "log.jsonl"
    rows = [
        {"q": "a dog", "n": 3, "t": 1714521600},
        {"q": "a dog", "n": 2, "t": "2024-05-02"},
        {"q": "a cat"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    corpus = tmp_path / "c.parquet"
    report = ingest("text", [str(path)], corpus, ReadOptions(field="q", count="n", time="t"))
    assert report.files[0].skips["no field 'n'"]["count"] == 1
    assert load_corpus(corpus)["count"].tolist() == [5]
    assert sorted(read_traffic(corpus)["count"]) == [2, 3]


def test_cli_count_column_and_usage_errors(tmp_path):
    log = _log(tmp_path, [("a dog", 4, "2024-01-01")])
    out = tmp_path / "c.parquet"
    ok = CliRunner().invoke(app, ["ingest", "text", str(log), "--count-column", "count", "--time-column", "ts",
                                  "--out", str(out)])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert load_corpus(out)["count"].tolist() == [4] and traffic_path(out).exists()
    both = CliRunner().invoke(app, ["ingest", "text", str(log), "--count-column", "count", "--count-field", "n",
                                    "--out", str(tmp_path / "d.parquet")])  # fmt: skip
    assert both.exit_code == 2
    missing = CliRunner().invoke(
        app, ["ingest", "text", str(log), "--count-column", "nope", "--out", str(out)]
    )
    assert missing.exit_code == 1 and "nope" in missing.output


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (3, 3),
        ("12", 12),
        ("2.0", 2),
        (0, None),
        ("-1", None),
        ("x", None),
        (1.5, None),
        (True, None),
        (10**12, 10**12),
        (10**12 + 1, None),
        ("1e30", None),
        ("nan", None),
        (float("inf"), None),
    ],  # fmt: skip
)
def test_parse_count(value, want):
    assert parse_count(value) == want


def test_parse_day():
    epoch = pd.Timestamp("2024-05-01").value // 86_400_000_000_000
    assert parse_day("2024-05-01") == epoch == parse_day("2024-05-01T23:59:59+02:00")
    assert parse_day(1714521600) == epoch == parse_day(1714521600123) == parse_day("1714521600")
    assert parse_day("01/05/2024") is None and parse_day(None) is None


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("2024-05-05T23:30:00-05:00", "2024-05-06"),  # the UTC day of the instant, not the local date
        ("2024-05-06T01:00:00+09:00", "2024-05-05"),
        ("2024-05-06T01:00:00+0900", "2024-05-05"),
        ("2024-05-06T23:59:59Z", "2024-05-06"),
        ("2024-05-06 23:59:59", "2024-05-06"),  # naive is UTC
        ("20240506", "2024-05-06"), (20240506, "2024-05-06"),  # compact ISO date, not 1970-08-23 in seconds
        ("20240231", None), ("2024-05-06 not a time at all", None), ("2024-05-06T25:00", None),
        (86400000, None), (-86400000, None), ("86400000", None),  # seconds or milliseconds: unit unknowable
        (0, "1970-01-01"), (-86400, "1969-12-31"),  # the same day in either unit
        (100_000_000, "1973-03-03"), (99_999_999_999, "5138-11-16"), (100_000_000_000, "1973-03-03"),
        ("0001-01-01T00:00:00+01:00", None), ("9999-12-31T23:00:00-05:00", None), (10**400, None),
    ],
)  # fmt: skip
def test_parse_day_utc_compact_and_units(value, want):
    """Offsets move the day to UTC; YYYYMMDD is a date; trailing junk and epochs of unknowable unit are skips."""
    day = parse_day(value)
    assert (None if day is None else str(pd.Timestamp(day, unit="D").date())) == want


def test_hostile_counts_and_timestamps_are_counted_skips(tmp_path):
    """Negative, NaN, infinite, fractional and absurdly large counts, and timestamps beyond any calendar, are
    skips with their reason: the good rows keep their exact counts and days, nothing overflows."""
    rows = [("a dog", 3, "2024-01-01"), ("a cat", -2, "2024-01-01"), ("red car", "nan", "2024-01-02"),
            ("blue car", "1e30", "2024-01-02"), ("a man", "9" * 25, "2024-01-03"), ("a big", 2.5, "2024-01-03"),
            ("inf", "inf", "2024-01-01"), ("a dog", 2, "2024-01-02"), ("far", 1, "1e30"), ("far2", 1, "-9e300"),
            ("a tree", "1000000000000", "1704067200")]  # fmt: skip
    out = tmp_path / "c.parquet"
    got = CliRunner().invoke(app, ["ingest", "text", str(_log(tmp_path, rows)), "--count-column", "count",
                                   "--time-column", "ts", "--out", str(out)])  # fmt: skip
    assert got.exit_code == 0, got.output
    assert "Traceback" not in got.output and "skipped 8" in got.output
    corpus = load_corpus(out)
    assert dict(zip(corpus["prompt"], corpus["count"], strict=True)) == {"a dog": 5, "a tree": 10**12}
    days = read_traffic(out)
    assert sorted(days["count"].tolist()) == [2, 3, 10**12]


def test_count_and_time_options_on_a_source_without_columns_are_usage_errors(tmp_path, shared_data):
    """lvis/refcoco/... have no count column: --count-column there was silently ignored (every count 1)."""
    lvis = shared_data / "lvis" / "lvis_v1_categories.json"
    for option in ("--count-column", "--count-field", "--time-column", "--time-field"):
        got = CliRunner().invoke(
            app, ["ingest", "lvis", str(lvis), option, "n", "--out", str(tmp_path / "c.parquet")]
        )
        assert got.exit_code == 2 and option in got.output, got.output
    assert not (tmp_path / "c.parquet").exists()
