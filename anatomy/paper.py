"""The SAM3-LiteText study's numbers (arXiv 2602.12173), each once, with where in the study it comes from.

Every analysis that shows "ours beside the paper's" reads its numbers here. The study's body text is not
available offline: the numbers and their sections are as quoted in shared/spec/metrics.md and
shared/spec/encoders.md; `where` names the study's section (its table/figure numbers could not be checked).
"""

from __future__ import annotations

from dataclasses import dataclass

STUDY = "SAM3-LiteText (arXiv 2602.12173)"


@dataclass(frozen=True)
class Cited:
    value: float | int | str
    where: str  # the part of the study the number comes from
    share: bool = False  # a fraction, shown as a percentage

    def __str__(self) -> str:
        v = self.value
        if self.share and isinstance(v, float):
            return percent(v)
        return f"{v:,}" if isinstance(v, int) else str(v)


def percent(x: float) -> str:
    """A share of the study's at the precision it printed them: 0.755 -> '75.5%', 0.05 -> '5.0%'."""
    return f"{100 * x:.1f}%"


_CORPUS = "corpus audit: token statistics over 404,796 prompts"
_CONTEXT = "corpus audit: context-window table"
_VOCAB = "corpus audit: vocabulary coverage"
_EMBED = "encoder anatomy: token-embedding spectrum (SAM3 teacher, width 1024)"
_POS = "encoder anatomy: positional-embedding similarity (SAM3 teacher, 32 positions)"
_OUT = "encoder anatomy: output manifold (5,000 prompts, 256-d)"
_ROBUST = "encoder anatomy: softmax error attenuation"
_DISTILL = "distillation results: student-teacher agreement"
_SPEED = "efficiency table: text-encoder throughput, RTX 4070 Laptop GPU"

N_PROMPTS = Cited(404_796, _CORPUS)
CORPUS_LABEL = "404,796 prompts (LVIS, SA-Co, RefCOCO, RF100-VL)"
LENGTH_MEAN = Cited(7.9, _CORPUS)
SOURCE_LENGTH_MEAN = {
    "lvis": Cited(3.3, _CORPUS),
    "saco": Cited("5.4-5.9", _CORPUS),
    "refcoco": Cited(9.4, _CORPUS),
}

# Context-window table (lengths include start and end). The L=8 row does not fit the others under any single
# convention (metrics.md), so it is shown but flagged.
CONTEXT = {
    "32": {"density": 0.245, "padding": 0.755, "truncation": 0.001},
    "16": {"density": 0.480, "padding": 0.520, "truncation": 0.050, "token_loss": 0.021},
    "8": {"density": 0.800, "padding": 0.200, "truncation": 0.285, "token_loss": 0.123},
}
CONTEXT_WHERE = _CONTEXT
CONTEXT_NOTE = "the paper's L=8 row is not consistent with its other rows under any single convention"

VOCAB_SIZE = Cited(49_408, _VOCAB)
VOCAB_USED = Cited(17_300, _VOCAB)
VOCAB_UNUSED_SHARE = Cited(0.65, _VOCAB, share=True)
TOP100_COVERAGE = Cited(0.585, _VOCAB, share=True)
SPECIAL_SHARE = Cited(0.346, _VOCAB, share=True)

EMBED_ERANK_FULL = Cited("943 of 1024", _EMBED)
EMBED_ERANK_USED = Cited("906 of 1024", _EMBED)
EMBED_N90 = Cited("834 of 1024", _EMBED)

POS_N90 = Cited("7 of 32", _POS)
POS_ERANK = Cited("20 of 32", _POS)
POS_BLOCK_FIRST = Cited(0.54, _POS)
POS_BLOCK_LATER = Cited("0.76-0.79", _POS)

OUTPUT_INTRINSIC_DIM = Cited("16-19", _OUT)
OUTPUT_LINEAR_ERANK = Cited("85.3 of 256", _OUT)
OUTPUT_SAMPLE = Cited("5,000 / 256", _OUT)

ROBUST_ERRORS = Cited("0.97 / 0.96 / 0.0034", _ROBUST)
ROBUST_FACTOR = Cited(282, _ROBUST)

AGREEMENT_TOKEN_COSINE = Cited(0.938, _DISTILL)

# texts/s of the teacher at context 32 and the students at 16
THROUGHPUT = {
    "sam3": Cited(134.4, _SPEED),
    "litetext-s0": Cited(495.3, _SPEED),
    "litetext-s1": Cited(259.4, _SPEED),
    "litetext-l": Cited(238.3, _SPEED),
}
THROUGHPUT_DEVICE = "RTX 4070 Laptop GPU"

# The LiteText students as the study ships them: their context, and each body's parameters and token-embedding
# width with CLIP's 49,408-row table (anatomy.encoders.registry.describe_all() counts the same numbers;
# tests/test_vocab_analysis.py checks that they agree).
STUDENT_CONTEXT = 16
STUDENT_BODIES = {
    "litetext-s0": (42_541_312, 512),
    "litetext-s1": (63_528_192, 512),
    "litetext-l": (123_800_320, 768),
}
THROUGHPUT_CONTEXT = {"sam3": 32, "litetext-s0": 16, "litetext-s1": 16, "litetext-l": 16}
