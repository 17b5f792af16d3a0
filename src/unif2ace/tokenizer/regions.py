"""Where the fine attributes are: per-pixel loss weights around a face's landmarks.

The fine attributes (eye colour, narrow eyes, earrings, lipstick, freckles, moles) live in a
few dozen pixels of a 128 px face — well under 2 % of a plain pixel loss — so a tokenizer
trained on it spends its bits on hair and background first (docs/training.md). A region map
puts Gaussian bumps on the landmarks where those attributes are drawn, sized by the head.

Landmarks come from a record's labels and identity (FaceForge shards carry both;
:func:`unif2ace.data.faceforge.render.face_landmarks` gives the exact pixel positions the
renderer used). Records without them (real photos imported without landmarks) get no bumps:
their weight map is all ones.

Shape legend: B batch, H/W pixels.
"""

from __future__ import annotations

import json

import torch

from ..errors import UserError

# region -> (landmark keys, Gaussian sigma in head half-widths). Sigmas cover the drawn
# feature: an eye with its iris and lids, an ear lobe with its earring, the lips, a cheek
# (freckles, rosy cheeks), a mole.
FINE_REGIONS: dict[str, tuple[tuple[str, ...], float]] = {
    "eyes": (("left_eye", "right_eye"), 0.13),
    "ear_lobes": (("left_lobe", "right_lobe"), 0.12),
    "mouth": (("mouth",), 0.16),
    "cheeks": (("left_cheek", "right_cheek"), 0.2),
    "mole": (("mole",), 0.08),
}

Landmarks = dict[str, tuple[float, ...]]


def record_landmarks(
    attributes: str | dict | None, identity: str | dict | None, size: int = 128
) -> Landmarks | None:
    """Landmarks of a FaceForge record in pixels of a ``size``-pixel image, else ``None``.

    ``attributes`` / ``identity``: the shard columns (JSON text or dicts). A record without an
    identity (an imported real photo) has no landmarks. The renderer draws the same face at
    every size, so the 128 px positions are scaled.
    """
    if not identity or not attributes:
        return None
    from ..data.faceforge.render import face_landmarks

    labels = json.loads(attributes) if isinstance(attributes, str) else attributes
    ident = json.loads(identity) if isinstance(identity, str) else identity
    try:
        lm = face_landmarks(labels, ident)
    except (UserError, KeyError, ValueError, TypeError):
        return None  # not a FaceForge record (labels outside the ontology, other identity)
    k = size / 128
    return {name: tuple(v * k for v in values) for name, values in lm.items()}


def region_map(landmarks: list[Landmarks | None], size: int) -> torch.Tensor:
    """``(B, 1, size, size)`` map: the sum of the :data:`FINE_REGIONS` bumps (peak 1 each)
    at landmarks given in pixels of a ``size``-pixel image. ``None`` gives an all-zero map."""
    ys = torch.arange(size, dtype=torch.float32).view(size, 1) + 0.5
    xs = torch.arange(size, dtype=torch.float32).view(1, size) + 0.5
    out = torch.zeros(len(landmarks), 1, size, size)
    for b, lm in enumerate(landmarks):
        if lm is None:
            continue
        half = lm["head_halfwidth"][0]
        for keys, sigma in FINE_REGIONS.values():
            s2 = 2 * (sigma * half) ** 2
            for key in keys:
                x, y = lm[key]
                out[b, 0] += torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / s2)
    return out


def region_weights(regions_B1HW: torch.Tensor, strength: float) -> torch.Tensor:
    """Loss weights ``1 + strength · R / mean(R)`` per image (R = :func:`region_map`).

    With ``strength`` 1 the regions carry as much of the loss as the whole image does
    without them; images with no landmarks (R = 0) keep weight 1.
    """
    mean = regions_B1HW.mean((2, 3), keepdim=True)
    return 1.0 + strength * regions_B1HW / mean.clamp_min(1e-12) * (mean > 0)
