"""`anatomy check`: a prompt log against a deployment, into OUT.

OUT/log.parquet (+ .manifest.json, .traffic.parquet)  the log as a corpus (anatomy ingest's format)
OUT/.staging/                                          the above while a check runs; moved into place
                                                       together (check.json last) only when it succeeds
OUT/cache/pooled-*.npy + .json                         the teacher's pooled outputs (log; training corpus
                                                       when the run has no teacher cache), verified on reuse
OUT/results/check.json                                 every figure, the verdicts (findings) and the settings
OUT/add_to_training.csv                                `prompt,count` of the uncovered prompts by traffic:
                                                       `anatomy ingest text add_to_training.csv --count-column count`
"""

from __future__ import annotations

import csv
import functools
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anatomy.corpus.sources import ReadOptions
from anatomy.findings import Finding
from anatomy.monitor import verdicts
from anatomy.monitor.coverage import CoverageCheck
from anatomy.monitor.periods import PERIODS, Drift, Period
from anatomy.monitor.quality import QualityCheck
from anatomy.monitor.tokenization import TokenizationCheck
from anatomy.monitor.verdicts import MIN_COSINE_PROMPTS

log = logging.getLogger(__name__)

RESULT = "results/check.json"
STAGING = ".staging"  # a check's outputs until they replace the previous ones together
ADD_FILE = "add_to_training.csv"
DEFAULT_SAMPLE = 1000  # quality sample when the deployment records no held-out size


@dataclass(frozen=True)
class CheckConfig:
    sample: int | None = None  # quality sample (None: the run's held-out size, else DEFAULT_SAMPLE)
    seed: int = 0
    period: str = "week"  # day | week (logs with timestamps)
    backend: str = "auto"  # kNN: auto | numpy | faiss
    top: int = 1000  # prompts written to add_to_training.csv
    device: str | None = None

    def __post_init__(self):
        from anatomy.errors import OptionError

        if self.period not in PERIODS:
            raise OptionError("--period", f"'{self.period}' is not one of {', '.join(PERIODS)}")
        if self.sample is not None and self.sample < MIN_COSINE_PROMPTS:
            raise OptionError("--sample", f"{self.sample} is below {MIN_COSINE_PROMPTS} (a cosine verdict needs "
                              f"{MIN_COSINE_PROMPTS} prompts, kNN@10 21)")  # fmt: skip
        if self.top < 0:
            raise OptionError("--top", f"{self.top} is negative")


@dataclass
class CheckResult:
    deployment: dict[str, Any]
    log: dict[str, Any]
    tokenization: TokenizationCheck
    coverage: CoverageCheck | None
    quality: QualityCheck | None
    period: str
    periods: list[Period]
    drift: Drift | None
    findings: list[Finding]
    skipped: dict[str, str] = field(default_factory=dict)  # check -> why it did not run
    periods_too_small: list[str] = field(default_factory=list)  # periods left out of drift (too few requests)
    add_file: str | None = None  # the prompts to add, and how many
    added: int = 0

    @property
    def failed(self) -> bool:
        return any(f.mark == "fail" for f in self.findings)


def _made_by_us(out_dir: Path) -> Path | None:
    """The outermost folder of out_dir that does not exist yet (this run makes it), or None."""
    created = out_dir.absolute()
    if created.exists():
        return None
    while not created.parent.exists() and created.parent != created.parent.parent:
        created = created.parent
    return created


