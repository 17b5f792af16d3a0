"""FaceForge captions and generation prompts from a label set (issue 2 §4, NOTES.md §6).

``make_caption(labels, rng)`` writes a detailed caption in varied English — at the paper's
scale (UniF²ace-130K: ~120 tokens, ~17.7 attributes per caption) — covering the *visible*
attributes (:func:`unif2ace.data.ontology.visible_labels`): the salient present ones, the core
categorical ones, a fair share of facial details, natural absences ("clean-shaven", "no
glasses") and one or two *reasoning* sentences when the labels support them (bags under the
eyes and narrow eyes -> looks tired). Hidden attributes are never described; the occluder
itself is ("her eyes are hidden behind dark sunglasses").

``make_prompts(labels, rng, n)`` writes short generation prompts, longest first.

Every random choice goes through the caller's ``numpy.random.Generator``: same seed, same
text. :func:`caption_with_facts` also returns what the caption intends to state, which the
tests compare with :func:`unif2ace.data.caption_parser.parse_caption`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import UserError
from .. import ontology as onto
from ..ontology import Labels, Value

# ---------------------------------------------------------------------------------------------
# Phrase banks. Every phrase names its value unambiguously (the parser must read it back).
AGE_ADJ = {
    "young": ("young", "youthful"),
    "middle_aged": ("middle-aged",),
    "old": ("elderly", "older", "senior"),
}
AGE_DECADES = {
    "young": ("twenties", "thirties"),
    "middle_aged": ("forties", "fifties"),
    "old": ("sixties", "seventies", "eighties"),
}
HAIR_COLOR = {
    "black": ("black", "jet-black", "raven"),
    "brown": ("brown", "chestnut", "dark brown", "light brown"),
    "blond": ("blond", "golden", "honey-blond", "flaxen"),
    "red": ("red", "auburn", "ginger", "copper"),
    "gray": ("gray", "grey", "silver", "salt-and-pepper"),
    "white": ("white", "snow-white", "snowy"),
}
HAIR_LENGTH = {
    "short": ("short", "cropped", "close-cropped"),
    "medium": ("medium-length", "shoulder-length"),
    "long": ("long", "flowing"),
}
HAIR_TYPE = {"straight": ("straight", "sleek"), "wavy": ("wavy",), "curly": ("curly", "coily")}
EYE_COLOR = {
    "brown": ("brown", "dark brown", "chocolate"),
    "blue": ("blue", "pale blue", "bright blue"),
    "green": ("green", "emerald"),
    "gray": ("gray", "grey", "steel-gray"),
    "hazel": ("hazel", "amber"),
}
SKIN_TONE = {
    "pale": ("pale", "porcelain", "ivory"),
    "light": ("light", "fair"),
    "medium": ("olive", "medium-toned"),
    "tan": ("tanned", "tan", "bronzed"),
    "brown": ("brown", "warm brown"),
    "dark": ("dark", "deep brown", "ebony"),
}
EMOTION_ADJ = {
    "neutral": ("neutral", "calm", "composed", "impassive"),
    "happy": ("happy", "cheerful", "joyful", "delighted"),
    "sad": ("sad", "downcast", "melancholy", "unhappy"),
    "angry": ("angry", "furious", "irritated"),
    "surprised": ("surprised", "astonished", "amazed", "startled"),
    "fearful": ("fearful", "frightened", "scared", "alarmed"),
    "disgusted": ("disgusted", "repulsed", "revolted"),
    "contempt": ("contemptuous", "scornful", "disdainful"),
}
BROW_SHAPE = {
    "straight": ("straight", "flat"),
    "arched": ("arched", "curved"),
    "angled": ("angled", "sharply angled", "angular"),
}
BUSHY = {True: ("bushy", "thick", "heavy"), False: ("thin", "fine", "slender")}
NARROW = {True: ("narrow", "almond-shaped"), False: ("wide", "large, round")}
FACE_SHAPE = {
    "oval": ("oval",),
    "round": ("round",),
    "square": ("square", "angular"),
    "heart": ("heart-shaped",),
    "long": ("long", "oblong"),
}
NOSE_SIZE = {
    "small": ("small", "button", "petite"),
    "medium": ("medium-sized", "average-sized"),
    "big": ("big", "large", "prominent"),
}
POINTY = {True: ("pointy", "pointed", "sharp"), False: ("rounded", "soft")}
LIPS = {"thin": ("thin",), "medium": ("medium-sized", "medium"), "full": ("full", "plump")}


def pick(rng: np.random.Generator, seq: Sequence):
    """One element of ``seq``, uniformly."""
    return seq[int(rng.integers(len(seq)))]


def join(items: list[str], conj: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conj} " + items[-1]


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def art(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


@dataclass
class Ctx:
    """Caption state: visible labels, pronouns and the facts stated so far."""

    vis: Labels
    rng: np.random.Generator
    female: bool
    stated: dict[str, Value] = field(default_factory=dict)

    @classmethod
    def create(cls, labels: Labels, rng: np.random.Generator) -> Ctx:
        onto.validate(labels)  # UserError on an unknown attribute, value or contradiction
        vis = onto.visible_labels(labels)
        return cls(vis, rng, vis.get("gender") == "female")

    @property
    def subj(self) -> str:
        return "she" if self.female else "he"

    @property
    def poss(self) -> str:
        return "her" if self.female else "his"

    @property
    def obj(self) -> str:
        return "her" if self.female else "him"

    def p(self, prob: float) -> bool:
        return bool(self.rng.random() < prob)

    def pick(self, seq: Sequence):
        return pick(self.rng, seq)

    def is_(self, attr: str, value: Value = True) -> bool:
        """Attribute visible with this value."""
        return attr in self.vis and self.vis[attr] == value

    def say(self, attr: str, bank: dict | None = None) -> str:
        """Record that the caption states ``attr`` (its visible value); return a phrase."""
        if attr not in self.vis:
            raise RuntimeError(f"caption would state hidden attribute {attr!r}")
        self.stated[attr] = self.vis[attr]
        return self.pick(bank[self.vis[attr]]) if bank is not None else ""


# ---------------------------------------------------------------------------------------------
# Sentence builders. Each states only visible attributes (through ``Ctx.say``).
def intro_sentence(c: Ctx) -> str:
    c.say("gender")
    noun = c.pick(("woman", "lady") if c.female else ("man", "gentleman"))
    who = art(noun)
    if "age" in c.vis:
        if c.p(0.25):
            c.say("age")
            who = f"{art(noun)} in {c.poss} {c.pick(AGE_DECADES[c.vis['age']])}"
        else:
            who = art(f"{c.say('age', AGE_ADJ)} {noun}")
    with_ = ""
    if "skin_tone" in c.vis and c.p(0.5):
        tone = c.say("skin_tone", SKIN_TONE)
        with_ = c.pick((f" with {tone} skin", f" with {art(tone)} complexion"))
    t = c.pick(
        (
            "A close-up portrait of {w}.",
            "This image shows {w}.",
            "The photo captures {w}.",
            "Pictured here is {w}.",
            "We see the face of {w}.",
            "A headshot of {w}.",
            "{W} is shown in this portrait.",
            "The subject is {w}.",
            "Here is {w}.",
            "This is a portrait of {w}.",
            "Seen up close, {w} fills the frame.",
            "The picture presents {w}.",
            "A detailed view of {w}.",
            "Meet {w}.",
            "The camera frames {w}.",
            "This close-up shows {w}.",
            "In this photo we see {w}.",
            "Shown here: {w}.",
            "This is {w}.",
            "The portrait depicts {w}.",
        )
    )
    return t.format(w=who + with_, W=cap(who + with_))


def hair_sentence(c: Ctx) -> str:
    if c.is_("bald"):
        c.say("bald")
        return c.pick(
            ("{S} is completely bald.", "{P} head is shaved bald.", "{S} has a bald head.")
        ).format(S=cap(c.subj), P=cap(c.poss))
    if "hair_color" not in c.vis:
        return ""
    col, ln, ty = (
        c.say(a, b)
        for a, b in (
            ("hair_color", HAIR_COLOR),
            ("hair_length", HAIR_LENGTH),
            ("hair_type", HAIR_TYPE),
        )
    )
    S, P = cap(c.subj), cap(c.poss)
    opts = [
        f"{S} has {ln}, {ty} {col} hair.",
        f"{P} {ln}, {ty} {col} hair frames {c.poss} face.",
        f"{P} hair is {ln}, {ty} and {col}.",
        f"{P} {col} hair is {ln} and {ty}.",
        f"{P} {ln} {col} hair is {ty}.",
        f"{S} wears {c.poss} {col} hair {ln} and {ty}.",
    ]
    if c.vis["hair_type"] in ("wavy", "curly"):
        opts.append(
            f"{P} {ln} {col} hair falls in loose "
            f"{'waves' if c.vis['hair_type'] == 'wavy' else 'curls'}."
        )
    else:
        opts.append(f"{P} {ln} {col} hair hangs {ty}.")
    s = c.pick(opts)
    extra = []
    if c.is_("bangs") or (c.is_("bangs", False) and c.p(0.2)):
        c.say("bangs")
        extra.append(
            c.pick(("bangs across {p} forehead", "a neat fringe")) if c.vis["bangs"] else "no bangs"
        )
    if "hairline" in c.vis and (c.vis["hairline"] != "straight" or c.p(0.4)):
        c.say("hairline")
        extra.insert(
            0,
            c.pick(
                {
                    "straight": ("a straight hairline", "an even hairline"),
                    "receding": ("a receding hairline", "a thinning hairline"),
                    "widows_peak": ("a widow's peak",),
                }[c.vis["hairline"]]
            ),
        )
    if extra:
        e = join(extra).format(p=c.poss)
        there = "There are" if e.startswith(("bangs", "no")) else "There is"
        s += " " + c.pick((f"{cap(c.subj)} has {e}.", f"{there} {e}."))
    return s


def _brows(c: Ctx) -> str:
    words = []
    if "bushy_eyebrows" in c.vis and (c.vis["bushy_eyebrows"] or c.p(0.5)):
        words.append(c.say("bushy_eyebrows", BUSHY))
    if "eyebrow_shape" in c.vis and c.p(0.7):
        words.append(c.say("eyebrow_shape", BROW_SHAPE))
    return ", ".join(words) + " " + c.pick(("eyebrows", "brows")) if words else ""


def eyes_sentence(c: Ctx) -> str:
    brows, S, P = _brows(c), cap(c.subj), cap(c.poss)
    if c.is_("glasses", "sunglasses"):
        c.say("glasses")
        g = c.pick(("dark sunglasses", "black sunglasses", "a pair of sunglasses"))
        s = c.pick((f"{P} eyes are hidden behind {g}", f"{cap(g)} cover {c.poss} eyes"))
        return s + (f", just below {brows}." if brows else ".")
    if c.is_("eyes_closed"):
        c.say("eyes_closed")
        return f"{P} eyes are closed" + (f" beneath {brows}." if brows else ".")
    if "eye_color" not in c.vis:
        return f"{S} has {brows}." if brows else ""
    col = c.say("eye_color", EYE_COLOR)
    narrow = ""
    if "narrow_eyes" in c.vis and (c.vis["narrow_eyes"] or c.p(0.4)):
        narrow = c.say("narrow_eyes", NARROW) + ", "
    under = c.pick(("under", "beneath", "below"))
    return c.pick(
        (
            f"{S} has {narrow}{col} eyes" + (f" {under} {brows}." if brows else "."),
            f"{P} {narrow}{col} eyes sit {under} "
            + (brows + "." if brows else "a smooth forehead."),
            f"{cap(narrow)}{col} eyes look out" + (f" from {under} {brows}." if brows else "."),
            f"{S} gazes out with {narrow}{col} eyes" + (f" set {under} {brows}." if brows else "."),
        )
    )


def face_sentence(c: Ctx) -> str:
    nps, S = [], cap(c.subj)
    if "face_shape" in c.vis and c.p(0.6):
        nps.append(art(c.say("face_shape", FACE_SHAPE)) + " face")
    if "nose_size" in c.vis and (c.is_("pointy_nose") or c.p(0.55)):
        w = [c.say("nose_size", NOSE_SIZE)]
        if "pointy_nose" in c.vis and (c.vis["pointy_nose"] or c.p(0.5)):
            w.append(c.say("pointy_nose", POINTY))
        nps.append(art(", ".join(w)) + " nose")
    if "lips" in c.vis and c.p(0.6):
        nps.append(c.say("lips", LIPS) + " lips")
    if c.is_("high_cheekbones") or (c.is_("high_cheekbones", False) and c.p(0.1)):
        c.say("high_cheekbones")
        nps.append("high cheekbones" if c.vis["high_cheekbones"] else "low cheekbones")
    if c.is_("double_chin") or (c.is_("double_chin", False) and c.p(0.25)):
        c.say("double_chin")
        nps.append(
            "a double chin"
            if c.vis["double_chin"]
            else c.pick(("a defined jawline", "a firm jawline"))
        )
    if not nps:
        return ""
    return c.pick(
        (
            f"{S} has {join(nps)}.",
            f"Other features include {join(nps)}.",
            f"{cap(join(nps))} complete the picture." if len(nps) > 1 else f"{S} has {nps[0]}.",
            f"{cap(c.poss)} features include {join(nps)}.",
        )
    )


_TEXTURE = {
    "freckles": ("a dusting of freckles across {p} nose", "freckles", "a sprinkle of freckles"),
    "moles": ("a small mole on {p} cheek", "a beauty mark", "a mole near {p} mouth"),
    "wrinkles": ("fine wrinkles around {p} eyes", "wrinkles", "creases on {p} forehead"),
    "rosy_cheeks": ("rosy cheeks", "flushed cheeks"),
    "bags_under_eyes": ("bags under {p} eyes", "puffy under-eyes"),
}


def skin_sentence(c: Ctx) -> str:
    items = [
        c.pick(_TEXTURE[a]).format(p=c.poss) for a in _TEXTURE if c.is_(a) and (c.say(a) or True)
    ]
    adjs = []
    if c.is_("wrinkles", False) and c.p(0.3):
        c.say("wrinkles")
        adjs.append("smooth")
    if "skin_tone" in c.vis and "skin_tone" not in c.stated:
        adjs.append(c.say("skin_tone", SKIN_TONE))
    tone, pred = ", ".join(adjs), " and ".join(adjs)  # attributive / predicative
    S, P = cap(c.subj), cap(c.poss)
    if not items:
        return c.pick((f"{S} has {tone} skin.", f"{P} complexion is {pred}.")) if tone else ""
    if not tone:
        return c.pick(
            (
                f"{S} has {join(items)}.",
                f"Look closely and you notice {join(items)}.",
                f"{P} skin shows {join(items)}.",
            )
        )
    return c.pick(
        (
            f"{S} has {tone} skin with {join(items)}.",
            f"{P} skin is {pred}, and {c.subj} has {join(items)}.",
            f"{P} {tone} skin shows {join(items)}.",
        )
    )


def facial_hair_sentence(c: Ctx) -> str:
    S, parts = cap(c.subj), []
    if c.is_("beard"):
        c.say("beard")
        b = c.pick(("a full beard", "a thick beard", "a neatly trimmed beard"))
        if c.is_("mustache"):
            c.say("mustache")
            b += " and mustache"
        parts.append(b)
    elif c.is_("five_o_clock_shadow"):
        c.say("five_o_clock_shadow")
        parts.append(c.pick(("light stubble", "a five o'clock shadow")))
    if c.is_("mustache") and "mustache" not in c.stated:
        c.say("mustache")
        parts.append(c.pick(("a mustache", "a thin mustache", "a neat moustache")))
    if c.is_("sideburns"):
        c.say("sideburns")
        parts.append(c.pick(("long sideburns", "sideburns")))
    if parts:
        return c.pick((f"{S} has {join(parts)}.", f"{S} sports {join(parts)}."))
    shaven = all(c.is_(a, False) for a in ("beard", "mustache", "five_o_clock_shadow"))
    if shaven and not c.female and c.p(0.85):
        for a in ("beard", "mustache", "five_o_clock_shadow"):
            c.say(a)
        return c.pick((f"{S} is clean-shaven.", f"{S} is clean-shaven, {c.poss} jaw bare."))
    return ""


def makeup_sentence(c: Ctx) -> str:
    S, items = cap(c.subj), []
    if c.is_("lipstick"):
        c.say("lipstick")
        items.append(c.pick(("lipstick", "a coat of lipstick")))
    if c.is_("makeup"):
        c.say("makeup")
        items.append(c.pick(("eye makeup", "eyeshadow", "subtle eye makeup")))
    if items:
        return c.pick((f"{S} wears {join(items)}.", f"{S} is wearing {join(items)}."))
    if c.female and c.is_("lipstick", False) and c.is_("makeup", False) and c.p(0.4):
        c.say("lipstick"), c.say("makeup")
        return c.pick((f"{S} wears no makeup.", f"{cap(c.poss)} face is free of makeup."))
    return ""


_ACCESSORY = {
    "earrings": ("earrings", "small earrings", "a pair of earrings"),
    "necklace": ("a necklace", "a thin necklace", "a necklace around {p} neck"),
    "hat": ("a hat", "a hat on {p} head"),
}


def accessories_sentence(c: Ctx) -> str:
    S, P = cap(c.subj), cap(c.poss)
    pos = [
        c.pick(_ACCESSORY[a]).format(p=c.poss)
        for a in _ACCESSORY
        if c.is_(a) and (c.say(a) or True)
    ]
    if c.is_("glasses", "eyeglasses"):
        c.say("glasses")
        pos.append(c.pick(("glasses", "a pair of glasses", "eyeglasses")))
    neg = []
    if c.is_("glasses", "none") and c.p(0.6):
        c.say("glasses")
        neg.append("glasses")
    if c.is_("earrings", False) and c.is_("necklace", False) and c.p(0.4):
        c.say("earrings"), c.say("necklace")
        neg.append("jewellery")
    if c.is_("hat", False) and c.p(0.15):
        c.say("hat")
        neg.append("hat")
    s = ""
    if pos:
        s = c.pick(
            ("{S} wears {x}", "{S} is wearing {x}")
            + (("{P} accessories are {x}", "{S} has on {x}") if len(pos) > 1 else ())
        )
        s = s.format(S=S, P=P, x=join(pos)) + (f", but no {join(neg, 'or')}." if neg else ".")
    elif neg:
        s = c.pick((f"{S} wears no {join(neg, 'or')}.", f"{S} has no {join(neg, 'or')} on."))
    if c.is_("face_mask"):
        c.say("face_mask")
        m = c.pick(
            (
                "A surgical mask covers {p} nose and mouth.",
                "A face mask hides the lower half of {p} face.",
            )
        )
        s = (s + " " + m.format(p=c.poss)).strip()
    return s


def _action_nps(c: Ctx) -> list[str]:
    nps, p = [], c.poss
    if c.is_("laugh"):
        c.say("laugh"), c.say("smile")
        nps += [c.pick(("a hearty laugh", "a burst of laughter")), "a broad smile"]
    elif c.is_("smile"):
        c.say("smile")
        if c.is_("mouth_open") and c.p(0.5):
            c.say("mouth_open")
            nps.append("a wide, open-mouthed smile")
        elif c.is_("mouth_open", False) and c.p(0.5):
            c.say("mouth_open")
            nps.append("a closed-mouth smile")
        else:
            nps.append(c.pick(("a warm smile", "a gentle smile", "a broad smile")))
    if c.is_("mouth_open") and "mouth_open" not in c.stated:
        c.say("mouth_open")
        nps.append(c.pick((f"{p} mouth wide open", "parted lips", "an open mouth")))
    if c.is_("frown"):
        c.say("frown")
        nps.append(c.pick(("a deep frown", "a furrowed brow")))
    if c.is_("glare"):
        c.say("glare")
        nps.append(c.pick(("a hard glare", "a steely stare")))
    if c.is_("wink"):
        c.say("wink")
        nps.append("a playful wink")
    if c.is_("raised_eyebrows"):
        c.say("raised_eyebrows")
        nps.append(c.pick(("raised eyebrows", "lifted brows")))
    if c.is_("mouth_open", False) and "mouth_open" not in c.stated and c.p(0.25):
        c.say("mouth_open")
        nps.append(c.pick(("lips pressed together", f"{p} mouth closed")))
    if c.is_("smile", False) and "frown" not in c.stated and c.is_("frown", False) and c.p(0.3):
        c.say("smile"), c.say("frown")
        nps.append("neither a smile nor a frown")
    return nps


def expression_sentence(c: Ctx) -> str:
    nps = _action_nps(c)
    if "emotion" not in c.vis:
        return f"{cap(c.subj)} shows {join(nps)}." if nps else ""
    emo, S, P = c.say("emotion", EMOTION_ADJ), cap(c.subj), cap(c.poss)
    if not nps:
        return c.pick(
            (
                f"{S} looks {emo}.",
                f"{P} expression is {emo}.",
                f"{S} wears {art(emo)} expression.",
                f"The expression is {emo}.",
            )
        )
    x = join(nps)
    return c.pick(
        (
            f"{S} looks {emo}, with {x}.",
            f"{P} expression is {emo}, with {x}.",
            f"With {x}, {c.subj} seems {emo}.",
            f"{cap(art(emo))} expression shows on {c.poss} face, with {x}.",
        )
    )


def pose_sentence(c: Ctx) -> str:
    S, P = cap(c.subj), cap(c.poss)
    parts = []
    tilt = c.is_("head_tilt") or (c.is_("head_tilt", False) and c.p(0.3))
    if "head_turn" in c.vis:
        c.say("head_turn")
        d = c.vis["head_turn"]
        parts.append(
            c.pick(
                (
                    f"{S} faces the camera",
                    f"{S} is looking straight at the camera",
                    f"{S} is facing the viewer",
                )
            )
            if d == "frontal"
            else c.pick(
                (
                    f"{S} is turned slightly to the {d}",
                    f"{S} looks off to the {d}",
                )
                + (() if tilt else (f"{P} head is turned to the {d}",))
            )
        )
    if tilt:
        c.say("head_tilt")
        t = (
            c.pick(("{p} head tilted slightly", "a slight tilt of {p} head"))
            if c.vis["head_tilt"]
            else "{p} head held level"
        )
        parts.append(("with " + t).format(p=c.poss))
    if not parts:
        return ""
    return cap(", ".join(parts)) + "."


GROUPS = (
    hair_sentence,
    eyes_sentence,
    face_sentence,
    skin_sentence,
    facial_hair_sentence,
    makeup_sentence,
    accessories_sentence,
    expression_sentence,
    pose_sentence,
)


# ---------------------------------------------------------------------------------------------
# Reasoning: inferences the visible attributes support (NOTES.md §6: "reasoning" captions).
def _reasons(c: Ctx) -> list[tuple[str, tuple[str, ...]]]:
    """(sentence, attributes it restates) for every rule the visible labels satisfy."""
    S, P, p, o, s = cap(c.subj), cap(c.poss), c.poss, c.obj, c.subj
    out, v, emo = [], c.vis, c.vis.get("emotion")
    if c.is_("bags_under_eyes") and c.is_("narrow_eyes"):
        out.append(
            (
                f"The bags under {p} eyes and {p} half-closed eyes make {o} look tired.",
                ("bags_under_eyes", "narrow_eyes"),
            )
        )
    if c.is_("bags_under_eyes") and c.is_("eyes_closed"):
        out.append(
            (
                f"With {p} eyes closed and bags under {p} eyes, {s} seems exhausted.",
                ("bags_under_eyes", "eyes_closed"),
            )
        )
    if c.is_("laugh") and emo == "happy":
        out.append(
            (
                c.pick((f"{S} seems to be enjoying a joke.", f"Something has clearly amused {o}.")),
                (),
            )
        )
    if c.is_("mouth_open") and emo == "neutral" and c.is_("smile", False):
        out.append(
            (
                f"With {p} mouth open and a calm expression, {s} appears to be talking.",
                ("mouth_open", "emotion"),
            )
        )
    if c.is_("wrinkles") and v.get("hair_color") in ("gray", "white") and "age" in v:
        col = c.pick(HAIR_COLOR[v["hair_color"]])
        if v["age"] == "old":
            out.append(
                (
                    f"The wrinkles and {col} hair suggest {s} is in {p} later years.",
                    ("wrinkles", "hair_color", "age"),
                )
            )
        elif v["age"] == "middle_aged":
            out.append(
                (
                    f"The wrinkles and {col} hair hint at middle age.",
                    ("wrinkles", "hair_color", "age"),
                )
            )
    if c.is_("glare") and c.is_("frown"):
        out.append(
            (
                f"{S} seems irritated, glaring with a deep frown."
                if emo == "angry"
                else f"The glare and the frown suggest {s} is displeased with something.",
                ("glare", "frown") + (("emotion",) if emo == "angry" else ()),
            )
        )
    if c.is_("raised_eyebrows") and c.is_("mouth_open") and emo == "surprised":
        out.append(
            (
                "The raised eyebrows and open mouth suggest something has just caught "
                f"{o} off guard.",
                ("raised_eyebrows", "mouth_open"),
            )
        )
    if c.is_("raised_eyebrows") and emo == "fearful":
        out.append(
            (
                f"{P} raised eyebrows give {o} an alarmed look, as if {s} has seen "
                "something unsettling.",
                ("raised_eyebrows", "emotion"),
            )
        )
    if c.is_("wink") and c.is_("smile"):
        out.append(
            (
                f"The wink and the smile make {o} look playful, as if sharing a secret.",
                ("wink", "smile"),
            )
        )
    if c.is_("eyes_closed") and emo == "neutral":
        out.append(
            (f"With {p} eyes closed, {s} seems relaxed, perhaps lost in thought.", ("eyes_closed",))
        )
    if c.is_("eyes_closed") and c.is_("smile") and c.is_("laugh", False):
        out.append(
            (
                f"Smiling with {p} eyes closed, {s} seems to be savouring the moment.",
                ("eyes_closed", "smile"),
            )
        )
    if c.is_("glasses", "sunglasses") and c.is_("hat"):
        out.append(("The sunglasses and the hat suggest a sunny day outdoors.", ("glasses", "hat")))
    if c.is_("face_mask"):
        out.append((f"The face mask suggests {s} is taking health precautions.", ("face_mask",)))
    if emo == "sad" and c.is_("frown"):
        out.append((f"Something seems to weigh on {p} mind.", ()))
    if emo == "contempt" and c.is_("smile"):
        out.append((f"{P} smile looks more mocking than friendly.", ("smile",)))
    if emo == "disgusted":
        out.append((f"{S} looks as if {s} has just smelled something unpleasant.", ()))
    return out


def reasoning_sentences(c: Ctx) -> list[str]:
    """One or two reasoning sentences, when any rule applies."""
    rules = _reasons(c)
    if not rules:
        return []
    k = min(len(rules), 1 + int(c.p(0.5)))
    chosen = sorted(int(i) for i in c.rng.choice(len(rules), size=k, replace=False))
    for i in chosen:
        for a in rules[i][1]:
            c.say(a)
    return [rules[i][0] for i in chosen]


__all__ = ["caption_with_facts", "make_caption", "make_prompts"]


def caption_with_facts(labels: Labels, rng: np.random.Generator) -> tuple[str, dict[str, Value]]:
    """A caption and the ``{attribute: value}`` facts it intends to state.

    Args:
        labels: a full label set (every ontology attribute).
        rng: the only source of randomness.
    """
    ctx = Ctx.create(labels, rng)
    sentences = [intro_sentence(ctx)]
    n_app = len(GROUPS) - 2  # appearance groups; expression and pose last most of the time
    if rng.random() < 0.7:
        order = [*rng.permutation(n_app), *(n_app + rng.permutation(2))]
    else:
        order = list(rng.permutation(len(GROUPS)))
    for gi in order:
        s = GROUPS[int(gi)](ctx)
        if s:
            sentences.append(s)
    sentences += reasoning_sentences(ctx)
    return " ".join(sentences), dict(ctx.stated)


def make_caption(labels: Labels, rng: np.random.Generator) -> str:
    """A detailed caption of the visible attributes of ``labels`` (see module docstring)."""
    return caption_with_facts(labels, rng)[0]


# ---------------------------------------------------------------------------------------------
# Prompts: what a user types to generate a face.
_BIN_PROMPT: dict[str, Sequence[str]] = {
    "bangs": ("bangs", "a fringe"),
    "beard": ("a beard", "a full beard"),
    "five_o_clock_shadow": ("stubble", "a five o'clock shadow"),
    "sideburns": ("sideburns",),
    "mustache": ("a mustache", "a moustache"),
    "earrings": ("earrings", "small earrings"),
    "necklace": ("a necklace",),
    "hat": ("a hat", "a cap"),
    "face_mask": ("a face mask", "a surgical mask"),
    "freckles": ("freckles",),
    "wrinkles": ("wrinkles",),
    "moles": ("a mole", "a beauty mark"),
    "rosy_cheeks": ("rosy cheeks",),
    "bags_under_eyes": ("bags under the eyes",),
    "lipstick": ("lipstick",),
    "makeup": ("eye makeup", "eyeshadow"),
    "bushy_eyebrows": ("bushy eyebrows", "thick eyebrows"),
    "narrow_eyes": ("narrow eyes",),
    "pointy_nose": ("a pointy nose",),
    "double_chin": ("a double chin",),
    "high_cheekbones": ("high cheekbones",),
    "raised_eyebrows": ("raised eyebrows",),
    "eyes_closed": ("eyes closed", "closed eyes"),
    "head_tilt": ("a tilted head",),
    "mouth_open": ("mouth open", "parted lips"),
}
_PRE_ACTION = {
    "laugh": "laughing",
    "smile": "smiling",
    "frown": "frowning",
    "glare": "glaring",
    "wink": "winking",
}


def _prompt_pool(ctx: Ctx) -> list[tuple[str, str, Value, str]]:
    """(kind, attribute, value, phrase) candidates; kind: pre | hair | with | neg."""
    v, r = ctx.vis, ctx.rng
    pool: list[tuple[str, str, Value, str]] = []
    for a, word in _PRE_ACTION.items():
        if v.get(a) is True and not (a == "smile" and v.get("laugh")):
            pool.append(("pre", a, True, word))
    if v.get("emotion") not in (None, "neutral", "happy") and not any(p[0] == "pre" for p in pool):
        pool.append(("pre", "emotion", v["emotion"], pick(r, EMOTION_ADJ[v["emotion"]])))
    if v.get("age") is not None:
        pool.append(("age", "age", v["age"], pick(r, AGE_ADJ[v["age"]])))
    if v.get("bald") is True:
        pool.append(("pre", "bald", True, "bald"))
    for a, bank in (
        ("hair_length", HAIR_LENGTH),
        ("hair_type", HAIR_TYPE),
        ("hair_color", HAIR_COLOR),
    ):
        if v.get(a) is not None:
            pool.append(("hair", a, v[a], pick(r, bank[v[a]])))
    if v.get("eye_color") is not None:
        pool.append(
            ("with", "eye_color", v["eye_color"], pick(r, EYE_COLOR[v["eye_color"]]) + " eyes")
        )
    if v.get("skin_tone") is not None:
        pool.append(
            ("with", "skin_tone", v["skin_tone"], pick(r, SKIN_TONE[v["skin_tone"]]) + " skin")
        )
    if v.get("glasses") in ("eyeglasses", "sunglasses"):
        pool.append(("with", "glasses", v["glasses"], v["glasses"]))
    for a, bank in _BIN_PROMPT.items():
        if v.get(a) is True:
            pool.append(("with", a, True, pick(r, bank)))
    if v.get("head_turn") in ("left", "right"):
        pool.append(("with", "head_turn", v["head_turn"], f"head turned to the {v['head_turn']}"))
    if v.get("glasses") == "none":
        pool.append(("neg", "glasses", "none", "no glasses"))
    if v.get("earrings") is False and v.get("necklace") is False:
        pool.append(("neg", "earrings+necklace", False, "no jewellery"))
    return pool


def _render_prompt(ctx: Ctx, chosen: list[tuple[str, str, Value, str]], style: int) -> str:
    noun = pick(ctx.rng, ("woman", "lady") if ctx.female else ("man", "guy"))
    pre = [p[3] for p in chosen if p[0] == "pre"]
    age = [p[3] for p in chosen if p[0] == "age"]
    hair = [p[3] for p in chosen if p[0] == "hair"]
    items = ([" ".join(hair) + " hair"] if hair else []) + [p[3] for p in chosen if p[0] == "with"]
    negs = [p[3] for p in chosen if p[0] == "neg"]
    if style == 2:  # tag style; negative tags last so their scope is their own tag
        return ", ".join([" ".join(pre + age + [noun])] + items + negs)
    head = " ".join(pre + age + [noun])
    head = ("an " if head[0] in "aeiou" else "a ") + head
    if style == 1:
        head = pick(ctx.rng, ("portrait of ", "close-up photo of ", "headshot of ")) + head
    parts = items + negs
    if not parts:
        return head
    tail = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{head} with {tail}"


def make_prompts(labels: Labels, rng: np.random.Generator, n: int = 3) -> list[str]:
    """``n`` short generation prompts of decreasing length, each a subset of the visible
    attributes ("a smiling young woman with red curly hair, freckles and gold earrings")."""
    if n < 0:
        raise UserError(f"number of prompts must be >= 0, not {n}")
    ctx = Ctx.create(labels, rng)
    pool = _prompt_pool(ctx)
    sizes = sorted({max(1, round(len(pool) * f)) for f in np.linspace(0.7, 0.15, n)}, reverse=True)
    while len(sizes) < n:
        sizes.append(max(1, sizes[-1] - 1) if sizes else 1)
    prompts = []
    for k in sizes[:n]:
        idx = sorted(int(i) for i in rng.choice(len(pool), size=min(k, len(pool)), replace=False))
        prompts.append(_render_prompt(ctx, [pool[i] for i in idx], int(rng.integers(3))))
    return sorted(prompts, key=lambda t: -len(t.split()))  # stable: longest first
