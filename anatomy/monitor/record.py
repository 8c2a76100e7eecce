"""The deployment record: what a folder says was deployed (training corpus, teacher, student, context,
vocabulary, the run's own held-out figures), read through one function whatever the folder's layout.

Layouts (LAYOUTS, tried in order; each is a `detect(folder) -> bool` and a `read(folder) -> Deployment`):
- "run": an `anatomy distill` run directory (config.json with student_arch, metrics.jsonl, checkpoints/best,
  teacher_cache/, vocab.json for a specialised run);
- "audit": an `anatomy audit` folder (results/audit.json, corpus.parquet, pair/results/agreement.json when it
  had a teacher and a student). With a student, the tokenizer, context and vocabulary are the student's own (its
  checkpoint's config.json and vocab.json; an unreadable one is refused); without one, the audit's
  recommendation (results/tokens.json's tokenizer and context, vocab.json), said so in a note.
- "specialise": an `anatomy specialise` output (bill.json): the recommended candidate's distill run, read as a
  run (its context, vocabulary, teacher cache and held-out figures).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from anatomy.errors import InputError

DEFAULT_CONTEXT = 32  # an audit folder that recommends no context is judged at SAM3's


@dataclass
class Deployment:
    kind: str  # which layout it was read from: run | audit | specialise
    folder: Path
    tokenizer: str  # the base tokenizer's spec: "clip" or the teacher's encoder spec
    context: int
    teacher: str | None = None  # the teacher's encoder spec (coverage is measured in its space)
    student: str | None = None  # the deployed student's encoder spec (quality)
    corpus: Path | None = None  # the training corpus
    vocab: Path | None = None  # the deployed vocabulary (vocab.json), None: the full tokenizer
    teacher_cache: tuple[Path, Path] | None = None  # (arrays, sidecar) of the run's teacher cache
    eval: dict[str, float] = field(default_factory=dict)  # the run's own held-out figures (eval_*)
    eval_size: int | None = None  # how many held-out prompts those figures are over
    notes: list[str] = field(default_factory=list)  # how a figure above was chosen, where it was not recorded

    def describe(self) -> dict:
        return {
            "kind": self.kind, "folder": str(self.folder), "tokenizer": self.tokenizer, "context": self.context,
            "teacher": self.teacher, "student": self.student, "corpus": str(self.corpus) if self.corpus else None,
            "vocab": str(self.vocab) if self.vocab else None, "eval": self.eval, "eval_size": self.eval_size, "notes": self.notes,
        }  # fmt: skip


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(
            f"{path}: unreadable ({error})", "give the folder of a finished run or audit"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _existing(path: str | None, *bases: Path) -> Path | None:
    """A recorded path as given (relative to the working directory) or relative to one of `bases`."""
    if not path:
        return None
    for candidate in (Path(path), *(b / path for b in bases)):
        if candidate.exists():
            return candidate
    return None


# ------------------------------------------------------------------------------------------------ run


def _is_run(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "checkpoints").is_dir()


def _read_run(folder: Path) -> Deployment:
    config = _json(folder / "config.json")
    if "student_arch" not in config:
        raise InputError(f"{folder}/config.json: not a distill run's config (no student_arch)")
    best = folder / "checkpoints" / "best"
    if not (best / "model.safetensors").exists():
        raise InputError(f"{folder}: the run saved no checkpoint yet", "let `anatomy distill` finish a step")
    rows: list[dict] = []
    metrics = folder / "metrics.jsonl"
    if metrics.exists():
        rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    best_row: dict = max(rows, key=lambda r: r.get("eval_token_cosine", float("-inf")), default={})
    cache = None
    key = config.get("teacher_cache")
    for cache_dir in (_existing(config.get("cache_dir"), folder.parent, folder), folder / "teacher_cache"):
        if key and cache_dir is not None:
            arrays, meta = cache_dir / f"teacher-{key}.safetensors", cache_dir / f"teacher-{key}.json"
            if arrays.exists() and meta.exists():
                cache = (arrays, meta)
                break
    vocab = folder / "vocab.json"
    return Deployment(
        kind="run", folder=folder, tokenizer=config["student_arch"].get("tokenizer") or config["teacher"],
        context=int(config["context"]), teacher=config["teacher"], student=f"student:{best}",
        corpus=_existing(config.get("corpus"), folder.parent, folder), vocab=vocab if vocab.exists() else None,
        teacher_cache=cache, eval={k: float(v) for k, v in best_row.items() if k.startswith("eval_") and v is not None},
        eval_size=config.get("n_eval"),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- audit


def _is_audit(folder: Path) -> bool:
    return (folder / "results" / "audit.json").is_file()


def _read_audit(folder: Path) -> Deployment:
    audit = _json(folder / "results" / "audit.json")
    if audit.get("state") == "running":  # anatomy.report.record.RUNNING: a mixture of two audits
        raise InputError(f"{folder}: the audit into this folder did not finish (it was killed or failed)",
                         f"rerun `anatomy audit` into {folder} first")  # fmt: skip
    config = audit.get("config", {})
    corpus_path = audit.get("stages", {}).get("corpus", {}).get("path") or "corpus.parquet"
    tokens_path = folder / "results" / "tokens.json"
    measured: str | None = None  # the tokenizer the audit's tokens analysis measured, and its recommendation
    recommended: int | None = None
    if tokens_path.exists():
        tokens = _json(tokens_path)
        measured = tokens.get("params", {}).get("tokenizer", "clip")
        recommended = tokens.get("recommended_context", {}).get("pooled", {}).get("L")
    eval_figures = {}
    agreement = folder / "pair" / "results" / "agreement.json"
    if agreement.exists():  # the student against the teacher on the audited (training) corpus
        eval_figures = _agreement_figures(_json(agreement))
    encoders = config.get("encoders") or []
    student = config.get("student")
    notes: list[str] = []
    if student:  # what is deployed is the student: its own tokenizer, context and vocabulary
        student, tokenizer, context, vocab = _audit_student(folder, str(student), measured, recommended)
    else:  # no student: the audit's recommendation (its tokens analysis's tokenizer, context and vocab.json)
        tokenizer = measured or "clip"
        context = recommended or DEFAULT_CONTEXT
        vocab = folder / "vocab.json"
        notes.append(
            f"the audit names no student: judged as its recommendation, tokenizer {tokenizer} at context "
            f"{context}{'' if recommended else ' (no recommended context: the default)'}"
        )
        # a vocabulary an earlier run left beside this audit's corpus is not what it deployed
        if vocab.exists():
            from anatomy.distill.vocab_student import check_folder_corpus

            built = _json(vocab)
            check_folder_corpus(folder, built.get("corpus") if isinstance(built, dict) else None, "--against")
        else:
            vocab = None
    return Deployment(
        kind="audit", folder=folder, tokenizer=tokenizer, context=int(context),
        teacher=config.get("teacher") or (encoders[0] if encoders else None), student=student,
        corpus=_existing(corpus_path, folder), vocab=vocab, eval=eval_figures, notes=notes,
    )  # fmt: skip


def _audit_student(
    folder: Path, spec: str, measured: str | None, recommended: int | None
) -> tuple[str, str, int, Path | None]:
    """(student spec, tokenizer, context, vocab.json or None) of the student an audit was given, from its own
    checkpoint; InputError where they cannot be read (never the audit's CLIP defaults in their place)."""
    from anatomy.errors import AnatomyError

    hint = "give --against the student's run folder (`anatomy distill --out`) or audit again with the student"
    if not spec.startswith("student:"):  # another family: its context is only known from a tokens analysis
        if measured == spec and recommended:
            return spec, spec, int(recommended), None
        raise InputError(
            f"{folder}: the audit's student {spec} records no context here (its tokens analysis measured "
            f"{measured or 'nothing'}), so the deployed tokenization cannot be judged",
            f"{hint}, or audit with `-a tokens --tokenizer {spec}`",
        )
    from anatomy.encoders.student import VOCAB_FILE, read_student_config, student_dir

    path = _existing(spec.removeprefix("student:"), folder.parent, folder)
    if path is None:
        raise InputError(f"{folder}: the audit's student {spec} cannot be found", hint)
    try:
        cfg, _ = read_student_config(path)
    except AnatomyError as error:
        raise InputError(
            f"{folder}: the audit's student {spec} is unreadable ({error.message})", hint
        ) from None
    vocab = student_dir(path) / VOCAB_FILE if cfg.vocab else None
    if vocab is not None and not vocab.exists():
        raise InputError(f"{vocab}: not found; the audit's student {spec} has a specialised vocabulary", hint)
    return f"student:{path}", cfg.tokenizer, int(cfg.context_length), vocab


def _agreement_figures(data: dict) -> dict[str, float]:
    """The agreement analysis's means (token_cosine, pooled_cosine, knn_overlap) under the run's metric names."""
    names = {"token_cosine": "eval_token_cosine", "pooled_cosine": "eval_pooled_cosine",
             "knn_overlap": "eval_knn_overlap10"}  # fmt: skip
    found: dict[str, float] = {}
    for key, name in names.items():
        entry = data.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("mean"), int | float):
            found[name] = float(entry["mean"])
    return found


