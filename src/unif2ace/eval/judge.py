"""The attribute judge: a face-attribute classifier kept apart from the model under test.

Shape legend: N images, B batch, C channels, H/W pixels, A attributes (46), O attribute logits
(90: one per binary attribute, one per value of a categorical one), F feature width.

The judge scores generated faces (attribute fidelity), gives the feature space of FID and
drives caption refinement (issue 6). To be a fair referee it shares nothing with the model's
own semantic encoder (:class:`~unif2ace.model.encoders.CNNEncoder`: GroupNorm, plain stride-2
convs, a linear probe over 17 tokens): it is a residual network with BatchNorm (He et al.
2016, "Deep Residual Learning", basic blocks) at 128 px, whose last 8x8 map (squeezed to a
few channels) and global mean feed a one-layer MLP giving the features (F = 512), under
three linear heads:

* attributes: the 90 logits of :func:`~unif2ace.model.encoder_train.attribute_layout`;
* visibility: one logit per attribute, "not visible" (occluded or not applicable);
* pose: head yaw and roll in radians (FaceForge renders them from ``head_turn`` /
  ``head_tilt`` plus scene jitter, see :func:`pose_targets`).

A judge is saved as a folder ``model.safetensors`` + ``config.json`` (never pickle).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import UserError

FORMAT = "unif2ace-judge/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
POSE_KEYS: tuple[str, ...] = ("yaw", "roll")


# ------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class JudgeConfig:
    """Shape of the judge network.

    Attributes:
        size: input pixels (images of other sizes are resized inside).
        width: channels of the first stage; stages have width x (1, 2, 4, 8).
        blocks: residual blocks per stage.
        grid / reduce: the last stage's map is pooled to grid x grid and squeezed to
            ``reduce`` channels before the MLP.
        feature_dim: F, the width of the pooled features (the MLP's output).
        bf16: bf16 autocast in :meth:`AttributeJudge.features` and :func:`predict`.
    """

    size: int = 128
    width: int = 32
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    grid: int = 8
    reduce: int = 32
    feature_dim: int = 512
    bf16: bool = True


def n_attribute_logits() -> int:
    """O: 90 logits over the 46 ontology attributes."""
    from ..model.encoder_train import attribute_layout

    _, start, n = attribute_layout()[-1]
    return start + n


# ----------------------------------------------------------------------------- network
class _Block(nn.Module):
    """ResNet basic block: two 3x3 convs with BatchNorm, projection shortcut on change."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x_BCHW)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x_BCHW if self.short is None else self.short(x_BCHW)))


class AttributeJudge(nn.Module):
    """Residual CNN: stem (stride 2) -> 4 stages (strides 1, 2, 2, 2) -> spatial MLP -> heads.

    At 128 px the stages run at 64, 32, 16 and 8 px. The pooled features_BF are an MLP over
    the global mean of the last stage and its ``grid`` x ``grid`` map squeezed to ``reduce``
    channels: FaceForge faces are aligned, so *where* a colour or edge appears (iris, cheek,
    ear lobe) carries the attribute, and a global pool alone mixes it with the background.
    """

    def __init__(self, cfg: JudgeConfig = JudgeConfig()):
        super().__init__()
        from ..data.ontology import ATTRIBUTES

        self.cfg = cfg
        w = cfg.width
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        )
        chans, layers = [w, w, 2 * w, 4 * w, 8 * w], []
        for i, n in enumerate(cfg.blocks):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(_Block(chans[i] if j == 0 else chans[i + 1], chans[i + 1], stride))
        self.stages = nn.Sequential(*layers)
        self.reduce = nn.Sequential(
            nn.Conv2d(chans[-1], cfg.reduce, 1, bias=False),
            nn.BatchNorm2d(cfg.reduce),
            nn.ReLU(inplace=True),
        )
        n_in = chans[-1] + cfg.reduce * cfg.grid**2
        self.mlp = nn.Sequential(nn.Linear(n_in, cfg.feature_dim), nn.ReLU(inplace=True))
        self.feature_dim = cfg.feature_dim
        self.attr_head = nn.Linear(self.feature_dim, n_attribute_logits())
        self.vis_head = nn.Linear(self.feature_dim, len(ATTRIBUTES))
        self.pose_head = nn.Linear(self.feature_dim, len(POSE_KEYS))

    def to_input(self, images_uint8_NCHW: torch.Tensor) -> torch.Tensor:
        """uint8 images, any size -> float in [-1, 1] at ``cfg.size`` px."""
        if images_uint8_NCHW.dtype != torch.uint8 or images_uint8_NCHW.dim() != 4:
            raise UserError(
                f"the judge takes uint8 images (N, 3, H, W), got {images_uint8_NCHW.dtype} "
                f"{tuple(images_uint8_NCHW.shape)}; convert with (x * 255).round().byte()"
            )
        x = images_uint8_NCHW.float() / 255.0
        if x.shape[-2:] != (self.cfg.size, self.cfg.size):
            x = F.interpolate(x, size=(self.cfg.size,) * 2, mode="bicubic", antialias=True)
            x = x.clamp(0.0, 1.0)
        return x * 2 - 1

    def pooled(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        """Input in [-1, 1] at ``cfg.size`` -> pooled features_BF."""
        h = self.stages(self.stem(x_BCHW))
        grid = F.adaptive_avg_pool2d(self.reduce(h), self.cfg.grid).flatten(1)
        return self.mlp(torch.cat([h.mean((2, 3)), grid], dim=1))

    def forward(self, x_BCHW: torch.Tensor) -> dict[str, torch.Tensor]:
        """Input in [-1, 1] -> ``{"attr": logits_BO, "vis": logits_BA, "pose": radians_B2}``."""
        f_BF = self.pooled(x_BCHW)
        heads = {"attr": self.attr_head, "vis": self.vis_head, "pose": self.pose_head}
        return {k: head(f_BF) for k, head in heads.items()}

    @torch.no_grad()
    def features(self, images_uint8_NCHW: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """Penultimate features_NF in fp32 (the FID feature network); eval-mode BatchNorm."""
        return _run_batched(self, images_uint8_NCHW, batch_size, lambda x: self.pooled(x))

    def outputs(self, images_uint8_NCHW: torch.Tensor, batch_size: int = 128) -> dict:
        """All head outputs in fp32 for uint8 images, batched, without gradients."""
        with torch.no_grad():
            return _run_batched(self, images_uint8_NCHW, batch_size, self.forward)


def _run_batched(judge: AttributeJudge, images: torch.Tensor, batch_size: int, fn):
    """Apply ``fn`` to batches of converted images in eval mode; concat fp32 outputs."""
    if len(images) == 0:  # one dummy image gives the output shapes; keep none of it
        probe = _run_batched(judge, torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 1, fn)
        if isinstance(probe, dict):
            return {k: v[:0] for k, v in probe.items()}
        return probe[:0]
    was_training = judge.training
    judge.eval()
    outs = []
    try:
        for i in range(0, len(images), batch_size):
            x = judge.to_input(images[i : i + batch_size])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=judge.cfg.bf16):
                outs.append(fn(x))
    finally:
        judge.train(was_training)
    if isinstance(outs[0], dict):
        return {k: torch.cat([o[k].float() for o in outs]) for k in outs[0]}
    return torch.cat([o.float() for o in outs])


# --------------------------------------------------------------------------- targets
def pose_targets(labels: dict, identity: dict) -> list[float] | None:
    """[yaw, roll] in radians as FaceForge renders them (``render._frames``); None without
    the scene parameters (real photos)."""
    from ..data.faceforge.render import ROLL_TILT, YAW_TURN

    if "scene_yaw" not in identity or "scene_roll" not in identity:
        return None
    turn = {"frontal": 0.0, "left": -YAW_TURN, "right": YAW_TURN}.get(labels.get("head_turn"), 0.0)
    yaw = turn + 0.07 * float(identity["scene_yaw"])
    jr = float(identity["scene_roll"])
    if labels.get("head_tilt"):
        roll = math.copysign(ROLL_TILT + 0.06 * abs(jr), jr if jr != 0 else 1.0)
    else:
        roll = 0.04 * jr
    return [yaw, roll]


# ------------------------------------------------------------------------- prediction
@dataclass
class JudgePrediction:
    """Decoded judgements of N images.

    Attributes:
        values: per image, attribute -> predicted value, visible attributes only.
        confidence: per image, attribute -> probability of the predicted value.
        hidden: per image, attributes predicted as not visible (occluded / not applicable).
        pose: per image, ``{"yaw": rad, "roll": rad}`` (positive yaw: ``head_turn="right"``).
    """

    values: list[dict[str, str | bool]]
    confidence: list[dict[str, float]]
    hidden: list[set[str]]
    pose: list[dict[str, float]] = field(default_factory=list)


def predict(
    judge: AttributeJudge, images_uint8_NCHW: torch.Tensor, batch_size: int = 128
) -> JudgePrediction:
    """Judge uint8 images ``(N, 3, H, W)`` of any size."""
    out = judge.outputs(images_uint8_NCHW, batch_size)
    return decode_outputs(out["attr"], out["vis"], out["pose"])


def decode_outputs(
    attr_NO: torch.Tensor, vis_NA: torch.Tensor, pose_N2: torch.Tensor
) -> JudgePrediction:
    """Head outputs -> :class:`JudgePrediction`.

    Hidden = visibility probability > 0.5, plus what the ontology's occlusion rules hide
    given the predicted values (e.g. predicted sunglasses hide the eye colour).
    """
    from ..data.ontology import ATTRIBUTES, hidden_attributes
    from ..model.encoder_train import attribute_layout

    cols_val, cols_conf = [], []
    for a, (_, start, n) in zip(ATTRIBUTES, attribute_layout(), strict=True):
        if n == 1:
            p = torch.sigmoid(attr_NO[:, start])
            val = p > 0.5
            cols_val.append([bool(v) for v in val.tolist()])
            cols_conf.append(torch.where(val, p, 1 - p).tolist())
        else:
            conf, idx = torch.softmax(attr_NO[:, start : start + n], -1).max(-1)
            cols_val.append([a.values[i] for i in idx.tolist()])
            cols_conf.append(conf.tolist())
    vis_hidden = (torch.sigmoid(vis_NA) > 0.5).tolist()
    names = [a.name for a in ATTRIBUTES]
    values, confidence, hidden = [], [], []
    for i in range(attr_NO.shape[0]):
        full = {nm: cols_val[k][i] for k, nm in enumerate(names)}
        hid = {nm for k, nm in enumerate(names) if vis_hidden[i][k]} | hidden_attributes(full)
        values.append({nm: v for nm, v in full.items() if nm not in hid})
        confidence.append({nm: cols_conf[k][i] for k, nm in enumerate(names) if nm not in hid})
        hidden.append(hid)
    pose = [dict(zip(POSE_KEYS, row, strict=True)) for row in pose_N2.tolist()]
    return JudgePrediction(values, confidence, hidden, pose)


def attribute_accuracy(
    pred: JudgePrediction,
    labels: list[dict],
    hidden: list[set[str]] | None = None,
    attributes=None,
    per_image: bool = False,
) -> dict:
    """Accuracy of ``pred`` against reference label sets.

    An (image, attribute) pair is scored when the reference value is not None and the
    attribute is visible (not in ``hidden[i]`` nor hidden by the ontology's occlusion rules
    applied to ``labels[i]``). A scored attribute the judge called hidden counts as wrong.

    Args:
        attributes: names to score (default: all 46).
        per_image: also return ``"per_image"``: ``[right, scored]`` of each image (for
            bootstrap intervals over images).

    Returns:
        ``{"overall": float, "per_attribute": {name: acc}, "n": int}``; ``overall`` pools
        all scored pairs (``n`` of them); nan when nothing was scored.
    """
    from ..data.ontology import ATTRIBUTES, hidden_attributes

    if len(labels) != len(pred.values):
        raise UserError(f"{len(pred.values)} predictions but {len(labels)} label sets")
    names = [a.name for a in ATTRIBUTES] if attributes is None else list(attributes)
    unknown = sorted(set(names) - {a.name for a in ATTRIBUTES})
    if unknown:
        raise UserError(f"unknown attributes {unknown}; see `unif2ace data ontology`")
    right = dict.fromkeys(names, 0)
    count = dict.fromkeys(names, 0)
    images = []
    for i, lab in enumerate(labels):
        skip = hidden_attributes(lab) | (set(hidden[i]) if hidden is not None else set())
        r = c = 0
        for nm in names:
            if lab.get(nm) is None or nm in skip:
                continue
            ok = int(pred.values[i].get(nm, None) == lab[nm])
            count[nm] += 1
            right[nm] += ok
            r, c = r + ok, c + 1
        images.append([r, c])
    per = {nm: right[nm] / count[nm] for nm in names if count[nm]}
    n = sum(count.values())
    out = {"overall": sum(right.values()) / n if n else math.nan, "per_attribute": per, "n": n}
    return out | {"per_image": images} if per_image else out


# ------------------------------------------------------------------------ save / load
def save_judge(judge: AttributeJudge, folder: str | Path, meta: dict | None = None) -> None:
    """Write ``model.safetensors`` + ``config.json`` into ``folder`` (atomic renames)."""
    from ..atomic import atomic_path, write_json_atomic
    from ..model.encoder_train import attribute_layout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in judge.state_dict().items()}
    cfg = {
        "format": FORMAT,
        "judge": {**asdict(judge.cfg), "blocks": list(judge.cfg.blocks)},
        "outputs": [list(x) for x in attribute_layout()],
        "pose": list(POSE_KEYS),
        **(meta or {}),
    }
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    write_json_atomic(folder / CONFIG, cfg)


def load_judge(path: str | Path) -> AttributeJudge:
    """A saved judge, frozen and in eval mode (UserError when ``path`` is not one); the word
    ``bundled`` names the judge shipped with the package."""
    from .. import bundled
    from ..model.encoder_train import attribute_layout

    folder = Path(bundled.resolve(path, "judge"))
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise UserError(
            f"{str(folder)!r} is not a judge folder (needs {CONFIG} and {WEIGHTS}); train one "
            "with `unif2ace train judge --data DIR --out DIR`"
        )
    meta = json.loads((folder / CONFIG).read_text())
    if meta.get("format") != FORMAT:
        raise UserError(f"{folder / CONFIG} has format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("outputs") != [list(x) for x in attribute_layout()]:
        raise UserError(f"the judge at {str(folder)!r} was trained on another ontology; retrain")
    jc = meta["judge"]
    judge = AttributeJudge(JudgeConfig(**{**jc, "blocks": tuple(jc["blocks"])}))
    judge.load_state_dict(load_file(str(folder / WEIGHTS)))
    return judge.eval().requires_grad_(False)
