"""Findings from results JSON: known answers from metrics.md, thresholds, and the issue's example lines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anatomy import findings as F


def context_row(lengths: np.ndarray, L: int) -> dict:
    """The metrics.md definitions, written independently of anatomy.tokens."""
    kept = np.minimum(lengths, L)
    density = kept.sum() / (len(lengths) * L)
    return {
        "density": float(density),
        "padding": float(1 - density),
        "truncation": float(np.mean(lengths > L)),
        "token_loss": float(np.maximum(lengths - L, 0).sum() / lengths.sum()),
    }


def tokens_json(lengths, contexts=range(4, 78), unused=0.62, used=18_777) -> dict:
    lengths = np.asarray(lengths)
    block = {
        "n_prompts": len(lengths),
        "length": {
            "mean": float(lengths.mean()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
        },
        "context": {str(L): context_row(lengths, L) for L in contexts},
        "vocab": {
            "used": used,
            "unused_share": unused,
            "top_k_coverage": {"100": 0.585},
            "special_share": 0.346,
        },
    }
    return {"overall": block, "sources": {"toy": block}}


TOY = [3, 3, 4, 5, 9, 17, 20]  # metrics.md toy example


def by_key(found, key):
    (match,) = [f for f in found if f.key == key]
    return match


def test_toy_context_row_matches_metrics_known_answer():
    row = context_row(np.array(TOY), 16)
    assert row["density"] == pytest.approx(0.5)
    assert row["truncation"] == pytest.approx(2 / 7)
    assert row["token_loss"] == pytest.approx(5 / 61)


def test_recommended_context_falls_back_to_smallest_context_within_limits():
    # token loss <= 1% needs L >= 20 here (at 19: 1/61 = 1.6% lost); truncation <= 5% also needs 20.
    rec = F.recommended_context(tokens_json(TOY))
    assert rec["context"] == 20
    assert rec["token_loss"] == 0.0


def test_recommended_context_prefers_the_one_tokens_json_gives():
    data = tokens_json(TOY)
    data["recommended_context"] = {"context": 16, "token_loss": 0.01, "truncation": 0.04}
    rec = F.recommended_context(data)
    assert rec["context"] == 16
    assert rec["padding"] == pytest.approx(0.5)  # filled in from the overall table
    assert rec["token_loss"] == 0.01  # the given numbers win


def test_context_finding_reads_like_the_issue_example():
    data = tokens_json(TOY)
    data["overall"]["context"]["32"]["padding"] = 0.78
    data["recommended_context"] = {"context": 16, "token_loss": 0.01, "padding": 0.57, "truncation": 0.05}
    found = by_key(F.token_findings(data), "tokens.context")
    assert found.mark == "warn"
    assert found.line() == "context 16 keeps 99.0% of tokens and cuts padding from 78% to 57%: use 16"
    assert found.value == 16


def test_context_finding_from_toy_numbers():
    found = by_key(F.token_findings(tokens_json(TOY)), "tokens.context")
    # padding at 32: 1 - 61/224 = 72.8%; at 20: 1 - 61/140 = 56.4%
    assert found.line() == "context 20 keeps 100.0% of tokens and cuts padding from 73% to 56%: use 20"


def test_context_ok_when_padding_is_below_threshold():
    long = np.full(50, 30)  # prompts that fill the window: padding 6% at 32
    found = by_key(F.token_findings(tokens_json(long)), "tokens.context")
    assert found.mark == "ok"
    assert F.PADDING_WARN > 0.0625


def test_truncation_warns_above_threshold():
    lengths = np.array([10] * 95 + [40] * 5)  # 5% longer than 32
    found = by_key(F.token_findings(tokens_json(lengths)), "tokens.truncation")
    assert found.mark == "warn" and found.value == pytest.approx(0.05)
    assert found.message == "5.0% of prompts are longer than 32 tokens and get cut"
    ok = by_key(F.token_findings(tokens_json(TOY)), "tokens.truncation")
    assert ok.mark == "ok" and ok.action == ""


def test_vocabulary_finding_reads_like_the_issue_example():
    found = by_key(F.token_findings(tokens_json(TOY, unused=0.62, used=18_777)), "tokens.vocab_unused")
    assert found.mark == "warn"
    assert found.message == "62% of the 49,408-token vocabulary never occurs (18,777 used)"
    small = by_key(F.token_findings(tokens_json(TOY, unused=0.2, used=39_526)), "tokens.vocab_unused")
    assert small.mark == "ok"


def test_dims_finding_reads_like_the_issue_example():
    res = {
        "overall": {
            "n_points": 5000,
            "ambient_dim": 384,
            "twonn": {"linear": 17.2, "closed_form": 16.8},
            "mle": {"harmonic": 18.1, "mean": 19.0},
            "erank": 80.0,
            "spread": {"twonn": {"linear": {"std": 0.9}}},
        }
    }
    (found,) = F.dims_findings("minilm", res)
    assert found.message.startswith("outputs have intrinsic dimension 17 ± 1 of 384")
    assert found.mark == "info" and found.value == 17.2
    assert "MLE 18" in found.message and "5,000 prompts" in found.message
    assert found.action  # 17/384 < LOW_INTRINSIC_RATIO: says a smaller student can hold it


def test_agreement_marks_against_threshold():
    (good,) = F.agreement_findings({"token_cosine": {"mean": 0.95}, "teacher": "t", "student": "s"})
    (bad,) = F.agreement_findings({"token_cosine": 0.5, "teacher": "t", "student": "s"})
    assert good.mark == "ok" and bad.mark == "warn"
    assert "0.950" in good.message and "paper 0.938" in good.message


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
    audit = {
        "corpus": {"distinct_prompts": 7, "sources": {"toy": {}}},
        "tokens": tokens_json(TOY),
        "encoders": [
            {
                "spec": "sam3:missing.pt",
                "slug": "sam3-missing",
                "errors": {"load": {"error": "no such file"}},
                "results": {},
            },
            {
                "spec": "minilm",
                "slug": "minilm",
                "errors": {},
                "results": {"dims": {"overall": {"ambient_dim": 384, "twonn": {"linear": 12.0}}}},
            },
        ],
    }
    found = F.collect(audit)
    fail = by_key(found, "encoder.load")
    assert fail.mark == "fail" and fail.section == "encoder:sam3-missing"
    assert "sam3:missing.pt could not be loaded (no such file)" in fail.message
    assert by_key(found, "dims.intrinsic").section == "encoder:minilm"
    assert F.counts(found)["fail"] == 1
    data = json.loads(json.dumps(F.as_data(found)))  # --json output is plain data
    assert {"mark", "section", "key", "message", "value", "action"} == set(data[0])


def test_spectrum_positions_and_robustness_findings():
    spec = {"full": {"dim": 384, "uncentred": {"erank": 300.0, "n90": 250}, "centred": {"erank": 1.0}}}
    (found,) = F.spectrum_findings("m", spec)
    assert (
        found.message
        == "token embeddings (all tokens) have effective rank 300 of 384; 90% of energy in 250 dimensions"
    )
    assert found.mark == "info"  # 300/384 above LOW_ERANK_RATIO
    pos = {"rows_analysed": 32, "block": 8, "pca": {"n90": 7}, "within_block": [0.54, 0.77, 0.79, 0.78]}
    found = F.positions_findings("m", pos)
    assert by_key(found, "positions.n90").message == "90% of positional variance lies in 7 of 32 components"
    blocks = by_key(found, "positions.blocks")
    assert blocks.mark == "warn"  # later blocks >= POSITION_SIMILAR
    assert (
        blocks.message
        == "mean positional similarity within blocks: 0-7 0.54, 8-15 0.77, 16-23 0.79, 24-31 0.78"
    )
    assert F.block_labels(20, 8) == ["0-7", "8-15", "16-19"]
    level = {
        "noise": 0.1,
        "input_error": 0.97,
        "logit_error": 0.96,
        "output_error": 0.0034,
        "reduction_factor": 282.4,
    }
    (rob,) = F.robustness_findings("m", {"levels": [level]})
    assert rob.message == (
        "noise 0.1: attention shrinks the logit error 0.96 to 0.0034 at the output, a factor of 282 (paper 282)"
    )


def test_agreement_falls_back_to_pooled_cosine_across_tokenizers():
    (found,) = F.agreement_findings(
        {"token_cosine": None, "pooled_cosine": {"mean": 0.8}, "knn_overlap@10": {"mean": 0.4}}
    )
    assert found.key == "agreement.pooled_cosine" and found.mark == "warn"
    assert "mean pooled cosine 0.800" in found.message and "kNN overlap@10 0.40" in found.message


def test_recommendation_shape_of_anatomy_context():
    """tokens.json's recommended_context comes from anatomy.context: one entry per loss convention."""
    from anatomy.context import context_table, recommend_context

    data = {"overall": {"context": context_table(np.array(TOY), [16, 20, 32])}}
    data["recommended_context"] = recommend_context(np.array(TOY))
    rec = F.recommended_context(data)
    assert rec["context"] == 20 and rec["padding"] == pytest.approx(1 - 61 / 140)
    found = by_key(F.token_findings(data), "tokens.context")
    assert found.line() == "context 20 keeps 100.0% of tokens and cuts padding from 73% to 56%: use 20"
