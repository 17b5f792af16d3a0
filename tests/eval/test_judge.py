"""The attribute judge (``eval.judge``, ``eval.judge_train``, ``train judge``)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from unif2ace.cli import main as cli_main
from unif2ace.data.ontology import ATTRIBUTES, BY_NAME, hidden_attributes
from unif2ace.errors import UserError
from unif2ace.eval.judge import (
    AttributeJudge,
    JudgeConfig,
    JudgePrediction,
    attribute_accuracy,
    load_judge,
    pose_targets,
    predict,
    save_judge,
)
from unif2ace.eval.judge_train import (
    JudgeTrainConfig,
    _optimizer,
    _train_steps,
    judge_loss,
    load_data,
    train_judge,
)
from unif2ace.model.encoder_train import new_best

TINY = dict(width=8, blocks="1,1,1,1", batch_size=4, log_every=0, lr=3e-3)
NAMES = [a.name for a in ATTRIBUTES]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from unif2ace.data.faceforge.build import build_dataset

    out = tmp_path_factory.mktemp("ff") / "data"
    build_dataset(out, preset="tiny", num=16, progress=False)
    return out


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """(folder, config, metrics) of a judge trained 8 steps, checkpointed at step 4."""
    folder = tmp_path_factory.mktemp("judge") / "j"
    cfg = JudgeTrainConfig(steps=8, ckpt_every=4, eval_every=4, **TINY)
    return folder, cfg, train_judge(data_dir, folder, cfg)


@pytest.fixture(scope="module")
def test_data(data_dir):
    return load_data(data_dir, "train", 128)


def _random_judge(seed: int = 0) -> AttributeJudge:
    """A small judge with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    judge = AttributeJudge(JudgeConfig(width=8, blocks=(1, 1, 1, 1)))
    for m in judge.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return judge.eval()


def test_predict_shapes_and_keys(trained, test_data):
    judge = load_judge(trained[0])
    images = test_data.images[:5]
    pred = predict(judge, images, batch_size=2)
    assert len(pred.values) == len(pred.confidence) == len(pred.hidden) == len(pred.pose) == 5
    for vals, conf, hid, pose in zip(
        pred.values, pred.confidence, pred.hidden, pred.pose, strict=True
    ):
        assert set(vals) | hid == set(NAMES) and not set(vals) & hid
        assert set(conf) == set(vals)
        assert hidden_attributes(vals) <= hid | {k for k, v in vals.items() if v is None}
        for name, value in vals.items():
            BY_NAME[name].check(value)
            n = 2 if BY_NAME[name].is_binary else len(BY_NAME[name].values)
            assert 1.0 / n - 1e-6 <= conf[name] <= 1.0 + 1e-6
        assert set(pose) == {"yaw", "roll"} and all(math.isfinite(v) for v in pose.values())
    feats = judge.features(images, batch_size=3)
    assert feats.shape == (5, judge.feature_dim) and feats.dtype == torch.float32
    # any input size is resized inside: a 64 px copy gives the same kind of output
    small = torch.nn.functional.interpolate(images.float(), size=64).round().byte()
    assert judge.features(small).shape == (5, judge.feature_dim)


def test_no_images_give_empty_predictions(trained):
    judge = load_judge(trained[0])
    none = torch.zeros(0, 3, 128, 128, dtype=torch.uint8)
    assert judge.features(none).shape == (0, judge.feature_dim)
    pred = predict(judge, none)
    assert pred.values == pred.confidence == pred.hidden == pred.pose == []


def test_batching_does_not_change_predictions(trained, test_data):
    judge = load_judge(trained[0])
    a = judge.outputs(test_data.images[:6], batch_size=6)
    b = judge.outputs(test_data.images[:6], batch_size=1)
    assert all(torch.allclose(a[k], b[k], atol=1e-2, rtol=1e-2) for k in a)


def test_non_uint8_input_is_a_user_error():
    with pytest.raises(UserError, match="uint8"):
        _random_judge().features(torch.rand(2, 3, 32, 32))


def test_save_load_gives_identical_outputs(tmp_path, test_data):
    judge = _random_judge()
    save_judge(judge, tmp_path / "j", {"note": "test"})
    again = load_judge(tmp_path / "j")
    assert not any(p.requires_grad for p in again.parameters()) and not again.training
    images = test_data.images[:4]
    a, b = judge.outputs(images), again.outputs(images)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(judge.features(images), again.features(images))
    assert json.loads((tmp_path / "j" / "config.json").read_text())["note"] == "test"


def test_load_judge_rejects_other_folders(tmp_path):
    with pytest.raises(UserError, match="train judge"):
        load_judge(tmp_path)