# ----------------------------------------------------------------------------------------- specialise


SPECIALISE_RUN = "run"  # a distill stage's run folder (anatomy.specialise.model_stages.RUN; a floor above)


def _is_specialise(folder: Path) -> bool:
    return (folder / "bill.json").is_file() and (folder / "stages").is_dir()


def _read_specialise(folder: Path) -> Deployment:
    recommendation = _json(folder / "bill.json").get("recommendation") or {}
    candidate = recommendation.get("candidate") if isinstance(recommendation, dict) else None
    runs = sorted(
        p.name.removeprefix("distill-") for p in (folder / "stages").glob("distill-*") if p.is_dir()
    )
    if not isinstance(candidate, str) or not candidate:
        raise InputError(
            f"{folder}/bill.json recommends no candidate, so nothing is known to be deployed",
            f"give --against the deployed candidate's run: {folder}/stages/distill-NAME/{SPECIALISE_RUN} (NAME: "
            f"{', '.join(runs) or 'none trained'})",
        )
    deployment = _read_run(folder / "stages" / f"distill-{candidate}" / SPECIALISE_RUN)
    deployment.kind, deployment.folder = "specialise", folder
    return deployment


# -------------------------------------------------------------------------------------------- registry

LAYOUTS: list[tuple[str, Callable[[Path], bool], Callable[[Path], Deployment]]] = [
    ("run", _is_run, _read_run),
    ("audit", _is_audit, _read_audit),
    ("specialise", _is_specialise, _read_specialise),
]


def read_deployment(folder: str | Path) -> Deployment:
    """What `folder` deployed; InputError naming the layouts tried when it is none of them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a directory", "give --against a student run or an audit folder")
    for _name, detect, read in LAYOUTS:
        if detect(folder):
            return read(folder)
    raise InputError(
        f"{folder}: neither a student run (config.json + checkpoints/), an audit folder (results/audit.json) "
        "nor a specialise output (bill.json)",
        "give --against the --out folder of `anatomy distill`, `anatomy audit` or `anatomy specialise`",
    )
