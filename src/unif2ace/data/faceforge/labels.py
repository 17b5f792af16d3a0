"""Sampling coherent FaceForge label sets.

``sample_labels(rng, fixed)`` draws every one of the ontology's 46 attributes so that the
hard coherence rules of :mod:`unif2ace.data.ontology` hold and the soft correlations look like
faces do (older people have grey hair and wrinkles, beards go with men, a happy face smiles,
a surprised face raises its brows). Attributes in ``fixed`` are kept as given (a user's
generation request, or a held-out combination), the rest are drawn conditionally on them.

The draw is sequential: identity-level attributes first (gender, age, skin), then hair, face,
accessories, emotion, and finally actions conditioned on the emotion. Each step consults
``fixed`` first. After drawing, a repair pass enforces the hard rules on non-fixed attributes;
a fixed set that itself breaks a rule raises ``UserError`` (via ``ontology.validate``).
"""

from __future__ import annotations

import numpy as np

from ...errors import UserError
from .. import ontology as onto
from ..ontology import Labels

MAX_TRIES = 64

# Marginal probabilities of binary attributes, before conditioning (roughly CelebA-like but
# flatter, so rare fine-grained attributes are seen often enough to be learned).
BINARY_PRIOR: dict[str, float] = {
    "bangs": 0.25,
    "bald": 0.08,
    "beard": 0.3,
    "five_o_clock_shadow": 0.25,
    "sideburns": 0.25,
    "mustache": 0.3,
    "earrings": 0.3,
    "necklace": 0.25,
    "hat": 0.15,
    "face_mask": 0.08,
    "freckles": 0.25,
    "wrinkles": 0.2,
    "moles": 0.25,
    "rosy_cheeks": 0.25,
    "bags_under_eyes": 0.25,
    "lipstick": 0.35,
    "makeup": 0.3,
    "bushy_eyebrows": 0.3,
    "narrow_eyes": 0.25,
    "pointy_nose": 0.3,
    "double_chin": 0.15,
    "high_cheekbones": 0.35,
    "eyes_closed": 0.1,
    "raised_eyebrows": 0.15,
    "head_tilt": 0.2,
    "wink": 0.05,
    "glare": 0.1,
    "frown": 0.1,
    "mouth_open": 0.2,
}

# Emotion -> (P(smile), P(laugh | smile), P(frown), P(glare), P(raised brows), P(mouth open)).
EMOTION_ACTIONS: dict[str, tuple[float, float, float, float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0, 0.03, 0.05, 0.1),
    "happy": (1.0, 0.4, 0.0, 0.0, 0.15, 0.2),
    "sad": (0.0, 0.0, 0.6, 0.0, 0.2, 0.1),
    "angry": (0.0, 0.0, 0.7, 0.6, 0.0, 0.3),
    "surprised": (0.2, 0.1, 0.0, 0.0, 0.9, 0.8),
    "fearful": (0.0, 0.0, 0.3, 0.0, 0.8, 0.6),
    "disgusted": (0.0, 0.0, 0.7, 0.2, 0.0, 0.3),
    "contempt": (0.3, 0.0, 0.1, 0.3, 0.1, 0.05),
}
EMOTION_PRIOR = {
    "neutral": 0.22,
    "happy": 0.22,
    "sad": 0.1,
    "angry": 0.1,
    "surprised": 0.1,
    "fearful": 0.08,
    "disgusted": 0.08,
    "contempt": 0.1,
}


