"""Training of the in-project semantic / identity encoders (``model.encoder_train``)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from unif2ace.data.ontology import ATTRIBUTES
from unif2ace.data.shards import iter_records, labels_of
from unif2ace.errors import UserError
from unif2ace.model.config import model_preset
from unif2ace.model.encoder_train import (
    EncoderTrainConfig,
    ProbedEncoder,
    attach_trained_encoders,
    batch_indices,
    identity_metrics,
    kind_loss,
    load_probed_encoder,
    load_split,
    load_trained_encoder,
    n_outputs,
    semantic_loss,
    semantic_metrics,
    semantic_targets,
    to_unit,
    train_encoder,
)
from unif2ace.model.encoders import build_encoder
from unif2ace.model.transformer import build_model
from unif2ace.vocab import VocabLayout

TINY = dict(feature_dim=32, width=8, batch_size=8, log_every=0, lr=3e-3)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from unif2ace.data.faceforge.build import build_dataset

    out = tmp_path_factory.mktemp("ff") / "data"
    build_dataset(out, preset="tiny", num=16, progress=False)
    return out


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """(folder, config) of a semantic and an identity encoder trained for 20 steps."""
    root = tmp_path_factory.mktemp("enc")
    out = {}
    for kind in ("semantic", "identity"):
        every = 5 if kind == "identity" else 0  # identity keeps its best-validation weights
        cfg = EncoderTrainConfig(kind=kind, steps=20, ckpt_every=10, eval_every=every, **TINY)
        train_encoder(data_dir, root / kind, cfg)
        out[kind] = (root / kind, cfg)
    return out


def _index(name: str) -> int:
    return [a.name for a in ATTRIBUTES].index(name)


def test_hidden_attribute_label_does_not_change_loss(data_dir):
    rec = next(iter_records(data_dir, "train", ["attributes", "hidden"]))
    labels = {**labels_of(rec), "glasses": "sunglasses", "eye_color": "brown"}
    other = {**labels, "eye_color": "blue"}  # hidden behind the sunglasses
    visible_change = {**labels, "hair_length": "long" if labels["hair_length"] != "long" else None}
    logits = torch.randn(1, n_outputs("semantic"), generator=torch.Generator().manual_seed(0))
    t1, t2 = (torch.tensor([semantic_targets(x)]) for x in (labels, other))
    assert t1[0, _index("eye_color")] == -1
    assert semantic_loss(logits, t1) == semantic_loss(logits, t2)
    t3 = torch.tensor([semantic_targets(visible_change)])
    assert semantic_loss(logits, t3) != semantic_loss(logits, t1)


def test_masked_logits_get_no_gradient():
    g = torch.Generator().manual_seed(1)
    targets = torch.tensor([[0 if a.is_binary else len(a.values) - 1 for a in ATTRIBUTES]] * 3)
    targets[:, _index("hair_color")] = -1
    logits = torch.randn(3, n_outputs("semantic"), generator=g, requires_grad=True)
    semantic_loss(logits, targets).backward()
    assert logits.grad[:, :6].abs().sum() == 0  # hair_color is the first block (6 values)
    assert logits.grad[:, 6:].abs().sum() > 0


def test_batches_are_a_function_of_step():
    a = torch.cat([batch_indices(s, 10, 4, seed=3) for s in range(5)])
    assert torch.equal(a, torch.cat([batch_indices(s, 10, 4, seed=3) for s in range(5)]))
    assert sorted(a[:10].tolist()) == list(range(10))  # one epoch visits every record once


@pytest.mark.parametrize("kind", ["semantic", "identity"])
def test_training_reduces_loss(data_dir, trained, kind):
    folder, cfg = trained[kind]
    x, t = load_split(data_dir, "train", kind, cfg.size)
    torch.manual_seed(cfg.seed)  # the initial weights train_encoder starts from
    before = ProbedEncoder(cfg.feature_dim, cfg.width, n_outputs(kind))
    after = load_probed_encoder(folder)
    with torch.no_grad():
        l0, l1 = (float(kind_loss(kind, m(to_unit(x)), t)) for m in (before, after))
    assert l1 < 0.9 * l0


def test_save_load_gives_identical_features(trained, data_dir):
    folder, cfg = trained["semantic"]
    x, _ = load_split(data_dir, "test", "semantic", cfg.size)
    enc = load_probed_encoder(folder)
    again = build_encoder("cnn-semantic", cfg.feature_dim, path=str(folder))
    weights = load_file(str(folder / "model.safetensors"))
    assert torch.equal(again.body[0].weight, weights["body.0.weight"])
    assert torch.equal(enc.probe.weight, weights["probe.weight"])
    assert torch.equal(enc.encoder.features(to_unit(x)), again.features(to_unit(x)))
    assert not any(p.requires_grad for p in again.parameters())
    assert json.loads((folder / "config.json").read_text())["kind"] == "semantic"


def test_resume_gives_identical_weights(data_dir, trained, tmp_path):
    folder, cfg = trained["identity"]
    resumed = tmp_path / "identity"
    resumed.mkdir()
    for f in (folder / "ckpt").iterdir():  # the step-10 checkpoint of the 20-step run
        (resumed / "ckpt").mkdir(exist_ok=True)
        (resumed / "ckpt" / f.name).write_bytes(f.read_bytes())
    metrics = train_encoder(data_dir, resumed, cfg)
    assert metrics["start"] == 10
    first = json.loads((folder / "metrics.json").read_text())
    assert metrics["best_step"] == first["best_step"] and 5 <= first["best_step"] <= 20
    a, b = (load_file(str(d / "model.safetensors")) for d in (folder, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_model_uses_trained_encoders(trained, data_dir):
    cfg = model_preset("tiny")
    layout = VocabLayout(text_vocab_size=50, codebook_size=16)
    torch.manual_seed(0)
    model = build_model(cfg, layout)
    sem, face = trained["semantic"][0], trained["identity"][0]
    attach_trained_encoders(model, semantic=str(sem), face=str(face))
    x, _ = load_split(data_dir, "test", "semantic", 64)
    feats = model.encode_images(to_unit(x))
    ref = load_trained_encoder(face, cfg.face_feature_dim)
    assert torch.equal(feats["face"], ref.features(to_unit(x)))
    assert not any(p.requires_grad for p in model.encoders.parameters())
    fresh = build_model(cfg, layout)  # the state dict keeps its keys and shapes
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.encode_images(to_unit(x))["semantic"], feats["semantic"])
    wide = model_preset("tiny", encoder_width=16)
    with pytest.raises(UserError, match="encoder_width"):
        attach_trained_encoders(build_model(wide, layout), semantic=str(sem))


def test_metrics_on_known_predictions():
    g = torch.Generator().manual_seed(2)
    t = torch.rand(50, 26, generator=g) * 2 - 1
    assert identity_metrics(t.clone(), t)["r2_mean"] == pytest.approx(1.0)
    mean = t.mean(0, keepdim=True).expand_as(t)
    assert identity_metrics(mean, t)["r2_mean"] == pytest.approx(0.0, abs=1e-6)
    targets = torch.tensor([[0 if a.is_binary else 1 for a in ATTRIBUTES]] * 4)
    # Binary logits say "no"; categorical blocks are flat, so argmax picks value 0.
    logits = torch.full((4, n_outputs("semantic")), -5.0)
    m = semantic_metrics(logits, targets)
    assert m["per_attribute"]["smile"] == 1.0 and m["per_attribute"]["hair_color"] == 0.0
