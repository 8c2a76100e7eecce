"""A prompt log as traffic: its distinct prompts, the requests of each, and (with timestamps) its days.

The log files are ingested with the text reader into a fresh OUT/.staging/log.parquet, moved to OUT/log.parquet
with the results once the check succeeds (a corpus like any other: one row per
distinct prompt and file, `count` its requests, CORPUS.traffic.parquet its days), or a corpus .parquet is
read in place. Everything after ingest is vectorised over distinct prompts (pandas group-bys), never a
Python loop over requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOG_NAME = "log.parquet"  # the ingested log inside OUT


@dataclass
class LogData:
    corpus: Path  # the log as a corpus
    prompts: list[str]  # distinct normalised prompts, sorted
    requests: np.ndarray  # int64 requests per prompt
    days: object = None  # DataFrame (prompt, day: datetime64, count) or None without timestamps

    @property
    def n_requests(self) -> int:
        return int(self.requests.sum())

    @property
    def undated_requests(self) -> int:
        """Requests without a timestamp (none when the log has no timestamps at all: then nothing is dated)."""
        if self.days is None:
            return 0
        return self.n_requests - int(self.days["count"].sum())  # type: ignore[index]


def check_logs(logs: Sequence[str]) -> None:
    """Usage errors of the LOG arguments (OptionError, exit 2), before any work."""
    from anatomy.errors import OptionError

    if not logs:
        raise OptionError(
            "LOG", "no log given", "name at least one prompt log (txt, csv, jsonl) or a corpus .parquet"
        )
    parquet = [p for p in logs if str(p).endswith(".parquet")]
    if parquet and len(logs) > 1:
        raise OptionError(
            "LOG", f"a corpus ({parquet[0]}) was given together with other logs", "give one or the other"
        )


def ingest_log(logs: Sequence[str], staging: Path, options) -> Path:
    """The log files as a corpus in STAGING/log.parquet (a fresh folder: never merged into an earlier log), or
    a given corpus .parquet, read in place."""
    check_logs(logs)
    if str(logs[0]).endswith(".parquet"):
        return Path(logs[0])
    from anatomy.corpus import ingest

    corpus = staging / LOG_NAME
    ingest("text", list(logs), corpus, options)
    return corpus


def log_files(corpus: Path) -> list[Path]:
    """The files of a log corpus: the corpus, its manifest and (with timestamps) its traffic side table."""
    from anatomy.corpus.corpus import manifest_path
    from anatomy.corpus.traffic import traffic_path

    return [corpus, manifest_path(corpus), traffic_path(corpus)]


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