def run_check(logs: Sequence[str], against: str | Path, out_dir: str | Path, options: ReadOptions = ReadOptions(),
              cfg: CheckConfig = CheckConfig(), progress: Callable[[str], None] = lambda _m: None) -> CheckResult:  # fmt: skip
    """Every check of the log against the deployment in `against`; writes OUT and returns the result.

    The log, check.json and add_to_training.csv are written into OUT/.staging first and replace the previous
    ones together once every check has run: a check that fails (an unreadable log, a teacher that does not
    load) leaves OUT as it was, and a folder it made is removed."""
    import shutil

    from anatomy.monitor.logdata import check_logs
    from anatomy.monitor.record import read_deployment

    out_dir = Path(out_dir)
    check_logs(logs)  # usage errors (exit 2) before any work
    dep = read_deployment(against)  # a wrong folder fails before any work
    made = _made_by_us(out_dir)
    staging = out_dir / STAGING
    try:
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed check
        staging.mkdir(parents=True)
        result, files = _check(logs, dep, out_dir, staging, options, cfg, progress)
        _commit(out_dir, files)
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _commit(out_dir: Path, files: dict[str, Path]) -> None:
    """Move the staged files (OUT-relative name -> staged path) into OUT together, check.json last (the commit
    point: it names the log); an earlier log's side table that the new log has none of goes with it."""
    import os

    from anatomy.corpus.traffic import traffic_path
    from anatomy.io import atomic_paths
    from anatomy.monitor.logdata import LOG_NAME

    names = sorted(files, key=lambda name: name == RESULT)
    (out_dir / RESULT).parent.mkdir(parents=True, exist_ok=True)
    with atomic_paths(*(out_dir / name for name in names)) as temps:
        for name, tmp in zip(names, temps, strict=True):
            os.replace(files[name], tmp)
    traffic = traffic_path(out_dir / LOG_NAME)
    if LOG_NAME in files and traffic.name not in files:
        traffic.unlink(missing_ok=True)


