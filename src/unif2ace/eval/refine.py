"""Caption refinement, the paper's data-pipeline step 3 (NOTES.md §6): rewrite a draft caption
with an attribute judge's predictions.

Given a draft and a judge's view of the face (values, confidences, hidden set —
:class:`unif2ace.eval.judge.JudgePrediction`), :func:`refine_caption`

* **corrects** attributes the draft states that contradict a confident prediction,
* **enhances** it with confident attributes the draft leaves out (up to a cap),
* removes anything about attributes the judge sees as **hidden** (never stated),
* adds **reasoning** sentences (tired, talking, playful...) with FaceForge's own rules
  (:mod:`unif2ace.data.faceforge._caption_reasoning`),

and records every change as an :class:`Edit`. The rewrite is sentence-level: the draft is split
into sentences, each parsed with :func:`~unif2ace.data.caption_parser.parse_caption`; a sentence
whose claims all survive is kept verbatim (so a VLM draft keeps its wording and anything
outside the ontology); in one whose only change is a categorical value, the word naming it is
swapped in place ("brown hair" -> "blond hair") when the parser confirms the result; any other
changed sentence is restated by :func:`state_facts` from FaceForge's phrase banks (what it said
outside the ontology is then lost). :func:`corrupt_caption` uses the same machinery to damage
drafts on purpose (wrong values, omissions), which measures the refiner (issue 6).

:func:`template_vqa` regenerates question/answer pairs about the refined caption's attributes
with the templates of :mod:`unif2ace.data.faceforge.vqa`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np

from ..data import ontology as onto
from ..data.caption_parser import parse_caption
from ..data.faceforge import vqa as ffvqa
from ..data.faceforge._caption_reasoning import _reasons  # the rule table of reasoning sentences
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
    Ctx,
    art,
    cap,
    join,
)
from ..data.ontology import Labels, Value
from ..errors import UserError

__all__ = [
    "Edit",
    "RefineConfig",
    "Refinement",
    "corrupt_caption",
    "refine_caption",
    "revise_sentences",
    "split_sentences",
    "state_facts",
    "template_vqa",
]

_SENT = re.compile(r"(?<=[.!?])\s+")
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


# --------------------------------------------------------------------- sentence rewrite
_BANKS = {
    "age": AGE_ADJ,
    "hair_color": HAIR_COLOR,
    "hair_length": HAIR_LENGTH,
    "hair_type": HAIR_TYPE,
    "eye_color": EYE_COLOR,
    "skin_tone": SKIN_TONE,
    "emotion": EMOTION_ADJ,
    "eyebrow_shape": BROW_SHAPE,
    "face_shape": FACE_SHAPE,
    "nose_size": NOSE_SIZE,
    "lips": LIPS,
}
# attribute -> value -> words naming it, the replacement word first.
_VALUE_WORDS = {
    a.name: {
        v: list(dict.fromkeys([*_BANKS.get(a.name, {}).get(v, ()), *a.phrases[v]]))
        for v in a.values
    }
    for a in onto.ATTRIBUTES
    if not a.is_binary and a.name != "gender"  # gender also changes every pronoun
}


def _swap(s: str, m: re.Match, new: str) -> str:
    """``s`` with the match replaced by ``new`` (capitalised like it; a/an agreement)."""
    head, tail = s[: m.start()], s[m.end() :]
    new = cap(new) if m.group(0)[:1].isupper() else new
    art_m = re.search(r"\b([Aa]n?) $", head)
    if art_m and not new.startswith(("a ", "an ")):
        a = art(new).split(" ")[0]
        head = head[: art_m.start()] + (cap(a) if art_m.group(1)[0] == "A" else a) + " "
    return head + new + tail


def _swap_value(s: str, a: str, old: Value, new: Value) -> str | None:
    """``s`` with the first word naming ``a=old`` replaced so that it reads ``a=new``."""
    for w in sorted(_VALUE_WORDS[a][old], key=len, reverse=True):
        for m in re.finditer(rf"(?<![\w'-]){re.escape(w)}(?![\w'-])", s, re.I):
            cand = _swap(s, m, _VALUE_WORDS[a][new][0])
            if parse_caption(cand).get(a) == new:
                return cand
    return None


def _substitute(s: str, claims: Labels, target: Labels) -> str | None:
    """Swap the words naming changed categorical values in place ("brown hair" -> "blond
    hair"); ``None`` unless the parser then reads exactly ``target`` from the sentence."""
    changed = [a for a in claims if a in target and target[a] != claims[a]]
    if set(target) != set(claims) or any(a not in _VALUE_WORDS for a in changed):
        return None
    for a in changed:
        s = _swap_value(s, a, claims[a], target[a])
        if s is None:
            return None
    return s if parse_caption(s) == target else None


def split_sentences(text: str) -> list[str]:
    """Sentences of a caption (split after ``.``, ``!`` or ``?``)."""
    return [s.strip() for s in _SENT.split(text.strip()) if s.strip()]


def revise_sentences(
    text: str,
    facts: Labels,
    drop: set[str],
    gender: str | None,
    extra: Labels | None = None,
) -> tuple[str, Labels]:
    """Restate every sentence of ``text`` that states a changed or dropped attribute, and place
    ``extra`` facts beside the sentences on their topic (hair, eyes, skin, ...): inside one that
    is restated anyway, else in a new sentence right after the last one on that topic.

    Args:
        text: the caption.
        facts: target values; a sentence claiming ``a`` with a value other than ``facts[a]``
            is restated with ``facts[a]``.
        drop: attributes that must not be stated; sentences claiming them are restated
            without them (or removed when nothing else is left).
        gender: pronouns for restated sentences.
        extra: new facts to state beside their topic when the text has it.

    Returns:
        (new text, the ``extra`` facts no sentence took: state them with :func:`state_facts`).
    """
    out: list[tuple[str, set[int]]] = []  # (sentence, its topics)
    left = dict(extra or {})
    for s in split_sentences(text):
        claims = parse_caption(s)
        topics = {_TOPIC[a] for a in claims if a in _TOPIC}
        changed = [a for a, v in claims.items() if a in drop or (a in facts and facts[a] != v)]
        keep = {a: facts.get(a, v) for a, v in claims.items() if a not in drop}
        swapped = s if not changed else None
        if changed and not set(claims) & drop:
            swapped = _substitute(s, claims, keep)
        if swapped is not None:  # the draft's own wording (one value word swapped at most)
            out.append((swapped, topics))
            continue
        merge = {a: v for a, v in left.items() if _TOPIC.get(a) in topics}
        keep.update(merge)
        left = {a: v for a, v in left.items() if a not in merge}
        if gender is None:
            keep.pop("gender", None)
        if set(keep) - {"gender"}:  # gender alone: the other sentences' pronouns state it
            said = {x for x, _ in out}
            out += [(x, topics) for x in state_facts(keep, gender) if x not in said]
    for t in sorted({_TOPIC[a] for a in left if a in _TOPIC}):  # beside their topic
        at = [i for i, (_, ts) in enumerate(out) if t in ts]
        if at:
            group = {a: v for a, v in left.items() if _TOPIC.get(a) == t}
            out[at[-1] + 1 : at[-1] + 1] = [(x, {t}) for x in state_facts(group, gender)]
            left = {a: v for a, v in left.items() if a not in group}
    return " ".join(x for x, _ in out), left


# ---------------------------------------------------------------------------- corruption
def _wrong_value(a: str, v: Value, rng: np.random.Generator) -> Value:
    attr = onto.BY_NAME[a]
    if attr.is_binary:
        return not v
    others = [x for x in attr.values if x != v]
    return others[int(rng.integers(len(others)))]


def corrupt_caption(
    caption: str, labels: Labels, wrong: float, omit: float, rng: np.random.Generator
) -> tuple[str, dict]:
    """Damage a correct caption on purpose: switch ``round(wrong * n)`` of its ``n`` stated
    attributes to a wrong value and remove ``round(omit * n)`` others (gender is never
    removed: English pronouns state it).

    Returns:
        (damaged caption, ``{"stated": n, "switched": {a: [true, wrong]}, "removed": [a]}``).
    """
    if not (0 <= wrong <= 1 and 0 <= omit <= 1 and wrong + omit <= 1):
        raise UserError(f"corruption fractions must be in [0, 1] with sum <= 1: {wrong}, {omit}")
    vis = onto.visible_labels(labels)
    stated = {a: v for a, v in parse_caption(caption).items() if a in vis}
    names = list(stated)
    order = [names[int(i)] for i in rng.permutation(len(names))]
    k_wrong, k_omit = round(wrong * len(names)), round(omit * len(names))
    switched = {a: _wrong_value(a, stated[a], rng) for a in order[:k_wrong]}
    removable = [a for a in order[k_wrong:] if a != "gender"]
    removed = removable[:k_omit]
    facts = {**stated, **switched}
    text, _ = revise_sentences(caption, facts, set(removed), facts.get("gender"))
    info = {
        "stated": len(names),
        "switched": {a: [stated[a], v] for a, v in switched.items()},
        "removed": removed,
    }
    return text, info


# ----------------------------------------------------------------------------- refinement
@dataclass(frozen=True)
class RefineConfig:
    """How boldly the refiner trusts the judge.

    Attributes:
        correct_threshold: minimum judge confidence to overrule a value the draft states.
        enhance_threshold: minimum confidence to add an attribute the draft omits.
        max_added: cap on added attributes per caption (informative ones first: categorical
            values and present features before absences, then by confidence).
        max_reasoning: reasoning sentences added per caption (0: none).
        merge: place an added attribute beside the draft's sentences on its topic (inside
            one that is restated anyway, else right after it) rather than at the end.
    """

    correct_threshold: float = 0.8
    enhance_threshold: float = 0.9
    max_added: int = 8
    max_reasoning: int = 1
    merge: bool = True

    def __post_init__(self) -> None:
        for k in ("correct_threshold", "enhance_threshold"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise UserError(f"{k} must be in [0, 1], not {getattr(self, k)}")
        if self.max_added < 0 or self.max_reasoning < 0:
            raise UserError("max_added and max_reasoning must be >= 0")


@dataclass(frozen=True)
class Edit:
    """One change: ``kind`` is ``correct`` | ``add`` | ``remove_hidden`` | ``reason``.

    ``old``/``new`` are attribute values (``reason``: ``new`` is the sentence, ``attribute``
    the attributes it rests on, comma-separated); ``confidence`` the judge's probability
    (``None`` where the judge gave none).
    """

    kind: str
    attribute: str
    old: Value = None
    new: Value | str = None
    confidence: float | None = None


@dataclass
class Refinement:
    """A refined caption, the attributes it states and the audit trail."""

    draft: str
    caption: str
    facts: dict[str, Value]
    edits: list[Edit] = field(default_factory=list)

    def edits_dicts(self) -> list[dict]:
        return [asdict(e) for e in self.edits]


def _additions(stated: Labels, values: Labels, conf: dict, hidden: set[str], cfg) -> list[str]:
    female = stated.get("gender", values.get("gender")) == "female"
    cand = [
        a
        for a, v in values.items()
        if a not in stated
        and a not in hidden
        and conf.get(a, 0.0) >= cfg.enhance_threshold
        and not (female and v is False and a in onto.MALE_ONLY_TYPICAL)  # "no beard": trivial
    ]
    # Informative first (categorical values, present features), then confident first.
    cand.sort(key=lambda a: (values[a] is False, -conf.get(a, 0.0), onto.NAMES.index(a)))
    return cand[: cfg.max_added]


def _coherent(facts: Labels, added: list[str]) -> list[str]:
    """Keep the additions (most trusted first) that break none of the ontology's hard rules
    the rest of ``facts`` keeps; drop the others from ``facts``."""
    base = {a: v for a, v in facts.items() if a not in added}
    broken = set(onto._rules(base, partial=True))  # the draft's own contradictions stay
    kept = []
    for a in added:
        trial = {**base, a: facts[a]}
        if set(onto._rules(trial, partial=True)) <= broken:
            base, kept = trial, [*kept, a]
        else:
            facts.pop(a)
    return kept


def _reasoning(facts: Labels, text: str, n: int, rng) -> list[tuple[str, tuple[str, ...]]]:
    """Up to ``n`` FaceForge reasoning sentences the facts support, not already in ``text``."""
    if n == 0 or facts.get("gender") is None:
        return []
    ctx = Ctx(dict(facts), rng, facts["gender"] == "female")
    rules = [(s, a) for s, a in _reasons(ctx) if s not in text]
    if not rules:
        return []
    idx = sorted(int(i) for i in rng.choice(len(rules), size=min(n, len(rules)), replace=False))
    return [rules[i] for i in idx]


def refine_caption(
    draft: str,
    values: Labels,
    confidence: dict[str, float],
    hidden: set[str],
    cfg: RefineConfig = RefineConfig(),
    rng: np.random.Generator | None = None,
) -> Refinement:
    """Rewrite ``draft`` with a judge's view of the face (module docstring).

    Args:
        draft: the draft caption.
        values: judge's values of the visible attributes (``JudgePrediction.values[i]``).
        confidence: probability of each predicted value (``JudgePrediction.confidence[i]``).
        hidden: attributes the judge sees as not visible; never stated in the result.
        cfg: thresholds and caps.
        rng: the only randomness (which reasoning rule is used); default seed 0.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    stated = parse_caption(draft)
    edits = [Edit("remove_hidden", a, stated[a]) for a in stated if a in hidden]
    facts = {a: v for a, v in stated.items() if a not in hidden}
    for a, v in list(facts.items()):
        c = confidence.get(a, 0.0)
        if a in values and values[a] != v and c >= cfg.correct_threshold:
            facts[a] = values[a]
            edits.append(Edit("correct", a, v, values[a], c))
    added = _additions(facts, values, confidence, hidden | set(stated), cfg)
    if "gender" not in stated and "gender" in values and "gender" not in added:
        if confidence.get("gender", 0.0) >= cfg.enhance_threshold:  # pronouns state it
            added.insert(0, "gender")
    facts.update({a: values[a] for a in added})
    added = _coherent(facts, added)
    edits += [Edit("add", a, None, values[a], confidence.get(a)) for a in added]
    gender = facts.get("gender")
    drop = set(hidden)
    extra = {a: facts[a] for a in added}
    text, left = revise_sentences(draft, facts, drop, gender, extra if cfg.merge else None)
    left = left if cfg.merge else extra
    intro = {a: v for a, v in left.items() if a in ("age", "gender")}  # leads the caption
    rest = {a: v for a, v in left.items() if a not in intro}
    text = " ".join([*state_facts(intro, gender), text, *state_facts(rest, gender)]).strip()
    for sentence, attrs in _reasoning(facts, text, cfg.max_reasoning, rng):
        text += " " + sentence
        c = [confidence[a] for a in attrs if a in confidence]
        edits.append(Edit("reason", ",".join(attrs), None, sentence, min(c) if c else None))
    leak = set(parse_caption(text)) & drop  # a parser reading across kept sentences
    if leak:
        text, _ = revise_sentences(text, facts, drop, gender)
    return Refinement(draft, text, parse_caption(text), edits)


# ---------------------------------------------------------------------------------- VQA
def template_vqa(
    facts: Labels, hidden: set[str], rng: np.random.Generator, n: int = 8
) -> list[dict]:
    """About ``n`` question/answer pairs about the attributes a refined caption states, with
    :mod:`unif2ace.data.faceforge.vqa`'s templates (same pair format as ``make_vqa``).

    One honest "I can't tell" pair when a stated occluder hides an attribute in ``hidden``;
    then categorical (open / choice / yes-no, some negative), present and absent binary
    features alternating, and one reasoning pair when the facts support one.
    """
    f = {a: v for a, v in facts.items() if v is not None and a not in hidden}
    if "gender" not in f:
        return []
    c = Ctx(f, rng, f["gender"] == "female")
    out: list[dict] = []
    full = {**f, **dict.fromkeys(hidden - set(f), True)}  # occluded attrs exist, value unknown
    occl = [a for a in sorted(hidden) if ffvqa._occluder(full, a) and a in onto.BY_NAME]
    occl = [a for a in occl if a in ffvqa.BINARY_Q or a in ffvqa.CATEGORICAL_Q]
    if occl:
        out.append(ffvqa._hidden_q(c, full, occl[int(rng.integers(len(occl)))]))
    cats = [a for a in ffvqa.CATEGORICAL_Q if a in f and a != "gender"]
    yes = [a for a in ffvqa.BINARY_Q if f.get(a) is True]
    no = [a for a in ffvqa.BINARY_Q if f.get(a) is False]
    pools = [list(rng.permutation(p)) for p in (cats, yes, no)]
    kinds = ("open", "choice", "yes_no")
    while len(out) < n and any(pools):
        for i, pool in enumerate(pools):
            if pool and len(out) < n:
                a = str(pool.pop())
                if i == 0:
                    kind = kinds[int(rng.integers(3))]
                    out.append(ffvqa._categorical(c, a, kind, negative=bool(rng.random() < 0.5)))
                else:
                    out.append(ffvqa._binary(c, a))
    reasons = ffvqa._reasoning(c)[1:]  # [0] asks about covering, answered from f alone
    if reasons and len(out) >= n:
        out[-1] = reasons[int(rng.integers(len(reasons)))]
    elif reasons:
        out.append(reasons[int(rng.integers(len(reasons)))])
    return out
