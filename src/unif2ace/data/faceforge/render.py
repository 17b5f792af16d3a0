"""FaceForge renderer: a seeded procedural face from a label set and identity parameters.

Public API::

    sample_identity(rng) -> dict[str, float]      # identity (id_*) + scene (scene_*) params
    render_face(labels, identity, size=128, seed=0) -> PIL.Image.Image (RGB, size x size)

How it draws: every layer is a polygon in head-local coordinates (render_canvas.Frame: a small
3D head model for yaw, a roll about the neck for tilt), painted with Pillow at 2-4x the output
resolution and downsampled with a Lanczos filter (anti-aliasing); then a soft Lambertian
shading term on the head ellipsoid adds the scene's light. Painter's order: background,
shoulders, back hair, neck and necklace, ears and earrings, head, skin texture, facial hair,
eyes, brows, nose, mouth, mustache, front hair, hat, face mask, glasses.

Determinism: no global RNG; each layer that needs randomness (hair texture, freckles, accessory
styles) draws from its own ``numpy.random.Generator`` seeded by ``(seed, layer)``, so toggling one
attribute never reshuffles another layer's randomness. Same inputs ⇒ byte-identical image.

Conventions a caption writer must know: ``head_turn="left"`` turns the face towards the image's
left (``right`` towards the image's right); a wink closes the eye on the image's right.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ...errors import UserError
from ..ontology import Labels, validate
from . import render_accessories as acc
from . import render_features as feat
from . import render_hair as hair
from . import render_head as hd
from .identity import check_identity, sample_identity
from .render_canvas import Canvas, Frame
from .render_spec import Spec, background_colours, build_spec, light_vector

__all__ = ["SIZES", "face_landmarks", "render_face", "sample_identity"]

SIZES = (64, 128, 256)
SUPERSAMPLE = {64: 4, 128: 3, 256: 2}  # canvas = size * factor, then Lanczos down
DETAIL = {64: 1.6, 128: 1.0, 256: 0.8}  # tiny details (freckles, mole) grow at small sizes
YAW_TURN = 0.4  # radians for head_turn left/right
ROLL_TILT = 0.2  # radians for head_tilt
LAYERS = (
    "hair_back",
    "hair_front",
    "freckles",
    "eyes",
    "facial_hair",
    "earrings",
    "necklace",
    "hat",
    "glasses",
    "mask",
)


def render_face(labels: Labels, identity: dict, size: int = 128, seed: int = 0) -> Image.Image:
    """Render one face.

    Args:
        labels: a complete, coherent label set (every ontology attribute; ontology.validate).
        identity: parameters from :func:`sample_identity` (``id_*`` and ``scene_*`` keys).
        size: output side in pixels, one of 64, 128, 256.
        seed: seeds the per-layer texture/style generators.

    Returns:
        An RGB image of ``size x size`` pixels.
    """
    if size not in SIZES:
        raise UserError(f"render size {size!r} is not supported; use one of {SIZES}")
    if not isinstance(labels, dict):
        raise UserError("labels must be a dict mapping attribute names to values")
    validate(labels)
    check_identity(identity)
    sp = build_spec(labels, identity)
    S = size * SUPERSAMPLE[size]
    head_f, body_f = _frames(sp, identity, S)
    c1, c2 = background_colours(identity)
    img = hd.background(
        S, c1, c2, float(identity["scene_bg_angle"]), float(identity["scene_bg_gradient"])
    )
    cv = Canvas(img, head_f, DETAIL[size])
    body = Canvas(img, body_f, DETAIL[size])
    rng = {name: np.random.default_rng([int(seed), i]) for i, name in enumerate(LAYERS)}
    _paint(cv, body, sp, identity, rng)
    out = img.resize((size, size), Image.LANCZOS)
    return _light(out, sp, head_f, identity, S)


def face_landmarks(labels: Labels, identity: dict, size: int = 128) -> dict[str, tuple]:
    """Pixel positions ``(x, y)`` of key points in the image :func:`render_face` draws.

    Keys: left_eye, right_eye (image left/right), nose_tip, mouth, chin, forehead, left_lobe,
    right_lobe (ear lobes, where earrings hang), left_cheek, right_cheek, mole, neck_base, and
    ``head_halfwidth`` (a 1-tuple: pixels per head unit). Useful for crops and for tests.
    """
    if size not in SIZES:
        raise UserError(f"render size {size!r} is not supported; use one of {SIZES}")
    validate(labels)
    check_identity(identity)
    sp = build_spec(labels, identity)
    S = size * SUPERSAMPLE[size]
    f, body_f = _frames(sp, identity, S)
    k = size / S
    f, body_f = (replace(fr, cx=fr.cx * k, cy=fr.cy * k, a=fr.a * k) for fr in (f, body_f))
    lobe_y = sp.ear_y + 0.23 * sp.ear_s * 0.82
    lobe_x = sp.half_width(sp.ear_y) + 0.13 * sp.ear_s * 0.45
    pts = {
        "left_eye": (f, -sp.eye_x, sp.eye_y, 0.0),
        "right_eye": (f, sp.eye_x, sp.eye_y, 0.0),
        "nose_tip": (f, 0.0, sp.eye_y + sp.nose_len - 0.05, 0.3),
        "mouth": (f, 0.0, sp.mouth_y, 0.0),
        "chin": (f, 0.0, sp.hb * 0.95, 0.3),
        "forehead": (f, 0.0, sp.eye_y - sp.brow_gap - 0.25, 0.0),
        "left_lobe": (f, -lobe_x, lobe_y, -0.3),
        "right_lobe": (f, lobe_x, lobe_y, -0.3),
        "left_cheek": (f, -0.45, sp.eye_y + 0.33, 0.0),
        "right_cheek": (f, 0.45, sp.eye_y + 0.33, 0.0),
        "mole": (f, sp.mole[0], sp.eye_y + sp.mole[1], 0.0),
        "neck_base": (body_f, 0.0, sp.hb + 0.6, 0.0),
    }
    out = {
        name: tuple(float(v) for v in fr.map([x], [y], dz)[0])
        for name, (fr, x, y, dz) in pts.items()
    }
    out["head_halfwidth"] = (float(f.a),)
    return out


def _paint(cv: Canvas, body: Canvas, sp: Spec, idn: dict, rng: dict) -> None:
    """All layers in painter's order."""
    hd.clothes(body, sp, idn)
    hair.hair_back(cv, sp, rng["hair_back"])
    hd.neck(cv, sp, idn)
    acc.necklace(body, sp, rng["necklace"])
    lobes = hd.ears(cv, sp)
    acc.earrings(cv, sp, lobes, rng["earrings"])
    hd.head(cv, sp)
    hd.skin_details(cv, sp, rng["freckles"])
    hair.facial_hair(cv, sp, rng["facial_hair"])
    feat.eyes(cv, sp, rng["eyes"])
    feat.brows(cv, sp)
    feat.nose(cv, sp)
    feat.mouth(cv, sp, _lip_colour(sp, rng["eyes"]))
    hair.mustache(cv, sp)
    hair.hair_front(cv, sp, rng["hair_front"])
    acc.hat(cv, sp, rng["hat"])
    acc.face_mask(cv, sp, rng["mask"])
    acc.glasses(cv, sp, rng["glasses"])


