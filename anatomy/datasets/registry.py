"""One entry per dataset file the SAM3-LiteText study took prompts from, with its official location.

URLs and hub ids are the ones each dataset's own page or repository publishes (cited in data/README.md).
No publisher states a sha256 for these files, so none is written here: the first verified download records
its hash in `sources.lock.json` beside the data, and every later fetch must match it.
"""

from __future__ import annotations

from dataclasses import dataclass

from anatomy.errors import AnatomyError

HTTP, HUB, ROBOFLOW = "http", "hub", "roboflow"


@dataclass(frozen=True)
class Source:
    name: str  # what `anatomy data fetch NAME` takes
    title: str
    kind: str  # http | hub | roboflow
    dest: str  # folder under --out that holds what this source contributes
    reader: str  # `anatomy ingest READER`
    inputs: tuple[str, ...]  # globs under --out: what the reader is given (a folder for rf100vl)
    license: str
    homepage: str
    expected: str  # what it contributes, as published
    url: str = ""  # http: the file; roboflow: the API root
    members: tuple[str, ...] = ()  # archive members to unpack (globs); empty: not an archive
    keep_archive: bool = True
    repo_id: str = ""  # hub: dataset repo
    patterns: tuple[str, ...] = ()  # hub: files to take from the snapshot (globs)
    workspace: str = ""  # roboflow workspace
    size: int | None = None  # bytes, where the publisher states it
    sha256: str | None = None  # where the publisher states it
    needs: str = ""  # what access the source needs, said plainly ("" = open download)
    terms: str = ""  # the licence in a few words, for `anatomy data list`

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_LVIS_LICENSE = "CC BY 4.0 (LVIS annotations); images are COCO's (Flickr terms), not fetched"
_REFER_LICENSE = "research use (refer: Yu et al. 2016, Mao et al. 2016); images are COCO's, not fetched"
_REFER = "https://github.com/lichengunc/refer"
_SACO_GATE = (
    "Hugging Face login and the dataset's accepted terms (gated): accept them on the dataset page, then "
    "`huggingface-cli login` or HF_TOKEN=..."
)