def _check(logs: Sequence[str], dep, out_dir: Path, staging: Path, options: ReadOptions, cfg: CheckConfig,
           progress: Callable[[str], None]) -> tuple[CheckResult, dict[str, Path]]:  # fmt: skip
    """The checks, with every output staged: (the result, OUT-relative name -> staged file)."""
    from anatomy.encoders.registry import load, load_tokenizer
    from anatomy.io import to_jsonable, write_json
    from anatomy.monitor import coverage, periods, quality, tokenization
    from anatomy.monitor.logdata import LOG_NAME, ingest_log, log_files, read_log

    progress(f"deployment: {dep.kind} {dep.folder} (context {dep.context}, tokenizer {dep.tokenizer})")
    corpus = ingest_log(logs, staging, options)
    data = read_log(corpus)
    files: dict[str, Path] = {}
    if corpus.parent == staging:  # an ingested log: it moves into OUT with the results
        files = {path.name: path for path in log_files(corpus) if path.exists()}
        data.corpus = out_dir / LOG_NAME
    progress(f"log: {len(data.prompts):,} distinct prompts, {data.n_requests:,} requests")
    skipped: dict[str, str] = {}
    teacher = functools.cache(lambda: load(str(dep.teacher), device=cfg.device, context_length=dep.context))

    train: list[str] = []
    train_pooled = None
    if dep.teacher:
        progress("training embeddings")
        train, train_pooled = coverage.train_embeddings(dep, teacher, out_dir / "cache")
    elif dep.corpus is not None:
        from anatomy.distill.data import load_prompts

        train = load_prompts(dep.corpus)[0]
    progress("tokenization")
    specialised, vocab = None, None
    if dep.vocab is not None:
        from anatomy.vocab.store import load as load_vocab
        from anatomy.vocab.store import specialise

        vocab = load_vocab(dep.vocab)
        specialised = specialise(vocab)
    base = load_tokenizer(dep.tokenizer)
    tok_check, flags = tokenization.check_tokenization(
        data.prompts, data.requests, base, dep.context, train, specialised,
        str(dep.vocab) if dep.vocab else "full", known=tokenization.known_ids(base, train, vocab),
    )  # fmt: skip

    cov_check, distance = None, None
    if train_pooled is not None and dep.teacher:
        progress("coverage: teacher embeddings of the log")
        log_pooled = coverage.pooled_cached(
            teacher, dep.teacher, data.prompts, dep.context, out_dir / "cache"
        )
        cov_check, cov = coverage.check_coverage(
            data.prompts, data.requests, log_pooled, train, train_pooled, dep.teacher, cfg.backend
        )
        flags["beyond"], distance = cov["beyond"], cov["distance"]
    else:
        skipped["coverage"] = "the deployment names no teacher to embed prompts with"

    q_check = None
    if dep.student and dep.teacher:
        progress("quality: student against teacher on a sample")
        size = cfg.sample or dep.eval_size or DEFAULT_SAMPLE
        rows = quality.sample_rows(len(data.prompts), size, cfg.seed)
        student = load(dep.student, device=cfg.device)
        q_check = quality.check_quality(
            data.prompts, teacher(), student, dep.context, rows, ~flags["changed"], cfg.seed, dep.eval
        )
    else:
        skipped["quality"] = "the deployment names no student and teacher pair"

    found = [Finding("info", verdicts.SECTION, "check.deployment", note) for note in dep.notes]
    found += verdicts.tokenization_findings(tok_check)
    found += verdicts.coverage_findings(cov_check) if cov_check else []
    found += verdicts.quality_findings(q_check) if q_check else []
    by_period = periods.by_period(data.days, data.prompts, flags, distance, cfg.period)
    drift = periods.drift(by_period)
    small = periods.too_small(by_period)
    found += verdicts.drift_findings(drift, cfg.period, small)
    undated = data.undated_requests
    if data.days is None:
        skipped["periods"] = "the log has no timestamps (--time-column / --time-field)"
    elif undated:
        found.append(Finding("info", verdicts.SECTION, "check.periods.undated",
            f"{undated:,} of {data.n_requests:,} requests have no timestamp: outside the per-{cfg.period} and "
            "drift figures", undated))  # fmt: skip
    for name, why in skipped.items():
        found.append(Finding("info", verdicts.SECTION, f"check.{name}.skipped", f"{name} not checked: {why}"))

    uncovered = flags["changed"] | flags.get("beyond", np.zeros(len(data.prompts), dtype=bool))
    files[ADD_FILE] = staging / ADD_FILE
    added = _write_additions(files[ADD_FILE], data.prompts, data.requests, uncovered, cfg.top)
    result = CheckResult(
        deployment=dep.describe(),
        log={"corpus": str(data.corpus), "prompts": len(data.prompts), "requests": data.n_requests,
             "timestamps": data.days is not None, "undated_requests": undated},
        tokenization=tok_check, coverage=cov_check, quality=q_check, period=cfg.period, periods=by_period,
        drift=drift, findings=found, skipped=skipped, add_file=ADD_FILE, added=added,
        periods_too_small=[p.start for p in small],
    )  # fmt: skip
    settings = {"sample": cfg.sample, "seed": cfg.seed, "period": cfg.period, "backend": cfg.backend,
                "top": cfg.top}  # fmt: skip
    files[RESULT] = staging / "check.json"
    write_json(files[RESULT], {"schema_version": 1, "settings": settings, **to_jsonable(result)})
    return result, files


def _write_additions(
    path: Path, prompts: Sequence[str], requests: np.ndarray, mask: np.ndarray, top: int
) -> int:
    """`prompt,count` rows of the masked prompts, most requests first (ties by text), at most `top`."""
    from anatomy.io import write_text

    at = np.flatnonzero(mask)
    order = at[np.lexsort((at, -requests[at]))][:top]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prompt", "count"])
    writer.writerows([prompts[i], int(requests[i])] for i in order)
    write_text(path, buffer.getvalue())
    return len(order)


def read_findings(out_dir: str | Path) -> list[Finding]:
    """The verdicts a check wrote into out_dir (none when it holds no check): for the audit's findings."""
    from anatomy.io import read_json

    path = Path(out_dir) / RESULT
    if not path.exists():
        return []
    return [Finding(**f) for f in read_json(path).get("findings", [])]
