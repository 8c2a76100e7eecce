"""The recommendation: which (candidate, runtime) to ship, why in one sentence, and what to watch.

Every candidate is an option in each runtime it was measured in (torch, and each ONNX export). An option's
quality drop is 1 - its mean pooled cosine to the teacher on the test split; its size is the bytes it ships
(fp32 weights for torch, the file for an export); its latency the measured batch-1 p50.

When quality and cost disagree the constraints decide: with --max-quality-drop, quality is a floor and cost
the objective, so the smallest option above the floor wins (then the fastest), even if a larger one is more
faithful; without it, the most faithful option within the cost limits wins (then the smallest). Options that
miss a constraint are listed with what they miss; if none meets them all, nothing is recommended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anatomy.specialise.data_stages import TEST_SET

WATCH_SOURCES = 2  # weakest sources named in "what to watch"
RISK_WATCH = 0.05  # share of a set's prompts tokenized differently worth naming


@dataclass(frozen=True)
class Constraints:
    max_quality_drop: float | None = None
    max_params: int | None = None
    max_latency_ms: float | None = None


@dataclass
class Option:
    candidate: str
    runtime: str
    parameters: int
    bytes: int
    latency_ms_p50: float
    quality_drop: float
    misses: list[str] = field(default_factory=list)


@dataclass
class Recommendation:
    candidate: str | None
    runtime: str | None
    reason: str
    watch: list[str]
    constraints: Constraints
    options: list[Option]


def options(rows) -> list[Option]:
    out = []
    for row in rows:
        test = row.quality[TEST_SET]
        exports = {e.format: e for e in row.exports}
        for cost in row.cost:
            if cost.runtime == "torch":
                size, cos = row.weight_bytes_fp32, test.pooled_cosine
            else:
                export = exports[cost.runtime]
                size, cos = export.bytes, export.test_pooled_cosine
            out.append(Option(row.name, cost.runtime, row.parameters, size, cost.latency_ms_p50, 1.0 - cos))
    return out


def _misses(o: Option, c: Constraints) -> list[str]:
    misses = []
    if c.max_quality_drop is not None and o.quality_drop > c.max_quality_drop:
        misses.append(f"quality drop {o.quality_drop:.3f} > {c.max_quality_drop:g}")
    if c.max_params is not None and o.parameters > c.max_params:
        misses.append(f"{o.parameters:,} parameters > {c.max_params:,}")
    if c.max_latency_ms is not None and o.latency_ms_p50 > c.max_latency_ms:
        misses.append(f"p50 {o.latency_ms_p50:.2f} ms > {c.max_latency_ms:g} ms")
    return misses


def recommend(rows, constraints: Constraints) -> Recommendation:
    found = options(rows)
    for o in found:
        o.misses = _misses(o, constraints)
    passing = [o for o in found if not o.misses]
    if not passing:
        return Recommendation(None, None, "no candidate meets the constraints; nothing is recommended "
                              "(each option's misses are listed)", [], constraints, found)  # fmt: skip
    if constraints.max_quality_drop is not None:
        best = min(passing, key=lambda o: (o.bytes, o.latency_ms_p50, o.quality_drop))
        reason = (f"{best.candidate} ({best.runtime}) is the smallest option ({_mib(best.bytes)}, p50 "
                  f"{best.latency_ms_p50:.2f} ms) whose quality drop {best.quality_drop:.3f} stays within "
                  f"{constraints.max_quality_drop:g}")  # fmt: skip
    else:
        best = min(passing, key=lambda o: (round(o.quality_drop, 4), o.bytes, o.latency_ms_p50))
        reason = (f"{best.candidate} ({best.runtime}) is the most faithful option within the cost limits "
                  f"(quality drop {best.quality_drop:.3f}, {_mib(best.bytes)}, p50 {best.latency_ms_p50:.2f} ms); "
                  "give --max-quality-drop to trade quality for size")  # fmt: skip
    row = next(r for r in rows if r.name == best.candidate)
    return Recommendation(best.candidate, best.runtime, reason, watch(row), constraints, found)


def watch(row) -> list[str]:
    """The weakest sources of the test split, held-out sets below it, and sets the vocabulary changes."""
    lines = []
    test = row.quality[TEST_SET].pooled_cosine
    if len(row.per_source) > 1:
        weakest = sorted(row.per_source.items(), key=lambda kv: kv[1].pooled_cosine)[:WATCH_SOURCES]
        lines += [f"source {s}: pooled cosine {q.pooled_cosine:.3f} on {q.prompts:,} test prompts (test overall "
                  f"{test:.3f})" for s, q in weakest]  # fmt: skip
    for label, q in row.quality.items():
        if label != TEST_SET and q.pooled_cosine < test:
            lines.append(f"held-out {label}: pooled cosine {q.pooled_cosine:.3f} (test {test:.3f})")
    for label, r in row.risk.items():
        if r.changed_share > RISK_WATCH:
            lines.append(
                f"{label}: {r.changed_share:.1%} of prompts tokenize differently with its vocabulary"
            )
        if r.truncated_share > RISK_WATCH:
            lines.append(f"{label}: {r.truncated_share:.1%} of prompts are cut at context {row.context}")
    return lines


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
