"""FaceForge targets and batches for the in-project encoders and the attribute judge.

Shape legend: N records, C channels, H/W pixels, A attributes (46), O head outputs (90),
P identity parameters (26).

* :func:`attribute_layout`: where each of the 46 ontology attributes sits among the 90 head
  outputs (one logit per binary attribute, one per value of a categorical one);
* :func:`semantic_targets` / :func:`identity_targets`: a record's targets (hidden and
  not-applicable attributes are -1 and masked out of :func:`semantic_loss`);
* :func:`load_split`: images (uint8, resized) + targets of a split;
* :func:`batch_indices`: seeded epoch permutations, a pure function of (step, seed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError

KINDS: tuple[str, ...] = ("semantic", "identity")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UserError(f"unknown encoder kind {kind!r}; valid: {', '.join(KINDS)}")


def attribute_layout() -> list[tuple[str, int, int]]:
    """``(name, first head output, n outputs)`` per ontology attribute, in ontology order.

    Binary attributes take one logit; categorical ones one logit per value.
    """
    from ..data.ontology import ATTRIBUTES

    out, start = [], 0
    for a in ATTRIBUTES:
        n = 1 if a.is_binary else len(a.values)
        out.append((a.name, start, n))
        start += n
    return out


def semantic_targets(labels: dict, hidden: list[str] | set[str] = ()) -> list[int]:
    """Targets_A of one face: 0/1 (binary), value index (categorical), -1 hidden / n/a."""
    from ..data.ontology import ATTRIBUTES, hidden_attributes

    masked = hidden_attributes(labels) | set(hidden)
    out = []
    for a in ATTRIBUTES:
        v = labels.get(a.name)
        if v is None or a.name in masked:
            out.append(-1)
        else:
            out.append(int(v) if a.is_binary else a.values.index(v))
    return out


def identity_targets(identity: dict) -> list[float]:
    """Targets_P: the 26 ``id_*`` parameters in ``IDENTITY_KEYS`` order (scene_* ignored)."""
    from ..data.faceforge.identity import IDENTITY_KEYS

    missing = [k for k in IDENTITY_KEYS if k not in identity]
    if missing:
        raise UserError(
            f"record lacks identity parameters {missing[:3]}...; the identity encoder needs "
            "a FaceForge data set (real photos have no identity parameters)"
        )
    return [float(identity[k]) for k in IDENTITY_KEYS]


def semantic_loss(logits_BO: torch.Tensor, targets_BA: torch.Tensor) -> torch.Tensor:
    """Mean over visible (face, attribute) pairs of BCE (binary) / CE (categorical).

    Entries with target -1 (hidden or not applicable) contribute nothing, and their logits
    get no gradient.
    """
    logits_BO = logits_BO.float()
    total = logits_BO.new_zeros(())
    for a, (_, start, n) in enumerate(attribute_layout()):
        t_B = targets_BA[:, a]
        vis_B = t_B >= 0
        if not vis_B.any():
            continue
        if n == 1:
            x_B = logits_BO[vis_B, start]
            total = total + F.binary_cross_entropy_with_logits(
                x_B, t_B[vis_B].float(), reduction="sum"
            )
        else:
            x_BV = logits_BO[vis_B, start : start + n]
            total = total + F.cross_entropy(x_BV, t_B[vis_B], reduction="sum")
    return total / (targets_BA >= 0).sum().clamp_min(1)


def identity_loss(pred_BP: torch.Tensor, targets_BP: torch.Tensor) -> torch.Tensor:
    """MSE of the identity-parameter regression."""
    return F.mse_loss(pred_BP.float(), targets_BP.float())


# --------------------------------------------------------------------------------- data
def load_split(
    data_dir: str | Path, split: str, kind: str, size: int, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images_NCHW (uint8, ``size`` px, bicubic as ``train.task.encoder_image``) + targets.

    Targets: long ``(N, A)`` for ``semantic``, float ``(N, P)`` for ``identity``.
    """
    from PIL import Image

    from ..data.shards import decode_image, iter_records, labels_of

    _check_kind(kind)
    cols = ["image", "attributes", "hidden"] if kind == "semantic" else ["image", "identity"]
    images, targets = [], []
    for rec in iter_records(data_dir, split, cols):
        img = decode_image(rec["image"])
        if img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
        images.append(np.asarray(img, dtype=np.uint8))
        if kind == "semantic":
            targets.append(semantic_targets(labels_of(rec), rec["hidden"] or ()))
        else:
            targets.append(identity_targets(json.loads(rec["identity"] or "{}")))
        if limit is not None and len(images) >= limit:
            break
    if not images:
        raise UserError(f"split {split!r} of {str(data_dir)!r} is empty; build the data set first")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    dtype = torch.long if kind == "semantic" else torch.float32
    return x, torch.tensor(targets, dtype=dtype)


def to_unit(images_NCHW: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1] (the encoders' input convention)."""
    return images_NCHW.float() / 255.0


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Record indices of ``step``: epochs of seeded permutations, read in order.

    A pure function of (step, seed), so a resumed run reads exactly the same batches.
    """
    pos = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs, rows = pos // n, pos % n
    out = torch.empty_like(pos)
    for e in epochs.unique().tolist():
        g = torch.Generator().manual_seed(seed * 1_000_003 + e)
        perm = torch.randperm(n, generator=g)
        sel = epochs == e
        out[sel] = perm[rows[sel]]
    return out
