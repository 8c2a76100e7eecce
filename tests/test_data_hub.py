"""Hub-hosted (SA-Co, Hugging Face) and key-protected (RF100-VL, Roboflow API) sources, without the internet:
the hub through its offline mode and a cache laid out as huggingface_hub lays it out, Roboflow through the
loopback mirror."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from data_mirror import Mirror, zip_bytes
from typer.testing import CliRunner

from anatomy.cli import app
from anatomy.corpus import load_corpus
from anatomy.corpus.normalize import normalize
from anatomy.datasets.registry import BY_NAME

runner = CliRunner()
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def populate_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT) -> None:
    """DATASETS--ORG--NAME/{blobs/<sha256>, snapshots/<commit>/<path> -> blob, refs/main}: the hub cache."""
    repo = cache / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for rel, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


@pytest.fixture
def saco_files(shared_data):
    """A Gold file (one image per noun phrase, text_input) built from the real VEval phrases, and the VEval
    file itself under its official name."""
    veval = (shared_data / "saco" / "toy_saco_veval_sav_test_gt.json").read_bytes()
    phrases = [c["name"] for c in json.loads(veval)["categories"]][:500]
    gold = {
        "info": {"description": "SA-Co/Gold MetaCLIP a"},
        "images": [{"id": i, "file_name": f"{i}.jpg", "text_input": p} for i, p in enumerate(phrases)],
        "annotations": [],
        "categories": [{"id": 1, "name": "object"}],
    }
    return json.dumps(gold).encode(), veval, phrases


def hub_env(cache: Path) -> dict:
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_TOKEN": None}


def test_hub_sources_from_an_offline_cache(saco_files, tmp_path):
    gold, veval, phrases = saco_files
    cache, raw = tmp_path / "hub", tmp_path / "raw"
    populate_hub_cache(
        cache,
        "facebook/SACo-Gold",
        {"gold_metaclip_merged_a_release_test.json": gold, "README.md": b"---\nlicense: other\n---\n"},
    )
    populate_hub_cache(cache, "facebook/SACo-VEval", {"annotation/saco_veval_sav_test.json": veval})
    result = runner.invoke(
        app, ["data", "fetch", "saco-gold", "saco-veval", "--out", str(raw), "-q"], env=hub_env(cache)
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (raw / "saco" / "gold").iterdir()) == [
        "gold_metaclip_merged_a_release_test.json"
    ]
    assert (raw / "saco" / "veval" / "saco_veval_sav_test.json").read_bytes() == veval
    lock = json.loads((raw / "sources.lock.json").read_text())
    assert lock["saco-gold"]["files"]["saco/gold/gold_metaclip_merged_a_release_test.json"]["sha256"] == (
        hashlib.sha256(gold).hexdigest()
    )
    corpus = tmp_path / "c.parquet"
    assert (
        runner.invoke(app, ["data", "ingest", "--data", str(raw), "--out", str(corpus), "-q"]).exit_code == 0
    )
    frame = load_corpus(corpus)
    gold_prompts = set(frame[frame.subset == "SA-Co/Gold MetaCLIP a"].prompt)
    assert gold_prompts == {normalize(p) for p in phrases}
    veval_names = {normalize(c["name"]) for c in json.loads(veval)["categories"]}
    assert veval_names <= set(frame[frame.source == "saco"].prompt)

    # a hub file that changed since the lock recorded it is refused, and the copy on disk is untouched
    (raw / "saco" / "gold" / "gold_metaclip_merged_a_release_test.json").unlink()
    populate_hub_cache(
        cache, "facebook/SACo-Gold", {"gold_metaclip_merged_a_release_test.json": gold + b" "}, "f" * 40
    )
    refused = runner.invoke(app, ["data", "fetch", "saco-gold", "--out", str(raw), "-q"], env=hub_env(cache))
    assert refused.exit_code == 1 and "differs from the hash recorded" in refused.stderr
    assert not (raw / "saco" / "gold" / "gold_metaclip_merged_a_release_test.json").exists()


def test_sources_needing_access_fail_one_line_each_and_do_not_stop_the_others(tmp_path):
    env = hub_env(tmp_path / "hub") | {"ROBOFLOW_API_KEY": None}
    result = runner.invoke(
        app, ["data", "fetch", "saco-silver", "rf100vl", "--out", str(tmp_path / "raw"), "-q"], env=env
    )
    assert result.exit_code == 1
    assert (
        "saco-silver: offline (HF_HUB_OFFLINE is set) and facebook/SACo-Silver is not in the hub cache"
        in result.stderr
    )
    assert "rf100vl: needs a Roboflow API key and ROBOFLOW_API_KEY is not set" in result.stderr
    assert "2 of 2 dataset(s) not fetched: saco-silver, rf100vl" in result.stderr
    assert "Traceback" not in result.output


def rf100_mirror(m: Mirror, shared: Path, key: str) -> dict[str, set[str]]:
    """Three RF100 datasets served as Roboflow's API and COCO exports would serve them; returns their classes."""
    meta = json.loads((shared / "rf100vl" / "rf100v1_labels_names.json").read_text())[:3]
    api, workspace = BY_NAME["rf100vl"].url, BY_NAME["rf100vl"].workspace
    m.add(
        f"{api}/{workspace}",
        json.dumps({"workspace": {"projects": [{"id": f"{workspace}/{d['name']}"} for d in meta]}}).encode(),
    )
    classes = {}
    for d in meta:
        slug = d["name"]
        m.add(
            f"{api}/{workspace}/{slug}",
            json.dumps(
                {"versions": [{"id": f"{workspace}/{slug}/1"}, {"id": f"{workspace}/{slug}/2"}]}
            ).encode(),
        )
        link = f"https://storage.example.com/exports/{slug}.zip?sig={key}"
        m.add(
            f"{api}/{workspace}/{slug}/2/coco",
            json.dumps({"export": {"link": link, "format": "coco"}}).encode(),
        )
        cats = [{"id": 0, "name": slug, "supercategory": "none"}] + [
            {"id": i, "name": c, "supercategory": slug} for i, c in enumerate(d["classes"], start=1)
        ]
        coco = json.dumps({"images": [], "annotations": [], "categories": cats}).encode()
        m.add(
            link,
            zip_bytes(
                {f"{s}/_annotations.coco.json": coco for s in ("train", "valid", "test")}
                | {"train/0001.jpg": b"\xff\xd8"}
            ),
        )
        classes[slug] = set(d["classes"])
    return classes