def _pick(rng: np.random.Generator, probs: dict[str, float]) -> str:
    keys = list(probs)
    p = np.array([probs[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _flip(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


class _Drawer:
    """Draws attributes one by one, honouring the fixed ones."""

    def __init__(self, rng: np.random.Generator, fixed: Labels):
        self.rng, self.fixed, self.l = rng, fixed, {}

    def cat(self, name: str, probs: dict[str, float]) -> str | None:
        v = self.fixed[name] if name in self.fixed else _pick(self.rng, probs)
        self.l[name] = v
        return v

    def bin(self, name: str, p: float) -> bool | None:
        v = self.fixed[name] if name in self.fixed else _flip(self.rng, p)
        self.l[name] = v
        return v

    def set_default(self, name: str, value) -> None:
        """Set a value derived from a rule, unless the user fixed it."""
        if name not in self.fixed:
            self.l[name] = value


def sample_labels(rng: np.random.Generator, fixed: Labels | None = None) -> Labels:
    """Draw a coherent label set (every attribute), keeping ``fixed`` attributes as given.

    Raises:
        UserError: ``fixed`` names an unknown attribute or value, or contradicts itself.
    """
    fixed = dict(fixed or {})
    onto.validate(fixed, partial=True)
    # Rejection on top of conditional drawing: a fixed attribute can make some draws of the
    # others incoherent (a fixed frown with a drawn happy emotion); redraw those.
    for _ in range(MAX_TRIES - 1):
        labels = _draw(rng, fixed)
        try:
            onto.validate(labels)
            return labels
        except UserError:
            continue
    labels = _draw(rng, fixed)
    onto.validate(labels)  # raises the contradiction the fixed attributes force
    return labels


def _draw(rng: np.random.Generator, fixed: Labels) -> Labels:
    d = _Drawer(rng, fixed)
    bp = BINARY_PRIOR
    gender = d.cat("gender", {"male": 0.5, "female": 0.5})
    male = gender == "male"
    age = d.cat("age", {"young": 0.45, "middle_aged": 0.35, "old": 0.2})
    old = age == "old"
    d.cat("skin_tone", {k: 1.0 for k in onto.BY_NAME["skin_tone"].values})
    _hair(d, male, old)
    # Beard group: mostly men; a full beard excludes stubble.
    beard = d.bin("beard", bp["beard"] * 2 if male else 0.0)
    d.bin("five_o_clock_shadow", 0.0 if beard or not male else bp["five_o_clock_shadow"] * 2)
    d.bin("mustache", (0.7 if beard else bp["mustache"]) if male else 0.0)
    d.bin("sideburns", bp["sideburns"] * (1.6 if male else 0.3))
    # Accessories.
    d.bin("earrings", bp["earrings"] * (0.4 if male else 1.8))
    d.bin("necklace", bp["necklace"] * (0.6 if male else 1.4))
    d.bin("hat", bp["hat"])
    d.cat("glasses", {"none": 0.6, "eyeglasses": 0.25, "sunglasses": 0.15})
    d.bin("face_mask", bp["face_mask"])
    # Skin texture.
    d.bin("freckles", bp["freckles"])
    d.bin("wrinkles", 0.85 if old else (0.25 if age == "middle_aged" else 0.02))
    d.bin("moles", bp["moles"])
    d.bin("rosy_cheeks", bp["rosy_cheeks"])
    d.bin("bags_under_eyes", bp["bags_under_eyes"] * (1.8 if old else 1.0))
    # Others.
    d.bin("lipstick", 0.03 if male else bp["lipstick"] * 1.8)
    d.bin("makeup", 0.03 if male else bp["makeup"] * 1.8)
    d.cat(
        "face_shape",
        {
            "oval": 1,
            "round": 1,
            "square": 1.6 if male else 0.5,
            "heart": 0.4 if male else 1.4,
            "long": 1,
        },
    )
    d.cat(
        "eyebrow_shape",
        {"straight": 1.4 if male else 0.8, "arched": 0.6 if male else 1.6, "angled": 1},
    )
    d.bin("bushy_eyebrows", bp["bushy_eyebrows"] * (1.6 if male else 0.5))
    d.cat("eye_color", {"brown": 1.5, "blue": 1, "green": 1, "gray": 0.7, "hazel": 1})
    d.bin("narrow_eyes", bp["narrow_eyes"])
    d.cat("nose_size", {"small": 1, "medium": 1, "big": 1})
    d.bin("pointy_nose", bp["pointy_nose"])
    d.cat("lips", {"thin": 1, "medium": 1, "full": 1})
    d.bin("double_chin", bp["double_chin"] * (1.8 if old else 0.8))
    d.bin("high_cheekbones", bp["high_cheekbones"])
    _expression(d)
    d.cat("head_turn", {"frontal": 0.6, "left": 0.2, "right": 0.2})
    d.bin("head_tilt", bp["head_tilt"])
    labels = {name: d.l[name] for name in onto.NAMES}
    _repair(labels, fixed)
    return labels


def _hair(d: _Drawer, male: bool, old: bool) -> None:
    has_hair = any(d.fixed.get(k) not in (None, False) for k in onto.HAIR_ATTRIBUTES)
    p_bald = 0.0 if has_hair or not male else BINARY_PRIOR["bald"] * (3 if old else 1.5)
    bald = d.bin("bald", p_bald)
    if bald:
        for k in onto.HAIR_ATTRIBUTES:
            d.set_default(k, None)
        d.l.update({k: d.fixed.get(k) for k in onto.HAIR_ATTRIBUTES})
        return
    colors = {"black": 1, "brown": 1, "blond": 0.8, "red": 0.5, "gray": 0.15, "white": 0.05}
    if old:
        colors.update(gray=3.0, white=1.5)
    d.cat("hair_color", colors)
    d.cat(
        "hair_length",
        {"short": 2.0, "medium": 0.8, "long": 0.3}
        if male
        else {"short": 0.4, "medium": 1, "long": 1.6},
    )
    d.cat("hair_type", {"straight": 1, "wavy": 1, "curly": 0.8})
    d.cat("hairline", {"straight": 2, "receding": 0.8 if male else 0.1, "widows_peak": 0.4})
    d.bin("bangs", BINARY_PRIOR["bangs"] * (0.6 if male else 1.4))


def _expression(d: _Drawer) -> None:
    emotion = d.cat("emotion", EMOTION_PRIOR)
    p_smile, p_laugh, p_frown, p_glare, p_brows, p_open = EMOTION_ACTIONS[emotion]
    smile = d.bin("smile", p_smile)
    laugh = d.bin("laugh", p_laugh if smile else 0.0)
    d.bin("frown", 0.0 if smile else p_frown)
    closed = d.bin("eyes_closed", BINARY_PRIOR["eyes_closed"] * (2 if laugh else 1))
    d.bin("glare", 0.0 if closed else p_glare)
    d.bin("wink", 0.0 if closed or d.l["glare"] else BINARY_PRIOR["wink"])
    d.bin("raised_eyebrows", p_brows)
    d.bin("mouth_open", 1.0 if laugh else p_open)


def _repair(l: Labels, fixed: Labels) -> None:
    """Make non-fixed attributes agree with the hard rules implied by the fixed ones."""

    def unset(name: str, value) -> None:
        if name not in fixed:
            l[name] = value

    if l["laugh"]:
        unset("mouth_open", True)
        unset("smile", True)
    if l["smile"]:
        unset("frown", False)
        if l["emotion"] in ("neutral", "sad", "angry", "fearful", "disgusted"):
            unset("emotion", "happy")
    if l["emotion"] == "happy" and not l["smile"]:
        unset("emotion", "neutral")
    if l["emotion"] == "neutral" and (l["frown"] or l["laugh"]):
        unset("emotion", "sad" if l["frown"] else "happy")
    if l["eyes_closed"]:
        unset("glare", False)
        unset("wink", False)
    if l["wink"]:
        unset("glare", False)
    if l["beard"]:
        unset("five_o_clock_shadow", False)
    if l["face_mask"] and l["glasses"] == "sunglasses" and l["hat"]:
        unset("hat", False)
        if l["hat"]:
            unset("glasses", "eyeglasses")
