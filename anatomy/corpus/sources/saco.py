"""SA-Co annotation JSON (the SAM3 benchmark).

VEval files carry phrases as `categories[].name` (the global noun-phrase map), `video_np_pairs[].noun_phrase`
and `annotations[].noun_phrase`; Gold/Silver image files carry one per image as `images[].text_input` (their
`categories` is a placeholder, not a phrase list). Subset: `info.description`, else the file name.
"""

from __future__ import annotations

from collections.abc import Iterator

from anatomy.corpus.records import PromptRecord, Skipped
from anatomy.corpus.sources import ReadOptions, SourceFile, load_json, structure_error, text_record

_EXPECTED = (
    "SA-Co JSON: an object with 'images' carrying 'text_input' (Gold/Silver) or with "
    "'categories'/'video_np_pairs'/'annotations' carrying noun phrases (VEval)"
)
# (list key, field holding the phrase) read from VEval files, in this order
_VEVAL_FIELDS = (("categories", "name"), ("video_np_pairs", "noun_phrase"), ("annotations", "noun_phrase"))


def read(src: SourceFile, options: ReadOptions) -> Iterator[PromptRecord | Skipped]:
    data = load_json(src, options)
    if not isinstance(data, dict):
        raise structure_error(src, _EXPECTED, data)
    subset = _subset(src, data)
    images = data.get("images")
    if isinstance(images, list) and any(isinstance(i, dict) and "text_input" in i for i in images):
        yield from _field_records(src, images, "images", "text_input", subset)
        return
    lists = [(key, name) for key, name in _VEVAL_FIELDS if isinstance(data.get(key), list)]
    if not lists:
        raise structure_error(src, _EXPECTED, data)
    for key, name in lists:
        yield from _field_records(src, data[key], key, name, subset)


def _field_records(src: SourceFile, items: list, key: str, name: str, subset: str):
    for i, item in enumerate(items):
        ref = f"{src.name}:{key}[{i}].{name}"
        if not isinstance(item, dict) or name not in item:
            yield Skipped(f"{key} entry without '{name}'", ref, repr(item)[:80])
        else:
            yield text_record(item[name], subset, ref)


def _subset(src: SourceFile, data: dict) -> str:
    info = data.get("info")
    description = info.get("description") if isinstance(info, dict) else None
    if isinstance(description, str) and description.strip():
        return description.strip()
    return src.name.removesuffix(".json")
