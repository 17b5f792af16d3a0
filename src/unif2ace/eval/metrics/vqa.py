"""VQA accuracy by category, question kind and answer type, with normalised answers.

An answer is compared with the reference by *meaning* (:func:`answer_meaning`) where both
can be read, else by normalised exact match (:func:`normalize_answer`):

* **Can't tell**: "I can't tell: her eyes are covered by sunglasses." (FaceForge's honest
  answer about an occluded attribute, ``data/faceforge/vqa.py``) means ``CANT_TELL``; it
  matches any other can't-tell answer ("Cannot tell.", "It's not visible") and nothing else.
* **Yes/no questions** (``kind == "yes_no"``, any attribute, reasoning included): the
  polarity of the answer ("Yes, she is." -> True, "No" / "Not at all" -> False). For a
  binary attribute an answer without yes/no is read as a statement with
  :func:`~unif2ace.data.caption_parser.parse_caption` ("Her mouth is closed." ->
  ``mouth_open=False``).
* **Choice and open questions about an ontology attribute**: the ontology value that
  :func:`~unif2ace.data.caption_parser.parse_answer` reads ("Medium-length" and "shoulder
  length" both mean ``hair_length=medium``).
* Otherwise (reasoning "why" answers, or an unreadable answer): normalised exact match —
  lower case, punctuation and the articles a/an/the removed, whitespace collapsed (the VQA
  benchmark's answer normalisation, Antol et al. 2015 / the official VQA evaluation script).

Accuracy is the fraction of correct answers overall, per ``category`` (appearance / action /
emotion / reasoning), per question ``kind`` (yes_no / choice / open) and per reference
**answer type**: ``yes``, ``no``, ``cant_tell`` or ``value`` (anything else) — a model that
always says "No" shows up as 1.0 on ``no`` and 0.0 on ``yes``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from ...data.caption_parser import parse_answer, parse_caption
from ...data.ontology import BY_NAME, Value
from ...errors import UserError

__all__ = [
    "CANT_TELL",
    "VQAScores",
    "answer_meaning",
    "answer_type",
    "answers_match",
    "is_cant_tell",
    "normalize_answer",
    "prior_answers",
    "vqa_accuracy",
]

CANT_TELL = "<cant_tell>"  # the meaning of "I can't tell" answers

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s']|(?<!\w)'|'(?!\w)")
_CANT = re.compile(
    r"^(?:i |we |you |one )?(?:can ?not|can't|cant|could ?not|couldn't|am unable to|unable to"
    r"|it is impossible to|impossible to|it's impossible to|it is hard to|hard to) "
    r"(?:really )?(?:tell|see|say|determine|judge|know)\b"
    r"|^(?:it is |it's |that is |that's )?(?:not visible|unclear|not possible to tell|unknown)\b"
)
_YES = re.compile(r"^(?:yes|yeah|yep|yup|correct|true|indeed|definitely|certainly)\b")
_NO = re.compile(r"^(?:no|nope|not|false|never|none)\b")


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and articles, collapse whitespace ("The Mask." -> "mask")."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = _PUNCT.sub(" ", t)
    t = _ARTICLES.sub(" ", t)
    return " ".join(t.split())


def is_cant_tell(text: str) -> bool:
    """True for an answer saying the question cannot be answered from the image."""
    return bool(_CANT.search(normalize_answer(text)))


def _polarity(text: str) -> bool | None:
    t = normalize_answer(text)
    if _YES.search(t):
        return True
    if _NO.search(t):
        return False
    return None


def answer_meaning(answer: str, attribute: str = "", kind: str = "open") -> Value:
    """What ``answer`` means for a question of ``kind`` about ``attribute`` (module docstring).

    Returns:
        :data:`CANT_TELL`; ``True``/``False`` for yes/no questions; an ontology value for
        choice/open questions about an attribute; ``None`` when it cannot be read.
    """
    if attribute and attribute not in BY_NAME:
        raise UserError(f"unknown attribute {attribute!r} in a VQA reference")
    if is_cant_tell(answer):
        return CANT_TELL
    if kind == "yes_no":
        pol = _polarity(answer)
        if pol is None and attribute and BY_NAME[attribute].is_binary:
            pol = parse_caption(answer).get(attribute)
        return pol
    if attribute:
        return parse_answer(attribute, answer)
    return None


def answers_match(prediction: str, reference: str, attribute: str = "", kind: str = "open") -> bool:
    """True when ``prediction`` answers the question as ``reference`` does (module docstring)."""
    ref = answer_meaning(reference, attribute, kind)
    pred = answer_meaning(prediction, attribute, kind)
    if ref is not None and pred is not None:  # CANT_TELL only equals CANT_TELL
        return ref == pred
    return normalize_answer(prediction) == normalize_answer(reference)


def answer_type(reference: str, attribute: str = "", kind: str = "open") -> str:
    """``cant_tell`` | ``yes`` | ``no`` | ``value``: the type of a reference answer."""
    m = answer_meaning(reference, attribute, kind)
    if m == CANT_TELL:
        return "cant_tell"
    if kind == "yes_no" and isinstance(m, bool):
        return "yes" if m else "no"
    return "value"


@dataclass(frozen=True)
class VQAScores:
    """Accuracy overall and by category / question kind / reference answer type."""

    accuracy: float
    n: int
    by_category: dict[str, float] = field(default_factory=dict)
    by_kind: dict[str, float] = field(default_factory=dict)
    by_answer_type: dict[str, float] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> {key: n}

    def to_dict(self) -> dict:
        return asdict(self)


def vqa_accuracy(predictions: Sequence[str], references: Sequence[Mapping[str, str]]) -> VQAScores:
    """Accuracy of predicted answers against FaceForge-style reference pairs.

    Args:
        predictions: one answer per question.
        references: dicts with ``answer`` and optionally ``category`` (default
            ``"unknown"``), ``kind`` (``yes_no`` | ``choice`` | ``open``; default
            ``"open"``) and ``attribute`` (ontology name, ``""`` for none) — the records
            :func:`unif2ace.data.faceforge.vqa.make_vqa` writes.
    """
    if len(predictions) != len(references):
        raise UserError(
            f"{len(predictions)} predictions but {len(references)} reference answers; need one each"
        )
    if not predictions:
        raise UserError("no VQA answers to score")
    hits: dict[str, dict[str, list[int]]] = {
        g: defaultdict(lambda: [0, 0]) for g in ("category", "kind", "answer_type")
    }
    correct = 0
    for pred, ref in zip(predictions, references, strict=True):
        if "answer" not in ref:
            raise UserError("every VQA reference needs an 'answer' field")
        attr, kind = ref.get("attribute", "") or "", ref.get("kind", "open") or "open"
        ok = int(answers_match(pred, ref["answer"], attr, kind))
        correct += ok
        keys = {
            "category": ref.get("category", "unknown") or "unknown",
            "kind": kind,
            "answer_type": answer_type(ref["answer"], attr, kind),
        }
        for g, k in keys.items():
            hits[g][k][0] += ok
            hits[g][k][1] += 1

    def acc(g: str) -> dict[str, float]:
        return {k: (c / n if n else math.nan) for k, (c, n) in sorted(hits[g].items())}

    return VQAScores(
        accuracy=correct / len(predictions),
        n=len(predictions),
        by_category=acc("category"),
        by_kind=acc("kind"),
        by_answer_type=acc("answer_type"),
        counts={g: {k: n for k, (_, n) in sorted(h.items())} for g, h in hits.items()},
    )


def prior_answers(
    train: Sequence[Mapping[str, str]], questions: Sequence[Mapping[str, str]]
) -> list[str]:
    """The blind (question-only) baseline: for each question, the most common training answer
    to the same normalised question, else to questions of its (attribute, kind), else the
    most common answer overall. A model scoring no better has not read the image."""
    from collections import Counter

    def most(counter: Counter) -> str:
        return min(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0]  # ties: alphabetical

    if not train:
        raise UserError("the blind VQA baseline needs training question/answer pairs")
    by_q: dict[str, Counter] = defaultdict(Counter)
    by_attr: dict[tuple, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for qa in train:
        a = qa["answer"]
        by_q[normalize_answer(qa["question"])][a] += 1
        by_attr[(qa.get("attribute", "") or "", qa.get("kind", "open") or "open")][a] += 1
        overall[a] += 1
    out = []
    for qa in questions:
        key = (qa.get("attribute", "") or "", qa.get("kind", "open") or "open")
        c = by_q.get(normalize_answer(qa["question"])) or by_attr.get(key) or overall
        out.append(most(c))
    return out
