"""Resolve labels + identity into one concrete face specification (:class:`Spec`).

All geometry is in head-local units (see render_canvas.Frame); all colours are RGB tuples.
The drawing modules read only the Spec, so every attribute's effect on the picture is decided
here or in one drawing function.

Hidden attributes (ontology.hidden_attributes) are *canonicalised* before drawing: a hidden
binary attribute is drawn as False and a hidden categorical one as a fixed default, so an
occluded attribute cannot change a single pixel (e.g. eye colour under sunglasses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..ontology import BY_NAME, HAIR_ATTRIBUTES, Labels, hidden_attributes
from .render_canvas import hsv

SKIN = {
    "pale": (246, 222, 206),
    "light": (234, 192, 160),
    "medium": (200, 150, 108),
    "tan": (176, 122, 80),
    "brown": (134, 88, 56),
    "dark": (84, 55, 38),
}
HAIR = {
    "black": (30, 26, 26),
    "brown": (96, 60, 34),
    "blond": (220, 182, 110),
    "red": (170, 70, 32),
    "gray": (148, 148, 150),
    "white": (236, 236, 232),
}
IRIS = {  # saturated so the colour survives downsampling to 64 px
    "brown": (104, 56, 22),
    "blue": (40, 110, 225),
    "green": (40, 160, 60),
    "gray": (150, 162, 176),
    "hazel": (170, 128, 40),
}
LIPSTICK = [(200, 16, 40), (226, 60, 130), (130, 20, 70), (235, 80, 60), (170, 0, 30)]
EYESHADOW = [(120, 60, 170), (40, 90, 200), (150, 90, 60), (220, 90, 150), (40, 140, 120)]
METAL = [(242, 196, 52), (226, 228, 240), (250, 240, 225), (230, 40, 60), (60, 120, 240)]
FRAMES = [(20, 20, 24), (110, 60, 30), (200, 160, 60), (170, 30, 40), (30, 60, 150)]
# Hidden categorical attributes are drawn with these values (nothing of them is visible).
CANONICAL = {
    "hairline": "straight",
    "lips": "medium",
    "nose_size": "medium",
    "eye_color": "brown",
    "emotion": "neutral",
    "head_turn": "frontal",
    "glasses": "none",
    "face_shape": "oval",
    "skin_tone": "light",
    "age": "young",
    "eyebrow_shape": "arched",
}

# Face shapes: (width, half-height, forehead width, jaw width, jaw superellipse exponent).
SHAPES = {
    "oval": (1.0, 1.36, 1.0, 0.92, 2.0),
    "round": (1.08, 1.2, 1.0, 1.0, 2.3),
    "square": (1.05, 1.28, 1.0, 1.0, 3.8),
    "heart": (1.02, 1.34, 1.05, 0.82, 1.5),
    "long": (0.92, 1.5, 1.0, 0.92, 2.2),
}


@dataclass
class Expr:
    """Expression parameters (head units): brows, eyelids, mouth."""

    brow_lift: float = 0.0  # whole brow up (+)
    brow_inner: float = 0.0  # inner brow end up (+, sad/fear) or down (-, anger)
    brow_knit: float = 0.0  # inner ends pulled together
    brow_asym: float = 0.0  # one brow raised (contempt)
    eye_open: float = 1.0  # eye aperture multiplier
    lid_flat: float = 0.0  # lowered, flattened upper lid (glare, anger)
    squint: float = 0.0  # raised lower lid (smile, laugh)
    curve: float = 0.0  # mouth corners up (+) / down (-)
    smirk: float = 0.0  # one corner up (contempt)
    mouth_open: float = 0.0  # 0 closed .. 1 laughing
    stretch: float = 1.0  # mouth width multiplier
    lip_press: float = 1.0  # lip thickness multiplier (anger presses lips)
    snarl: float = 0.0  # raised upper lip on one side (disgust)
    teeth: bool = False
    forehead_lines: bool = False
    frown_lines: bool = False
    nose_wrinkle: bool = False


EMOTION = {
    "neutral": {},
    "happy": {"brow_lift": 0.02, "eye_open": 0.9},
    "sad": {"brow_inner": 0.14, "eye_open": 0.75, "curve": -0.9, "brow_lift": -0.02},
    "angry": {
        "brow_inner": -0.13,
        "brow_knit": 0.06,
        "lid_flat": 0.5,
        "curve": -0.3,
        "lip_press": 0.65,
        "frown_lines": True,
    },
    "surprised": {"brow_lift": 0.16, "eye_open": 1.5, "forehead_lines": True, "stretch": 0.8},
    "fearful": {
        "brow_lift": 0.09,
        "brow_inner": 0.11,
        "brow_knit": 0.04,
        "eye_open": 1.4,
        "stretch": 1.18,
        "curve": -0.35,
    },
    "disgusted": {
        "brow_inner": -0.08,
        "eye_open": 0.72,
        "curve": -0.5,
        "snarl": 1.4,
        "nose_wrinkle": True,
    },
    "contempt": {"smirk": 1.3, "brow_asym": 0.08, "eye_open": 0.85},
}


@dataclass
class Spec:
    """Everything the drawing functions need: effective labels, geometry, colours, expression."""

    eff: Labels
    hb: float
    w_top: float
    w_low: float
    p_low: float
    eye_x: float
    eye_y: float
    eye_rx: float
    eye_tilt: float
    brow_gap: float
    brow_th: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_k: float
    ear_y: float
    ear_s: float
    neck_w: float
    skin: tuple
    hair: tuple
    brow: tuple
    facial_hair: tuple
    iris: tuple
    lips: tuple
    male: bool
    age: str
    expr: Expr = field(default_factory=Expr)
    mole: tuple[float, float] = (0.0, 0.0)
    shadow_side: float = 1.0  # which side of the nose is in shadow (-1 left, +1 right)

    def half_width(self, y: float) -> float:
        """Half-width of the face outline at head-local height ``y``."""
        if y <= 0:
            return self.w_top * (1.0 - min(1.0, (-y / self.hb)) ** 2.2) ** (1 / 2.2)
        w = self.w_top + (self.w_low - self.w_top) * min(1.0, y / self.hb) ** 0.7
        return w * max(0.0, 1.0 - min(1.0, y / self.hb) ** self.p_low) ** (1 / self.p_low)


def effective_labels(labels: Labels) -> Labels:
    """Labels as drawn: hidden binary attributes off, hidden categorical ones canonical.

    A not-applicable (None) attribute outside the hair group is drawn the same way; None hair
    attributes mean no hair (bald).
    """
    eff = dict(labels)
    for k in hidden_attributes(labels):
        if labels.get(k) is None and k in HAIR_ATTRIBUTES:
            continue
        eff[k] = False if BY_NAME[k].is_binary else CANONICAL.get(k, BY_NAME[k].values[0])
    return eff


def expression(eff: Labels) -> Expr:
    """Combine the emotion with the action attributes into expression parameters."""
    e = Expr(**EMOTION[eff["emotion"]])
    if eff["smile"]:
        e.curve = max(e.curve, 0.0) + 0.9
        e.squint += 0.35
    if eff["laugh"]:
        e.curve += 0.3
        e.mouth_open = 1.0
        e.eye_open *= 0.8
        e.squint += 0.3
    if eff["mouth_open"]:
        e.mouth_open = max(e.mouth_open, 0.55)
        e.teeth = True
    if eff["frown"]:
        e.brow_inner -= 0.08
        e.brow_knit += 0.045
        e.frown_lines = True
        e.curve = min(e.curve, 0.0) - 0.45
    if eff["glare"]:
        e.lid_flat = max(e.lid_flat, 0.75)
        e.brow_lift -= 0.05
    if eff["raised_eyebrows"]:
        e.brow_lift += 0.13
        e.forehead_lines = True
    if eff["narrow_eyes"]:
        e.eye_open *= 0.62
    return e


def build_spec(labels: Labels, idn: dict) -> Spec:
    """Resolve a label set and identity parameters (identity.py) into a :class:`Spec`."""
    eff = effective_labels(labels)
    male = eff["gender"] == "male"
    g = lambda k: float(idn[k])  # noqa: E731
    w, hb, w_top, w_low, p_low = SHAPES[eff["face_shape"]]
    hb *= 1.0 + 0.05 * g("id_face_height") + 0.03 * g("id_chin_length")
    w_top *= 1.0 + 0.04 * g("id_forehead")
    w_low *= (1.0 + 0.06 * g("id_jaw_width")) * (1.04 if male else 0.97)
    p_low *= 1.2 if male else 1.0
    lip_k = {"thin": 0.45, "medium": 1.0, "full": 1.65}[eff["lips"]]
    lip_k *= (1.0 + 0.12 * g("id_lip_thickness")) * (0.85 if male else 1.08)
    nose_k = {"small": 0.72, "medium": 1.0, "big": 1.42}[eff["nose_size"]]
    sk = np.array(SKIN[eff["skin_tone"]], dtype=float)
    sk = sk * (1.0 + 0.06 * g("id_skin_value")) + np.array([6.0, 0.0, -6.0]) * g("id_skin_hue")
    hair = _hair_colour(eff, g("id_hair_hue"), g("id_hair_value"))
    brow = tuple(
        c * (0.55 if eff.get("hair_color") in ("blond", "white", "gray") else 0.8) for c in hair
    )
    if eff["hair_color"] in ("gray", "white"):
        brow = tuple(0.6 * c + 0.4 * 120 for c in hair)
    iris = np.array(IRIS[eff["eye_color"]], dtype=float) * (1.0 + 0.1 * g("id_iris_hue"))
    lips = tuple(0.45 * sk + 0.55 * np.array([190.0, 80.0, 88.0]) * (sk.mean() / 190.0) ** 0.6)
    if eff["age"] == "old":
        w_low *= 1.02
    return Spec(
        eff=eff,
        hb=hb,
        w_top=w_top * w,
        w_low=w_low * w,
        p_low=p_low,
        eye_x=0.37 + 0.035 * g("id_eye_spacing"),
        eye_y=0.02 + 0.04 * g("id_eye_height"),
        eye_rx=0.195 * (1.0 + 0.07 * g("id_eye_size")) * (1.0 if male else 1.06),
        eye_tilt=0.025 * g("id_eye_tilt") + (0.0 if male else 0.015),
        brow_gap=(0.22 + 0.03 * g("id_brow_height")) * (0.92 if male else 1.05),
        brow_th=(0.05 + 0.01 * g("id_brow_thickness")) * (1.25 if male else 0.85),
        nose_len=(0.4 + 0.04 * g("id_nose_length")) * (0.72 + 0.28 * nose_k),
        nose_w=(0.12 + 0.012 * g("id_nose_width")) * nose_k * (1.08 if male else 0.95),
        mouth_y=0.68 + 0.04 * g("id_mouth_height") + 0.08 * (hb - 1.36),
        mouth_w=(0.28 + 0.02 * g("id_mouth_width")) * (1.04 if male else 0.98),
        lip_k=lip_k,
        ear_y=0.15 + 0.04 * g("id_ear_height"),
        ear_s=1.0 + 0.1 * g("id_ear_size"),
        neck_w=(0.5 + 0.04 * g("id_neck_width")) * (1.12 if male else 0.92),
        skin=tuple(np.clip(sk, 0, 255)),
        hair=hair,
        brow=brow,
        facial_hair=_facial_hair_colour(eff, hair),
        iris=tuple(np.clip(iris, 0, 255)),
        lips=lips,
        male=male,
        age=eff["age"],
        expr=expression(eff),
        mole=(
            math.copysign(0.3 + 0.22 * abs(g("id_mole_x")), g("id_mole_x")),
            0.3 + 0.18 * g("id_mole_y"),
        ),
        shadow_side=-1.0 if light_vector(idn)[0] > 0 else 1.0,
    )


def _hair_colour(eff: Labels, hue: float, value: float) -> tuple:
    name = eff.get("hair_color") or ("gray" if eff["age"] == "old" else "brown")
    base = np.array(HAIR[name], dtype=float)
    base = base * (1.0 + 0.12 * value) + np.array([8.0, 2.0, -8.0]) * hue
    return tuple(np.clip(base, 0, 255))


def _facial_hair_colour(eff: Labels, hair: tuple) -> tuple:
    if eff.get("hair_color") is None:  # bald: a plausible beard colour for the age
        return (120, 118, 116) if eff["age"] == "old" else (70, 48, 32)
    return tuple(c * 0.85 for c in hair)


def light_vector(idn: dict) -> tuple[float, float, float]:
    """Unit light direction (x right, y down, z towards the viewer) from scene parameters."""
    az = float(idn["scene_light_azimuth"])
    el = float(idn["scene_light_elevation"]) * math.pi / 2
    return (math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el))


def background_colours(idn: dict) -> tuple[tuple, tuple]:
    """Two background gradient colours from the scene parameters."""
    h, s, v = (float(idn[k]) for k in ("scene_bg_hue", "scene_bg_saturation", "scene_bg_value"))
    c1 = hsv(h, s, v)
    c2 = hsv(
        h + 0.15 * float(idn["scene_bg_hue_shift"]),
        s * 0.8,
        v * (1.0 - 0.45 * float(idn["scene_bg_gradient"])),
    )
    return c1, c2
