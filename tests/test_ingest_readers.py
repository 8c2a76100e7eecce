"""Each source reader on small files written here: what becomes a prompt, its subset, ref and metadata."""

from __future__ import annotations

import json
import pickle

import pytest

from anatomy.corpus import ingest, load_corpus
from anatomy.corpus.records import PromptRecord, Skipped
from anatomy.corpus.sources import ReadOptions, SourceFile, get_reader
from anatomy.corpus.sources.rf100vl import ROOT_REASON
from anatomy.errors import InputError


def records(source: str, path, **options) -> list:
    return list(get_reader(source)(SourceFile(str(path)), ReadOptions(**options)))


def prompts(items) -> list[tuple[str, str]]:
    return [(r.raw, r.subset) for r in items if isinstance(r, PromptRecord)]


def write_json(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


LVIS_CATEGORIES = [
    {
        "id": 1,
        "name": "aerosol_can",
        "synonyms": ["aerosol_can", "spray_can"],
        "frequency": "c",
        "def": "...",
    },
    {"id": 2, "name": "air_conditioner", "synonyms": ["air_conditioner"], "frequency": "f"},
    {"id": 3, "name": "alligator", "synonyms": ["alligator", "gator"], "frequency": "r"},
]


# ------------------------------------------------------------------------------------------------- lvis


def test_lvis_official_file_and_bare_list_read_the_same(tmp_path):
    official = write_json(
        tmp_path / "lvis_v1_val.json", {"images": [], "annotations": [], "categories": LVIS_CATEGORIES}
    )
    bare = write_json(tmp_path / "lvis_v1_categories.json", LVIS_CATEGORIES)
    expected = [("aerosol can", "name"), ("air conditioner", "name"), ("alligator", "name")]
    assert prompts(records("lvis", official)) == expected
    assert prompts(records("lvis", bare)) == expected
    assert records("lvis", official)[0].ref == "lvis_v1_val.json:categories[0].name"
    assert records("lvis", bare)[2].meta == {"frequency": "r"}


def test_lvis_synonyms_are_their_own_prompts_in_subset_synonym(tmp_path):
    path = write_json(tmp_path / "cats.json", LVIS_CATEGORIES)
    got = prompts(records("lvis", path, synonyms=True))
    assert got == [
        ("aerosol can", "name"),
        ("aerosol can", "synonym"),
        ("spray can", "synonym"),
        ("air conditioner", "name"),
        ("air conditioner", "synonym"),
        ("alligator", "name"),
        ("alligator", "synonym"),
        ("gator", "synonym"),
    ]


def test_lvis_frequency_reaches_the_corpus_meta(tmp_path):
    path = write_json(tmp_path / "cats.json", LVIS_CATEGORIES)
    frame = load_corpus(ingest("lvis", [str(path)], tmp_path / "c.parquet").corpus)
    meta = dict(zip(frame["prompt"], frame["meta"], strict=True))
    assert json.loads(meta["alligator"]) == {"frequency": "r"}


def test_lvis_large_official_file_parses_only_its_categories(tmp_path, monkeypatch):
    import mmap

    from anatomy.corpus.sources import lvis

    images = [{"id": i, "file_name": f'x\\"categories\\": [{i}]', "neg_category_ids": [1]} for i in range(50)]
    payload = {
        "info": {"categories": "not these"},
        "images": images,
        "annotations": [],
        "categories": LVIS_CATEGORIES,
    }
    path = tmp_path / "lvis_v1_train.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    expected = records("lvis", path, synonyms=True)
    monkeypatch.setattr(lvis, "LARGE_FILE_BYTES", 0)
    assert lvis._categories_only(SourceFile(str(path)), ReadOptions()) == {"categories": LVIS_CATEGORIES}
    assert records("lvis", path, synonyms=True) == expected
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        start = view.find(b'"categories": [{')
        assert lvis._decode_value_at(view, start + len(b'"categories": '), window=8) == LVIS_CATEGORIES
    path.write_text(json.dumps(payload)[:-30], encoding="utf-8")  # truncated: the full parse reports it
    with pytest.raises(InputError, match="invalid JSON at line 1"):
        records("lvis", path)


def test_lvis_bad_categories_are_counted_skips(tmp_path):
    path = write_json(tmp_path / "cats.json", [{"name": "cat"}, {"id": 7}, {"name": 12}, "dog"])
    got = records("lvis", path)
    assert [type(r).__name__ for r in got] == ["PromptRecord", "Skipped", "Skipped", "Skipped"]
    assert got[1].reason == "category without a name" and got[2].reason == "not a string (int)"


@pytest.mark.parametrize(
    "payload, found",
    [
        ({"images": []}, "keys ['images']"),
        ([["aerosol can", "spray can"]], "a list of 1 (list)"),
        (3, "a int"),
    ],
)
def test_lvis_unexpected_structure_names_expected_and_found(tmp_path, payload, found):
    path = write_json(tmp_path / "x.json", payload)
    with pytest.raises(InputError) as info:
        records("lvis", path)
    assert "expected LVIS categories" in info.value.message and found in info.value.message


# ---------------------------------------------------------------------------------------------- refcoco


REFS = [
    {"ref_id": 0, "split": "train", "image_id": 1, "category_id": 1,
     "sentences": [{"sent": "man on left", "raw": "Man on left", "tokens": [], "sent_id": 0},
                   {"sent": "left guy", "raw": "left guy", "tokens": [], "sent_id": 1}]},
    {"ref_id": 1, "split": "testA", "image_id": 2, "category_id": 1,
     "sentences": [{"sent": "woman", "raw": "woman", "tokens": [], "sent_id": 2}]},
]  # fmt: skip


def test_refcoco_pickle_takes_dataset_from_folder_and_split_from_records(tmp_path):
    folder = tmp_path / "refcoco+"
    folder.mkdir()
    path = folder / "refs(unc).p"
    path.write_bytes(pickle.dumps(REFS, protocol=2))
    got = records("refcoco", path)
    assert prompts(got) == [
        ("man on left", "refcoco+(unc)/train"),
        ("left guy", "refcoco+(unc)/train"),
        ("woman", "refcoco+(unc)/testA"),
    ]
    assert got[1].ref == "refs(unc).p:[0].sentences[1].sent"


def test_refcoco_pickle_outside_a_dataset_folder_uses_its_file_name(tmp_path):
    (tmp_path / "downloads").mkdir()
    path = tmp_path / "downloads" / "refs(google).p"
    path.write_bytes(pickle.dumps(REFS))
    assert {r.subset for r in records("refcoco", path)} == {"refs(google)/train", "refs(google)/testA"}


def test_refcoco_python2_byte_strings_decode(tmp_path):
    # a Python 2 pickle stores str as SHORT_BINSTRING ('U'); build one by hand: [{'split': 'val', 'sentences': [{'sent': 'café'}]}]
    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b

    body = b"\x80\x02]q\x00(}(" + s(b"split") + s(b"val") + s(b"sentences") + b"]}(" + s(b"sent")
    body += s("café".encode()) + b"ua" + b"ue."
    folder = tmp_path / "refcocog"
    folder.mkdir()
    (folder / "refs(umd).p").write_bytes(body)
    assert prompts(records("refcoco", folder / "refs(umd).p")) == [("café", "refcocog(umd)/val")]


def test_refcoco_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([Exploit()]))
    with pytest.raises(InputError) as info:
        records("refcoco", path)
    assert "refuses to load" in info.value.message and "system" in info.value.message
    assert not marker.exists()


