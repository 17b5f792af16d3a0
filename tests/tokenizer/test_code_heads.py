"""Attribute heads on the codes (``--attr-weight``): the heads read the bits around the
attribute's landmarks, skip hidden and unlabelled faces, their gradient reaches the encoder,
and a run with them resumes exactly and keeps them out of the tokenizer folder."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from unif2ace.data.faceforge.build import build_dataset
from unif2ace.data.shards import labels_of, list_shards
from unif2ace.errors import UserError
from unif2ace.tokenizer.autoencoder import LFQAutoencoder, TokenizerConfig
from unif2ace.tokenizer.code_heads import HEADS_FILE, CodeAttributeHeads, attribute_classes
from unif2ace.tokenizer.images import ImageStream
from unif2ace.tokenizer.probe import PROBED, cell_block
from unif2ace.tokenizer.train_image import (
    HEADS_LR_MULT,
    TrainConfig,
    tokenizer_loss,
    train_tokenizer,
)

MICRO = TokenizerConfig(
    resolution=32, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, codebook_bits=4
)


@pytest.fixture(scope="module")
def ff(tmp_path_factory):
    root = tmp_path_factory.mktemp("ff")
    build_dataset(root, preset="tiny", num=12, progress=False)
    return root


def _marks(n: int, size: int = 32, margin: int = 0) -> list[dict]:
    """Landmarks spread over a size-pixel image, ``margin`` pixels from its edges (enough
    keys for every probed attribute)."""
    g = torch.Generator().manual_seed(0)
    keys = sorted({k for ks in PROBED.values() for k in ks})
    span = size - 1 - 2 * margin
    return [
        {k: tuple((margin + torch.rand(2, generator=g) * span).tolist()) for k in keys}
        for _ in range(n)
    ]


def test_classes_come_from_the_ontology():
    assert attribute_classes("eye_color") == ("brown", "blue", "green", "gray", "hazel")
    assert attribute_classes("moles") == ("False", "True")
    with pytest.raises(UserError, match="no code head"):
        CodeAttributeHeads(4, 8, attributes=["hair_color"])


def test_loss_is_the_cross_entropy_of_the_visible_labelled_faces():
    torch.manual_seed(0)
    heads = CodeAttributeHeads(bits=4, downsample=8, attributes=["moles", "eye_color"])
    q = torch.randn(4, 4, 4, 4).sign()
    marks = _marks(4)
    labels = [
        ({"moles": True, "eye_color": "blue"}, set()),
        ({"moles": False, "eye_color": "green"}, {"eye_color"}),  # eyes hidden
        None,  # no landmarks / labels: an imported photo
        ({"moles": False}, set()),  # no eye colour label
    ]
    marks[2] = None
    loss, metrics = heads(q, marks, labels)
    rows = {"moles": [0, 1, 3], "eye_color": [0]}
    ys = {"moles": [1, 0, 0], "eye_color": [1]}
    want = []
    for attr, r in rows.items():
        pts = [[marks[n][k][:2] for k in PROBED[attr]] for n in r]
        logits = heads.heads[attr](cell_block(q[r], pts, 8, 3))
        want.append(F.cross_entropy(logits, torch.tensor(ys[attr])))
    torch.testing.assert_close(loss, torch.stack(want).mean())
    assert set(metrics) == {"attr_acc_moles", "attr_acc_eye_color"}
    # nothing labelled: a zero loss that still backpropagates
    z, m = heads(q.requires_grad_(), [None] * 4, [None] * 4)
    assert float(z.detach()) == 0.0 and not m
    z.backward()


def test_heads_learn_a_label_written_in_the_bits_at_the_landmark():
    """The label is one bit of the cell under the mole (the centre of the head's 3 x 3
    block away from the grid's edges): a head reading the right cells learns it exactly; the
    same bit of any other cell would be noise."""
    torch.manual_seed(0)
    n, f = 256, 8
    q = torch.randn(n, 4, 16, 16).sign()
    marks = _marks(n, size=128, margin=8)
    cells = [(int(m["mole"][1] // f), int(m["mole"][0] // f)) for m in marks]
    y = [bool(q[i, 2, r, c] > 0) for i, (r, c) in enumerate(cells)]
    labels = [({"moles": v}, set()) for v in y]
    heads = CodeAttributeHeads(bits=4, downsample=f, attributes=["moles"])
    opt = torch.optim.Adam(heads.parameters(), lr=0.05)
    for _ in range(200):
        loss, metrics = heads(q, marks, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(metrics["attr_acc_moles"]) == 1.0 and float(loss.detach()) < 0.05


def test_the_attribute_term_reaches_the_encoder(ff):
    torch.manual_seed(0)
    model = LFQAutoencoder(MICRO)
    heads = CodeAttributeHeads(MICRO.codebook_bits, MICRO.downsample)
    stream = ImageStream(list_shards(ff, "train"), 32, 6, landmarks=True)
    images, marks, labels = stream.next_batch_labelled()
    plain = TrainConfig(bf16=False)
    attr_only = TrainConfig(bf16=False, attr_weight=1.0, l1_weight=0.0, l2_weight=0.0)
    model.quantizer.entropy_weight = model.quantizer.commitment_weight = 0.0
    loss, parts = tokenizer_loss(model, images, attr_only, marks, labels, heads)
    assert parts["attr"] > 0 and parts["loss"] == pytest.approx(parts["attr"])
    assert any(k.startswith("attr_acc_") for k in parts)
    loss.backward()
    enc = [p.grad for n, p in model.named_parameters() if n.startswith("encoder")]
    assert any(g is not None and g.abs().sum() > 0 for g in enc)  # straight through
    with pytest.raises(ValueError, match="code heads"):
        tokenizer_loss(model, images, attr_only, marks, labels, None)
    # attr_weight 0: the plain loss, whatever is passed
    a, _ = tokenizer_loss(model, images, plain)
    b, _ = tokenizer_loss(model, images, plain, marks, labels, heads)
    torch.testing.assert_close(a, b)


def test_stream_labels_belong_to_their_images(ff):
    shards = list_shards(ff, "train")
    _, marks, labels = ImageStream(
        shards, 32, 3, shuffle=False, landmarks=True
    ).next_batch_labelled()
    first = pq.read_table(shards[0]).to_pylist()[:3]
    for m, lab, rec in zip(marks, labels, first, strict=True):
        assert m is not None and lab == (labels_of(rec), set(rec["hidden"] or []))


def test_run_with_heads_resumes_exactly_and_keeps_them_out_of_the_tokenizer(ff, tmp_path):
    shards = list_shards(ff, "train")
    cfg = TrainConfig(
        steps=4, batch_size=3, warmup_steps=1, bf16=False, log_every=1, ckpt_every=2,
        attr_weight=0.5, region_weight=1.0,
    )  # fmt: skip
    quiet = {"log": lambda s: None}
    whole = train_tokenizer(MICRO, cfg, shards, tmp_path / "whole", **quiet)
    train_tokenizer(MICRO, cfg, shards, tmp_path / "cut", stop_after=2, **quiet)
    resumed = train_tokenizer(MICRO, cfg, shards, tmp_path / "cut", **quiet)
    for k, v in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    heads = [load_file(str(d / "checkpoint" / f"{HEADS_FILE}.safetensors")) for d in (
        tmp_path / "whole", tmp_path / "cut")]  # fmt: skip
    assert heads[0].keys() == heads[1].keys() and all(
        torch.equal(heads[0][k], heads[1][k]) for k in heads[0]
    )
    rows = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert all("attr" in r for r in rows)
    groups = json.loads((tmp_path / "whole" / "checkpoint" / "state.json").read_text())
    auto, head = groups["param_groups"]  # the heads learn HEADS_LR_MULT times faster
    assert head["lr"] == pytest.approx(HEADS_LR_MULT * auto["lr"]) and auto["lr"] > 0
    tok = tmp_path / "whole" / "tokenizer"
    assert sorted(p.name for p in tok.iterdir()) == ["config.json", "model.safetensors"]
    assert LFQAutoencoder.from_pretrained(tok).config == MICRO
    # resuming with the other setting is one clear error, either way
    off = TrainConfig(**{**cfg.__dict__, "attr_weight": 0.0, "steps": 6})
    with pytest.raises(UserError, match="trained with --attr-weight"):
        train_tokenizer(MICRO, off, shards, tmp_path / "whole", **quiet)
    plain = TrainConfig(**{**off.__dict__, "steps": 2})
    train_tokenizer(MICRO, plain, shards, tmp_path / "plain", **quiet)
    on = TrainConfig(**{**cfg.__dict__, "steps": 6})
    with pytest.raises(UserError, match="trained without --attr-weight"):
        train_tokenizer(MICRO, on, shards, tmp_path / "plain", **quiet)


def test_cli_attr_weight(ff, tmp_path):
    from unif2ace.cli import main

    out = tmp_path / "run"
    args = ["train", "tokenizer", "--preset", "tiny", "--data", str(ff), "--out", str(out)]
    assert main([*args, "--steps", "2", "--batch-size", "2", "--attr-weight", "0.1"]) == 0
    assert (out / "checkpoint" / f"{HEADS_FILE}.safetensors").is_file()
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["train_config"]["attr_weight"] == 0.1