def _lip_colour(sp: Spec, rng: np.random.Generator):
    from .render_spec import LIPSTICK

    shade_i = int(rng.integers(len(LIPSTICK)))  # drawn always: keeps the stream aligned
    return LIPSTICK[shade_i] if sp.eff["lipstick"] else sp.lips


def _frames(sp: Spec, idn: dict, S: int) -> tuple[Frame, Frame]:
    """Head frame (pose from labels + scene jitter) and the un-rotated body frame."""
    turn = {"frontal": 0.0, "left": -YAW_TURN, "right": YAW_TURN}[sp.eff["head_turn"]]
    yaw = turn + 0.07 * float(idn["scene_yaw"])
    jr = float(idn["scene_roll"])
    if sp.eff["head_tilt"]:
        roll = math.copysign(ROLL_TILT + 0.06 * abs(jr), jr if jr != 0 else 1.0)
    else:
        roll = 0.04 * jr
    a = S * 0.2 * (1.0 + 0.05 * float(idn["scene_scale"]))
    cx = S * (0.5 + 0.025 * float(idn["scene_offset_x"]))
    cy = S * (0.47 + 0.02 * float(idn["scene_offset_y"])) - (sp.hb - 1.36) * a * 0.3
    pivot = sp.hb + 0.6
    return (
        Frame(cx, cy, a, sp.hb, yaw, roll, pivot),
        Frame(cx + a * 0.5 * math.sin(yaw) * 0.3, cy, a, sp.hb, 0.0, 0.0, pivot),
    )


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    g = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(g, g)


def _light(img: Image.Image, sp: Spec, f: Frame, idn: dict, S: int) -> Image.Image:
    """Lambertian shading of the head plus a gentle whole-image light gradient.

    Normals come from an ellipsoid (semi-axes a*1.15, a*hb*1.1 around the head centre); the
    factor is 1 + k * 0.3 * (n.L - L_z) on the head (a softened mask of its outline, so the
    background gets no halo) plus 1 + k * 0.16 * (position . L) everywhere.
    """
    size = img.size[0]
    xx, yy = _grid(size)
    lx, ly, lz = light_vector(idn)
    k = float(idn["scene_light_intensity"])
    dx = (xx * S - f.cx) / (f.a * 1.15)
    dy = (yy * S - f.cy) / (f.a * sp.hb * 1.1)
    nz = np.sqrt(np.clip(1.0 - dx * dx - dy * dy, 0.0, 1.0))
    ndotl = dx * lx + dy * ly + nz * lz
    glob = (xx - 0.5) * lx + (yy - 0.5) * ly
    fac = 1.0 + k * (0.3 * (ndotl - lz) * _head_mask(sp, f, size, S) + 0.16 * glob)
    arr = np.asarray(img, dtype=np.float32) * fac[..., None].astype(np.float32)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


def _head_mask(sp: Spec, f: Frame, size: int, S: int) -> np.ndarray:
    """Soft [0, 1] mask of the head (face outline) at output resolution ``size``."""
    k = size / S
    small = replace(f, cx=f.cx * k, cy=f.cy * k, a=f.a * k)
    out = Image.new("L", (size, size), 0)
    x, y = hd.head_outline(sp, grow=0.04)
    ImageDraw.Draw(out).polygon(small.map(x, y).ravel().tolist(), fill=255)
    out = out.filter(ImageFilter.BoxBlur(1))
    return np.asarray(out, dtype=np.float32) / 255.0
