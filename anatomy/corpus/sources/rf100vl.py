"""RF100-VL class names: a directory of COCO-format datasets, one COCO file, or the RF100 metadata list.

A dataset tree looks like ROOT/DATASET/{train,valid,test}/_annotations.coco.json; prompts are each file's
`categories[].name`, subset the dataset name. Roboflow exports put the dataset itself first as a category
with supercategory "none" (the other classes name it as their supercategory); that root is not a prompt and
is counted as skipped with that reason. The RF100 metadata JSON (rf100v1_labels_names.json) is a list of
{name, category, classes: {class name: count}}: prompts are the class names, subset the dataset name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from anatomy.corpus.records import PromptRecord, Skipped
from anatomy.corpus.sources import ReadOptions, SourceFile, load_json, structure_error, text_record
from anatomy.errors import InputError

ANNOTATIONS = "_annotations.coco.json"
SPLITS = {"train", "valid", "val", "test"}
ROOT_REASON = "dataset root category (supercategory 'none'), not a class"
_EXPECTED = (
    "a COCO annotations object with 'categories' or the RF100 metadata list of {name, category, classes}"
)


def read(src: SourceFile, options: ReadOptions) -> Iterator[PromptRecord | Skipped]:
    if not src.is_stdin and src.path.is_dir():
        files = sorted(src.path.rglob(ANNOTATIONS))
        if not files:
            raise InputError(
                f"{src.spec}: no {ANNOTATIONS} under this directory",
                "RF100-VL datasets ship one per split (DATASET/train/_annotations.coco.json); "
                "for the RF100 metadata list give the JSON file itself",
            )
        for path in files:
            file = SourceFile(str(path))
            ref_name = str(path.relative_to(src.path))
            data = load_json(file, options)
            if not (isinstance(data, dict) and isinstance(data.get("categories"), list)):
                raise structure_error(file, "a COCO annotations object with a 'categories' list", data)
            yield from _read_coco(file, data, dataset_name(path), ref_name)
        return
    data = load_json(src, options)
    if isinstance(data, dict) and isinstance(data.get("categories"), list):
        yield from _read_coco(src, data, dataset_name(src.path), src.name)
    elif isinstance(data, list) and data and all(isinstance(d, dict) and "classes" in d for d in data):
        yield from _read_metadata(src, data)
    else:
        raise structure_error(src, _EXPECTED, data)


def dataset_name(path: Path) -> str:
    """DATASET for DATASET/SPLIT/_annotations.coco.json (or DATASET/_annotations.coco.json)."""
    folder = path.resolve().parent
    return folder.parent.name if folder.name.lower() in SPLITS else folder.name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def _is_root(category: dict, supercategories: set[str], dataset: str) -> bool:
    if category.get("supercategory") != "none" or not isinstance(category.get("name"), str):
        return False
    name = category["name"]
    slug = _slug(name)
    # the root either heads the other classes or repeats the dataset's name (slugs may carry a suffix)
    return (
        name in supercategories
        or bool(slug)
        and (_slug(dataset).startswith(slug) or slug.startswith(_slug(dataset)))
    )


def _read_coco(src: SourceFile, data: dict, dataset: str, ref_name: str) -> Iterator[PromptRecord | Skipped]:
    categories = data["categories"]
    supercategories = {
        c["supercategory"]
        for c in categories
        if isinstance(c, dict) and isinstance(c.get("supercategory"), str)
    }
    for i, category in enumerate(categories):
        ref = f"{ref_name}:categories[{i}].name"
        if not isinstance(category, dict) or "name" not in category:
            yield Skipped("category without a name", ref, repr(category)[:80])
        elif _is_root(category, supercategories, dataset):
            yield Skipped(ROOT_REASON, ref, str(category["name"]))
        else:
            yield text_record(category["name"], dataset, ref)


def _read_metadata(src: SourceFile, data: list) -> Iterator[PromptRecord | Skipped]:
    for i, item in enumerate(data):
        where = f"{src.name}:[{i}]"
        name, classes = item.get("name"), item["classes"]
        if not isinstance(name, str) or not name.strip():
            yield Skipped("dataset without a name", where, repr(item)[:80])
            continue
        if not isinstance(classes, dict):
            yield Skipped("classes is not a {name: count} object", f"{where}.classes", repr(classes)[:80])
            continue
        domain = item.get("category")
        meta = {"domain": domain} if isinstance(domain, str) else {}
        for class_name in classes:
            yield text_record(class_name, name, f"{where}.classes[{class_name!r}]", meta)
