"""Period over period: the check's traffic shares per day or week, and how far the last period drifted.

Needs a log with timestamps (CORPUS.traffic.parquet, anatomy.corpus.traffic). Each distinct prompt carries
its flags from the checks (tokenizes differently, truncated, uses a new token, beyond the coverage threshold)
and its distance; a period's figures are request-weighted shares over the prompts sent in it (a pandas
group-by over (prompt, day) rows, never a loop over requests). Weeks start on Monday. Drift compares the first
and the last period with at least MIN_PERIOD_REQUESTS requests (anatomy.monitor.verdicts); smaller periods are
listed, never judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from anatomy.monitor.verdicts import MIN_PERIOD_REQUESTS

PERIODS = ("day", "week")
FLAGS = ("changed", "truncated", "new_token", "beyond")


@dataclass
class Period:
    start: str  # ISO date of the period's first day
    requests: int
    prompts: int
    changed: float
    truncated: float
    new_token: float
    beyond: float  # share of the period's requests beyond the coverage threshold
    distance_mean: float


@dataclass
class Drift:
    first: str
    last: str
    beyond_change: float  # last period's beyond share minus the first's
    distance_change: float


def by_period(days, prompts: Sequence[str], flags: dict[str, np.ndarray], distance: np.ndarray | None,
              period: str = "week") -> list[Period]:  # fmt: skip
    """Figures per period from the (prompt, day, count) table and per-prompt flags aligned with `prompts`."""
    import pandas as pd

    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}")
    if days is None or len(days) == 0:
        return []
    at = pd.Index(prompts).get_indexer(days["prompt"])
    keep = at >= 0  # days of prompts the log holds (always all of them; kept safe)
    day = pd.to_datetime(days["day"]).to_numpy()[keep]
    start = day.astype("datetime64[D]")
    if period == "week":  # Monday of the week: 1970-01-01 was a Thursday
        start = start - ((start.astype(np.int64) + 3) % 7).astype("timedelta64[D]")
    count = days["count"].to_numpy(dtype=np.int64)[keep]
    frame = pd.DataFrame({"start": start, "count": count, "prompt": at[keep]})
    for name in FLAGS:
        values = flags.get(name)
        frame[name] = count * (values[at[keep]] if values is not None else 0)
    frame["distance"] = count * (distance[at[keep]] if distance is not None else 0.0)
    grouped = frame.groupby("start", sort=True)
    sums = grouped[["count", *FLAGS, "distance"]].sum()
    distinct = grouped["prompt"].nunique()
    out = []
    for when, row in sums.iterrows():  # one row per period (a handful), not per request
        n = int(row["count"])
        shares = {f: float(row[f] / n) for f in FLAGS}
        out.append(Period(str(pd.Timestamp(when).date()), n, int(distinct[when]), distance_mean=float(row["distance"] / n),
                          **shares))  # fmt: skip
    return out


def too_small(periods: list[Period], min_requests: int = MIN_PERIOD_REQUESTS) -> list[Period]:
    """The periods with too few requests for their shares to be judged."""
    return [p for p in periods if p.requests < min_requests]


def drift(periods: list[Period], min_requests: int = MIN_PERIOD_REQUESTS) -> Drift | None:
    """From the first to the last period with at least `min_requests` requests; None with fewer than two."""
    judged = [p for p in periods if p.requests >= min_requests]
    if len(judged) < 2:
        return None
    first, last = judged[0], judged[-1]
    return Drift(
        first.start, last.start, last.beyond - first.beyond, last.distance_mean - first.distance_mean
    )
