"""Sentences about a face from a set of facts (the refiner's writer, :func:`state_facts`).

FaceForge's phrase banks and the ontology's phrases, grouped by topic (hair, eyes, face, skin,
accessories, expression, pose); used by :mod:`unif2ace.eval.refine` to restate a changed
sentence and to add facts. Every sentence it writes parses back to the facts given
(``tests/eval/test_refine.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data import ontology as onto
from ..data.faceforge.captions import (
    AGE_ADJ,
    BROW_SHAPE,
    EMOTION_ADJ,
    EYE_COLOR,
    FACE_SHAPE,
    HAIR_COLOR,
    HAIR_LENGTH,
    HAIR_TYPE,
    LIPS,
    NOSE_SIZE,
    SKIN_TONE,
    art,
    cap,
    join,
)
from ..data.ontology import Labels

# Binary features as noun phrases, from the ontology's phrases: presence ("a mole"), absence
# after one "no" ("but no bangs, earrings or necklace") or, where the ontology words an absence
# without a negation, that phrase ("low cheekbones").
_BINARY = [a for a in onto.ATTRIBUTES if a.is_binary]
_YES_NP = {a.name: a.phrases["yes"][0] for a in _BINARY}
_YES_NP["bags_under_eyes"] = "bags under {p} eyes"
_NO_NOUN = {a.name: a.phrases["no"][0][3:] for a in _BINARY if a.phrases["no"][0][:3] == "no "}
_NO_NOUN["makeup"] = "eye makeup"  # "no makeup" would also deny lipstick
_ABSENT_NP = {a.name: a.phrases["no"][0] for a in _BINARY if a.name not in _NO_NOUN}
_VERB = dict(smile="smiling", laugh="laughing", glare="glaring", frown="frowning", wink="winking")
_TOPICS = (
    ("age",),
    ("hair_color", "hair_length", "hair_type", "hairline", "bangs", "bald"),
    ("narrow_eyes", "eye_color", "bushy_eyebrows", "eyebrow_shape", "eyes_closed"),
    ("face_shape", "nose_size", "pointy_nose", "lips", "high_cheekbones", "double_chin"),
    ("skin_tone", "freckles", "wrinkles", "moles", "rosy_cheeks", "bags_under_eyes"),
    ("beard", "mustache", "five_o_clock_shadow", "sideburns"),
    ("lipstick", "makeup"),
    ("earrings", "necklace", "hat", "face_mask", "glasses"),
    ("emotion", "smile", "laugh", "glare", "frown", "wink", "mouth_open", "raised_eyebrows"),
    ("head_turn", "head_tilt"),
)
_TOPIC = {a: i for i, names in enumerate(_TOPICS) for a in names}  # gender: every sentence


# ------------------------------------------------------------------------- realisation
@dataclass(frozen=True)
class _Who:
    """Pronouns for a gender (None: unknown or hidden -> "this person")."""

    gender: str | None

    @property
    def S(self) -> str:
        return {"female": "She", "male": "He"}.get(self.gender or "", "This person")

    @property
    def p(self) -> str:
        return {"female": "her", "male": "his"}.get(self.gender or "", "their")

    @property
    def noun(self) -> str:
        return {"female": "woman", "male": "man"}.get(self.gender or "", "person")


def _has(w: _Who, pos: list[str], neg: list[str]) -> str:
    """ "{S} has A and B, but no X or Y." (absences after a clause boundary: parser scope)."""
    if not pos and not neg:
        return ""
    no = "no " + join(neg, "or")
    body = join(pos) + (f", but {no}" if neg else "") if pos else no
    return f"{w.S} has {body}.".format(p=w.p)


def _split(f: Labels, names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    pos, neg = [], []
    for a in names:
        if a not in f:
            continue
        if f[a]:
            pos.append(_YES_NP[a])
        elif a in _ABSENT_NP:
            pos.append(_ABSENT_NP[a])
        else:
            neg.append(_NO_NOUN[a])
    return pos, neg


def _intro(f: Labels, w: _Who) -> str:
    if "age" in f:
        adj = AGE_ADJ[f["age"]][0]
        if w.gender:
            return f"{w.S} is {art(adj + ' ' + w.noun)}."
        return f"This person looks {adj}."
    return f"This is {art(w.noun)}." if set(f) == {"gender"} and w.gender else ""


def _hair(f: Labels, w: _Who) -> str:
    if f.get("bald"):
        return f"{w.S} is bald."
    banks = (("hair_length", HAIR_LENGTH), ("hair_type", HAIR_TYPE))
    adjs = [", ".join(bank[f[a]][0] for a, bank in banks if a in f)]
    adjs = [x for x in adjs if x]
    col = HAIR_COLOR[f["hair_color"]][0] if "hair_color" in f else ""
    pos = [" ".join([*adjs, col]).strip() + " hair"] if adjs or col else []
    if "hairline" in f:
        pos.append(onto.BY_NAME["hairline"].phrases[f["hairline"]][0])
    more, neg = _split(f, ("bald", "bangs"))
    return _has(w, pos + more, neg)


def _eyes(f: Labels, w: _Who) -> str:
    pos, out = [], []
    words = [("narrow" if f["narrow_eyes"] else "wide")] if "narrow_eyes" in f else []
    words += [EYE_COLOR[f["eye_color"]][0]] if "eye_color" in f else []
    if words:
        pos.append(" ".join(words) + " eyes")
    brows = [("bushy" if f["bushy_eyebrows"] else "thin")] if "bushy_eyebrows" in f else []
    brows += [BROW_SHAPE[f["eyebrow_shape"]][0]] if "eyebrow_shape" in f else []
    if brows:
        pos.append(", ".join(brows) + " eyebrows")
    if pos:
        out.append(_has(w, pos, []))
    if "eyes_closed" in f:
        out.append(f"{cap(w.p)} eyes are {'closed' if f['eyes_closed'] else 'open'}.")
    return " ".join(out)


def _face(f: Labels, w: _Who) -> str:
    pos = [art(FACE_SHAPE[f["face_shape"]][0]) + " face"] if "face_shape" in f else []
    nose = [NOSE_SIZE[f["nose_size"]][0]] if "nose_size" in f else []
    nose += [("pointy" if f["pointy_nose"] else "rounded")] if "pointy_nose" in f else []
    if nose:
        pos.append(art(", ".join(nose)) + " nose")
    if "lips" in f:
        pos.append({"medium": "medium-sized"}.get(f["lips"], LIPS[f["lips"]][0]) + " lips")
    more, _ = _split(f, ("high_cheekbones", "double_chin"))
    return _has(w, pos + more, [])


def _skin(f: Labels, w: _Who) -> str:
    adjs = (["smooth"] if f.get("wrinkles") is False else []) + (
        [SKIN_TONE[f["skin_tone"]][0]] if "skin_tone" in f else []
    )
    pos = [", ".join(adjs) + " skin"] if adjs else []
    names = ("freckles", "wrinkles", "moles", "rosy_cheeks", "bags_under_eyes")
    more, neg = _split({a: v for a, v in f.items() if not (a == "wrinkles" and v is False)}, names)
    return _has(w, pos + more, neg)


def _groups(f: Labels, w: _Who) -> list[str]:
    """One sentence per topic, in FaceForge's order (intro, hair, eyes, face, skin, ...)."""
    beard = _split(f, ("beard", "mustache", "five_o_clock_shadow", "sideburns"))
    paint = _split(f, ("lipstick", "makeup"))
    acc = _split(f, ("earrings", "necklace", "hat", "face_mask"))
    if "glasses" in f:
        (acc[0] if f["glasses"] != "none" else acc[1]).insert(
            0, "glasses" if f["glasses"] != "sunglasses" else "sunglasses"
        )
    wear = lambda pn: _has(w, *pn).replace(" has ", " wears ", 1)  # noqa: E731
    return [
        _intro(f, w),
        _hair(f, w),
        _eyes(f, w),
        _face(f, w),
        _skin(f, w),
        _has(w, *beard),
        wear(paint),
        wear(acc),
        _expression(f, w),
        _pose(f, w),
    ]


