"""Findings from typed results: known answers from metrics.md, thresholds, and the issue's example lines.

Each analysis computes its own findings (Analysis.findings) from its typed result; results here are built
from plain JSON through Result.from_json, as a report rebuilt from results/*.json reads them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from anatomy import findings as F
from anatomy.analysis import ANALYSES
from anatomy.analysis import tokens as T
from anatomy.analysis.agreement import AgreementResult, PairDims
from anatomy.analysis.dims import DimsEntry, DimsResult, Mle, Spread, TwoNN
from anatomy.analysis.positions import Adjacent, Pca, PositionsResult
from anatomy.analysis.robustness import Robustness, RobustnessResult
from anatomy.analysis.spectrum import MatrixEntry, SingularValues, SpectrumPair, SpectrumResult, SpectrumStats
from anatomy.context import length_stats, recommend_context
from anatomy.metrics.similarity import Distribution
from anatomy.report.collect import collect_findings
from anatomy.report.record import FolderRecord, GroupRecord, StageError


def context_row(lengths: np.ndarray, L: int) -> dict:
    """The metrics.md definitions, written independently of anatomy.context."""
    kept = np.minimum(lengths, L)
    density = kept.sum() / (len(lengths) * L)
    lost = np.maximum(lengths - L, 0)
    return {
        "density": float(density),
        "padding": float(1 - density),
        "truncation": float(np.mean(lengths > L)),
        "token_loss": float(lost.sum() / lengths.sum()),
        "token_loss_per_prompt": float(np.mean(lost / lengths)),
    }


def tokens_json(lengths, contexts=range(4, 78), unused=0.62, used=18_777, recommended=None) -> dict:
    """A complete tokens.json (the shape of issue 3) for prompts of the given token lengths."""
    lengths = np.asarray(lengths)
    block = {
        "n_prompts": len(lengths),
        "length": length_stats(lengths),
        "context": {str(L): context_row(lengths, L) for L in contexts},
        "vocab": {
            "used": used,
            "used_content": used - 2,
            "unused_share": unused,
            "top_k_coverage": {"100": 0.585},
            "top_k_coverage_with_special": {"100": 0.7},
            "special_share": 0.346,
            "top_tokens": [["a</w>", 4]],
        },
    }
    return {
        "schema_version": T.TokensResult.SCHEMA_VERSION,
        "overall": block,
        "sources": {"toy": block},
        "recommended_context": recommended or recommend_context(lengths),
        "conventions": {},
        "paper": T.paper_block(),
    }


def tokens_result(*args, **kwargs) -> T.TokensResult:
    return T.TokensResult.from_json(tokens_json(*args, **kwargs))


def dims_entry(d=17.2, mle=18.1, n=5000, dim=384, std=0.9, mle_std=0.24) -> DimsEntry:
    spread = {"twonn_linear": Spread(std, d - 2 * std, d + 2 * std)}
    if mle_std is not None:
        spread["mle_harmonic"] = Spread(mle_std, mle - 2 * mle_std, mle + 2 * mle_std)
    return DimsEntry(n, 0, dim, TwoNN(d, d - 0.4), Mle(mle, mle + 0.9, 20), 80.0, spread)


def dims_result(**kwargs) -> DimsResult:
    return DimsResult("minilm", dims_entry(**kwargs), {}, {})


def stats(erank: float, n90: int, n: int = 384) -> SpectrumStats:
    return SpectrumStats(n, erank, erank, erank, 1.0, n90)


def distribution(mean: float) -> Distribution:
    return Distribution(100, mean, mean, mean - 0.1, mean - 0.2)


def agreement_result(token: float | None, pooled: float, knn: float) -> AgreementResult:
    entry = dims_entry()
    return AgreementResult(
        "t", "s", 100, 10, None if token is None else distribution(token), distribution(pooled),
        distribution(knn), PairDims(entry, entry), [], {},
    )  # fmt: skip


TOY = [3, 3, 4, 5, 9, 17, 20]  # metrics.md toy example
TOKENS = ANALYSES["tokens"]


def by_key(found, key):
    (match,) = [f for f in found if f.key == key]
    return match


def test_toy_context_row_matches_metrics_known_answer():
    row = context_row(np.array(TOY), 16)
    assert row["density"] == pytest.approx(0.5)
    assert row["truncation"] == pytest.approx(2 / 7)
    assert row["token_loss"] == pytest.approx(5 / 61)


def test_recommended_context_is_the_smallest_context_within_limits():
    # token loss <= 1% needs L >= 20 here (at 19: 1/61 = 1.6% lost); truncation <= 5% also needs 20.
    rec = recommend_context(np.array(TOY))
    assert rec["pooled"]["L"] == 20 and rec["pooled"]["token_loss"] == 0.0
    assert rec["pooled"]["padding"] == pytest.approx(context_row(np.array(TOY), 20)["padding"])


def test_tokens_result_round_trips_through_json():
    data = tokens_json(TOY)
    result = T.TokensResult.from_json(data)
    assert isinstance(result.overall.context["16"], T.ContextRow)
    assert result.recommended_context.pooled.L == 20
    assert json.loads(json.dumps(result.to_json())) == json.loads(json.dumps(data))


def test_context_finding_reads_like_the_issue_example():
    data = tokens_json(TOY)
    data["overall"]["context"]["32"]["padding"] = 0.78
    data["recommended_context"]["pooled"] |= {
        "L": 16,
        "token_loss": 0.01,
        "padding": 0.57,
        "truncation": 0.05,
    }
    found = by_key(TOKENS.findings(T.TokensResult.from_json(data), "tokens"), "tokens.context")
    assert found.mark == "warn" and found.section == "tokens"
    assert found.line() == "context 16 keeps 99.0% of tokens and cuts padding from 78% to 57%: use 16"
    assert found.value == 16


def test_context_finding_from_toy_numbers():
    found = by_key(TOKENS.findings(tokens_result(TOY), "tokens"), "tokens.context")
    # padding at 32: 1 - 61/224 = 72.8%; at 20: 1 - 61/140 = 56.4%
    assert found.line() == "context 20 keeps 100.0% of tokens and cuts padding from 73% to 56%: use 20"


def test_context_ok_when_padding_is_below_threshold():
    long = np.full(50, 30)  # prompts that fill the window: padding 6% at 32
    found = by_key(TOKENS.findings(tokens_result(long), "tokens"), "tokens.context")
    assert found.mark == "ok"
    assert T.PADDING_WARN > 0.0625


def test_truncation_warns_above_threshold():
    lengths = np.array([10] * 95 + [40] * 5)  # 5% longer than 32
    found = by_key(TOKENS.findings(tokens_result(lengths), "tokens"), "tokens.truncation")
    assert found.mark == "warn" and found.value == pytest.approx(0.05)
    assert found.message == "5.0% of prompts are longer than 32 tokens and get cut"
    ok = by_key(TOKENS.findings(tokens_result(TOY), "tokens"), "tokens.truncation")
    assert ok.mark == "ok" and ok.action == ""


def test_vocabulary_finding_reads_like_the_issue_example():
    result = tokens_result(TOY, unused=1 - 18_777 / 49_408, used=18_777)
    found = by_key(TOKENS.findings(result, "tokens"), "tokens.vocab_unused")
    assert found.mark == "warn"
    assert found.message == "62% of the 49,408-token vocabulary never occurs (18,777 used)"
    small = by_key(
        TOKENS.findings(tokens_result(TOY, unused=0.2, used=39_526), "tokens"), "tokens.vocab_unused"
    )
    assert small.mark == "ok"


def test_dims_finding_reads_like_the_issue_example():
    (found,) = ANALYSES["dims"].findings(dims_result(), "encoder:minilm")
    # the estimate at the precision its bootstrap spread supports (issue 10 §6), not "17 ± 1"
    assert found.message == (
        "outputs have intrinsic dimension 17.2 ± 0.9 of 384 (TwoNN; MLE 18.1 ± 0.2, 5,000 prompts)"
    )
    assert found.mark == "info" and found.value == 17.2 and found.section == "encoder:minilm"
    assert found.action  # 17/384 < LOW_INTRINSIC_RATIO: says a smaller student can hold it


def test_dims_spread_is_not_rounded_away():
    """Issue 10 §6: "11 ± 0" where the bootstrap std is 0.24 reads "11.0 ± 0.2"; a tiny spread keeps 2 decimals."""
    entry = dims_entry(d=11.04, std=0.24)
    assert entry.with_spread(11.04, "twonn_linear") == "11.0 ± 0.2"
    tight = dims_entry(d=11.04, std=0.012)
    assert tight.with_spread(11.04, "twonn_linear") == "11.04 ± 0.01"
    assert dims_entry(mle_std=None).with_spread(18.1, "mle_harmonic") == "18.10"


def test_agreement_marks_against_threshold():
    agreement = ANALYSES["agreement"]
    good = by_key(agreement.findings(agreement_result(0.95, 0.97, 0.8), "pair"), "agreement.token_cosine")
    bad = by_key(agreement.findings(agreement_result(0.5, 0.97, 0.8), "pair"), "agreement.token_cosine")
    assert good.mark == "ok" and bad.mark == "warn"
    assert "0.950" in good.message and "paper 0.938" in good.message


def test_agreement_falls_back_to_pooled_cosine_across_tokenizers():
    found = by_key(
        ANALYSES["agreement"].findings(agreement_result(None, 0.8, 0.4), "pair"), "agreement.pooled_cosine"
    )
    assert found.mark == "warn"
    assert "0.938" not in found.message  # the study's number is per-token: never beside a pooled one
    assert "mean pooled cosine 0.800" in found.message and "kNN overlap@10 0.40" in found.message


def test_corpus_skips_and_unreadable_files_are_reported():
    corpus = {
        "distinct_prompts": 10,
        "sources": {"text": {}},
        "files": [
            {
                "input": "a.txt",
                "read": 12,
                "kept": 10,
                "merged": 0,
                "skipped": 2,
                "skips": {"empty prompt": {"count": 2}},
            }
        ],
        "failed": [{"input": "bad.json", "error": "invalid JSON at line 1", "hint": "fix it"}],
    }
    found = F.corpus_findings(corpus)
    fail = by_key(found, "corpus.unreadable")
    assert fail.mark == "fail" and "bad.json" in fail.message and fail.action == "fix it"
    skipped = by_key(found, "corpus.skipped")
    assert skipped.mark == "warn"  # 2/12 > SKIPPED_WARN
    assert skipped.message == "2 of 12 records in a.txt skipped: empty prompt (2)"
    assert by_key(found, "corpus.size").message == "10 distinct prompts from 1 source (10 of 12 records kept)"


def test_collect_puts_encoder_errors_in_findings_and_keeps_the_rest():
    record = FolderRecord(
        corpus={"distinct_prompts": 7, "sources": {"toy": {}}},
        analyses=GroupRecord("the corpus", results={"tokens": tokens_result(TOY)}),
        encoders=[
            GroupRecord("sam3:missing.pt", "sam3-missing", errors={"load": StageError("no such file")}),
            GroupRecord("minilm", "minilm", results={"dims": dims_result(d=12.0)}),
        ],
    )
    found = collect_findings(record)
    fail = by_key(found, "encoder.load")
    assert fail.mark == "fail" and fail.section == "encoder:sam3-missing"
    assert "sam3:missing.pt could not be loaded (no such file)" in fail.message
    assert by_key(found, "dims.intrinsic").section == "encoder:minilm"
    assert by_key(found, "tokens.context").section == "tokens"
    assert F.counts(found)["fail"] == 1
    data = json.loads(json.dumps(F.as_data(found)))  # --json output is plain data
    assert {"mark", "section", "key", "message", "value", "action"} == set(data[0])


def test_an_analysis_that_failed_is_a_failure_finding():
    record = FolderRecord({}, GroupRecord("the corpus", errors={"tokens": StageError("boom", "fix")}))
    (found,) = collect_findings(record)
    assert found.mark == "fail" and found.key == "tokens.failed" and found.action == "fix"


def test_spectrum_positions_and_robustness_findings():
    full = MatrixEntry(30522, 384, stats(1.0, 1), stats(300.0, 250), SingularValues([], []))
    (found,) = ANALYSES["spectrum"].findings(SpectrumResult("m", 30522, full), "encoder:m")
    assert (
        found.message
        == "token embeddings (all tokens) have effective rank 300 of 384; 90% of energy in 250 dimensions"
    )
    assert found.mark == "info"  # 300/384 above LOW_ERANK_RATIO
    low = MatrixEntry(30522, 384, stats(1.0, 1), stats(100.0, 80), SingularValues([], []))
    assert ANALYSES["spectrum"].findings(SpectrumResult("m", 30522, low), "e")[0].mark == "warn"

    pair = SpectrumPair(stats(5.0, 7, 32), stats(5.0, 7, 32))
    pos = PositionsResult(
        "m", 32, 32, "the first 32 rows", 16, 8, [0.54, 0.77, 0.79, 0.78], [], Adjacent(0.9, []), Pca(7, []), pair
    )  # fmt: skip
    found = ANALYSES["positions"].findings(pos, "encoder:m")
    assert by_key(found, "positions.n90").message == "90% of positional variance lies in 7 of 32 components"
    blocks = by_key(found, "positions.blocks")
    assert blocks.mark == "warn"  # later blocks >= POSITION_SIMILAR
    assert (
        blocks.message
        == "mean positional similarity within blocks: 0-7 0.54, 8-15 0.77, 16-23 0.79, 24-31 0.78"
    )
    pos.rows_analysed = 20
    assert pos.block_labels() == ["0-7", "8-15", "16-19"]

    level = Robustness(0.1, 10, 4, 0.97, 0.96, 0.0034, 282.4, 0.5)
    (rob,) = ANALYSES["robustness"].findings(RobustnessResult("m", {}, [level]), "encoder:m")
    assert rob.message == (
        "noise 0.1: attention shrinks the logit error 0.96 to 0.0034 at the output, a factor of 282 (paper 282)"
    )
    small = Robustness(0.1, 10, 4, 0.97, 0.005, 0.0034, 1.47, 0.5)  # not rounded to "a factor of 1"
    (rob,) = ANALYSES["robustness"].findings(RobustnessResult("m", {}, [small]), "encoder:m")
    assert "a factor of 1.47 (paper" in rob.message


def test_recommendation_shape_of_anatomy_context():
    """tokens.json's recommended_context comes from anatomy.context: one entry per loss convention."""
    data = tokens_json(TOY, contexts=[16, 20, 32])
    result = T.TokensResult.from_json(data)
    assert result.recommended_context.pooled.L == 20
    assert result.recommended_context.pooled.padding == pytest.approx(1 - 61 / 140)
    assert result.recommended_context.per_prompt.L is not None
    found = by_key(TOKENS.findings(result, "tokens"), "tokens.context")
    assert found.line() == "context 20 keeps 100.0% of tokens and cuts padding from 73% to 56%: use 20"
