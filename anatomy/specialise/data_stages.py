"""The data half of the pipeline, each a stage body over library functions: corpus (anatomy.audit's
ingest), tokens (the tokens analysis: the context recommendation), the seeded split by prompt, the vocabulary
and its risk (the vocab analysis), and the teacher (its training cache, anatomy.distill.data, and its outputs
on the test split and each held-out set, computed with the teacher loaded once).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from anatomy.errors import InputError
from anatomy.specialise.plan import MIN_TRAIN_PROMPTS, SpecialiseConfig, min_prompts, n_test_for
from anatomy.specialise.stages import StageRun

if TYPE_CHECKING:
    from anatomy.analysis.tokens import TokensResult

log = logging.getLogger(__name__)

TRAIN_CORPUS = "train.parquet"
SPLIT_JSON = "split.json"
TEST_SET = "test"
CACHE = "cache"  # folder of the teacher stage: the distillation cache
VOCAB_ANALYSIS = (
    "analysis"  # folder of the vocab stage: the vocab analysis (results, figures, the built vocabulary)
)
ENCODE_BATCH = 256


def corpus_stage(run: StageRun, cfg: SpecialiseConfig, inputs: list[str]) -> dict:
    import shutil

    from anatomy.audit_corpus import build_corpus
    from anatomy.corpus import load_corpus

    corpus, failed = build_corpus(tuple(inputs), cfg.source, run.folder)
    if failed:
        first = failed[0]
        raise InputError(f"{first.input}: {first.error}", first.hint)
    if corpus.parent != run.folder:  # a given corpus .parquet: the stage keeps its own copy
        shutil.copyfile(corpus, run.folder / "corpus.parquet")
    frame = load_corpus(run.folder / "corpus.parquet")
    return {"rows": len(frame), "distinct": int(frame["prompt"].nunique()),
            "sources": sorted(map(str, frame["source"].unique()))}  # fmt: skip


def tokens_stage(run: StageRun, cfg: SpecialiseConfig) -> dict:
    from anatomy.analysis import ANALYSES, runner
    from anatomy.analysis.base import Inputs

    analysis = ANALYSES["tokens"]
    params = analysis.params_from({"tokenizer": cfg.teacher})
    corpus = run.inputs["corpus"] / "corpus.parquet"
    result = cast(
        "TokensResult", runner.run(analysis, Inputs(corpus=corpus, out_dir=run.folder), params, run.folder)
    )
    rec = result.recommended_context.pooled
    return {"recommended_context": rec.L, "rule": result.recommended_context.rule,
            "truncation": rec.truncation, "padding": rec.padding}  # fmt: skip


def split_stage(run: StageRun, cfg: SpecialiseConfig) -> dict:
    """Distinct prompts (optionally a seeded sample of --limit), split by prompt into train (which the
    distillation splits again for its validation) and test; the train rows as a corpus of their own."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from anatomy.corpus.corpus import read_corpus_table
    from anatomy.io import write_json, write_parquet

    table = read_corpus_table(run.inputs["corpus"] / "corpus.parquet")
    prompts = sorted({p for p in table.column("prompt").to_pylist() if p and p.strip()})
    if cfg.limit is not None and cfg.limit < len(prompts):
        keep = np.sort(np.random.default_rng([cfg.seed, 11]).choice(len(prompts), cfg.limit, replace=False))
        prompts = [prompts[i] for i in keep]
    n_test = n_test_for(len(prompts), cfg.test_share)
    if len(prompts) - n_test < MIN_TRAIN_PROMPTS:
        raise InputError(
            f"the corpus has {len(prompts)} distinct prompts: too few to train and test a student",
            f"give at least {min_prompts(cfg.test_share)} distinct prompts",
        )
    order = np.random.default_rng([cfg.seed, 13]).permutation(len(prompts))
    test = sorted(prompts[i] for i in order[:n_test])
    train = set(prompts) - set(test)
    mask = pc.is_in(table.column("prompt"), value_set=pa.array(sorted(train)))
    write_parquet(table.filter(mask), run.folder / TRAIN_CORPUS)
    sources: dict[str, set[str]] = {}
    test_set = set(test)
    for prompt, source in zip(
        table.column("prompt").to_pylist(), table.column("source").to_pylist(), strict=True
    ):
        if prompt in test_set:
            sources.setdefault(prompt, set()).add(str(source))
    write_json(run.folder / SPLIT_JSON, {
        "seed": cfg.seed, "test_share": cfg.test_share, "limit": cfg.limit, "n_train": len(train),
        "n_test": len(test), "test": [{"prompt": p, "sources": sorted(sources[p])} for p in test],
    })  # fmt: skip
    return {"n_train": len(train), "n_test": len(test)}


