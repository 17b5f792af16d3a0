import json

import pandas as pd
import pytest

from unif2ace.cli import main
from unif2ace.data import ontology as onto
from unif2ace.data import shards
from unif2ace.data.faceforge.build import HELDOUT_PAIRS, build_dataset, verify_dataset
from unif2ace.errors import UserError


def _build(out, **kw):
    return build_dataset(out, preset="tiny", num=kw.pop("num", 24), seed=5, progress=False, **kw)


def test_build_is_deterministic_across_workers_and_resumes_identically(tmp_path):
    m1 = _build(tmp_path / "a")
    m2 = _build(tmp_path / "b", workers=2)
    assert m1["shards"] == m2["shards"]  # byte-identical shards, however the work is split
    # Interrupt: lose a shard, resume, get the identical data set back.
    victim = next(iter((tmp_path / "a" / "train").glob("shard-*.parquet")))
    victim.unlink()
    assert verify_dataset(tmp_path / "a") == [f"train/{victim.name}"]
    m3 = _build(tmp_path / "a")
    assert m3["shards"] == m1["shards"] and verify_dataset(tmp_path / "a") == []


def test_manifest_records_ontology_counts_and_splits(tmp_path):
    m = _build(tmp_path)
    assert m["ontology_version"] == onto.ONTOLOGY_VERSION
    assert len(m["ontology"]["attributes"]) == 46
    assert sum(m["counts"].values()) == 24 and set(m["counts"]) == set(shards.SPLITS)
    for split, n in m["counts"].items():
        assert shards.count_records(tmp_path, split) == n
    df = pd.read_parquet(tmp_path / "train")
    assert len(df) == m["counts"]["train"] and df["image"].map(len).min() > 100


def test_heldout_pairs_never_cooccur_outside_the_heldout_split(tmp_path):
    build_dataset(tmp_path, preset="tiny", num=80, seed=1, progress=False)

    def has(l, pair):
        (a, va), (b, vb) = pair
        return l[a] == va and l[b] == vb

    for split in ("train", "val", "test"):
        for rec in shards.iter_records(tmp_path, split, columns=["attributes"]):
            l = shards.labels_of(rec)
            assert not any(has(l, p) for p in HELDOUT_PAIRS)
    held = [shards.labels_of(r) for r in shards.iter_records(tmp_path, "test_heldout")]
    assert held and all(any(has(l, p) for p in HELDOUT_PAIRS) for l in held)


def test_records_are_consistent(tmp_path):
    _build(tmp_path)
    for rec in shards.iter_records(tmp_path, "train"):
        labels = shards.labels_of(rec)
        onto.validate(labels)
        assert set(rec["hidden"]) <= onto.hidden_attributes(labels)
        assert shards.decode_image(rec["image"]).size == (64, 64)
        assert rec["caption"] and rec["prompts"] and len(rec["vqa"]) >= 4


def test_build_refuses_a_folder_with_other_settings(tmp_path):
    _build(tmp_path)
    with pytest.raises(UserError, match="other settings"):
        build_dataset(tmp_path, preset="tiny", num=24, seed=6, progress=False)
    with pytest.raises(UserError, match="unknown data preset"):
        build_dataset(tmp_path / "x", preset="huge", progress=False)
    with pytest.raises(UserError, match="64, 128 or 256"):
        build_dataset(tmp_path / "y", preset="tiny", size=100, progress=False)


def test_cli_build_show_verify(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "build", "--preset", "tiny", "--num", "8", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["counts"]["train"] > 0
    assert main(["data", "show", str(out), "-o", str(tmp_path / "g.png"), "--num", "4"]) == 0
    assert (tmp_path / "g.png").stat().st_size > 1000
    assert main(["data", "verify", str(out)]) == 0
    assert main(["data", "show", str(tmp_path / "missing"), "-o", str(tmp_path / "h.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
