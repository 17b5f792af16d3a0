"""The README's whole path through the CLI on tiny presets: data → tokenizers → pretokenise →
train → generate / describe / ask from the run folder. Catches integration breaks that the
per-module tests cannot see."""

import json

from unif2ace.cli import main
from unif2ace.data import shards


def test_cli_path_from_data_to_generated_faces_and_captions(tmp_path, capsys):
    d = tmp_path
    ff, tok, bpe, run = d / "ff", d / "tok", d / "bpe", d / "run"
    assert main(["data", "build", "--preset", "tiny", "--num", "24", "--out", str(ff)]) == 0
    assert (
        main(
            [
                "train",
                "tokenizer",
                "--preset",
                "tiny",
                "--data",
                str(ff),
                "--out",
                str(tok),
                "--steps",
                "3",
                "--batch-size",
                "4",
                "--log-every",
                "1",
            ]
        )
        == 0
    )
    assert (
        main(
            ["train", "text-tokenizer", "--data", str(ff), "--out", str(bpe), "--vocab-size", "400"]
        )
        == 0
    )
    assert (
        main(["data", "pretokenize", "--tokenizer", str(tok / "tokenizer"), "--data", str(ff)]) == 0
    )
    assert (
        main(
            [
                "train",
                "model",
                "--preset",
                "tiny",
                "--data",
                str(ff),
                "--tokenizer",
                str(tok / "tokenizer"),
                "--text-tokenizer",
                str(bpe),
                "--out",
                str(run),
                "train.steps=3",
            ]
        )
        == 0
    )
    capsys.readouterr()

    out = d / "faces.png"
    assert (
        main(
            [
                "generate",
                "a smiling woman with red hair",
                "--n",
                "2",
                "--steps",
                "4",
                "--checkpoint",
                str(run),
                "-o",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 2
    assert out.stat().st_size > 0

    face = d / "face.png"
    face.write_bytes(next(shards.iter_records(ff, "test", columns=["image"]))["image"])
    assert main(["describe", str(face), "--checkpoint", str(run), "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out)[0]["caption"], str)
    assert main(["ask", str(face), "Is she wearing earrings?", "--checkpoint", str(run)]) == 0
    capsys.readouterr()
    assert main(["describe", str(d / "missing.png"), "--checkpoint", str(run)]) == 2
    assert "not found" in capsys.readouterr().err
