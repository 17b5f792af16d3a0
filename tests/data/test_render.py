"""FaceForge renderer: determinism, sizes, errors, and that every attribute is visible where it
should be (and hidden attributes change nothing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unif2ace.data.faceforge.identity import IDENTITY_KEYS, SCENE_KEYS
from unif2ace.data.faceforge.render import face_landmarks, render_face, sample_identity
from unif2ace.data.ontology import ATTRIBUTES, validate
from unif2ace.errors import UserError

BASE = {
    "hair_color": "brown",
    "hair_length": "medium",
    "hair_type": "straight",
    "hairline": "straight",
    "bangs": False,
    "bald": False,
    "beard": False,
    "five_o_clock_shadow": False,
    "sideburns": False,
    "mustache": False,
    "earrings": False,
    "necklace": False,
    "hat": False,
    "glasses": "none",
    "face_mask": False,
    "skin_tone": "light",
    "freckles": False,
    "wrinkles": False,
    "moles": False,
    "rosy_cheeks": False,
    "bags_under_eyes": False,
    "gender": "female",
    "age": "young",
    "lipstick": False,
    "makeup": False,
    "face_shape": "oval",
    "eyebrow_shape": "arched",
    "bushy_eyebrows": False,
    "eye_color": "brown",
    "narrow_eyes": False,
    "nose_size": "medium",
    "pointy_nose": False,
    "lips": "medium",
    "double_chin": False,
    "high_cheekbones": False,
    "emotion": "neutral",
    "smile": False,
    "laugh": False,
    "glare": False,
    "frown": False,
    "eyes_closed": False,
    "mouth_open": False,
    "raised_eyebrows": False,
    "head_turn": "frontal",
    "head_tilt": False,
    "wink": False,
}

# One coherent change per attribute value that BASE lacks (extra keys keep the set coherent).
VARIANTS = (
    [{"hair_color": c} for c in ("black", "blond", "red", "gray", "white")]
    + [
        {"hair_length": "short"},
        {"hair_length": "long"},
        {"hair_type": "wavy"},
        {"hair_type": "curly"},
        {"hairline": "receding"},
        {"hairline": "widows_peak"},
        {"bangs": True},
        {
            "bald": True,
            "hair_color": None,
            "hair_length": None,
            "hair_type": None,
            "hairline": None,
            "bangs": None,
        },
        {"beard": True},
        {"five_o_clock_shadow": True},
        {"sideburns": True},
        {"mustache": True},
        {"earrings": True},
        {"necklace": True},
        {"hat": True},
        {"glasses": "eyeglasses"},
        {"glasses": "sunglasses"},
        {"face_mask": True},
    ]
    + [{"skin_tone": t} for t in ("pale", "medium", "tan", "brown", "dark")]
    + [
        {"freckles": True},
        {"wrinkles": True},
        {"moles": True},
        {"rosy_cheeks": True},
        {"bags_under_eyes": True},
        {"gender": "male"},
        {"age": "middle_aged"},
        {"age": "old"},
        {"lipstick": True},
        {"makeup": True},
    ]
    + [{"face_shape": s} for s in ("round", "square", "heart", "long")]
    + [
        {"eyebrow_shape": "straight"},
        {"eyebrow_shape": "angled"},
        {"bushy_eyebrows": True},
    ]
    + [{"eye_color": c} for c in ("blue", "green", "gray", "hazel")]
    + [
        {"narrow_eyes": True},
        {"nose_size": "small"},
        {"nose_size": "big"},
        {"pointy_nose": True},
        {"lips": "thin"},
        {"lips": "full"},
        {"double_chin": True},
        {"high_cheekbones": True},
        {"emotion": "happy", "smile": True},
        {"emotion": "sad"},
        {"emotion": "angry"},
        {"emotion": "surprised"},
        {"emotion": "fearful"},
        {"emotion": "disgusted"},
        {"emotion": "contempt"},
        {"glare": True},
        {"eyes_closed": True},
        {"mouth_open": True},
        {"raised_eyebrows": True},
        {"head_turn": "left"},
        {"head_turn": "right"},
        {"head_tilt": True},
        {"wink": True},
    ]
)
# (context, change): the change alone must be visible on top of the context.
PAIRS = [({}, v) for v in VARIANTS] + [
    ({"emotion": "surprised"}, {"smile": True}),
    ({"emotion": "happy", "smile": True}, {"laugh": True, "mouth_open": True}),
    ({"emotion": "sad"}, {"frown": True}),
    ({"emotion": "angry"}, {"glare": True}),
]


def ident(**over) -> dict:
    """Average identity, neutral framing and light (so landmark positions are predictable)."""
    d = {k: 0.0 for k in IDENTITY_KEYS + SCENE_KEYS}
    d.update(
        scene_light_elevation=0.8,
        scene_light_intensity=0.5,
        scene_bg_hue=0.6,
        scene_bg_saturation=0.3,
        scene_bg_value=0.8,
        scene_clothing_value=0.5,
        scene_clothing_saturation=0.5,
        scene_neckline=0.2,
    )
    d.update(over)
    return d


def render(size: int = 128, seed: int = 0, idn: dict | None = None, **over) -> np.ndarray:
    return np.asarray(render_face({**BASE, **over}, idn or ident(), size=size, seed=seed))


def diff_mask(a: np.ndarray, b: np.ndarray, thresh: int = 12) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > thresh


def near(mask: np.ndarray, pts: list[tuple], radius: float) -> float:
    """Fraction of changed pixels within ``radius`` of any of ``pts``."""
    ys, xs = np.nonzero(mask)
    d = np.min([np.hypot(xs - x, ys - y) for x, y in pts], axis=0)
    return float(np.mean(d <= radius))


def test_identity_is_json_and_split() -> None:
    idn = sample_identity(np.random.default_rng(0))
    assert set(idn) == set(IDENTITY_KEYS) | set(SCENE_KEYS)
    assert all(k.startswith("id_") for k in IDENTITY_KEYS)
    assert all(k.startswith("scene_") for k in SCENE_KEYS)
    assert json.loads(json.dumps(idn)) == idn
    assert idn != sample_identity(np.random.default_rng(1))


@pytest.mark.parametrize("size", [64, 128, 256])
def test_sizes(size: int) -> None:
    img = render_face(BASE, ident(), size=size)
    assert img.mode == "RGB" and img.size == (size, size)


def test_deterministic_and_sensitive() -> None:
    rng = np.random.default_rng(3)
    idn = sample_identity(rng)
    labels = {**BASE, "freckles": True, "hair_type": "curly"}
    a = render_face(labels, idn, 128, seed=7).tobytes()
    assert a == render_face(dict(labels), dict(idn), 128, seed=7).tobytes()
    assert a != render_face(labels, idn, 128, seed=8).tobytes()
    assert a != render_face(labels, sample_identity(rng), 128, seed=7).tobytes()


def test_bad_inputs() -> None:
    with pytest.raises(UserError, match="size"):
        render_face(BASE, ident(), size=100)
    with pytest.raises(UserError, match="unknown"):
        render_face({**BASE, "tail": True}, ident())
    with pytest.raises(UserError, match="lacks"):
        render_face({k: v for k, v in BASE.items() if k != "emotion"}, ident())
    with pytest.raises(UserError, match="contradictory"):
        render_face({**BASE, "laugh": True}, ident())
    with pytest.raises(UserError, match="no value"):
        render_face({**BASE, "eye_color": "purple"}, ident())
    with pytest.raises(UserError, match="sample_identity"):
        render_face(BASE, {"id_face_width": 0.0})


def test_every_attribute_value_is_visible() -> None:
    """Each coherent one-attribute change alters a meaningful number of pixels at 64 px."""
    covered = set()
    for ctx, v in PAIRS:
        validate({**BASE, **ctx, **v})
        changed = int(diff_mask(render(64, **ctx), render(64, **ctx, **v)).sum())
        assert changed >= 4, (ctx, v, changed)
        covered.update(v)
    assert covered == {a.name for a in ATTRIBUTES}


@pytest.mark.parametrize(
    "change, where, radius",
    [
        ({"earrings": True}, ["left_lobe", "right_lobe"], 0.35),
        ({"moles": True}, ["mole"], 0.2),
        ({"freckles": True}, ["left_cheek", "right_cheek", "nose_tip"], 0.35),
        ({"eye_color": "blue"}, ["left_eye", "right_eye"], 0.25),
        ({"lipstick": True}, ["mouth"], 0.35),
        ({"glasses": "eyeglasses"}, ["left_eye", "right_eye"], 0.6),
        ({"makeup": True}, ["left_eye", "right_eye"], 0.35),
        ({"necklace": True}, ["neck_base"], 0.9),
    ],
)
@pytest.mark.parametrize("size", [64, 128])
def test_small_attribute_visible_where_expected(change, where, radius, size) -> None:
    a, b = render(size), render(size, **change)
    mask = diff_mask(a, b)
    lm = face_landmarks(BASE, ident(), size)
    unit = lm["head_halfwidth"][0]
    assert mask.sum() >= (3 if size == 64 else 10), change
    assert near(mask, [lm[k] for k in where], radius * unit) > 0.9, change


def test_eye_colours_distinct_in_eyes() -> None:
    for size in (64, 128):
        lm = face_landmarks(BASE, ident(), size)
        x, y = (int(round(v)) for v in lm["right_eye"])
        r = max(2, size // 40)
        cols = {
            c: render(size, eye_color=c)[y - r : y + r + 1, x - r : x + r + 1].reshape(-1, 3)
            for c in ("brown", "blue", "green", "gray", "hazel")
        }
        names = list(cols)
        for i, c1 in enumerate(names):
            for c2 in names[i + 1 :]:
                assert np.abs(cols[c1].astype(int) - cols[c2].astype(int)).max() > 20, (c1, c2)


@pytest.mark.parametrize(
    "occluder, hidden",
    [
        ({"glasses": "sunglasses"}, {"eye_color": "blue"}),
        ({"glasses": "sunglasses"}, {"makeup": True}),
        ({"glasses": "sunglasses"}, {"eyes_closed": True}),
        ({"face_mask": True}, {"lipstick": True}),
        ({"face_mask": True}, {"beard": True}),
        ({"hat": True}, {"bangs": True}),
        ({"hat": True}, {"hairline": "widows_peak"}),
        ({"eyes_closed": True}, {"eye_color": "green"}),
    ],
)
def test_hidden_attributes_change_nothing(occluder, hidden) -> None:
    a = render(128, **occluder)
    b = render(128, **occluder, **hidden)
    assert np.array_equal(a, b)


def test_pose_moves_features() -> None:
    lm0 = face_landmarks(BASE, ident(), 128)
    lml = face_landmarks({**BASE, "head_turn": "left"}, ident(), 128)
    lmr = face_landmarks({**BASE, "head_turn": "right"}, ident(), 128)
    assert lml["nose_tip"][0] < lm0["nose_tip"][0] - 5 < lmr["nose_tip"][0] - 10
    lmt = face_landmarks({**BASE, "head_tilt": True}, ident(scene_roll=0.5), 128)
    dy = lmt["right_eye"][1] - lmt["left_eye"][1]
    assert abs(dy) > 3  # the eye line is no longer level


def test_not_applicable_attributes_draw_as_defaults() -> None:
    """None (not applicable) outside the hair group renders like the canonical default."""
    a = render(64, emotion="neutral", lips="medium", eyes_closed=False)
    b = render(64, emotion=None, lips=None, eyes_closed=None)
    assert np.array_equal(a, b)