SOURCES: tuple[Source, ...] = (
    Source(
        "lvis-v1-train",
        "LVIS v1 train annotations",
        HTTP,
        "lvis",
        "lvis",
        ("lvis/lvis_v1_train.json",),
        _LVIS_LICENSE,
        "https://www.lvisdataset.org/dataset",
        "1,203 category names (the same list as val; merged on ingest)",
        url="https://dl.fbaipublicfiles.com/LVIS/lvis_v1_train.json.zip",
        members=("lvis_v1_train.json",),
        terms="CC BY 4.0",
    ),
    Source(
        "lvis-v1-val",
        "LVIS v1 val annotations",
        HTTP,
        "lvis",
        "lvis",
        ("lvis/lvis_v1_val.json",),
        _LVIS_LICENSE,
        "https://www.lvisdataset.org/dataset",
        "1,203 category names",
        url="https://dl.fbaipublicfiles.com/LVIS/lvis_v1_val.json.zip",
        members=("lvis_v1_val.json",),
        terms="CC BY 4.0",
    ),
    Source(
        "refcoco",
        "RefCOCO (refer release: refs(unc).p, refs(google).p)",
        HTTP,
        "refcoco",
        "refcoco",
        ("refcoco/refcoco/refs(*).p",),
        _REFER_LICENSE,
        _REFER,
        "142,209 expressions for 50,000 objects (train/val/testA/testB)",
        url="http://bvisionweb1.cs.unc.edu/licheng/referit/data/refcoco.zip",
        members=("refcoco/refs(*).p",),
        terms="research use",
    ),
    Source(
        "refcoco+",
        "RefCOCO+ (refer release: refs(unc).p)",
        HTTP,
        "refcoco",
        "refcoco",
        ("refcoco/refcoco+/refs(*).p",),
        _REFER_LICENSE,
        _REFER,
        "141,564 expressions for 49,856 objects (train/val/testA/testB)",
        url="http://bvisionweb1.cs.unc.edu/licheng/referit/data/refcoco+.zip",
        members=("refcoco+/refs(*).p",),
        terms="research use",
    ),
    Source(
        "refcocog",
        "RefCOCOg (refer release: refs(umd).p, refs(google).p)",
        HTTP,
        "refcoco",
        "refcoco",
        ("refcoco/refcocog/refs(*).p",),
        _REFER_LICENSE,
        _REFER,
        "95,010 expressions for 49,822 objects (umd train/val/test; google train/val)",
        url="http://bvisionweb1.cs.unc.edu/licheng/referit/data/refcocog.zip",
        members=("refcocog/refs(*).p",),
        terms="research use",
    ),
    Source(
        "saco-gold",
        "SA-Co/Gold annotations (7 subsets x 3 annotators)",
        HUB,
        "saco/gold",
        "saco",
        ("saco/gold/*.json",),
        "Meta SA-Co terms (license: other, gated); see the dataset card",
        "https://huggingface.co/datasets/facebook/SACo-Gold",
        "168,202 image-noun-phrase pairs over 7 subsets (text_input per image)",
        repo_id="facebook/SACo-Gold",
        patterns=("*gold_*_test.json",),
        needs=_SACO_GATE,
        terms="Meta terms, gated",
    ),
    Source(
        "saco-silver",
        "SA-Co/Silver annotations (10 subsets)",
        HUB,
        "saco/silver",
        "saco",
        ("saco/silver/*.json",),
        "Meta SA-Co terms (license: other, gated); see the dataset card",
        "https://huggingface.co/datasets/facebook/SACo-Silver",
        "image-noun-phrase pairs over 10 domains (text_input per image)",
        repo_id="facebook/SACo-Silver",
        patterns=("*silver_*_test.json",),
        needs=_SACO_GATE,
        terms="Meta terms, gated",
    ),
    Source(
        "saco-veval",
        "SA-Co/VEval annotations (SA-V, YT-Temporal-1B, SmartGlasses; val and test)",
        HUB,
        "saco/veval",
        "saco",
        ("saco/veval/*.json",),
        "SA-V and YT-Temporal-1B parts CC BY-NC 4.0 (non-commercial), SmartGlasses CC BY 4.0; gated",
        "https://huggingface.co/datasets/facebook/SACo-VEval",
        "video-noun-phrase pairs; the shared global noun-phrase list in categories",
        repo_id="facebook/SACo-VEval",
        patterns=("annotation/saco_veval_*.json",),
        needs=_SACO_GATE,
        terms="CC BY-NC 4.0 (non-commercial), gated",
    ),
    Source(
        "rf100vl",
        "RF100-VL: 100 Roboflow datasets, COCO annotations per split",
        ROBOFLOW,
        "rf100vl",
        "rf100vl",
        ("rf100vl",),
        "Apache-2.0 (RF100-VL datasets); Roboflow Universe terms for the API",
        "https://github.com/roboflow/rf100-vl",
        "class names of 100 datasets (categories[].name in each _annotations.coco.json)",
        url="https://api.roboflow.com",
        workspace="rf100-vl",
        members=("*_annotations.coco.json",),
        keep_archive=False,
        needs="a free Roboflow API key: ROBOFLOW_API_KEY=... (https://app.roboflow.com/settings/api)",
        terms="Apache-2.0, API key",
    ),
)

BY_NAME = {s.name: s for s in SOURCES}

# The hand-gathered ../shared/data folder is laid out differently: (reader, glob) for what it holds.
SHARED_LAYOUT: tuple[tuple[str, str], ...] = (
    ("lvis", "lvis/lvis_v1_categories.json"),
    ("refcoco", "refcoco/*.csv"),
    ("saco", "saco/toy_saco_veval_sav_test_gt.json"),
    ("rf100vl", "rf100vl/rf100v1_labels_names.json"),
    ("text", "v3det/category_name_13204_v3det_2023_v1.txt"),
    ("text", "coco/yoloworld_coco_class_texts.json"),
)


class DataError(AnatomyError):
    """A dataset cannot be fetched, verified or unpacked as asked."""


def select(names: list[str] | None) -> list[Source]:
    """The named sources in registry order (all when none are named); an unknown name is an error."""
    if not names:
        return list(SOURCES)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise DataError(f"unknown dataset {', '.join(unknown)}", f"choose from: {', '.join(BY_NAME)}")
    return [s for s in SOURCES if s.name in names]
