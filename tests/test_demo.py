"""``unif2ace demo`` on a tiny trained model: every output exists and names every input."""

import html
import json

import pytest

from unif2ace.cli import main
from unif2ace.data.faceforge.build import get_preset, make_record
from unif2ace.demo import test_records as demo_test_records


@pytest.fixture(scope="module")
def tiny_model(tiny_recipe):
    return tiny_recipe / "model"


def test_demo_writes_page_grids_and_results(tiny_model, tmp_path):
    out = tmp_path / "demo"
    argv = ["demo", "--checkpoint", str(tiny_model), "--out", str(out), "--num", "3"]
    assert main([*argv, "--steps", "2"]) == 0
    for name in ("index.html", "generated.png", "described.png", "results.json"):
        assert (out / name).is_file(), name
    res = json.loads((out / "results.json").read_text())
    page = (out / "index.html").read_text()
    assert len(res["generated"]) == 3 and len(res["described"]) == 3
    assert all(html.escape(g["prompt"]) in page for g in res["generated"])
    assert all(len(f["qa"]) == 2 for f in res["described"])
    assert len(list((out / "faces").glob("*.png"))) == 6


def test_demo_faces_are_the_test_split_records():
    recs = demo_test_records(2)
    assert [r["id"] for r in recs] == ["ff-test-0000000", "ff-test-0000001"]
    assert recs[1]["image"] == make_record(0, "test", 1, get_preset("small"))["image"]


def test_demo_rejects_a_bad_count(tiny_model, tmp_path, capsys):
    assert main(["demo", "--checkpoint", str(tiny_model), "--num", "0"]) == 2
    assert "--num must be at least 1" in capsys.readouterr().err


def test_demo_without_any_model_shows_the_data_engine(tmp_path, monkeypatch, capsys):
    import unif2ace.pipeline as pipeline

    monkeypatch.setattr(pipeline, "bundled_model_dir", lambda: tmp_path / "no-model")
    assert main(["demo", "--out", str(tmp_path / "d"), "--num", "3"]) == 0
    assert (tmp_path / "d" / "faceforge_contact_sheet.png").is_file()
    res = json.loads((tmp_path / "d" / "results.json").read_text())
    assert res["model"] is None and "unif2ace recipe small --bundled" in res["note"]
    assert len(res["faces"]) == 8 and res["faces"][0]["id"] == "ff-test-0000000"


def test_demo_without_a_model_shows_the_bundled_tokenizer(tmp_path, monkeypatch):
    import unif2ace.pipeline as pipeline
    from unif2ace import bundled
    from unif2ace.tokenizer.autoencoder import build_tokenizer

    monkeypatch.setattr(pipeline, "bundled_model_dir", lambda: tmp_path / "no-model")
    monkeypatch.setattr(bundled, "assets_dir", lambda: tmp_path / "assets")
    build_tokenizer("tiny").save_pretrained(bundled.path("image_tokenizer"))  # 32 px, untrained
    assert main(["demo", "--out", str(tmp_path / "d"), "--num", "3"]) == 0
    res = json.loads((tmp_path / "d" / "results.json").read_text())["tokenizer"]
    assert (tmp_path / "d" / "reconstructions.png").is_file()
    assert len(res["psnr_db"]) == 8 and all(0 < v < 100 for v in res["psnr_db"])
