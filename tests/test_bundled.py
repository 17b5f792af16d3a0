"""The word ``bundled`` names the parts shipped in ``unif2ace/assets`` (``unif2ace.bundled``),
and ``export-tokenizer`` writes such a part with a model card."""

import json

import pytest
import torch

from unif2ace import bundled
from unif2ace.errors import UserError
from unif2ace.tokenizer.autoencoder import LFQAutoencoder, build_tokenizer


@pytest.fixture
def assets(tmp_path, monkeypatch):
    """An empty assets folder standing in for ``unif2ace/assets``."""
    monkeypatch.setattr(bundled, "assets_dir", lambda: tmp_path / "assets")
    return tmp_path / "assets"


def _ship(assets, part):
    p = assets / bundled.PARTS[part]
    if p.suffix:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}")
    else:
        p.mkdir(parents=True)
        (p / "config.json").write_text("{}")
    return p


def test_resolve_passes_paths_through_and_names_missing_parts(assets):
    assert bundled.resolve("runs/tok", "image_tokenizer") == "runs/tok"
    assert bundled.resolve(None, "image_tokenizer") is None
    with pytest.raises(UserError, match="no bundled image tokenizer"):
        bundled.resolve("bundled", "image_tokenizer")
    p = _ship(assets, "image_tokenizer")
    assert bundled.resolve("bundled", "image_tokenizer") == p
    with pytest.raises(UserError, match="valid: image_tokenizer"):
        bundled.path("vae")


def test_run_config_takes_bundled_parts(assets):
    from unif2ace.train.unified import load_run_config

    paths = {part: _ship(assets, part) for part in bundled.TRAINING_PARTS.values()}
    over = [f"{key}=bundled" for key in bundled.TRAINING_PARTS]
    cfg = load_run_config("tiny", [*over[:2], "init.face_encoder=runs/enc/identity"])
    assert cfg.data.image_tokenizer == str(paths["image_tokenizer"])
    assert cfg.data.text_tokenizer == str(paths["text_tokenizer"])
    assert cfg.init.face_encoder == "runs/enc/identity" and cfg.init.semantic_encoder == ""
    assert cfg.init.checkpoint == ""
    model = _ship(assets, "model")
    assert load_run_config("tiny", ["init.checkpoint=bundled"]).init.checkpoint == str(model)


def test_train_model_bundled_flag_fills_only_missing_parts(assets, tmp_path):
    from unif2ace.cli import build_parser
    from unif2ace.train.cli import launch_argv, resolve_config

    paths = {part: _ship(assets, part) for part in bundled.TRAINING_PARTS.values()}
    argv = ["train", "model", "--preset", "tiny", "--data", str(tmp_path), "--bundled",
            "--tokenizer", "runs/tok", "--out", str(tmp_path / "run"), "--nproc", "2"]  # fmt: skip
    args = build_parser().parse_args(argv)
    cfg = resolve_config(args)
    assert cfg.data.image_tokenizer == "runs/tok"
    assert cfg.data.text_tokenizer == str(paths["text_tokenizer"])
    assert cfg.init.semantic_encoder == str(paths["semantic_encoder"])
    assert cfg.init.face_encoder == str(paths["face_encoder"])
    inner = launch_argv(args)
    inner = inner[inner.index("unif2ace.cli") + 1 :]
    assert resolve_config(build_parser().parse_args(inner)) == cfg  # each rank: the same


def test_export_tokenizer_stores_bf16_and_writes_a_card(tmp_path):
    from unif2ace.tokenizer.evaluate import evaluate_tokenizer
    from unif2ace.tokenizer.export import export_tokenizer

    torch.manual_seed(0)
    model = build_tokenizer("tiny")
    run = tmp_path / "run"
    model.save_pretrained(run / "tokenizer")
    rows = [{"step": 10 * i, "loss": 1.0 / i, "l1": 0.5, "time": 100.0 + 5 * i} for i in (1, 2)]
    rows.append({"step": 30, "loss": 0.2, "l1": 0.1, "time": 5000.0})  # after a 1 h pause
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    x = torch.rand(4, 3, model.config.resolution, model.config.resolution) * 2 - 1
    res = evaluate_tokenizer(model, [x]).to_dict() | {"split": "test"}
    (tmp_path / "m.json").write_text(json.dumps(res))
    (tmp_path / "grid.png").write_bytes(b"png")
    out = export_tokenizer(run / "tokenizer", tmp_path / "out", "bf16", tmp_path / "m.json",
                           command="unif2ace train tokenizer ...",
                           attach=[str(tmp_path / "grid.png")])  # fmt: skip
    back = LFQAutoencoder.from_pretrained(out)
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            assert torch.equal(back.state_dict()[k], v.to(torch.bfloat16).float()), k
    card = (out / "MODEL_CARD.md").read_text()
    assert "steps: 30" in card and "0.00 h" in card  # 10 s of training, the pause left out
    assert f"{res['psnr']:.2f} dB" in card and "unif2ace train tokenizer" in card
    assert (out / "grid.png").is_file() and json.loads((out / "metrics.json").read_text())
    with pytest.raises(UserError, match="not an image tokenizer"):
        export_tokenizer(tmp_path, tmp_path / "x")
    (tmp_path / "bad.json").write_text('{"psnr": 1}')
    for bad, msg in ((tmp_path / "none.json", "not found"), (tmp_path / "bad.json", "no \\[")):
        with pytest.raises(UserError, match=msg):
            export_tokenizer(run / "tokenizer", tmp_path / "y", metrics=bad)
    assert not (tmp_path / "y").exists()  # checked before anything is written
