"""Students with a specialised vocabulary: a distillation run's vocabulary, its teacher data in the
specialised ids, and the full-table form the export layouts need.

The teacher cache stays in the teacher's own tokenization (its key does not name the vocabulary, so the
full-vocabulary and the specialised run of the same teacher share one cache): its targets are per original
token position. A specialised run maps the cached ids to the kept tokens' new ids and checks, prompt by
prompt, that the specialised tokenizer gives exactly those tokens; only then does every teacher target sit
on the student's token at the same position. A vocabulary that is not exact on a training prompt (built from
another corpus, or with --min-count above 1) is refused, because those targets would be misaligned.

    run = load_for_run("vocab/", teacher="minilm")          # refuses another tokenizer's vocabulary
    cache = specialise_cache(cache, run, "corpus.parquet")   # refuses misaligned prompts; warns if the
                                                             # corpus differs but every prompt is exact
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anatomy.errors import InputError

if TYPE_CHECKING:
    from anatomy.distill.data import TeacherCache
    from anatomy.vocab.store import Vocabulary

log = logging.getLogger(__name__)

EXAMPLES = 3  # misaligned prompts quoted in a refusal
EMBEDDING_KEY = "encoder.embedding_layer.weight"


@dataclass(frozen=True)
class RunVocabulary:
    """The vocabulary of a specialised run: its file's bytes (copied into every checkpoint) and tokenizer."""

    path: Path
    vocab: Vocabulary
    vocab_json: bytes
    tokenizer: Any  # SpecialisedClipTokenizer | WordPieceTokenizer

    @property
    def fingerprint(self) -> str:
        return self.tokenizer.fingerprint

    @property
    def size(self) -> int:
        return self.tokenizer.vocab_size


def folder_corpus(folder: Path) -> tuple[str, str] | None:
    """(name, sha256) of the corpus an output folder is about: the corpus its audit record names (corpus.parquet
    by default) as the file is now, else the hash the record holds; None where the folder records no corpus."""
    import json

    from anatomy.io import file_sha256

    name, recorded = "corpus.parquet", None
    record = folder / "results" / "audit.json"
    if record.is_file():
        try:
            stage = (json.loads(record.read_text(encoding="utf-8")).get("stages") or {}).get("corpus") or {}
        except (OSError, ValueError, AttributeError):
            stage = {}
        if isinstance(stage, dict):
            path, sha = stage.get("path"), stage.get("sha256")
            name = path if isinstance(path, str) else name
            recorded = sha if isinstance(sha, str) else None
    for where in (folder / name, Path(name)):
        if where.is_file():
            return str(where), file_sha256(where)
    return (name, recorded) if recorded else None


def check_folder_corpus(folder: Path, built_from: dict | None, option: str) -> None:
    """Refuse folder/vocab.json where it was built from another corpus than the one the folder is about (a
    vocabulary an earlier run left beside a new audit's corpus); nothing to check where the folder has none."""
    theirs = folder_corpus(folder)
    mine = built_from.get("sha256") if isinstance(built_from, dict) else None
    if theirs is None or not mine or mine == theirs[1]:
        return
    raise InputError(
        f"{option} {folder}: its vocab.json was built from {(built_from or {}).get('name', '?')} (sha256 {mine[:12]}), not "
        f"from {theirs[0]} (sha256 {theirs[1][:12]}), the corpus of that folder: another run left it there",
        f"rebuild it (anatomy vocab --corpus {theirs[0]} --out {folder}), or give the file itself "
        f"({folder / 'vocab.json'}) to use it anyway",
    )


def load_for_run(path: str | Path, teacher: str) -> RunVocabulary:
    """DIR/vocab.json (checked), refused unless it was built from the teacher's own tokenizer."""
    from anatomy.vocab.store import base_fingerprint, base_tokenizer, load, specialise

    path = Path(path)
    file = path / "vocab.json" if path.is_dir() else path
    if not file.exists():
        raise InputError(
            f"--vocab {path}: no vocab.json there", "build one with `anatomy vocab --corpus C --out DIR`"
        )
    vocab = load(file)
    if path.is_dir():
        check_folder_corpus(path, vocab.corpus, "--vocab")
    rebuild = f"build it with the teacher's tokenizer: anatomy vocab --corpus CORPUS --tokenizer {teacher} --out DIR"
    try:
        teacher_base = base_tokenizer(teacher)
    except InputError as error:
        raise InputError(
            f"--vocab {file}: the teacher {teacher}'s tokenizer cannot be specialised ({error.message})",
            "train without --vocab, or use a teacher with CLIP BPE or WordPiece",
        ) from None
    if base_fingerprint(teacher_base) != vocab.base_fingerprint:
        raise InputError(
            f"--vocab {file}: built from tokenizer '{vocab.tokenizer}' ({vocab.base_fingerprint}), "
            f"not the teacher {teacher}'s ({base_fingerprint(teacher_base)})",
            rebuild,
        )
    return RunVocabulary(file, vocab, file.read_bytes(), specialise(vocab))


