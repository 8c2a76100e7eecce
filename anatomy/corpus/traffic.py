"""Traffic: how many requests each corpus row stands for, and (for timed logs) on which day.

A corpus has one row per distinct (source, subset, prompt); its `count` column is the row's requests (every
occurrence in a text log, or the sum of a `--count-column` in a CSV/JSONL export). Timestamps do not fit that
schema, so they live in a side table beside the corpus, CORPUS.traffic.parquet: one row per (source, subset,
prompt, day) with the requests of that day (`day` a date: the UTC day of the instant, an offset moving it
across midnight, a timestamp without one taken as UTC; `parse_day` gives the rules, epoch units included).
It is written under the corpus's lock in the same atomic commit as the corpus, and only inputs with
`--time-column` add to it, so a row's days sum to at most its count (exactly its count when every input was
timed). Weeks and other periods are cut from days when read (`periods`).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

TRAFFIC_COLUMNS = ("source", "subset", "prompt", "day", "count")
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_MS_EPOCH_ABOVE = 1e11  # epoch numbers from this on are milliseconds (1e11 s is the year 5138)
_AMBIGUOUS_BELOW = 1e8  # below this an epoch's unit cannot be told (1e8 s is 1973-03-03, 1e8 ms 1970-01-02)
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
    """The UTC day (days since 1970-01-01) of a timestamp, or None when it cannot be read unambiguously.

    - An ISO 8601 date or date-time ("2024-05-01", "2024-05-01T12:30:00Z", "2024-05-01 12:30:00-05:00"): the
      UTC day of that instant (an offset moves it across midnight); a date-time without an offset is UTC.
      Anything after the date that is not a time and offset ("2024-05-01 not a time") is unreadable.
    - A compact ISO date YYYYMMDD, as 8 digits or an integer from 19000101 to 21001231 that is a valid
      calendar date ("20240506"): that date. As an epoch it would be a day in 1970 in either unit.
    - An epoch number, by magnitude: milliseconds when |v| >= 1e11 (after 1973-03-03 or before
      1966-10-31), seconds when 1e8 <= |v| < 1e11 (1973-03-03 to the year 5138, or years 1 to 1966). Below 1e8
      the unit cannot be told (seconds would put it within about three years of 1970, milliseconds within a
      day) and both readings are implausible for a prompt log: it is read only when both give the same day
      (0 is 1970-01-01, -86400 is 1969-12-31), and is unreadable otherwise (86400000 is 1972-09-27 in
      seconds but 1970-01-02 in milliseconds).
    Days outside 0001-01-01..9999-12-31 are unreadable.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if _COMPACT_DATE.fullmatch(text):
            return _compact_day(int(text))
        if len(text) >= 10 and text[:4].isdecimal() and text[4] == "-":
            return _iso_day(text)
        try:
            value = float(text)
        except ValueError:
            return None
    if isinstance(value, int):
        compact = _compact_day(value)
        if compact is not None:
            return compact
        return _epoch_day(value, value // 86_400, value // 86_400_000)
    if isinstance(value, float) and math.isfinite(value):
        return _epoch_day(value, math.floor(value / 86_400), math.floor(value / 86_400_000))
    return None


_COMPACT_DATE = re.compile(r"[0-9]{8}")
_COMPACT_MIN, _COMPACT_MAX = 19000101, 21001231


def _in_range(day: int) -> int | None:
    return day if _DAY_MIN <= day <= _DAY_MAX else None


def _compact_day(number: int) -> int | None:
    """The day of a compact ISO date YYYYMMDD (19000101..21001231, a valid calendar date), else None."""
    if not _COMPACT_MIN <= number <= _COMPACT_MAX:
        return None
    try:
        date = _dt.date(number // 10_000, number // 100 % 100, number % 100)
    except ValueError:
        return None
    return date.toordinal() - _EPOCH_ORDINAL


def _iso_day(text: str) -> int | None:
    """The UTC day of an ISO 8601 date or date-time (naive is UTC), None when unreadable."""
    try:
        stamp = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    day = stamp.toordinal() - _EPOCH_ORDINAL
    offset = stamp.utcoffset()
    if offset:  # shift by the offset without datetime arithmetic (which overflows at the calendar's ends)
        seconds = stamp.hour * 3600 + stamp.minute * 60 + stamp.second - offset.total_seconds()
        day += math.floor(seconds / 86_400)
    return _in_range(day)


def _epoch_day(value: float, day_seconds: int, day_millis: int) -> int | None:
    """The day of an epoch number read by magnitude (parse_day), given its day in seconds and in milliseconds."""
    if abs(value) >= _MS_EPOCH_ABOVE:
        return _in_range(day_millis)
    if abs(value) >= _AMBIGUOUS_BELOW or day_seconds == day_millis:
        return _in_range(day_seconds)
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
