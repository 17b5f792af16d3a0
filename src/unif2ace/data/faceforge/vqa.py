"""FaceForge visual question answering pairs from a label set (issue 2 §4, NOTES.md §6).

``make_vqa(labels, rng, n=8)`` writes ~8 question/answer pairs per image (the paper's
UniF²ace-130K has ~1M pairs for 130K images) across four categories — appearance, action,
emotion and reasoning — mixing yes/no, choice and open questions. Negatives are included
(questions about absent attributes or wrong values, answered "No"), and an attribute hidden by
an occluder gets an honest answer ("I can't tell: her eyes are covered by sunglasses").

Each pair is ``{"question", "answer", "category", "kind", "attribute"}``; ``attribute`` is the
ontology name the pair is about ("" for reasoning). Answers are short: "Yes" / "No", a value
word ("Curly", "Medium-length", "Turned to the left"), or one "I can't tell: …" sentence.
"""

from __future__ import annotations

import numpy as np

from .. import ontology as onto
from ..ontology import Labels, Value
from .captions import Ctx, cap

__all__ = ["CANT_TELL", "answer_word", "make_vqa"]

CANT_TELL = "I can't tell"

# Yes/no questions about binary attributes ({s} subject pronoun, {p} possessive).
BINARY_Q: dict[str, tuple[str, ...]] = {
    "bangs": ("Does {s} have bangs?", "Is there a fringe over {p} forehead?"),
    "bald": ("Is {s} bald?", "Is {p} head bald?"),
    "beard": ("Does {s} have a beard?", "Is {s} bearded?"),
    "five_o_clock_shadow": ("Does {s} have stubble?", "Is there a five o'clock shadow on {p} jaw?"),
    "sideburns": ("Does {s} have sideburns?",),
    "mustache": ("Does {s} have a mustache?", "Is there a mustache above {p} lip?"),
    "earrings": ("Is {s} wearing earrings?", "Does {s} have earrings on?"),
    "necklace": ("Is {s} wearing a necklace?", "Is there a necklace around {p} neck?"),
    "hat": ("Is {s} wearing a hat?", "Does {s} have a hat on?"),
    "face_mask": ("Is {s} wearing a face mask?", "Is {p} face partly covered by a mask?"),
    "freckles": ("Does {s} have freckles?", "Are there freckles on {p} face?"),
    "wrinkles": ("Does {s} have wrinkles?", "Is {p} skin wrinkled?"),
    "moles": ("Is there a mole on {p} face?", "Does {s} have a beauty mark?"),
    "rosy_cheeks": ("Are {p} cheeks rosy?", "Does {s} have rosy cheeks?"),
    "bags_under_eyes": ("Are there bags under {p} eyes?", "Does {s} have bags under {p} eyes?"),
    "lipstick": ("Is {s} wearing lipstick?", "Are {p} lips painted with lipstick?"),
    "makeup": ("Is {s} wearing eye makeup?", "Does {s} have eyeshadow on?"),
    "bushy_eyebrows": ("Are {p} eyebrows bushy?", "Does {s} have thick eyebrows?"),
    "narrow_eyes": ("Are {p} eyes narrow?", "Does {s} have narrow eyes?"),
    "pointy_nose": ("Is {p} nose pointy?", "Does {s} have a pointed nose?"),
    "double_chin": ("Does {s} have a double chin?",),
    "high_cheekbones": ("Does {s} have high cheekbones?", "Are {p} cheekbones high?"),
    "smile": ("Is {s} smiling?", "Is there a smile on {p} face?"),
    "laugh": ("Is {s} laughing?",),
    "glare": ("Is {s} glaring?", "Is {s} giving a hard stare?"),
    "frown": ("Is {s} frowning?", "Is there a frown on {p} face?"),
    "eyes_closed": ("Are {p} eyes closed?", "Is {s} keeping {p} eyes shut?"),
    "mouth_open": ("Is {p} mouth open?", "Are {p} lips parted?"),
    "raised_eyebrows": ("Are {p} eyebrows raised?", "Is {s} raising {p} eyebrows?"),
    "head_tilt": ("Is {p} head tilted?", "Is {s} tilting {p} head?"),
    "wink": ("Is {s} winking?",),
}
# Categorical: (open question, yes/no question with {v}, choice question with {opts}).
CATEGORICAL_Q = {
    "hair_color": ("What colour is {p} hair?", "Is {p} hair {v}?", "Is {p} hair {opts}?"),
    "hair_length": ("How long is {p} hair?", "Is {p} hair {v}?", "Is {p} hair {opts}?"),
    "hair_type": ("What texture is {p} hair?", "Is {p} hair {v}?", "Is {p} hair {opts}?"),
    "hairline": (
        "What kind of hairline does {s} have?",
        "Does {s} have {v}?",
        "Does {s} have {opts}?",
    ),
    "glasses": (
        "What is {s} wearing over {p} eyes?",
        "Is {s} wearing {v}?",
        "Is {s} wearing {opts}?",
    ),
    "skin_tone": (
        "How would you describe {p} skin tone?",
        "Is {p} skin {v}?",
        "Is {p} skin {opts}?",
    ),
    "gender": ("What is the gender of this person?", "", "Is this {opts}?"),
    "age": ("How old does {s} look?", "Is {s} {v}?", "Is {s} {opts}?"),
    "face_shape": ("What shape is {p} face?", "Is {p} face {v}?", "Is {p} face {opts}?"),
    "eyebrow_shape": (
        "What shape are {p} eyebrows?",
        "Are {p} eyebrows {v}?",
        "Are {p} eyebrows {opts}?",
    ),
    "eye_color": ("What colour are {p} eyes?", "Are {p} eyes {v}?", "Are {p} eyes {opts}?"),
    "nose_size": ("How big is {p} nose?", "Is {p} nose {v}?", "Is {p} nose {opts}?"),
    "lips": ("How full are {p} lips?", "Are {p} lips {v}?", "Are {p} lips {opts}?"),
    "emotion": ("What emotion does {p} face show?", "Does {s} look {v}?", "Does {s} look {opts}?"),
    "head_turn": ("Which way is {p} head turned?", "Is {p} head {v}?", "Is {s} {opts}?"),
}
# Answer words for categorical values (default: the ontology's first phrase).
ANSWER = {
    ("hair_length", "medium"): "medium-length",
    ("hairline", "straight"): "a straight hairline",
    ("hairline", "receding"): "a receding hairline",
    ("hairline", "widows_peak"): "a widow's peak",
    ("glasses", "none"): "no glasses",
    ("gender", "male"): "a man",
    ("gender", "female"): "a woman",
    ("age", "old"): "elderly",
    ("face_shape", "heart"): "heart-shaped",
    ("nose_size", "medium"): "medium-sized",
    ("head_turn", "frontal"): "facing the camera",
    ("head_turn", "left"): "turned to the left",
    ("head_turn", "right"): "turned to the right",
}
OCCLUDER_REASON = {
    "sunglasses": "{p} eyes are covered by sunglasses",
    "face_mask": "the lower half of {p} face is covered by a face mask",
    "hat": "the top of {p} head is covered by a hat",
    "eyes_closed": "{p} eyes are closed",
}
CATEGORY = {**{a.name: a.group for a in onto.ATTRIBUTES}}
REASONING_KEEP_NO = {"covered": 0.4, "talking": 0.1}
REASONING_KEEP_YES_PLEASED = 0.25  # "Does she look pleased?" is "No" for a glaring frown
# P(action | visible) under ``labels.sample_labels`` (20,000 draws; a test re-measures them).
# The action pairs weight an attribute by 1/prior when asking about a present action and by
# prior/(1 - prior) when asking about an absent one, so each action question is answered
# "Yes" about as often as "No" (a rare action such as a wink is otherwise nearly always "No").
ACTION_PRIOR = {
    "smile": 0.27,
    "laugh": 0.09,
    "glare": 0.11,
    "frown": 0.21,
    "eyes_closed": 0.11,
    "mouth_open": 0.34,
    "raised_eyebrows": 0.23,
    "head_tilt": 0.20,
    "wink": 0.04,
}


