"""The corpus: dedupe on the normalised form, merging, idempotent re-ingest, manifest, source detection."""

from __future__ import annotations

import json
import pickle

import pytest
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.corpus import ingest, load_corpus
from anatomy.corpus.corpus import corpus_summary, manifest_path, read_manifest
from anatomy.corpus.sources import ReadOptions, detect_source
from anatomy.errors import InputError


@pytest.fixture
def prompts_txt(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(
        "White  Dog\nwhite dog\nthe man in the red shirt\nwhite dog\n&amp; more\n", encoding="utf-8"
    )
    return path


def test_dedupe_on_normalised_form_keeps_first_raw_and_counts(tmp_path, prompts_txt):
    report = ingest("text", [str(prompts_txt)], tmp_path / "c.parquet")
    frame = load_corpus(report.corpus)
    assert list(frame["prompt"]) == ["white dog", "the man in the red shirt", "& more"]
    assert list(frame["raw"]) == ["White  Dog", "the man in the red shirt", "&amp; more"]
    assert list(frame["count"]) == [3, 1, 1]
    assert list(frame["ref"]) == ["a.txt:1", "a.txt:3", "a.txt:5"]
    stats = report.files[0]
    assert (stats.read, stats.kept, stats.merged, stats.skipped) == (5, 3, 2, 0)


def test_same_file_twice_changes_nothing_byte_for_byte(tmp_path, prompts_txt):
    out = tmp_path / "c.parquet"
    ingest("text", [str(prompts_txt)], out)
    before = out.read_bytes(), manifest_path(out).read_bytes()
    again = ingest("text", [str(prompts_txt)], out)
    assert again.files[0].already_ingested and again.n_rows == 3
    assert (out.read_bytes(), manifest_path(out).read_bytes()) == before
    # the same input named twice in one call is also read once
    both = ingest("text", [str(prompts_txt), str(prompts_txt)], tmp_path / "d.parquet")
    assert [f.already_ingested for f in both.files] == [False, True]
    assert list(load_corpus(both.corpus)["count"]) == [3, 1, 1]


def test_rebuild_in_a_new_place_gives_identical_bytes(tmp_path, prompts_txt):
    a = ingest("text", [str(prompts_txt)], tmp_path / "x" / "c.parquet").corpus
    b = ingest("text", [str(prompts_txt)], tmp_path / "y" / "c.parquet").corpus
    assert a.read_bytes() == b.read_bytes()


def test_merge_across_sources_and_options(tmp_path, prompts_txt):
    out = tmp_path / "c.parquet"
    ingest("text", [str(prompts_txt)], out)
    lvis = tmp_path / "lvis.json"
    lvis.write_text(
        json.dumps([{"name": "white_dog", "synonyms": ["white_dog", "pale_hound"], "frequency": "r"}])
    )
    ingest("lvis", [str(lvis)], out, ReadOptions(synonyms=True))
    before = out.read_bytes()
    with pytest.raises(InputError, match="would count its records twice"):  # the names counted again
        ingest("lvis", [str(lvis)], out)
    assert out.read_bytes() == before
    frame = load_corpus(out)
    rows = {
        (s, sub, p): c
        for s, sub, p, c in zip(
            frame["source"], frame["subset"], frame["prompt"], frame["count"], strict=True
        )
    }
    assert rows[("text", "a", "white dog")] == 3
    assert rows[("lvis", "name", "white dog")] == 1 and rows[("lvis", "synonym", "pale hound")] == 1
    summary = corpus_summary(frame)
    assert summary["rows"] == 6 and summary["distinct_prompts"] == 4
    assert summary["sources"]["lvis"] == {"rows": 3, "subsets": {"name": 1, "synonym": 2}}
    manifest = read_manifest(out)
    assert [(m["source"], m["options"].get("synonyms")) for m in manifest] == [
        ("text", None),
        ("lvis", True),
    ]


def test_manifest_records_sha256_counts_and_skip_examples(tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [{"t": "cat"}] + [{"t": ""}] * 7 + [{"t": 3}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    out = tmp_path / "c.parquet"
    ingest("text", [str(path)], out, ReadOptions(field="t"))
    entry = json.loads(manifest_path(out).read_text())["inputs"][0]
    import hashlib

    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (entry["read"], entry["kept"], entry["merged"], entry["skipped"]) == (9, 1, 0, 8)
    assert entry["skips"]["empty prompt"]["count"] == 7
    assert entry["skips"]["empty prompt"]["examples"] == [
        f"p.jsonl:{i}: ''" for i in range(2, 7)
    ]  # five at most
    assert entry["skips"]["not a string (int)"] == {"count": 1, "examples": ["p.jsonl:9: 3"]}
    assert read_manifest(out) == [entry]


def test_cli_ingest_json_and_corpus_command(tmp_path, prompts_txt):
    runner = CliRunner()
    out = tmp_path / "c.parquet"
    result = runner.invoke(app, ["ingest", "text", str(prompts_txt), "--out", str(out), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["n_rows"] == 3 and data["files"][0]["merged"] == 2
    result = runner.invoke(app, ["corpus", str(out), "--json"])
    assert json.loads(result.stdout)["sources"] == {"text": {"rows": 3, "subsets": {"a": 3}}}
    result = runner.invoke(app, ["ingest", "text", str(prompts_txt), "--out", str(out)])
    assert result.exit_code == 0 and "already in c.parquet" in " ".join(result.output.split())


# ---------------------------------------------------------------------------------------- detect_source


def test_detect_source_from_extension_and_structure(tmp_path):
    def put(name: str, content) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return str(path)

    lvis_cats = [{"name": "cat", "synonyms": ["cat"], "frequency": "f"}]
    cases = {
        put("p.txt", "dog\n"): "text",
        put("p.jsonl", '{"p": 1}\n'): "text",
        put("p.tsv", "a\tb\n"): "text",
        put("p.csv", "prompt\ndog\n"): "text",
        put("refcoco_unc_val.csv", "uid,ref_id,img_id,sent_id,sent,bbox\n"): "refcoco",
        put("refs(unc).p", pickle.dumps([])): "refcoco",
        put("lvis_v1_val.json", {"images": [], "categories": lvis_cats}): "lvis",
        put("cats.json", lvis_cats): "lvis",
        put("veval.json", {"info": {}, "categories": [{"id": 1, "name": "a"}], "video_np_pairs": []}): "saco",
        put(
            "gold.json", {"images": [{"text_input": "a"}], "categories": [{"id": 1, "name": "object"}]}
        ): "saco",
        put("meta.json", [{"name": "smoke", "category": "real world", "classes": {"smoke": 1}}]): "rf100vl",
        put("ds/train/_annotations.coco.json", {"categories": []}): "rf100vl",
        put("classes.json", [["person"], ["traffic light"]]): "text",
        "-": "text",
        "builtin:imagenet-classes": "builtin",
    }
    for path, expected in cases.items():
        assert detect_source(path) == expected, path
    assert detect_source(tmp_path / "ds") == "rf100vl"


def test_detect_source_says_when_it_cannot_tell(tmp_path):
    coco = tmp_path / "instances.json"
    coco.write_text(
        json.dumps({"images": [], "categories": [{"id": 1, "name": "cat", "supercategory": "animal"}]})
    )
    with pytest.raises(InputError, match="ambiguous JSON, fits lvis and rf100vl"):
        detect_source(coco)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"a": 1}))
    with pytest.raises(InputError, match="no reader recognises this JSON"):
        detect_source(other)
    with pytest.raises(InputError, match="cannot tell the source from the extension .xlsx"):
        (tmp_path / "p.xlsx").write_bytes(b"")
        detect_source(tmp_path / "p.xlsx")
    with pytest.raises(InputError, match="no such file"):
        detect_source(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="without _annotations.coco.json"):
        detect_source(tmp_path)