def specialise_cache(cache: TeacherCache, run: RunVocabulary, corpus: str | Path) -> TeacherCache:
    """The teacher cache in the specialised tokenizer's ids, every prompt checked to tokenize exactly.

    Refuses (InputError) when a prompt's specialised tokens differ from the teacher's; warns when the
    vocabulary was built from another corpus but still covers every prompt of this one (e.g. a superset).
    """
    from anatomy.encoders.base import valid_mask
    from anatomy.io import file_sha256
    from anatomy.tokenizer import pack

    tok, vocab = run.tokenizer, run.vocab
    new_of = np.full(max(vocab.original_size, int(cache.ids.max()) + 1), -1, dtype=np.int64)
    new_of[tok.original_ids] = np.arange(len(tok.original_ids))
    ids = new_of[cache.ids]
    content = tok.encode(cache.prompts)
    own = pack(content, cache.context, tok.sot_id, tok.eot_id, tok.pad_id)
    own_valid = valid_mask(own, [len(c) for c in content])
    differ = np.flatnonzero((own != ids).any(axis=1) | (own_valid != cache.valid).any(axis=1))
    want, got = vocab.corpus.get("sha256"), file_sha256(corpus)
    built_from = f"{vocab.corpus.get('name', '?')} (sha256 {str(want)[:12]})"
    if len(differ):
        examples = "; ".join(repr(cache.prompts[i]) for i in differ[:EXAMPLES])
        why = (
            f"it was built from {built_from}, not {Path(corpus).name} (sha256 {got[:12]})"
            if want != got
            else f"it keeps only words seen {vocab.min_count}+ times"
            if vocab.min_count > 1
            else "it is not exact on this corpus"
        )
        raise InputError(
            f"--vocab {run.path}: {len(differ):,} of {len(cache.prompts):,} training prompts tokenize differently "
            f"with the specialised tokenizer ({why}), so the teacher's per-token targets would not align "
            f"(e.g. {examples})",
            f"build the vocabulary from this corpus: anatomy vocab --corpus {corpus} --tokenizer "
            f"{vocab.tokenizer} --out DIR",
        )
    if want != got:
        log.warning(
            "--vocab %s was built from %s, not %s (sha256 %s), but tokenizes all %d training prompts exactly "
            "(e.g. a superset of this corpus): using it",
            run.path, built_from, Path(corpus).name, got[:12], len(cache.prompts),
        )  # fmt: skip
    words = new_of[cache.word_tokens] if len(cache.word_tokens) else cache.word_tokens
    word_offsets = cache.word_offsets
    if (words < 0).any():  # a word alone tokenizes otherwise than inside its prompt: re-encode the words
        flat = [w for p in cache.prompts for w in p.split()]
        encoded = tok.encode(flat)
        words = np.asarray([i for w in encoded for i in w], dtype=np.int64)
        word_offsets = np.concatenate([[0], np.cumsum([len(w) for w in encoded])]).astype(np.int64)
    meta = {**cache.meta, "vocab": run.fingerprint, "vocab_size": run.size}
    meta.update(sot_id=int(tok.sot_id), eot_id=int(tok.eot_id), pad_id=int(tok.pad_id))
    return dataclasses.replace(
        cache, ids=own, word_tokens=words, word_offsets=word_offsets, sot_id=int(tok.sot_id),
        eot_id=int(tok.eot_id), pad_id=int(tok.pad_id), meta=meta,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------- export


def full_table(module, cfg, source: str | Path):
    """A specialised student widened to the base tokenizer's full table, for layouts that take its ids.

    The kept rows go to their original ids; every other row is the mean kept row (those tokens were never
    trained). Returns (module, config, note): on prompts the vocabulary covers exactly the outputs are the
    specialised student's; on other words the full tokenizer picks untrained rows where the specialised one
    would have fallen back to kept pieces, so the outputs differ there (the note says so).
    """
    import torch

    from anatomy.encoders import mobileclip
    from anatomy.encoders.student import VOCAB_FILE, student_dir, student_tokenizer
    from anatomy.vocab.store import load

    directory = student_dir(source)
    vocab = load(directory / VOCAB_FILE)
    tokenizer = student_tokenizer(directory, cfg)  # checks vocab.json is the student's own
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    rows = state[EMBEDDING_KEY]
    table = rows.mean(0, keepdim=True).repeat(vocab.original_size, 1)
    table[torch.as_tensor(tokenizer.original_ids)] = rows
    state[EMBEDDING_KEY] = table
    wide_cfg = dataclasses.replace(cfg, vocab_size=vocab.original_size, vocab=None)
    wide = mobileclip.empty_tower(wide_cfg.shape, cfg.context_length)
    wide.load_state_dict(state, strict=True)
    missing = vocab.original_size - vocab.size
    note = (
        f"{directory}: a specialised student ({vocab.size:,} of {vocab.original_size:,} {vocab.tokenizer} tokens) "
        f"exported with the full {vocab.original_size:,}-row table for the full tokenizer's ids: kept rows at "
        f"their original ids, the {missing:,} others set to the mean kept row. Prompts the vocabulary covers "
        "give the same outputs; other words now hit untrained rows instead of the specialised fallback "
        "(load the student directory as student:PATH to keep the fallback)"
    )
    return wide.eval(), wide_cfg, note