def answer_word(attr: str, value: Value) -> str:
    """The short answer naming ``value`` of categorical ``attr`` (lower case)."""
    return ANSWER.get((attr, value)) or onto.BY_NAME[attr].phrases[str(value)][0]


def _occluder(labels: Labels, attr: str) -> str | None:
    present = {
        "sunglasses": labels.get("glasses") == "sunglasses",
        "face_mask": bool(labels.get("face_mask")),
        "hat": bool(labels.get("hat")),
        "eyes_closed": bool(labels.get("eyes_closed")),
    }
    for occ, attrs in onto.OCCLUSION.items():
        if present[occ] and attr in attrs and labels.get(attr) is not None and occ != attr:
            return occ
    return None


def _qa(q: str, a: str, attr: str, kind: str, category: str | None = None) -> dict:
    return {
        "question": q,
        "answer": a,
        "category": category or CATEGORY.get(attr, "reasoning"),
        "kind": kind,
        "attribute": attr,
    }


def _binary(c: Ctx, attr: str) -> dict:
    q = c.pick(BINARY_Q[attr]).format(s=c.subj, p=c.poss)
    return _qa(cap(q), "Yes" if c.vis[attr] else "No", attr, "yes_no")


def _categorical(c: Ctx, attr: str, kind: str, negative: bool = False) -> dict:
    open_q, yn_q, choice_q = CATEGORICAL_Q[attr]
    value = c.vis[attr]
    others = [v for v in onto.BY_NAME[attr].values if v != value]
    fmt = {"s": c.subj, "p": c.poss}
    if kind == "yes_no" and not yn_q:
        kind = "choice"
    if kind == "yes_no":
        if attr == "glasses":
            others = [o for o in others if o != "none"]
        asked = c.pick(others) if negative and others else value
        if asked == "none":
            asked = c.pick(("eyeglasses", "sunglasses"))
        q = yn_q.format(v=answer_word(attr, asked), **fmt)
        return _qa(cap(q), "Yes" if asked == value else "No", attr, kind)
    if kind == "choice":
        k = min(len(others), int(c.rng.integers(1, 3)))
        opts = [value] + [others[int(i)] for i in c.rng.choice(len(others), k, replace=False)]
        words = [answer_word(attr, v) for v in c.rng.permutation(opts)]
        q = choice_q.format(opts=", ".join(words[:-1]) + " or " + words[-1], **fmt)
        return _qa(cap(q), cap(answer_word(attr, value)), attr, kind)
    return _qa(cap(open_q.format(**fmt)), cap(answer_word(attr, value)), attr, "open")


