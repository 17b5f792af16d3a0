"""Importers on fixtures written in the real formats (see conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unif2ace.cli import main
from unif2ace.data import ontology as onto
from unif2ace.data.importers import ImportSettings, import_dataset
from unif2ace.data.importers.celeba import map_celeba_attributes
from unif2ace.data.importers.common import face_crop, resolve_conflicts, square_box
from unif2ace.data.shards import MANIFEST, decode_image, file_sha256, iter_records, labels_of
from unif2ace.errors import UserError

SMALL = ImportSettings(size=32, shard_size=2, val_frac=0.0, test_frac=0.0, seed=0)


def _records(out: Path) -> dict[str, dict]:
    return {r["id"]: r for s in ("train", "val", "test") for r in iter_records(out, s)}


def _report(out: Path) -> dict:
    return json.loads((out / "import_report.json").read_text())


def _skips(out: Path) -> dict[str, str]:
    return {s["id"]: s["reason"] for s in _report(out)["skipped_files"]}


def _check_outputs(out: Path, size: int) -> None:
    """Manifest counts and checksums match the shards; every image decodes at ``size``."""
    m = json.loads((out / MANIFEST).read_text())
    assert m["ontology_hash"] == onto.ontology_hash()
    assert m["ontology_version"] == onto.ONTOLOGY_VERSION
    for split, files in m["shards"].items():
        for name, digest in files.items():
            assert file_sha256(out / split / name) == digest
        rows = list(iter_records(out, split))
        assert len(rows) == m["counts"][split]
        for r in rows:
            assert decode_image(r["image"]).size == (size, size)
            onto.validate(labels_of(r), partial=True)
            assert r["split"] == split


def test_celeba_mapping_splits_and_skips(celeba_root, tmp_path):
    out = tmp_path / "out"
    m = import_dataset("celeba", celeba_root, out, SMALL, progress=False)
    _check_outputs(out, 32)
    assert _skips(out) == {"000004": _skips(out)["000004"], "000006": "missing file 000006.jpg"}
    assert _skips(out)["000004"].startswith("corrupt image")
    assert _report(out)["skipped_by_reason"] == {"corrupt image": 1, "missing file": 1}
    # list_eval_partition.txt decides the split; the good records all survive.
    assert m["counts"] == {"train": 3, "val": 1, "test": 0}
    recs = _records(out)
    assert sorted(recs) == ["000001", "000002", "000003", "000005"]
    assert recs["000005"]["split"] == "val"
    l1, l2, l3, l5 = (labels_of(recs[k]) for k in ("000001", "000002", "000003", "000005"))
    expect1 = {
        "gender": "female",
        "hair_color": "brown",
        "hair_type": "wavy",
        "eyebrow_shape": "arched",
        "makeup": True,
        "smile": True,
        "age": "young",
        "beard": False,
        "earrings": True,
        "lipstick": True,
        "mouth_open": True,
        "glasses": "none",
        "bald": False,
        "hat": False,
    }
    assert {k: l1.get(k) for k in expect1} == expect1
    for unknown in ("hair_length", "skin_tone", "face_shape", "emotion", "eye_color", "lips"):
        assert unknown not in l1  # not labelled by CelebA: unknown, not False
    # Bald ⇒ hair colour n/a; a goatee is a beard, so the stubble label is dropped.
    assert (
        l2["bald"] is True and l2["hair_color"] is None and "hair_color" in recs["000002"]["hidden"]
    )
    assert (l2["beard"], l2["glasses"], l2["nose_size"], l2["gender"]) == (
        True,
        "eyeglasses",
        "big",
        "male",
    )
    assert "five_o_clock_shadow" not in l2 and "age" not in l2
    # Two hair colours at once: ambiguous, left unknown.
    assert "hair_color" not in l3 and l3["hair_type"] == "straight"
    assert (l3["beard"], l3["mustache"], l3["hat"], l3["skin_tone"]) == (True, True, True, "pale")
    assert "bangs" in recs["000003"]["hidden"]  # the hat hides the fringe
    assert (l5["hair_color"], l5["bangs"], l5["face_shape"], l5["lips"]) == (
        "blond",
        True,
        "oval",
        "full",
    )
    assert all(r["caption"] == "" and r["vqa"] == [] for r in recs.values())


def test_rerun_is_idempotent_and_resumes(celeba_root, tmp_path):
    out = tmp_path / "out"
    m1 = import_dataset("celeba", celeba_root, out, SMALL, progress=False)
    shards = sorted(out.glob("*/shard-*.parquet"))
    before = {p: (file_sha256(p), p.stat().st_mtime_ns) for p in shards}
    m2 = import_dataset("celeba", celeba_root, out, SMALL, progress=False)
    assert m1 == m2
    assert {p: (file_sha256(p), p.stat().st_mtime_ns) for p in shards} == before  # not rewritten
    # Interrupted import: one shard lost (and one left half-recorded) → rerun rebuilds them.
    shards[0].unlink()
    (out / ".import_progress" / "val-00000.json").unlink()
    m3 = import_dataset("celeba", celeba_root, out, SMALL, progress=False)
    assert m3 == m1
    assert {p: file_sha256(p) for p in shards} == {p: v[0] for p, v in before.items()}
    assert _report(out)["skipped"] == 2
    # The source folder moved: the same items resume into the same shards.
    moved = celeba_root.rename(tmp_path / "moved")
    m4 = import_dataset("celeba", moved, out, SMALL, progress=False)
    assert m4["shards"] == m1["shards"] and m4["source_root"] == str(moved.resolve())


def test_settings_change_or_foreign_out_is_refused(celeba_root, tmp_path):
    out = tmp_path / "out"
    import_dataset("celeba", celeba_root, out, SMALL, progress=False)
    with pytest.raises(UserError, match="other settings"):
        import_dataset("celeba", celeba_root, out, ImportSettings(size=48), progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    with pytest.raises(UserError, match="empty --out"):
        import_dataset("celeba", celeba_root, other, SMALL, progress=False)


def test_celebvhq_labels_frames_and_skipped_video(celebvhq_root, tmp_path):
    out = tmp_path / "out"
    import_dataset("celebv-hq", celebvhq_root, out, SMALL, progress=False)
    _check_outputs(out, 32)
    recs = _records(out)
    assert sorted(recs) == ["M2Ohb0FAaJU_1", "_0tf2n3rlJU_0"]
    assert _skips(out)["zzVideoOnly_3"].startswith("video zzVideoOnly_3.mp4")
    a, b = labels_of(recs["M2Ohb0FAaJU_1"]), labels_of(recs["_0tf2n3rlJU_0"])
    assert {
        k: a[k]
        for k in (
            "gender",
            "age",
            "hair_color",
            "glasses",
            "beard",
            "smile",
            "mouth_open",
            "eyes_closed",
            "emotion",
            "laugh",
        )
    } == {
        "gender": "male",
        "age": "young",
        "hair_color": "black",
        "glasses": "sunglasses",
        "beard": False,
        "smile": True,
        "mouth_open": True,
        "eyes_closed": False,
        "emotion": "happy",
        "laugh": False,
    }
    assert "eyes_closed" in recs["M2Ohb0FAaJU_1"]["hidden"]  # behind the sunglasses
    # sep_flag: the emotion covering the longest span (surprise 2.0 s > neutral 0.28 s).
    assert (
        b["emotion"],
        b["hair_color"],
        b["hair_length"],
        b["face_mask"],
        b["makeup"],
        b["eyes_closed"],
        b["gender"],
    ) == ("surprised", "blond", "long", True, True, True, "female")
    assert "mouth_open" not in b and "lipstick" in recs["_0tf2n3rlJU_0"]["hidden"]


def test_celebvhq_bbox_crop_differs_from_centre_crop(celebvhq_root, tmp_path):
    import_dataset("celebv-hq", celebvhq_root, tmp_path / "c", SMALL, progress=False)
    import_dataset("celebv-hq", celebvhq_root, tmp_path / "b", SMALL, use_bbox=True, progress=False)
    c, b = _records(tmp_path / "c"), _records(tmp_path / "b")
    assert c["M2Ohb0FAaJU_1"]["image"] != b["M2Ohb0FAaJU_1"]["image"]
    assert labels_of(c["M2Ohb0FAaJU_1"]) == labels_of(b["M2Ohb0FAaJU_1"])


def test_unif2ace_records_jsonl_json_parquet(unif2ace_root, tmp_path):
    out = tmp_path / "out"
    m = import_dataset("unif2ace", unif2ace_root, out, SMALL, progress=False)
    _check_outputs(out, 32)
    recs = _records(out)
    assert sorted(recs) == ["f2", "j0", "j2", "p0", "p1", "uri0"]
    skips = _skips(out)
    assert skips["j1"] == "missing file missing.png"
    assert skips["bad0"].startswith("corrupt image") and skips["p2"].startswith("corrupt")
    assert m["counts"] == {"train": 5, "val": 0, "test": 1} and recs["j2"]["split"] == "test"
    assert recs["j0"]["caption"] == "A young woman with wavy brown hair."
    assert [(q["question"], q["answer"], q["category"]) for q in recs["j0"]["vqa"]] == [
        ("Is she smiling?", "Yes.", "action")
    ]
    assert recs["j2"]["caption"] == "A man with a beard."
    assert [(q["question"], q["answer"]) for q in recs["j2"]["vqa"]] == [
        ("Does he wear glasses?", "No.")
    ]
    assert [(q["question"], q["answer"]) for q in recs["f2"]["vqa"]] == [
        ("What colour is his hair?", "Gray."),
        ("Is he wearing a hat?", "No, he is not."),
    ]
    assert labels_of(recs["uri0"]) == {"smile": True, "hair_color": "blond"}
    assert recs["p0"]["caption"] == "Parquet face zero."
    assert [q["question"] for q in recs["p0"]["vqa"]] == ["Eyes closed?"]
    df = pd.read_parquet(out / "train")
    assert len(df) == 5 and set(df["source"]) == {"unif2ace"}


def test_unif2ace_single_file_root(unif2ace_root, tmp_path):
    out = tmp_path / "one"
    m = import_dataset("unif2ace", unif2ace_root / "part3.parquet", out, SMALL, progress=False)
    assert sum(m["counts"].values()) == 2 and _report(out)["skipped"] == 1


def test_folder_with_captions_through_cli(folder_root, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "data",
        "import",
        "--format",
        "folder",
        "--root",
        str(folder_root),
        "--out",
        str(out),
        "--size",
        "32",
        "--shard-size",
        "2",
        "--val-frac",
        "0",
        "--test-frac",
        "0",
        "--quiet",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped"] == 2 and summary["counts"]["train"] == 3
    _check_outputs(out, 32)
    recs = _records(out)
    assert {k: r["caption"] for k, r in recs.items()} == {
        "a": "Face a.",
        "sub/b": "Face b.",
        "e": "",
    }
    assert _skips(out)["d"] == "missing file d.jpg" and _skips(out)["c"].startswith("corrupt")
    sums = {p.name: file_sha256(p) for p in out.glob("train/*.parquet")}
    assert main(argv) == 0  # rerun: identical checksums
    assert {p.name: file_sha256(p) for p in out.glob("train/*.parquet")} == sums


def test_user_errors(celeba_root, tmp_path, capsys):
    with pytest.raises(UserError, match="unknown import format 'ffhq'; valid: unif2ace"):
        import_dataset("ffhq", celeba_root, tmp_path / "o")
    with pytest.raises(UserError, match="does not exist"):
        import_dataset("celeba", tmp_path / "nowhere", tmp_path / "o")
    (celeba_root / "list_attr_celeba.txt").unlink()
    with pytest.raises(UserError, match="list_attr_celeba.txt"):
        import_dataset("celeba", celeba_root, tmp_path / "o")
    with pytest.raises(UserError, match="celebvhq_info.json"):
        import_dataset("celebv-hq", celeba_root, tmp_path / "o")
    with pytest.raises(UserError, match="inside --root"):
        import_dataset("folder", celeba_root, celeba_root / "out")
    rc = main(
        [
            "data",
            "import",
            "--format",
            "celeba",
            "--root",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def _random_partial_labels(rng: np.random.Generator) -> dict:
    labels = {}
    for a in onto.ATTRIBUTES:
        if rng.random() < 0.6:
            labels[a.name] = bool(rng.random() < 0.5) if a.is_binary else str(rng.choice(a.values))
    return labels


def test_resolve_conflicts_yields_coherent_labels():
    rng = np.random.default_rng(0)
    touched = {
        "bald",
        *onto.HAIR_ATTRIBUTES,
        "beard",
        "five_o_clock_shadow",
        "laugh",
        "mouth_open",
        "smile",
        "frown",
        "eyes_closed",
        "glare",
        "wink",
        "emotion",
        "hat",
    }
    for _ in range(500):
        raw = _random_partial_labels(rng)
        fixed, _ = resolve_conflicts(raw)
        onto.validate(fixed, partial=True)
        assert resolve_conflicts(fixed) == (fixed, [])  # idempotent
        assert {k: v for k, v in fixed.items() if k not in touched} == {
            k: v for k, v in raw.items() if k not in touched
        }


def test_celeba_mapping_uses_only_given_labels():
    assert map_celeba_attributes({}) == {}
    assert map_celeba_attributes({"Eyeglasses": False}) == {"glasses": "none"}
    assert map_celeba_attributes({"Young": False, "Big_Nose": False}) == {}  # unknown, not False
    both = map_celeba_attributes({"Eyeglasses": True, "Sunglasses": True})
    assert both == {"glasses": "sunglasses"}


def test_square_box_properties():
    rng = np.random.default_rng(1)
    for _ in range(300):
        w, h = (int(x) for x in rng.integers(8, 400, 2))
        t, l = rng.uniform(0, 0.8, 2)
        bbox = (t, t + rng.uniform(0.05, 1 - t), l, l + rng.uniform(0.05, 1 - l))
        for box in (square_box(w, h), square_box(w, h, bbox)):
            x0, y0, x1, y1 = box
            assert x1 - x0 == y1 - y0 >= 1 and 0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h
    assert square_box(200, 100) == (50, 0, 150, 100)  # centre crop of a wide picture


def test_face_crop_is_deterministic_and_centres_the_box():
    from PIL import Image

    arr = np.zeros((60, 90, 3), np.uint8)
    arr[10:30, 50:70] = 255  # a white "face" in the upper right
    img = Image.fromarray(arr)
    bbox = (10 / 60, 30 / 60, 50 / 90, 70 / 90)
    a, b = face_crop(img, 16, bbox), face_crop(img, 16, bbox)
    assert a.tobytes() == b.tobytes() and a.size == (16, 16)
    crop = np.asarray(a, dtype=float).mean(-1)
    ys, xs = np.nonzero(crop > 128)
    assert abs(ys.mean() - 7.5) < 1.5 and abs(xs.mean() - 7.5) < 1.5  # face in the middle
    assert np.asarray(face_crop(img, 16), dtype=float).mean() < crop.mean()  # centre crop
