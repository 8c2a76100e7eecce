"""Ingest everything in ../shared/data and check the counts against the upstream facts in its README.

The union figure is defined as: distinct normalised prompts (CLIP cleaning, so case-folded) over LVIS v1
category names (without synonyms), the RefCOCO / RefCOCO+ / RefCOCOg val/test CSVs, the SA-Co VEval file
(categories, video-NP pairs and annotations), the COCO 80 class texts and the RF100 metadata class names
(the RF100-VL stand-in); then the same with the V3Det vocabulary added. The README says about 101,900 and
about 114,100; we measured 101,934 and 114,115 and pin those with a small tolerance for normaliser drift.
"""

from __future__ import annotations

import json

import pytest

from anatomy.corpus import ingest, load_corpus
from anatomy.corpus.sources import ReadOptions, detect_source

pytestmark = pytest.mark.slow  # about 10 s of CPU on the whole shared corpus

REFCOCO_FAMILIES = {  # dataset: (rows in its val/test CSVs, distinct prompts)
    "refcoco": (21_586, 14_489),
    "refcoco+": (21_373, 15_879),
    "refcocog": (24_034, 22_032),
}


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory):
    """One corpus from every shared input, and the per-file reports."""
    out = tmp_path_factory.mktemp("real") / "corpus.parquet"
    d = shared_data
    plan = [
        ("lvis", [d / "lvis" / "lvis_v1_categories.json"], ReadOptions(synonyms=True)),
        ("refcoco", sorted((d / "refcoco").glob("*.csv")), ReadOptions()),
        ("saco", [d / "saco" / "toy_saco_veval_sav_test_gt.json"], ReadOptions()),
        ("rf100vl", [d / "rf100vl" / "rf100v1_labels_names.json"], ReadOptions()),
        ("text", [d / "coco" / "yoloworld_coco_class_texts.json", d / "lvis" / "yoloworld_lvis_v1_class_texts.json"], ReadOptions()),
        ("text", [d / "v3det" / "category_name_13204_v3det_2023_v1.txt"], ReadOptions()),
    ]  # fmt: skip
    files = {}
    for source, paths, options in plan:
        report = ingest(source, [str(p) for p in paths], out, options)
        files.update({f.input.rsplit("/", 1)[-1]: f for f in report.files})
    return load_corpus(out), files


def distinct(frame, mask) -> set[str]:
    return set(frame.loc[mask, "prompt"])


def test_every_file_adds_up(built):
    _, files = built
    for name, f in files.items():
        assert f.read == f.kept + f.merged + f.skipped, name
        assert f.skipped == 0, (name, f.skips)  # the shared data is clean


def test_lvis_names_and_synonyms(built):
    frame, files = built
    lvis = frame[frame["source"] == "lvis"]
    assert files["lvis_v1_categories.json"].read == 1_203 + 1_825
    assert (lvis["subset"] == "name").sum() == 1_203
    assert (lvis["subset"] == "synonym").sum() == 1_825  # LVIS synonyms are distinct within the vocabulary
    assert set(json.loads(m)["frequency"] for m in lvis["meta"]) == {"r", "c", "f"}
    assert "aerosol can" in set(lvis["prompt"])


def test_lvis_official_layout_reads_like_the_bare_list(built, shared_data, tmp_path):
    cats = json.loads((shared_data / "lvis" / "lvis_v1_categories.json").read_text())
    official = tmp_path / "lvis_v1_val.json"
    official.write_text(json.dumps({"info": {}, "images": [], "annotations": [], "categories": cats}))
    frame = load_corpus(ingest("lvis", [str(official)], tmp_path / "c.parquet").corpus)
    assert set(frame["prompt"]) == set(built[0].query("source == 'lvis' and subset == 'name'")["prompt"])
    assert detect_source(official) == "lvis"


def test_saco_phrases(built):
    frame, files = built
    f = files["toy_saco_veval_sav_test_gt.json"]
    assert f.read == 51_248 + 8 + 33  # categories, video_np_pairs, annotations
    assert f.kept == 51_155  # the 51,248 distinct phrases fold to 51,155 once lower-cased
    assert set(frame.loc[frame["source"] == "saco", "subset"]) == {"SA-Co/VEval SA-V Test"}


def test_refcoco_rows_per_family_and_file(built, shared_data):
    frame, files = built
    for dataset, (rows, unique) in REFCOCO_FAMILIES.items():
        in_family = frame["subset"].str.startswith(dataset + "(")
        assert sum(f.read for n, f in files.items() if n.startswith(dataset + "_")) == rows, dataset
        assert len(distinct(frame, in_family & (frame["source"] == "refcoco"))) == unique, dataset
    for path in (shared_data / "refcoco").glob("*.csv"):
        lines = len(path.read_text(encoding="utf-8").rstrip("\n").split("\n")) - 1  # less the header
        assert files[path.name].read == lines, path.name
    assert "refcocog(google)/val" in set(frame["subset"]) and "refcoco+(unc)/testB" in set(frame["subset"])


def test_rf100_coco_and_v3det(built):
    frame, files = built
    assert files["rf100v1_labels_names.json"].read == 817
    rf = frame[frame["source"] == "rf100vl"]
    assert rf["subset"].nunique() == 100
    assert rf["prompt"].nunique() == 710  # the README's 724 unique class names, 710 once case-folded
    assert files["yoloworld_coco_class_texts.json"].kept == 80
    assert files["yoloworld_lvis_v1_class_texts.json"].read == 1_983  # 1,203 names and their synonyms
    assert files["category_name_13204_v3det_2023_v1.txt"].read == 13_204
    assert files["category_name_13204_v3det_2023_v1.txt"].kept == 13_159  # case-insensitively unique


def test_union_matches_the_readme(built):
    frame, _ = built
    source, subset = frame["source"], frame["subset"]
    lvis_names = (source == "lvis") & (subset == "name")
    coco = (source == "text") & (subset == "yoloworld_coco_class_texts")
    v3det = (source == "text") & subset.str.startswith("category_name_13204")
    four_families = lvis_names | source.isin(["refcoco", "saco", "rf100vl"]) | coco
    union = distinct(frame, four_families)
    assert abs(len(union) - 101_934) <= 50  # README: about 101,900
    assert abs(len(union | distinct(frame, v3det)) - 114_115) <= 50  # README: about 114,100
