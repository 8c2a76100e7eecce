"""Traffic: how many requests each corpus row stands for, and (for timed logs) on which day.

A corpus has one row per distinct (source, subset, prompt); its `count` column is the row's requests (every
occurrence in a text log, or the sum of a `--count-column` in a CSV/JSONL export). Timestamps do not fit that
schema, so they live in a side table beside the corpus, CORPUS.traffic.parquet: one row per (source, subset,
prompt, day) with the requests of that day (`day` a date, UTC as written: an ISO timestamp's date part, an
epoch number's UTC day). It is written under the corpus's lock in the same atomic commit as the corpus, and
only inputs with `--time-column` add to it, so a row's days sum to at most its count (exactly its count when
every input was timed). Weeks and other periods are cut from days when read (`periods`).
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

TRAFFIC_COLUMNS = ("source", "subset", "prompt", "day", "count")
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_MS_EPOCH_ABOVE = 1e11  # epoch numbers above this are milliseconds (1e11 s is the year 5138)
WEIGHTS = ("distinct", "traffic")
# The largest count one record may claim: a trillion requests. Larger is a hostile or broken export (and sums
# of such counts would overflow the corpus's int64 column), so it is a counted skip like any unreadable count.
MAX_COUNT = 10**12
# Days a timestamp may fall on: 0001-01-01 to 9999-12-31 (the calendar datetime64[D] and ISO dates cover).
_DAY_MIN, _DAY_MAX = _dt.date.min.toordinal() - _EPOCH_ORDINAL, _dt.date.max.toordinal() - _EPOCH_ORDINAL


def traffic_path(corpus: str | Path) -> Path:
    corpus = Path(corpus)
    return corpus.with_name(corpus.stem + ".traffic.parquet")


def parse_count(value: object) -> int | None:
    """A whole count from 1 to MAX_COUNT from an int, an integral float or a digit string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if value.isdecimal():  # not isdigit: int() refuses superscripts ("²"), which isdigit accepts
            value = value.lstrip("0") or "0"
            if len(value) > len(str(MAX_COUNT)):  # too large (and int() refuses over 4,300 digits)
                return None
            value = int(value)
        else:
            try:
                value = float(value)
            except ValueError:
                return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    if isinstance(value, int) and 1 <= value <= MAX_COUNT:
        return value
    return None


def parse_day(value: object) -> int | None:
    """Days since 1970-01-01 of an ISO date/timestamp ("2024-05-01", "2024-05-01T12:30:00Z") or an epoch
    number in seconds (milliseconds above 1e11); None when it is neither."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 10 and text[4] == "-":
            try:
                return _dt.date.fromisoformat(text[:10]).toordinal() - _EPOCH_ORDINAL
            except ValueError:
                return None
        try:
            value = float(text)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        seconds = value / 1000 if abs(value) > _MS_EPOCH_ABOVE else value
        day = int(seconds // 86400)
        return day if _DAY_MIN <= day <= _DAY_MAX else None
    return None


def read_traffic(corpus: str | Path):
    """The side table as a DataFrame (source, subset, prompt, day: datetime64[D], count), or None if absent."""
    from anatomy.io import read_parquet

    path = traffic_path(corpus)
    if not path.exists():
        return None
    frame = read_parquet(path).to_pandas()
    frame["day"] = frame["day"].astype("datetime64[s]")
    return frame


def traffic_table(days: dict[tuple[int, int], int], keys):
    """Arrow table of the side table from {(row, day): count} and the rows' (source, subset, prompt) columns."""
    import numpy as np
    import pyarrow as pa

    if not days:
        return None
    pairs = np.fromiter((v for k in days for v in k), np.int64, count=2 * len(days)).reshape(-1, 2)
    counts = np.fromiter(days.values(), np.int64, count=len(days))
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    rows, day, counts = pairs[order, 0], pairs[order, 1], counts[order]
    source, subset, prompt = keys
    return pa.table(
        {
            "source": source.take(pa.array(rows)),
            "subset": subset.take(pa.array(rows)),
            "prompt": prompt.take(pa.array(rows)),
            "day": pa.array(day.astype("int32"), pa.int32()).cast(pa.date32()),
            "count": pa.array(counts, pa.int64()),
        }
    )


def row_days(path: Path, corpus_table) -> dict[tuple[int, int], int]:
    """{(row, day): count} of an existing side table, rows matched to the corpus by (source, subset, prompt)."""
    import numpy as np
    import pandas as pd

    from anatomy.io import read_parquet

    if corpus_table is None or not path.exists():
        return {}
    frame = read_parquet(path).to_pandas()
    key = corpus_table.select(["source", "subset", "prompt"]).to_pandas()
    key["row"] = np.arange(len(key))
    merged = frame.merge(key, on=["source", "subset", "prompt"], how="inner")
    day = (pd.to_datetime(merged["day"]).values.astype("datetime64[D]").astype(np.int64)).tolist()
    return {(int(r), int(d)): int(c) for r, d, c in zip(merged["row"], day, merged["count"], strict=True)}


def weights(frame, weight: str) -> np.ndarray:
    """Per-row weights of a corpus frame: 1 per row ("distinct") or its count ("traffic")."""
    import numpy as np

    if weight not in WEIGHTS:
        raise ValueError(f"weight must be one of {WEIGHTS}, not {weight!r}")
    if weight == "distinct":
        return np.ones(len(frame), dtype=np.int64)
    return frame["count"].to_numpy(dtype=np.int64)


def has_repeats(counts) -> bool:
    """Whether traffic weighting says anything distinct weighting does not (some prompt was seen twice)."""
    import numpy as np

    counts = np.asarray(counts)
    return bool(counts.size and counts.max() > 1)