def _expression(f: Labels, w: _Who) -> str:
    parts = [f"looks {EMOTION_ADJ[f['emotion']][0]}"] if "emotion" in f else []
    yes = [_VERB[a] for a in _VERB if f.get(a) is True]
    no = [_VERB[a] for a in _VERB if f.get(a) is False]
    if yes:
        parts.append("is " + join(yes))
    s = f"{w.S} {' and '.join(parts)}" if parts else ""
    if no:
        s = (s + ", but is not " if s else f"{w.S} is not ") + join(no, "or")
    out = [s + "."] if s else []
    if "mouth_open" in f:
        out.append(f"{cap(w.p)} mouth is {'open' if f['mouth_open'] else 'closed'}.")
    if "raised_eyebrows" in f:
        out.append(f"{cap(w.p)} eyebrows are {'raised' if f['raised_eyebrows'] else 'relaxed'}.")
    return " ".join(out)


def _pose(f: Labels, w: _Who) -> str:
    turn, tilt = f.get("head_turn"), f.get("head_tilt")
    t = {True: f"{w.p} head tilted", False: f"{w.p} head held level"}.get(tilt, "")
    if turn is None:
        return cap(t.replace(" head ", " head is ")) + "." if t else ""
    s = f"{w.S} faces the camera" if turn == "frontal" else f"{w.S} looks off to the {turn}"
    return s + (f", with {t}." if t else ".")


def state_facts(facts: Labels, gender: str | None) -> list[str]:
    """Sentences stating exactly ``facts`` (``{attribute: value}``, values not None).

    Args:
        facts: what to state; the parser reads each back (tested round trip).
        gender: the person's gender for pronouns (``None``: "this person", states no gender).
    """
    f = {a: v for a, v in facts.items() if v is not None}
    return [s for s in _groups(f, _Who(gender)) if s]
