"""LVIS v1 categories: the official annotation JSON (`categories` beside `images`/`annotations`) or a bare list.

Prompt = `name` with underscores as spaces (subset "name"); with --synonyms each synonym is its own prompt
(subset "synonym"). The frequency class (r = rare, c = common, f = frequent) is kept as metadata.
"""

from __future__ import annotations

import codecs
import json
import mmap
import re
from collections.abc import Iterator

from anatomy.corpus.records import PromptRecord, Skipped
from anatomy.corpus.sources import ReadOptions, SourceFile, load_json, structure_error, text_record

_EXPECTED = (
    "LVIS categories: an object with 'categories' (lvis_v1_*.json) or a list of {name, synonyms, frequency}"
)
# lvis_v1_train.json is over 1 GB, nearly all images and annotations; parsing it whole takes many GB of
# memory. Above this size only the `categories` value (about 1 MB) is located and parsed.
LARGE_FILE_BYTES = 64 << 20
_CATEGORIES_KEY = re.compile(rb'(?<!\\)"categories"\s*:\s*')


def read(src: SourceFile, options: ReadOptions) -> Iterator[PromptRecord | Skipped]:
    data = _categories_only(src, options)
    if data is None:
        data = load_json(src, options)
    if isinstance(data, dict):
        if not isinstance(data.get("categories"), list):
            raise structure_error(src, _EXPECTED, data)
        categories, where = data["categories"], "categories"
    elif isinstance(data, list):
        categories, where = data, ""
    else:
        raise structure_error(src, _EXPECTED, data)
    if categories and not any(isinstance(c, dict) and "name" in c for c in categories):
        raise structure_error(
            src,
            _EXPECTED,
            categories,
            "a list of class-name lists (YOLO-World texts) reads with `anatomy ingest text`",
        )
    for i, category in enumerate(categories):
        ref = f"{src.name}:{where}[{i}]"
        if not isinstance(category, dict) or "name" not in category:
            yield Skipped("category without a name", ref, repr(category)[:80])
            continue
        frequency = category.get("frequency")
        meta = {"frequency": str(frequency)} if frequency is not None else {}
        yield _underscored(category["name"], "name", f"{ref}.name", meta)
        if not options.synonyms:
            continue
        synonyms = category.get("synonyms", [])
        if not isinstance(synonyms, list):
            yield Skipped("synonyms is not a list", f"{ref}.synonyms", repr(synonyms)[:80])
            continue
        for j, synonym in enumerate(synonyms):
            yield _underscored(synonym, "synonym", f"{ref}.synonyms[{j}]", meta)


def _underscored(value: object, subset: str, ref: str, meta: dict) -> PromptRecord | Skipped:
    # LVIS spells names as identifiers ("aerosol_can"); the prompt a user types has spaces.
    return text_record(value.replace("_", " ") if isinstance(value, str) else value, subset, ref, meta)


def _categories_only(src: SourceFile, options: ReadOptions) -> dict | None:
    """{"categories": [...]} parsed alone from a large UTF-8 file, or None to parse the whole file."""
    if src.is_stdin or options.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        return None
    try:
        if src.path.stat().st_size < LARGE_FILE_BYTES:
            return None
        with open(src.path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            for match in _CATEGORIES_KEY.finditer(view):
                value = _decode_value_at(view, match.end())
                if isinstance(value, list) and any(isinstance(c, dict) and "name" in c for c in value):
                    return {"categories": value}
    except (OSError, ValueError):
        return None  # let the full parse report what is wrong, with its line and column
    return None


def _decode_value_at(view: mmap.mmap, start: int, window: int = 4 << 20):
    """The JSON value starting at byte `start`, decoding a growing window until it parses."""
    while True:
        chunk = view[start : start + window]
        text = codecs.getincrementaldecoder("utf-8")().decode(chunk)  # a split character waits, not fails
        try:
            return json.JSONDecoder().raw_decode(text)[0]
        except json.JSONDecodeError:
            if start + window >= len(view):
                return None
            window *= 4