def test_refcoco_csv_subset_from_file_name(tmp_path):
    path = tmp_path / "refcocog_umd_val.csv"
    path.write_text(
        'uid,ref_id,img_id,sent_id,sent,bbox\n0_0,0,1,2,"the tie, purple","[1.0, 2.0]"\n0_1,0,1,3,a tie,"[1, 2]"\n',
        encoding="utf-8",
    )
    got = records("refcoco", path)
    assert prompts(got) == [("the tie, purple", "refcocog(umd)/val"), ("a tie", "refcocog(umd)/val")]
    assert got[0].ref == "refcocog_umd_val.csv:2"


def test_refcoco_refer_csv_with_unescaped_quotes_keeps_the_sentence_whole(tmp_path):
    # the refer export writes "sent" without escaping inner quotes (real rows of refcocog_google_val.csv)
    path = tmp_path / "refcocog_google_val.csv"
    path.write_text(
        "uid,ref_id,img_id,sent_id,sent,bbox\n"
        '1418_1,1418,407589,30075,"a boat with " mfos " written on it","[345.77, 228.88, 201.88, 108.45]"\n'
        '9_0,9,1,2,"properly ""escaped"", with comma","[1.0, 2.0]"\n'
        "9_1,9,1,3,unquoted,[1.0]\n"
        "broken line\n",
        encoding="utf-8",
    )
    got = records("refcoco", path)
    assert [r.raw for r in got if isinstance(r, PromptRecord)] == [
        'a boat with " mfos " written on it',
        'properly "escaped", with comma',
        "unquoted",
    ]
    assert got[-1] == Skipped(
        "line does not fit uid,ref_id,img_id,sent_id,sent,bbox", f"{path.name}:5", "broken line"
    )
    assert {r.subset for r in got if isinstance(r, PromptRecord)} == {"refcocog(google)/val"}