def test_rf100vl_through_the_roboflow_api(shared_data, tmp_path):
    raw, key = tmp_path / "raw", "secret-test-key"
    missing = runner.invoke(
        app, ["data", "fetch", "rf100vl", "--out", str(raw)], env={"ROBOFLOW_API_KEY": None}
    )
    assert missing.exit_code == 1 and "ROBOFLOW_API_KEY is not set" in missing.stderr
    with Mirror() as m:
        classes = rf100_mirror(m, shared_data, key)
        args = ["data", "fetch", "rf100vl", "--out", str(raw), "--base-url", m.url, "-q"]
        result = runner.invoke(app, args, env={"ROBOFLOW_API_KEY": key})
    assert result.exit_code == 0, result.output
    annotations = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file())
    assert len(annotations) == 3 * 3 + 1 and annotations[-1] == "sources.lock.json"  # no images, no zips kept
    assert key not in (raw / "sources.lock.json").read_text()
    corpus = tmp_path / "c.parquet"
    assert (
        runner.invoke(app, ["data", "ingest", "--data", str(raw), "--out", str(corpus), "-q"]).exit_code == 0
    )
    frame = load_corpus(corpus)
    for slug, names in classes.items():
        assert set(frame[frame.subset == slug].prompt) == {normalize(n) for n in names}
