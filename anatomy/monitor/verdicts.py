"""A verdict per check: ok / warn / fail against named thresholds (shares of requests unless named otherwise).

Coverage's yardstick is the training corpus's own 95th-percentile leave-one-out distance, so an in-distribution
log puts about 5% of its traffic beyond it: BEYOND_WARN and BEYOND_FAIL sit above that. Quality compares the
sample's figures with the run's own held-out ones and judges the drop.
"""

from __future__ import annotations

from anatomy.findings import Finding, pct

SECTION = "check"
CHANGED_WARN, CHANGED_FAIL = 0.01, 0.05  # requests tokenizing differently under the deployed vocabulary
TRUNCATED_WARN, TRUNCATED_FAIL = 0.01, 0.05  # requests cut at the deployed context
NEW_TOKEN_WARN, NEW_TOKEN_FAIL = 0.01, 0.05  # requests with a token the training corpus never had
BEYOND_WARN, BEYOND_FAIL = 0.10, 0.25  # requests farther from training than its 95th-percentile distance
COSINE_DROP_WARN, COSINE_DROP_FAIL = 0.02, 0.05  # pooled / token cosine below the run's held-out figure
KNN_DROP_WARN, KNN_DROP_FAIL = 0.05, 0.15  # kNN@10 overlap below the run's held-out figure
# A cosine verdict (ok/warn/fail) needs a mean over at least this many prompts: with the spread of per-prompt
# cosines seen in practice (sd about 0.05) the standard error over 30 prompts is about 0.01, half of
# COSINE_DROP_WARN. On fewer the figure is shown as information, with the sample size a verdict needs.
MIN_COSINE_PROMPTS = 30
DRIFT_WARN, DRIFT_FAIL = 0.05, 0.15  # growth of the beyond-threshold share from the first period to the last
# A period's shares are judged (drift) only over at least this many requests: at the in-distribution beyond share
# of about 5% the standard error over 100 requests is about 0.02, under half DRIFT_WARN; one out-of-distribution
# request alone in a period would otherwise read as a 100-point drift. Smaller periods are listed, not judged.
MIN_PERIOD_REQUESTS = 100


def mark(value: float, warn: float, fail: float) -> str:
    return "fail" if value > fail else "warn" if value > warn else "ok"


def _examples(ranked, n: int = 3) -> str:
    return "; ".join(f"{r.text!r} ({r.requests:,})" for r in ranked[:n])


def tokenization_findings(t) -> list[Finding]:
    found = []
    m = mark(t.changed_requests, CHANGED_WARN, CHANGED_FAIL)
    found.append(Finding(m, SECTION, "check.tokenization.changed",
        f"{pct(t.changed_requests)} of requests ({pct(t.changed_prompts)} of distinct prompts) tokenize differently "
        f"under the deployed vocabulary ({t.vocabulary})", t.changed_requests,
        f"add them to the training corpus and rebuild the vocabulary, e.g. {_examples(t.changed_examples)}"
        if m != "ok" else ""))  # fmt: skip
    m = mark(t.truncated_requests, TRUNCATED_WARN, TRUNCATED_FAIL)
    found.append(Finding(m, SECTION, "check.tokenization.truncated",
        f"{pct(t.truncated_requests)} of requests ({pct(t.truncated_prompts)} of distinct prompts) are longer than "
        f"the deployed context of {t.context} tokens", t.truncated_requests,
        f"raise the context, e.g. {_examples(t.truncated_examples)}" if m != "ok" else ""))  # fmt: skip
    m = mark(t.new_token_requests, NEW_TOKEN_WARN, NEW_TOKEN_FAIL)
    tokens = ", ".join(f"{r.text!r} ({r.requests:,})" for r in t.new_tokens[:5])
    found.append(Finding(m, SECTION, "check.tokenization.new_tokens",
        f"{pct(t.new_token_requests)} of requests use a token the training data never had "
        f"({len(t.new_tokens)}{'+' if len(t.new_tokens) >= 20 else ''} such tokens" + (f"; top: {tokens})" if tokens else ")"),
        t.new_token_requests, "add prompts with these tokens to the training corpus" if m != "ok" else ""))  # fmt: skip
    return found


