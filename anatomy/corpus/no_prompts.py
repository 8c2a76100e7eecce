"""An ingest that yields no prompt at all is refused, naming the real cause: no records, or every record
skipped (the most frequent reason, its count and first record, and what to do about it)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from anatomy.errors import InputError

_SOURCE_HINT = "check the source type (`anatomy ingest --help`) and, for csv/jsonl, --column/--field"
_SKIP_HINTS = {  # why every record was skipped -> what to do
    "count is not a positive whole number": "a count must be a whole number from 1 to 10^12: check that "
    "--count-column/--count-field names the count column",
    "empty prompt": "the prompts are blank: check that --column/--field names the prompt column",
}


def refuse_empty(reports: list, inputs: Sequence[str]) -> list:
    """The reports of inputs not ingested before; InputError when they hold no prompt at all, naming the
    real cause: no records, or every record skipped (the most frequent reason, its count and first record)."""
    fresh = [r for r in reports if not r.already_ingested]
    if not fresh or any(r.kept + r.merged for r in fresh):
        return fresh
    where = ", ".join(inputs)
    reasons: Counter[str] = Counter()
    first: dict[str, str] = {}
    for r in fresh:
        for reason, entry in r.skips.items():
            reasons[reason] += entry["count"]
            first.setdefault(reason, entry["examples"][0] if entry["examples"] else "")
    if not reasons:
        raise InputError(f"no prompts found in {where}: it holds no records (an empty file?)", _SOURCE_HINT)
    reason, n = reasons.most_common(1)[0]
    hint = _SKIP_HINTS.get(reason)
    if hint is None and reason.startswith(("no field", "not a string")):
        hint = "check that --field/--column names the prompt (and count) field"
    raise InputError(
        f"no prompts found in {where}: {sum(r.skipped for r in fresh):,} records skipped, {n:,} for "
        f"'{reason}' (the first at {first[reason]})",
        hint or _SOURCE_HINT,
    )