def _hidden_q(c: Ctx, labels: Labels, attr: str) -> dict:
    reason = OCCLUDER_REASON[_occluder(labels, attr)].format(p=c.poss)
    if attr in BINARY_Q:
        q, kind = c.pick(BINARY_Q[attr]).format(s=c.subj, p=c.poss), "yes_no"
    else:
        q, kind = CATEGORICAL_Q[attr][0].format(s=c.subj, p=c.poss), "open"
    return _qa(cap(q), f"{CANT_TELL}: {reason}.", attr, kind)


def _reasoning(c: Ctx) -> list[dict]:
    """Reasoning pairs the visible labels support (inferences, not single attributes)."""
    v, s, p, out = c.vis, c.subj, c.poss, []
    emo = v.get("emotion")
    covered = [
        w
        for w, on in (
            ("sunglasses", c.is_("glasses", "sunglasses")),
            ("a face mask", c.is_("face_mask")),
        )
        if on
    ]
    # The "No" side of a rare "Yes" is kept with a probability (REASONING_KEEP_NO), so these
    # questions are not answered "No" nearly every time.
    if covered or c.p(REASONING_KEEP_NO["covered"]):
        out.append(
            _qa(
                f"Is any part of {p} face covered?",
                "Yes" if covered else "No",
                "",
                "yes_no",
                "reasoning",
            )
        )
    if covered:
        out.append(
            _qa(
                f"What is covering part of {p} face?",
                cap(" and ".join(covered)),
                "",
                "open",
                "reasoning",
            )
        )
    if c.is_("bags_under_eyes") and c.is_("narrow_eyes"):
        out.append(
            _qa(
                f"Why might {s} look tired?",
                f"Because of the bags under {p} eyes and {p} half-closed eyes.",
                "",
                "open",
                "reasoning",
            )
        )
    if "mouth_open" in v and "smile" in v and emo is not None:
        talking = v["mouth_open"] and not v["smile"] and emo == "neutral"
        if talking or (not v["mouth_open"] and c.p(REASONING_KEEP_NO["talking"])):
            out.append(
                _qa(
                    f"Does {s} appear to be talking?",
                    "Yes" if talking else "No",
                    "",
                    "yes_no",
                    "reasoning",
                )
            )
    if emo in ("happy", "sad", "angry", "fearful", "disgusted"):
        out.append(
            _qa(
                f"Does {s} seem to be in a good mood?",
                "Yes" if emo == "happy" else "No",
                "",
                "yes_no",
                "reasoning",
            )
        )
    if c.is_("laugh") and emo == "happy":
        out.append(
            _qa(
                f"What might {s} be reacting to?",
                "Probably something funny, like a joke.",
                "",
                "open",
                "reasoning",
            )
        )
    if c.is_("glare") and c.is_("frown"):
        out.append(_qa(f"Does {s} look pleased?", "No", "", "yes_no", "reasoning"))
    elif emo == "happy" and c.is_("smile") and c.p(REASONING_KEEP_YES_PLEASED):
        out.append(_qa(f"Does {s} look pleased?", "Yes", "", "yes_no", "reasoning"))
    if c.is_("wrinkles") and v.get("hair_color") in ("gray", "white") and v.get("age") == "old":
        out.append(
            _qa(
                f"What suggests that {s} is older?",
                f"The wrinkles and {p} {v['hair_color']} hair.",
                "",
                "open",
                "reasoning",
            )
        )
    if not out:  # every face gets a reasoning pair: the covered question's "No" side
        out.append(_qa(f"Is any part of {p} face covered?", "No", "", "yes_no", "reasoning"))
    return out


