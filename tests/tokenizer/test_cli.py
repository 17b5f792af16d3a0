import json

from tok_helpers import write_synthetic_shards

from unif2ace.cli import main
from unif2ace.tokenizer.autoencoder import LFQAutoencoder
from unif2ace.tokenizer.pretokenize import load_codes
from unif2ace.tokenizer.text import TextTokenizer


def test_tokenizer_commands_end_to_end(tmp_path, capsys):
    data = tmp_path / "data"
    write_synthetic_shards(data, "train", shards=1, rows=6)
    write_synthetic_shards(data, "test", shards=1, rows=3, seed=2)
    run = tmp_path / "run"
    args = [
        "train",
        "tokenizer",
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--out",
        str(run),
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--warmup",
        "1",
        "--log-every",
        "2",
        "--sample-every",
        "2",
        "--ckpt-every",
        "2",
        "--set",
        "codebook_bits=5",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ETA" in out and "img/s" in out
    assert (run / "samples" / "step-0000002.png").is_file()
    tok = LFQAutoencoder.from_pretrained(run / "tokenizer")
    assert tok.codebook_size == 32
    assert main(args) == 0  # finished run: resumes at step 4 and stops
    assert "resuming" in capsys.readouterr().out

    grid = tmp_path / "grid.png"
    assert (
        main(
            [
                "eval-tokenizer",
                "--tokenizer",
                str(run / "tokenizer"),
                "--data",
                str(data),
                "--grid",
                str(grid),
                "--json",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["images"] == 3 and grid.is_file()
    capsys.readouterr()

    assert (
        main(["data", "pretokenize", "--tokenizer", str(run / "tokenizer"), "--data", str(data)])
        == 0
    )
    assert len(load_codes(data, "test", run / "tokenizer")) == 3

    assert (
        main(
            [
                "train",
                "text-tokenizer",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "txt"),
                "--vocab-size",
                "300",
            ]
        )
        == 0
    )
    assert TextTokenizer.from_file(tmp_path / "txt").vocab_size > 256


def test_user_errors_exit_2(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "tokenizer",
                "--preset",
                "nope",
                "--data",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert main(["data", "pretokenize", "--tokenizer", str(tmp_path), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown tokenizer preset" in err and "not an image tokenizer folder" in err


def test_grow_bits_fine_tunes_a_larger_codebook(tmp_path, capsys):
    data = tmp_path / "data"
    write_synthetic_shards(data, "train", shards=1, rows=6)
    base = ["train", "tokenizer", "--preset", "tiny", "--data", str(data), "--batch-size", "2"]
    base += ["--warmup", "1", "--sample-every", "0", "--ckpt-every", "2"]
    assert main([*base, "--out", str(tmp_path / "a"), "--steps", "2"]) == 0
    init = tmp_path / "a" / "tokenizer"
    grown = [*base, "--out", str(tmp_path / "b"), "--steps", "2", "--init", str(init)]
    assert main([*grown, "--grow-bits", "1"]) == 0
    assert "codebook grown by 1 bit to 128 codes" in capsys.readouterr().out
    tok = LFQAutoencoder.from_pretrained(tmp_path / "b" / "tokenizer")
    assert tok.codebook_size == 2 * LFQAutoencoder.from_pretrained(init).codebook_size
    assert json.loads((tmp_path / "b" / "init.json").read_text())["grow_bits"] == 1
    # resuming the finished run keeps the grown shape
    assert main([*grown, "--grow-bits", "1"]) == 0 and "resuming" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "c"), "--grow-bits", "1"]) == 2
    assert main([*grown[:-2], "--init", str(init), "--grow-bits", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--grow-bits needs --init" in err and "--grow-bits must be >= 0" in err