def test_resume_gives_identical_weights(data_dir, trained, tmp_path):
    folder, cfg, first = trained
    resumed = tmp_path / "j"
    (resumed / "ckpt").mkdir(parents=True)
    for f in (folder / "ckpt").iterdir():  # the step-4 checkpoint of the 8-step run
        (resumed / "ckpt" / f.name).write_bytes(f.read_bytes())
    metrics = train_judge(data_dir, resumed, cfg)
    assert metrics["start"] == 4 and first["start"] == 0
    assert metrics["best_step"] == first["best_step"]
    a, b = (load_file(str(d / "model.safetensors")) for d in (folder, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_config_is_refused(data_dir, trained):
    folder, cfg, _ = trained
    other = JudgeTrainConfig(**{**cfg.__dict__, "seed": cfg.seed + 1})
    with pytest.raises(UserError, match="another config"):
        train_judge(data_dir, folder, other)


def test_training_reduces_loss(test_data, tmp_path):
    cfg = JudgeTrainConfig(steps=15, ckpt_every=0, eval_every=0, **TINY)
    torch.manual_seed(cfg.seed)
    judge = AttributeJudge(cfg.judge_config())

    def loss() -> float:  # train-mode BatchNorm: batch statistics, as during training
        with torch.no_grad():
            out = judge(judge.to_input(test_data.images))
        d = test_data
        return float(judge_loss(out, d.targets, d.pose, d.has_pose, cfg)["loss"])

    before = loss()
    _train_steps(judge, _optimizer(judge, cfg), test_data, cfg, 0, tmp_path, None, new_best())
    assert loss() < 0.7 * before


def test_metrics_and_model_card_are_written(trained):
    folder, cfg, m = trained
    saved = json.loads((folder / "metrics.json").read_text())
    for split in ("test", "test_heldout"):
        per = saved[split]["per_attribute"]
        assert set(per) <= set(NAMES) and all(0.0 <= v <= 1.0 for v in per.values())
        assert set(saved[split]["majority_baseline"]) == set(per)
    card = (folder / "MODEL_CARD.md").read_text()
    assert "| attribute |" in card and "majority baseline" in card and str(cfg.steps) in card


def _labels(data_dir, n: int = 6) -> list[dict]:
    return load_data(data_dir, "train", 32, limit=n).labels


def _perfect(labels: list[dict], hidden: list[set[str]]) -> JudgePrediction:
    vals = [
        {k: v for k, v in lab.items() if v is not None and k not in h}
        for lab, h in zip(labels, hidden, strict=True)
    ]
    conf = [dict.fromkeys(v, 1.0) for v in vals]
    return JudgePrediction(vals, conf, [set(h) for h in hidden])


def test_accuracy_of_perfect_predictions_is_one(data_dir):
    labels = _labels(data_dir)
    hidden = [hidden_attributes(lab) for lab in labels]
    acc = attribute_accuracy(_perfect(labels, hidden), labels)
    assert acc["overall"] == 1.0 and set(acc["per_attribute"].values()) == {1.0}
    n_visible = sum(len(NAMES) - len(h) for h in hidden)
    assert acc["n"] == n_visible


def test_accuracy_counts_errors_and_skips_hidden(data_dir):
    labels = _labels(data_dir)
    hidden = [hidden_attributes(lab) for lab in labels]
    pred = _perfect(labels, hidden)
    pred.values[0]["gender"] = "female" if labels[0]["gender"] == "male" else "male"
    acc = attribute_accuracy(pred, labels)
    assert acc["per_attribute"]["gender"] == pytest.approx(1 - 1 / len(labels))
    assert acc["overall"] == pytest.approx(1 - 1 / acc["n"])
    images = attribute_accuracy(pred, labels, per_image=True)["per_image"]
    assert len(images) == len(labels) and sum(c for _, c in images) == acc["n"]
    assert [c - r for r, c in images] == [1] + [0] * (len(labels) - 1)  # the one error
    assert "per_image" not in acc
    # the same error on an attribute the caller marks hidden is not scored
    skipped = attribute_accuracy(pred, labels, hidden=[{"gender"}] + [set()] * (len(labels) - 1))
    assert skipped["overall"] == 1.0 and skipped["n"] == acc["n"] - 1
    # a visible attribute the judge calls hidden counts as wrong
    del pred.values[1]["smile"]
    only = attribute_accuracy(pred, labels, attributes=["smile"])
    assert set(only["per_attribute"]) == {"smile"}
    assert only["overall"] == pytest.approx(1 - 1 / len(labels))


def test_accuracy_rejects_unknown_attributes(data_dir):
    labels = _labels(data_dir, 2)
    pred = _perfect(labels, [set(), set()])
    with pytest.raises(UserError, match="unknown attributes"):
        attribute_accuracy(pred, labels, attributes=["tail"])


def test_pose_targets_follow_the_renderer(test_data):
    from unif2ace.data.faceforge.render import ROLL_TILT, YAW_TURN

    right = pose_targets(
        {"head_turn": "right", "head_tilt": False}, {"scene_yaw": 0.5, "scene_roll": 1.0}
    )
    assert right == pytest.approx([YAW_TURN + 0.035, 0.04])
    tilt = pose_targets(
        {"head_turn": "left", "head_tilt": True}, {"scene_yaw": 0.0, "scene_roll": -0.5}
    )
    assert tilt == pytest.approx([-YAW_TURN, -(ROLL_TILT + 0.03)])
    assert pose_targets({"head_turn": "left"}, {}) is None
    assert bool(test_data.has_pose.all())  # FaceForge records carry scene parameters


def test_cli_rejects_bad_blocks(data_dir, tmp_path, capsys):
    rc = cli_main(
        ["train", "judge", "--data", str(data_dir), "--out", str(tmp_path), "--blocks", "1,x"]
    )
    assert rc == 2 and "--blocks" in capsys.readouterr().err


def test_rerunning_a_finished_run_does_nothing(data_dir, trained, capsys):
    folder, cfg, first = trained
    before = (folder / "model.safetensors").stat().st_mtime_ns
    again = train_judge(data_dir, folder, cfg)
    assert "nothing to do" in capsys.readouterr().out
    assert (folder / "model.safetensors").stat().st_mtime_ns == before
    assert again["best_step"] == first["best_step"]