def vocab_stage(run: StageRun, cfg: SpecialiseConfig) -> dict:
    """--vocab full: the teacher's own. auto: build the vocabulary of the train split and keep it when the
    vocab analysis says it is worth it (at most KEPT_WORTH of the table) and safe (k-fold and every held-out set
    change at most CHANGE_WARN of prompts); the reason is recorded either way. Only a kept vocabulary is
    copied to the stage's top level (vocab.json, what distillation reads): the analysis is a side report."""
    import shutil

    from anatomy.analysis import ANALYSES, runner
    from anatomy.analysis import vocab as va
    from anatomy.analysis.base import Inputs

    if cfg.vocab == "full":
        return {"use": False, "reason": "--vocab full: the teacher's whole vocabulary"}
    try:
        va.base_tokenizer(cfg.teacher)
    except InputError as error:
        return {"use": False, "reason": f"the teacher's tokenizer cannot be specialised ({error.message})"}
    analysis = ANALYSES["vocab"]
    params = analysis.params_from(
        {"tokenizer": cfg.teacher, "held_out": tuple(cfg.held_out), "seed": cfg.seed}
    )
    corpus = run.inputs["split"] / TRAIN_CORPUS
    folder = run.folder / VOCAB_ANALYSIS
    result = cast(
        "va.VocabResult", runner.run(analysis, Inputs(corpus=corpus, out_dir=folder), params, folder)
    )
    risks = ([result.k_fold] if result.k_fold else []) + list(result.held_out)
    worst = max(risks, key=lambda r: r.changed_share, default=None)
    summary = {"kept": result.kept, "original_size": result.original_size, "kept_share": result.kept_share}
    if result.kept_share > va.KEPT_WORTH:
        why = f"it would keep {result.kept_share:.0%} of the table (more than {va.KEPT_WORTH:.0%}): little to save"
        return {**summary, "use": False, "reason": why}
    if worst is not None and worst.changed_share > va.CHANGE_WARN:
        why = (f"{worst.changed_share:.1%} of {worst.label} ({worst.kind}) prompts would tokenize differently "
               f"(more than {va.CHANGE_WARN:.0%}): the long tail is at risk")  # fmt: skip
        return {**summary, "use": False, "reason": why}
    worst_text = (
        f"; at most {worst.changed_share:.1%} of unseen prompts change ({worst.label})" if worst else ""
    )
    shutil.copyfile(folder / "vocab.json", run.folder / "vocab.json")
    why = f"keeps {result.kept:,} of {result.original_size:,} tokens ({result.kept_share:.0%}){worst_text}"
    return {**summary, "use": True, "reason": why}


def prompt_sets(
    run_or_split: Path, held_out: tuple[str, ...]
) -> dict[str, tuple[list[str], list[list[str]]]]:
    """{set label: (prompts, sources of each)}: the test split, then each held-out file (distinct prompts)."""
    from anatomy.io import read_json
    from anatomy.vocab.held_out import read_prompts

    split = read_json(run_or_split / SPLIT_JSON)
    sets = {TEST_SET: ([t["prompt"] for t in split["test"]], [t["sources"] for t in split["test"]])}
    for spec in held_out:
        label = Path(spec).name
        prompts = read_prompts(spec)  # distinct, normalised, none empty: as `anatomy vocab` measures them
        sets[label] = (prompts, [[label]] * len(prompts))
    return sets


class TeacherLoader:
    """The teacher, loaded at most once per pipeline run (the cache and the reference stages share it)."""

    def __init__(self, spec: str, device: str | None):
        self.spec, self.device = spec, device
        self._loaded: dict[int, object] = {}

    def get(self, context: int):
        if context not in self._loaded:
            from anatomy.encoders.registry import load

            self._loaded = {context: load(self.spec, device=self.device, context_length=context)}
        return self._loaded[context]


def teacher_stage(run: StageRun, cfg: SpecialiseConfig, teacher: TeacherLoader) -> dict:
    """The distillation cache of the train split, exactly what `anatomy distill` computes and reads."""
    from anatomy.distill import data

    context = run.params["context"]
    train = run.inputs["split"] / TRAIN_CORPUS
    prompts, sha = data.load_prompts(train)
    key = data.cache_key(cfg.teacher, context, prompts)
    cache = data.teacher_cache(teacher.get(context), prompts, context, run.folder / CACHE, corpus_sha256=sha,
                               progress=lambda d, t: run.progress(d / t))  # fmt: skip
    if cache.meta["key"] != key:
        raise InputError(
            f"teacher {cfg.teacher} names itself {cache.meta['teacher']}: distill would not find its cache"
        )
    return {"context": context, "prompts": len(prompts), "dim": int(cache.dim), "key": key}


def reference_stage(run: StageRun, cfg: SpecialiseConfig, teacher: TeacherLoader) -> dict:
    """The teacher's outputs at the chosen context on the test split and each held-out set."""
    from safetensors.numpy import save_file

    encoder = teacher.get(run.params["context"])
    sets = prompt_sets(run.inputs["split"], cfg.held_out)
    for i, (label, (texts, _)) in enumerate(sets.items()):
        save_file(encode_set(encoder, texts), str(run.folder / f"{label}.safetensors"))
        run.progress((i + 1) / len(sets))
    return {"context": run.params["context"], "sets": {k: len(v[0]) for k, v in sets.items()}}


def encode_set(encoder, prompts: list[str]) -> dict[str, np.ndarray]:
    """Per-token outputs (fp16) with their mask, pooled outputs, and each prompt's full (untruncated) token
    ids in the encoder's own tokenizer, mapped to the base tokenizer's ids for a specialised one."""
    if not prompts:
        raise InputError("a prompt set is empty", "give held-out files with at least one prompt")
    tokens, masks, pooled = [], [], []  # stored with safetensors: the same arrays give the same bytes
    for start in range(0, len(prompts), ENCODE_BATCH):
        out = encoder.encode(prompts[start : start + ENCODE_BATCH])
        tokens.append(out.tokens.float().cpu().numpy().astype(np.float16))
        masks.append(out.mask.cpu().numpy())
        pooled.append(out.pooled.float().cpu().numpy())
    tok = encoder.tokenizer
    content = tok.encode(prompts)
    if hasattr(tok, "to_original"):
        content = [tok.to_original(c) for c in content]
    return {
        "tokens": np.concatenate(tokens), "mask": np.concatenate(masks), "pooled": np.concatenate(pooled),
        "ids": np.asarray([i for c in content for i in c], dtype=np.int64),
        "offsets": np.concatenate([[0], np.cumsum([len(c) for c in content])]).astype(np.int64),
    }  # fmt: skip
