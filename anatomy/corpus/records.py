"""What a source reader yields: a prompt with its origin, or a skipped record with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field

SURROGATE_REASON = "not valid Unicode (lone surrogate)"  # text no file can hold (JSON's "\\udc80" alone)


@dataclass(frozen=True, slots=True)
class PromptRecord:
    """One raw prompt as found in a file. `ref` says where: "file.json:categories[12].name", "file.txt:41".

    `count` is how many requests the record stands for (a `prompt,count` export; 1 for a plain line) and `day`
    the day it was seen (days since 1970-01-01, UTC) when the log has timestamps (anatomy.corpus.traffic).
    """

    raw: str
    subset: str
    ref: str
    meta: dict[str, str] = field(default_factory=dict)
    count: int = 1
    day: int | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record that was read but is not a prompt (empty, not a string, a dataset root category, ...)."""

    reason: str
    ref: str
    example: str = ""
