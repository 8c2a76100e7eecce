"""A prompt log as traffic: its distinct prompts, the requests of each, and (with timestamps) its days.

The log files are ingested with the text reader into OUT/log.parquet (a corpus like any other: one row per
distinct prompt and file, `count` its requests, CORPUS.traffic.parquet its days), or a corpus .parquet is
read in place. Everything after ingest is vectorised over distinct prompts (pandas group-bys), never a
Python loop over requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anatomy.errors import InputError


@dataclass
class LogData:
    corpus: Path  # the log as a corpus
    prompts: list[str]  # distinct normalised prompts, sorted
    requests: np.ndarray  # int64 requests per prompt
    days: object = None  # DataFrame (prompt, day: datetime64, count) or None without timestamps

    @property
    def n_requests(self) -> int:
        return int(self.requests.sum())


def ingest_log(logs: Sequence[str], out_dir: Path, options) -> Path:
    """The log files as a corpus in OUT/log.parquet (rebuilt on every check), or a given corpus .parquet."""
    if not logs:
        raise InputError(
            "no log given", "name at least one prompt log (txt, csv, jsonl) or a corpus .parquet"
        )
    parquet = [p for p in logs if str(p).endswith(".parquet")]
    if parquet:
        if len(logs) > 1:
            raise InputError(
                f"a corpus ({parquet[0]}) was given together with other logs", "give one or the other"
            )
        return Path(parquet[0])
    from anatomy.corpus import ingest
    from anatomy.corpus.corpus import manifest_path
    from anatomy.corpus.traffic import traffic_path

    corpus = out_dir / "log.parquet"
    for stale in (corpus, manifest_path(corpus), traffic_path(corpus)):
        stale.unlink(missing_ok=True)
    ingest("text", list(logs), corpus, options)
    return corpus


def read_log(corpus: Path) -> LogData:
    """Requests per distinct prompt (summed over the rows of every file and subset) and requests per day."""
    from anatomy.corpus import load_corpus
    from anatomy.corpus.traffic import read_traffic

    frame = load_corpus(corpus)
    per_prompt = frame.groupby("prompt", sort=True)["count"].sum()
    days = read_traffic(corpus)
    if days is not None:
        days = days.groupby(["prompt", "day"], sort=True, as_index=False)["count"].sum()
    return LogData(corpus, per_prompt.index.tolist(), per_prompt.to_numpy(dtype=np.int64), days)