def test_refcoco_csv_dataset_and_split_columns_win_over_the_name(tmp_path):
    path = tmp_path / "exprs.csv"
    path.write_text("dataset,split,sent\nrefcoco,testB,red car\nrefcoco+,val,car\n", encoding="utf-8")
    assert prompts(records("refcoco", path)) == [("red car", "refcoco/testB"), ("car", "refcoco+/val")]


def test_refcoco_csv_without_sent_column_names_expected_and_found(tmp_path):
    path = tmp_path / "refcoco_unc_val.csv"
    path.write_text("uid,text\n1,dog\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        records("refcoco", path)
    assert "'sent' column" in info.value.message and "['uid', 'text']" in info.value.message


# ------------------------------------------------------------------------------------------------- saco


def test_saco_veval_reads_categories_pairs_and_annotations(tmp_path):
    veval = {
        "info": {"description": "SA-Co/VEval SA-V Test"},
        "videos": [{"id": 0}],
        "categories": [{"id": 1, "name": "a monkey"}, {"id": 2, "name": "A Horse"}],
        "video_np_pairs": [{"video_id": 0, "category_id": 2, "noun_phrase": "a horse", "num_masklets": 1}],
        "annotations": [{"id": 5, "noun_phrase": "a monkey"}, {"id": 6}],
    }
    path = write_json(tmp_path / "saco_veval_sav_test_gt.json", veval)
    got = records("saco", path)
    assert prompts(got) == [("a monkey", "SA-Co/VEval SA-V Test"), ("A Horse", "SA-Co/VEval SA-V Test"),
                            ("a horse", "SA-Co/VEval SA-V Test"), ("a monkey", "SA-Co/VEval SA-V Test")]  # fmt: skip
    assert got[-1] == Skipped(
        "annotations entry without 'noun_phrase'", f"{path.name}:annotations[1].noun_phrase", "{'id': 6}"
    )
    report = ingest("saco", [str(path)], tmp_path / "c.parquet")
    assert (report.files[0].read, report.files[0].kept, report.files[0].merged, report.files[0].skipped) == (
        5,
        2,
        2,
        1,
    )


def test_saco_gold_reads_text_input_not_placeholder_categories(tmp_path):
    gold = {
        "images": [{"id": 1, "text_input": "striped umbrella", "queried_category": "3"},
                   {"id": 2, "text_input": "striped umbrella"}, {"id": 3, "text_input": "dog leash"}],
        "annotations": [],
        "categories": [{"id": 1, "name": "object"}],
    }  # fmt: skip
    path = write_json(tmp_path / "gold_metaclip_merged_a_release_test.json", gold)
    assert prompts(records("saco", path)) == [
        ("striped umbrella", "gold_metaclip_merged_a_release_test"),
        ("striped umbrella", "gold_metaclip_merged_a_release_test"),
        ("dog leash", "gold_metaclip_merged_a_release_test"),
    ]


def test_saco_unexpected_structure(tmp_path):
    with pytest.raises(InputError, match="expected SA-Co JSON"):
        records("saco", write_json(tmp_path / "x.json", {"videos": []}))


# ---------------------------------------------------------------------------------------------- rf100vl


def coco(root_name: str, classes: list[str]) -> dict:
    cats = [{"id": 0, "name": root_name, "supercategory": "none"}]
    cats += [{"id": i + 1, "name": c, "supercategory": root_name} for i, c in enumerate(classes)]
    return {"info": {}, "images": [], "annotations": [], "categories": cats}


def test_rf100vl_tree_one_subset_per_dataset_root_category_skipped(tmp_path):
    for dataset, root, classes in [
        ("aquarium-combined", "creatures", ["fish", "jellyfish"]),
        ("bees", "bees", ["bee"]),
    ]:
        for split in ("train", "valid", "test"):
            (tmp_path / dataset / split).mkdir(parents=True)
            write_json(tmp_path / dataset / split / "_annotations.coco.json", coco(root, classes))
    (tmp_path / "bees" / "train" / "0001.jpg").write_bytes(b"\xff\xd8 not read")
    got = records("rf100vl", tmp_path)
    assert prompts(got)[:3] == [("fish", "aquarium-combined"), ("jellyfish", "aquarium-combined")] + [
        ("fish", "aquarium-combined")
    ]
    assert len(prompts(got)) == 3 * 3
    skipped = [r for r in got if isinstance(r, Skipped)]
    assert [s.reason for s in skipped] == [ROOT_REASON] * 6
    assert skipped[0].ref == "aquarium-combined/test/_annotations.coco.json:categories[0].name"
    report = ingest("rf100vl", [str(tmp_path)], tmp_path / "c.parquet")
    assert (report.files[0].read, report.files[0].kept, report.files[0].merged, report.files[0].skipped) == (
        15,
        3,
        6,
        6,
    )


def test_rf100vl_none_supercategory_that_is_a_real_class_is_kept(tmp_path):
    data = {"categories": [{"id": 0, "name": "pothole", "supercategory": "none"}]}
    (tmp_path / "road-damage" / "train").mkdir(parents=True)
    path = write_json(tmp_path / "road-damage" / "train" / "_annotations.coco.json", data)
    assert prompts(records("rf100vl", path)) == [("pothole", "road-damage")]


def test_rf100vl_metadata_list(tmp_path):
    meta = [{"name": "smoke-uvylj", "category": "real world", "classes": {"smoke": 821}},
            {"name": "hand-gestures-jps7z", "category": "real world", "classes": {"0": 34, "1": 70}}]  # fmt: skip
    got = records("rf100vl", write_json(tmp_path / "rf100v1_labels_names.json", meta))
    assert prompts(got) == [
        ("smoke", "smoke-uvylj"),
        ("0", "hand-gestures-jps7z"),
        ("1", "hand-gestures-jps7z"),
    ]
    assert got[0].meta == {"domain": "real world"}


def test_rf100vl_directory_without_annotations_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no _annotations.coco.json"):
        records("rf100vl", tmp_path)


# ------------------------------------------------------------------------------------------------- text


def test_text_lines_keep_blank_lines_as_empty_and_no_phantom_last_line(tmp_path):
    path = tmp_path / "my prompts.txt"
    path.write_bytes(b"white dog\r\n\nthe man in the red shirt\n")
    got = records("text", path)
    assert [(r.raw, r.ref) for r in got] == [
        ("white dog", "my prompts.txt:1"),
        ("", "my prompts.txt:2"),
        ("the man in the red shirt", "my prompts.txt:3"),
    ]
    assert {r.subset for r in got} == {"my prompts"}


def test_text_lines_do_not_split_on_unicode_separators(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a\u2028b\x0cc\nd", encoding="utf-8")
    assert [r.raw for r in records("text", path)] == ["a\u2028b\x0cc", "d"]


def test_text_csv_and_tsv_with_column(tmp_path):
    csv_path = tmp_path / "p.csv"
    csv_path.write_text('id,prompt,note\n1,"red, shiny car",x\n2,dog\n', encoding="utf-8")
    got = records("text", csv_path)  # 'prompt' is found without --column
    assert [r.raw for r in got if isinstance(r, PromptRecord)] == ["red, shiny car", "dog"]
    assert isinstance(got[1], PromptRecord) and got[1].raw == "dog"
    tsv_path = tmp_path / "p.tsv"
    tsv_path.write_text("a\tb\nx\tcat\ny\tbird\n", encoding="utf-8")
    assert [r.raw for r in records("text", tsv_path, column="b")] == ["cat", "bird"]
    with pytest.raises(InputError, match=r"which column holds the prompts\? found \['a', 'b'\]"):
        records("text", tsv_path)
    with pytest.raises(InputError, match=r"no column 'c'"):
        records("text", tsv_path, column="c")


def test_text_short_csv_row_is_a_counted_skip(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,prompt\n1,dog\n2\n", encoding="utf-8")
    got = records("text", path)
    assert got[-1] == Skipped("row has fewer fields than the header", "p.csv:3", "2")


def test_text_jsonl_with_field_and_skips(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"q": "a cat"}\n\n{"q": 5}\n[1]\n{"r": "x"}\n{bad\n{"q": "a dog"}\n', encoding="utf-8")
    got = records("text", path, field="q")
    assert [r.raw for r in got if isinstance(r, PromptRecord)] == ["a cat", "a dog"]
    assert [r.reason for r in got if isinstance(r, Skipped)] == [
        "not a string (int)",
        "line is not a JSON object",
        "no field 'q'",
        "invalid JSON line",
    ]
    assert got[4].ref == "p.jsonl:6, column 2"


def test_text_json_list_and_yoloworld_lists(tmp_path):
    path = write_json(
        tmp_path / "coco_class_texts.json", [["person"], ["traffic light", "stop light"], "dog"]
    )
    assert prompts(records("text", path)) == [
        ("person", "coco_class_texts"),
        ("traffic light", "coco_class_texts"),
        ("stop light", "coco_class_texts"),
        ("dog", "coco_class_texts"),
    ]


def test_text_stdin_lines_jsonl_and_csv(tmp_path, monkeypatch):
    import io
    import sys

    for data, options, expected in [
        (b"cat\ndog\n", {}, ["cat", "dog"]),
        (b'{"p": "cat"}\n', {"field": "p"}, ["cat"]),
        (b"p\ncat\n", {"column": "p"}, ["cat"]),
    ]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        report = ingest(
            "text", ["-"], tmp_path / f"c{len(options)}{list(options)}.parquet", ReadOptions(**options)
        )
        frame = load_corpus(report.corpus)
        assert list(frame["prompt"]) == expected and set(frame["subset"]) == {"stdin"}


def test_text_unknown_extension_is_an_error(tmp_path):
    path = tmp_path / "p.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(InputError, match="reads .txt, .csv, .tsv, .jsonl or .json, not .xlsx"):
        records("text", path)
