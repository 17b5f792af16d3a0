"""The face-attribute ontology: exactly 46 attributes in the paper's taxonomy (NOTES.md §6).

The single owner of attribute names, types, values, synonyms, visibility and coherence rules.
Everything that labels, renders, describes, asks about or judges faces goes through it.

A *label set* is a ``dict[str, str | bool | None]`` mapping every attribute name to its value:
``bool`` for binary attributes, one of ``Attribute.values`` for categorical ones, and ``None``
where the attribute does not apply (e.g. hair colour of a bald person).

Visibility (:func:`hidden_attributes`) is separate from the value: sunglasses hide eye colour
and whether the eyes are closed; a face mask hides the mouth region; a hat hides the hairline.
Captions and VQA never state a hidden attribute; judges are not scored on them.

Taxonomy (paper, Fig. 2 of v1): Appearance — Hair, Beard, Accessories, Skin, Others;
Emotion; Action. Emotion is one categorical attribute (a face shows one dominant emotion),
as in CelebV-HQ's emotion labels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from ..errors import UserError

ONTOLOGY_VERSION = "1.0"

Value = str | bool | None
Labels = dict[str, Value]


@dataclass(frozen=True)
class Attribute:
    """One attribute of the ontology.

    Args:
        name: identifier (snake_case), stable across versions.
        group: ``appearance`` | ``emotion`` | ``action``.
        subgroup: paper sub-category (hair, beard, accessories, skin, others, emotion, action).
        values: named values of a categorical attribute; empty for a binary one.
        phrases: text phrases. Binary: ``{"yes": [...], "no": [...]}`` phrases for presence and
            absence. Categorical: ``{value: [...]}`` phrases naming each value.
        question: canonical noun phrase for questions ("hair colour", "earrings").
    """

    name: str
    group: str
    subgroup: str
    values: tuple[str, ...] = ()
    phrases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    question: str = ""

    @property
    def kind(self) -> str:
        return "categorical" if self.values else "binary"

    @property
    def is_binary(self) -> bool:
        return not self.values

    def check(self, value: Value) -> None:
        """Raise UserError when ``value`` is not valid for this attribute."""
        if value is None:
            return
        if self.is_binary:
            if not isinstance(value, bool):
                raise UserError(f"attribute {self.name!r} is binary: use true/false, not {value!r}")
        elif value not in self.values:
            raise UserError(
                f"attribute {self.name!r} has no value {value!r}; valid: {', '.join(self.values)}"
            )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "group": self.group,
            "subgroup": self.subgroup,
            "kind": self.kind,
            "values": list(self.values),
            "phrases": {k: list(v) for k, v in self.phrases.items()},
            "question": self.question,
        }


def _b(name, group, subgroup, yes, no, question) -> Attribute:
    return Attribute(name, group, subgroup, (), {"yes": tuple(yes), "no": tuple(no)}, question)


def _c(name, group, subgroup, phrases: dict[str, list[str]], question) -> Attribute:
    return Attribute(
        name, group, subgroup, tuple(phrases), {k: tuple(v) for k, v in phrases.items()}, question
    )


A, E, X = "appearance", "emotion", "action"

ATTRIBUTES: tuple[Attribute, ...] = (
    # ---- Appearance / hair (6) -----------------------------------------------------------
    _c(
        "hair_color",
        A,
        "hair",
        {
            "black": ["black", "jet-black", "dark"],
            "brown": ["brown", "brunette", "chestnut"],
            "blond": ["blond", "blonde", "golden", "fair"],
            "red": ["red", "ginger", "auburn"],
            "gray": ["gray", "grey", "silver"],
            "white": ["white", "snow-white"],
        },
        "hair colour",
    ),
    _c(
        "hair_length",
        A,
        "hair",
        {
            "short": ["short", "cropped"],
            "medium": ["medium-length", "shoulder-length"],
            "long": ["long", "flowing"],
        },
        "hair length",
    ),
    _c(
        "hair_type",
        A,
        "hair",
        {
            "straight": ["straight", "sleek"],
            "wavy": ["wavy"],
            "curly": ["curly", "coily"],
        },
        "hair type",
    ),
    _c(
        "hairline",
        A,
        "hair",
        {
            "straight": ["a straight hairline", "an even hairline"],
            "receding": ["a receding hairline", "a thinning hairline"],
            "widows_peak": ["a widow's peak"],
        },
        "hairline",
    ),
    _b("bangs", A, "hair", ["bangs", "a fringe"], ["no bangs"], "bangs"),
    _b("bald", A, "hair", ["bald", "a shaved head"], ["a full head of hair"], "a bald head"),
    # ---- Appearance / beard (4) -----------------------------------------------------------
    _b(
        "beard",
        A,
        "beard",
        ["a full beard", "a beard"],
        ["no beard", "a clean-shaven chin"],
        "a beard",
    ),
    _b(
        "five_o_clock_shadow",
        A,
        "beard",
        ["a five o'clock shadow", "light stubble"],
        ["no stubble"],
        "stubble",
    ),
    _b("sideburns", A, "beard", ["sideburns"], ["no sideburns"], "sideburns"),
    _b("mustache", A, "beard", ["a mustache", "a moustache"], ["no mustache"], "a mustache"),
    # ---- Appearance / accessories (5) -----------------------------------------------------
    _b("earrings", A, "accessories", ["earrings", "small earrings"], ["no earrings"], "earrings"),
    _b(
        "necklace",
        A,
        "accessories",
        ["a necklace", "a chain around the neck"],
        ["no necklace"],
        "a necklace",
    ),
    _b("hat", A, "accessories", ["a hat", "a cap"], ["no hat", "a bare head"], "a hat"),
    _c(
        "glasses",
        A,
        "accessories",
        {
            "none": ["no glasses"],
            "eyeglasses": ["eyeglasses", "glasses", "spectacles"],
            "sunglasses": ["sunglasses", "dark glasses", "shades"],
        },
        "glasses",
    ),
    _b(
        "face_mask",
        A,
        "accessories",
        ["a face mask", "a surgical mask"],
        ["no face mask"],
        "a face mask",
    ),
    # ---- Appearance / skin (6) ------------------------------------------------------------
    _c(
        "skin_tone",
        A,
        "skin",
        {
            "pale": ["pale", "porcelain"],
            "light": ["light", "fair"],
            "medium": ["medium", "olive"],
            "tan": ["tan", "tanned", "bronze"],
            "brown": ["brown"],
            "dark": ["dark", "deep brown", "ebony"],
        },
        "skin tone",
    ),
    _b("freckles", A, "skin", ["freckles", "a sprinkle of freckles"], ["no freckles"], "freckles"),
    _b(
        "wrinkles",
        A,
        "skin",
        ["wrinkles", "lined skin"],
        ["smooth skin", "no wrinkles"],
        "wrinkles",
    ),
    _b("moles", A, "skin", ["a mole", "a beauty mark"], ["no moles"], "a mole"),
    _b(
        "rosy_cheeks",
        A,
        "skin",
        ["rosy cheeks", "flushed cheeks"],
        ["no rosy cheeks"],
        "rosy cheeks",
    ),
    _b(
        "bags_under_eyes",
        A,
        "skin",
        ["bags under the eyes", "puffy under-eyes"],
        ["no bags under the eyes"],
        "bags under the eyes",
    ),
    # ---- Appearance / others (14) ---------------------------------------------------------
    _c(
        "gender",
        A,
        "others",
        {
            "male": ["man", "male"],
            "female": ["woman", "female"],
        },
        "gender",
    ),
    _c(
        "age",
        A,
        "others",
        {
            "young": ["young", "youthful"],
            "middle_aged": ["middle-aged"],
            "old": ["elderly", "older", "senior"],
        },
        "age",
    ),
    _b("lipstick", A, "others", ["lipstick", "painted lips"], ["no lipstick"], "lipstick"),
    _b("makeup", A, "others", ["eye makeup", "eyeshadow"], ["no makeup"], "eye makeup"),
    _c(
        "face_shape",
        A,
        "others",
        {
            "oval": ["oval"],
            "round": ["round"],
            "square": ["square", "angular"],
            "heart": ["heart-shaped"],
            "long": ["long", "oblong"],
        },
        "face shape",
    ),
    _c(
        "eyebrow_shape",
        A,
        "others",
        {
            "straight": ["straight"],
            "arched": ["arched"],
            "angled": ["angled", "sharply angled"],
        },
        "eyebrow shape",
    ),
    _b(
        "bushy_eyebrows",
        A,
        "others",
        ["bushy eyebrows", "thick eyebrows"],
        ["thin eyebrows"],
        "bushy eyebrows",
    ),
    _c(
        "eye_color",
        A,
        "others",
        {
            "brown": ["brown"],
            "blue": ["blue"],
            "green": ["green"],
            "gray": ["gray", "grey"],
            "hazel": ["hazel"],
        },
        "eye colour",
    ),
    _b(
        "narrow_eyes",
        A,
        "others",
        ["narrow eyes", "almond-shaped eyes"],
        ["wide eyes"],
        "narrow eyes",
    ),
    _c(
        "nose_size",
        A,
        "others",
        {
            "small": ["small", "button"],
            "medium": ["medium-sized"],
            "big": ["big", "large", "prominent"],
        },
        "nose size",
    ),
    _b(
        "pointy_nose",
        A,
        "others",
        ["a pointy nose", "a sharp nose"],
        ["a rounded nose"],
        "a pointy nose",
    ),
    _c(
        "lips",
        A,
        "others",
        {
            "thin": ["thin"],
            "medium": ["medium"],
            "full": ["full", "plump"],
        },
        "lip shape",
    ),
    _b("double_chin", A, "others", ["a double chin"], ["a defined jawline"], "a double chin"),
    _b("high_cheekbones", A, "others", ["high cheekbones"], ["low cheekbones"], "high cheekbones"),
    # ---- Emotion (1 categorical, 8 values) ------------------------------------------------
    _c(
        "emotion",
        E,
        "emotion",
        {
            "neutral": ["neutral", "calm", "expressionless"],
            "happy": ["happy", "joyful", "cheerful"],
            "sad": ["sad", "unhappy", "downcast"],
            "angry": ["angry", "furious", "annoyed"],
            "surprised": ["surprised", "astonished", "amazed"],
            "fearful": ["fearful", "scared", "frightened"],
            "disgusted": ["disgusted", "repulsed"],
            "contempt": ["contemptuous", "scornful", "disdainful"],
        },
        "emotion",
    ),
    # ---- Action (9) -----------------------------------------------------------------------
    _b("smile", X, "action", ["smiling", "a smile"], ["not smiling"], "smiling"),
    _b("laugh", X, "action", ["laughing", "a laugh"], ["not laughing"], "laughing"),
    _b("glare", X, "action", ["glaring", "a hard stare"], ["not glaring"], "glaring"),
    _b("frown", X, "action", ["frowning", "a frown"], ["not frowning"], "frowning"),
    _b(
        "eyes_closed",
        X,
        "action",
        ["eyes closed", "closed eyes"],
        ["eyes open", "open eyes"],
        "eyes closed",
    ),
    _b(
        "mouth_open",
        X,
        "action",
        ["mouth open", "talking", "lips parted"],
        ["mouth closed", "lips together"],
        "mouth open",
    ),
    _b(
        "raised_eyebrows",
        X,
        "action",
        ["raised eyebrows", "eyebrows lifted"],
        ["relaxed eyebrows"],
        "raised eyebrows",
    ),
    _c(
        "head_turn",
        X,
        "action",
        {
            "frontal": ["facing the camera", "looking straight ahead"],
            "left": ["head turned to the left", "turned to the left"],
            "right": ["head turned to the right", "turned to the right"],
        },
        "head direction",
    ),
    _b(
        "head_tilt",
        X,
        "action",
        ["a tilted head", "head tilted"],
        ["head held level"],
        "a tilted head",
    ),
    _b("wink", X, "action", ["winking", "a wink"], ["not winking"], "winking"),
)

BY_NAME: dict[str, Attribute] = {a.name: a for a in ATTRIBUTES}
NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)
assert len(ATTRIBUTES) == 46, len(ATTRIBUTES)  # the paper's 46 categories

# ---------------------------------------------------------------------------------------------
# Visibility: which attributes an occluder hides (cannot be seen, so never described or asked
# with a definite answer).
OCCLUSION: dict[str, tuple[str, ...]] = {
    "sunglasses": (
        "eye_color",
        "eyes_closed",
        "narrow_eyes",
        "makeup",
        "wink",
        "bags_under_eyes",
        "glare",
    ),
    "face_mask": (
        "lipstick",
        "beard",
        "mustache",
        "five_o_clock_shadow",
        "lips",
        "mouth_open",
        "smile",
        "laugh",
        "double_chin",
        "nose_size",
        "pointy_nose",
    ),
    "hat": ("hairline", "bangs", "bald"),
    "eyes_closed": ("eye_color", "narrow_eyes", "glare", "wink"),
}
HAIR_ATTRIBUTES = ("hair_color", "hair_length", "hair_type", "hairline", "bangs")
MALE_ONLY_TYPICAL = ("beard", "five_o_clock_shadow", "sideburns", "mustache")


def hidden_attributes(labels: Labels) -> set[str]:
    """Attributes present in ``labels`` that cannot be seen in the image."""
    hidden: set[str] = set()
    if labels.get("glasses") == "sunglasses":
        hidden.update(OCCLUSION["sunglasses"])
    if labels.get("face_mask"):
        hidden.update(OCCLUSION["face_mask"])
    if labels.get("hat"):
        hidden.update(OCCLUSION["hat"])
    if labels.get("eyes_closed"):
        hidden.update(OCCLUSION["eyes_closed"])
    # Not-applicable attributes are not visible either.
    hidden.update(k for k, v in labels.items() if v is None)
    return hidden


def visible_labels(labels: Labels) -> Labels:
    """The label set restricted to what can be seen (applicable and not occluded)."""
    hidden = hidden_attributes(labels)
    return {k: v for k, v in labels.items() if k not in hidden}


# ---------------------------------------------------------------------------------------------
# Coherence rules: hard constraints a label set must satisfy. Each rule returns a message when
# violated. Soft correlations (how often emotions and actions co-occur) live in the sampler.
def _rules(l: Labels, partial: bool = False) -> list[str]:
    """Messages for every broken hard rule. With ``partial``, an implication is only checked
    when its consequent is given (a request may name just one side)."""

    def lacks(k: str, v=True) -> bool:  # k is (known to be) not v
        return (k in l or not partial) and l.get(k) != v

    errs = []
    if l.get("bald"):
        errs += [f"bald excludes {k}" for k in HAIR_ATTRIBUTES if l.get(k) not in (None, False)]
    elif not partial and any(l.get(k) is None for k in ("hair_color", "hair_length", "hair_type")):
        errs.append("hair colour, length and type are required unless bald")
    if l.get("beard") and l.get("five_o_clock_shadow"):
        errs.append("a full beard excludes a five o'clock shadow")
    if l.get("laugh") and lacks("mouth_open"):
        errs.append("laughing implies an open mouth")
    if l.get("laugh") and lacks("smile"):
        errs.append("laughing implies smiling")
    if l.get("smile") and l.get("frown"):
        errs.append("smiling excludes frowning")
    if l.get("eyes_closed") and (l.get("glare") or l.get("wink")):
        errs.append("closed eyes exclude glaring and winking")
    if l.get("wink") and l.get("glare"):
        errs.append("winking excludes glaring")
    if l.get("emotion") == "neutral" and (l.get("smile") or l.get("frown") or l.get("laugh")):
        errs.append("a neutral expression excludes smiling, laughing and frowning")
    if l.get("emotion") in ("sad", "angry", "fearful", "disgusted") and l.get("smile"):
        errs.append(f"a {l.get('emotion')} expression excludes smiling")
    if l.get("emotion") == "happy" and lacks("smile"):
        errs.append("a happy expression implies smiling")
    if l.get("face_mask") and l.get("glasses") == "sunglasses" and l.get("hat"):
        errs.append("sunglasses, a face mask and a hat together hide the whole face")
    return errs


def validate(labels: Labels, *, partial: bool = False) -> None:
    """Check names, values and coherence rules; raise one UserError listing every problem.

    Args:
        labels: a label set.
        partial: allow missing attributes (a generation request names only some).
    """
    unknown = [k for k in labels if k not in BY_NAME]
    if unknown:
        raise UserError(
            f"unknown attribute(s) {', '.join(map(repr, unknown))}; valid: {', '.join(NAMES)}"
        )
    for k, v in labels.items():
        BY_NAME[k].check(v)
    if not partial:
        missing = [k for k in NAMES if k not in labels]
        if missing:
            raise UserError(f"label set lacks attribute(s): {', '.join(missing)}")
    errs = _rules(labels, partial)
    if errs:
        raise UserError("contradictory attributes: " + "; ".join(errs))


def parse_value(name: str, text: str) -> Value:
    """Parse a user's value text ("true", "blond", "none") for attribute ``name``."""
    if name not in BY_NAME:
        raise UserError(f"unknown attribute {name!r}; valid: {', '.join(NAMES)}")
    attr = BY_NAME[name]
    t = text.strip().lower()
    if attr.is_binary:
        if t in ("1", "true", "yes", "y", "on"):
            return True
        if t in ("0", "false", "no", "n", "off"):
            return False
        raise UserError(f"attribute {name!r} is binary: use yes/no, not {text!r}")
    t = t.replace(" ", "_").replace("-", "_")
    attr.check(t)
    return t


def ontology_dict() -> dict:
    """The whole ontology as JSON-ready data, saved into every dataset manifest."""
    return {
        "version": ONTOLOGY_VERSION,
        "attributes": [a.to_dict() for a in ATTRIBUTES],
        "occlusion": {k: list(v) for k, v in OCCLUSION.items()},
    }


def ontology_hash() -> str:
    """Short content hash: two data sets with the same hash share one ontology."""
    blob = json.dumps(ontology_dict(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
