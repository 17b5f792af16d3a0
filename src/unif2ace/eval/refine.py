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
)
from ..data.ontology import Labels, Value
from ..errors import UserError
from ._realise import (  # the sentence writer
    _TOPIC,
    state_facts,
)

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