def coverage_findings(c) -> list[Finding]:
    m = mark(c.beyond_requests, BEYOND_WARN, BEYOND_FAIL)
    return [Finding(m, SECTION, "check.coverage",
        f"{pct(c.beyond_requests)} of requests ({pct(c.beyond_prompts)} of distinct prompts) lie farther from every "
        f"training prompt than {c.quantile:.0%} of training prompts lie from each other (cosine distance "
        f"{c.threshold:.3f} in {c.teacher}'s space)", c.beyond_requests,
        f"add the farthest prompts to the training corpus (add_to_training.csv), e.g. {_examples(c.farthest)}"
        if m != "ok" else "")]  # fmt: skip


_NOT_MEASURED = {
    "token_cosine": "none of the {n} sampled log prompts tokenizes as the teacher does",
    "knn_overlap10": "the sample has {n} log prompts and kNN@10 needs 21 (on fewer it is high whatever the "
    "student does); sample more log prompts (--sample, from a log that holds them)",
}


def quality_findings(q) -> list[Finding]:
    found = []
    token_prompts = getattr(q, "token_prompts", q.sample)
    pairs = [("pooled_cosine", q.pooled_cosine, "eval_pooled_cosine", COSINE_DROP_WARN, COSINE_DROP_FAIL, q.sample),
             ("token_cosine", q.token_cosine, "eval_token_cosine", COSINE_DROP_WARN, COSINE_DROP_FAIL, token_prompts),
             ("knn_overlap10", q.knn_overlap10, "eval_knn_overlap10", KNN_DROP_WARN, KNN_DROP_FAIL, None)]  # fmt: skip
    for name, value, run_key, warn, fail, over in pairs:
        if value is None:
            why = _NOT_MEASURED.get(name)
            if why:
                found.append(Finding("info", SECTION, f"check.quality.{name}",
                    f"student vs teacher {name.replace('_', ' ')} not measured: {why.format(n=q.sample)}"))  # fmt: skip
            continue
        if over is not None and over < MIN_COSINE_PROMPTS:
            found.append(Finding("info", SECTION, f"check.quality.{name}",
                f"student vs teacher {name.replace('_', ' ')} {value:.3f} over only {over:,} sampled log prompt(s)"
                f"{' that tokenize as the teacher does' if name == 'token_cosine' else ''}: no verdict, it needs "
                f"at least {MIN_COSINE_PROMPTS}", value,
                f"sample more log prompts (--sample, from a log that holds them): at least {MIN_COSINE_PROMPTS} "
                f"must {'tokenize as the teacher does' if name == 'token_cosine' else 'be sampled'}"))  # fmt: skip
            continue
        base = q.run.get(run_key)
        if base is None:
            found.append(Finding("info", SECTION, f"check.quality.{name}",
                f"student vs teacher {name.replace('_', ' ')} {value:.3f} on {q.sample:,} log prompts (no run figure "
                "to compare with)", value))  # fmt: skip
            continue
        m = mark(base - value, warn, fail)
        found.append(Finding(m, SECTION, f"check.quality.{name}",
            f"student vs teacher {name.replace('_', ' ')} {value:.3f} on {q.sample:,} log prompts against "
            f"{base:.3f} on the run's held-out prompts", value,
            "the student is worse on this traffic: distil again with these prompts in the corpus" if m != "ok" else ""))  # fmt: skip
    return found


def drift_findings(d, period: str, too_small=()) -> list[Finding]:
    """The drift verdict (d: periods.Drift or None), and an info line naming the periods too small to judge."""
    found = []
    if too_small:
        listed = ", ".join(f"{p.start} ({p.requests:,})" for p in too_small[:5])
        more = f" and {len(too_small) - 5} more" if len(too_small) > 5 else ""
        found.append(Finding("info", SECTION, "check.drift.too_small",
            f"{len(too_small)} {period}(s) with fewer than {MIN_PERIOD_REQUESTS} requests left out of the drift "
            f"verdict (too few to judge a share): {listed}{more}", len(too_small)))  # fmt: skip
    if d is None:
        return found
    m = mark(d.beyond_change, DRIFT_WARN, DRIFT_FAIL)
    return found + [Finding(m, SECTION, "check.drift",
        f"the share of requests beyond the coverage threshold changed by {100 * d.beyond_change:+.1f} points from "
        f"the {period} of {d.first} to the {period} of {d.last}", d.beyond_change,
        "traffic is drifting away from the training corpus" if m != "ok" else "")]  # fmt: skip