def _occluded_attrs(labels: Labels) -> list[str]:
    hidden = onto.hidden_attributes(labels)
    return [
        a
        for a in onto.NAMES
        if a in hidden
        and _occluder(labels, a) is not None
        and (a in BINARY_Q or a in CATEGORICAL_Q)
    ]


def make_vqa(labels: Labels, rng: np.random.Generator, n: int = 8) -> list[dict]:
    """``n`` question/answer pairs about the face ``labels`` describes (module docstring).

    The mix per image: one honest "can't tell" pair when an occluder hides something,
    appearance pairs (a categorical one as choice or open, a present and an absent binary),
    action pairs (a present or an absent action by a fair coin, then the other side or the
    head turn; rare actions favoured, see ``ACTION_PRIOR``), one emotion and one reasoning
    pair. Every yes/no question is answered "Yes" 15-85 % of the time, so no question can be
    answered from its wording alone (tests/data/test_vqa.py).
    """
    c = Ctx.create(labels, rng)
    v, used, out = c.vis, set(), []

    def take(pool: list[str], weight=None) -> str | None:
        pool = [a for a in pool if a not in used]
        if not pool:
            return None
        if weight is None:
            a = pool[int(rng.integers(len(pool)))]
        else:
            w = np.array([weight(x) for x in pool])
            a = pool[int(rng.choice(len(pool), p=w / w.sum()))]
        used.add(a)
        return a

    def action(present: bool) -> dict | None:
        """A yes/no pair about a present (or absent) action, rare answers favoured."""
        if present:
            a = take(acts_on, lambda x: 1 / ACTION_PRIOR[x])
        else:
            a = take(acts_off, lambda x: ACTION_PRIOR[x] / (1 - ACTION_PRIOR[x]))
        return a and _binary(c, a)

    cats = [a for a in CATEGORICAL_Q if a in v and CATEGORY[a] == "appearance"]
    app_b = [a for a in BINARY_Q if a in v and CATEGORY[a] == "appearance"]
    act_b = [a for a in BINARY_Q if a in v and CATEGORY[a] == "action"]
    acts_on, acts_off = [a for a in act_b if v[a]], [a for a in act_b if not v[a]]
    first_on = bool(acts_on) and (not acts_off or c.p(0.5))
    slots: list = []
    occl = _occluded_attrs(labels)
    if occl:
        slots.append(lambda: (a := take(occl)) and _hidden_q(c, labels, a))
    slots += [
        lambda: (a := take(cats)) and _categorical(c, a, c.pick(("choice", "open"))),
        lambda: (a := take([x for x in app_b if v[x]] or app_b)) and _binary(c, a),
        lambda: (a := take([x for x in app_b if not v[x]])) and _binary(c, a),
        lambda: action(first_on),
        lambda: _emotion(c) if "emotion" in v else None,
        lambda: (r := _reasoning(c)) and r[int(rng.integers(len(r)))],
        lambda: (
            (a := take(cats))
            and _categorical(c, a, c.pick(("yes_no", "yes_no", "choice")), c.p(0.5))
        ),
        lambda: (
            (a := take(["head_turn"])) and _action(c, a)
            if "head_turn" in v and c.p(1 / 3)
            else action(not first_on)
        ),
        lambda: (a := take(cats)) and _categorical(c, a, c.pick(("choice", "open"))),
        lambda: (a := take(app_b)) and _binary(c, a),
    ]
    for slot in slots:
        if len(out) >= n:
            break
        qa = slot()
        if qa:
            out.append(qa)
    while len(out) < n and (a := take(cats + app_b + act_b)) is not None:
        out.append(_binary(c, a) if a in BINARY_Q else _categorical(c, a, "open"))
    order = rng.permutation(len(out))
    return [out[int(i)] for i in order]


def _emotion(c: Ctx) -> dict:
    kind = c.pick(("open", "choice", "yes_no"))
    return _categorical(c, "emotion", kind, negative=kind == "yes_no" and c.p(0.5))


def _action(c: Ctx, attr: str) -> dict:
    if attr == "head_turn":
        return _categorical(c, attr, c.pick(("choice", "open", "yes_no")), negative=c.p(0.4))
    return _binary(c, attr)
