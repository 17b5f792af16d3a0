"""Caption attribute precision / recall / F1: do the attributes a caption states hold?

Definitions, for one candidate caption of a face with ground-truth labels L:

* **Claims** ``C = parse_caption(candidate)`` (:mod:`unif2ace.data.caption_parser`:
  ``{attribute: value}`` for the attributes the text states — present, absent or a
  categorical value), restricted to the *visible* attributes of L
  (:func:`unif2ace.data.ontology.hidden_attributes`: occluded or not applicable). A claim
  about a hidden attribute cannot be checked against the image and is not scored; it is
  counted in ``n_unverifiable``.
* A claim ``(a, v)`` is a **true positive** when ``v == L[a]`` (``"no earrings"`` is a correct
  claim when L says ``earrings=False``). **Precision** = true positives / claims.
* **Reference set** R — the attribute values a caption is expected to state:

  - ``reference="caption"`` (default): the visible attributes the *reference caption*
    states, ``parse_caption(reference)`` — with their label values. FaceForge captions
    state a subset of the attributes (~18 of 46, `data/faceforge/captions.py`), and so do
    human captions, so recall against this set asks "did the model say what a good caption
    says", which a perfect caption can reach.
  - ``reference="labels"``: every visible label. No caption states all 46 attributes, so
    recall is low even for the reference captions themselves; use it for coverage.

  **Recall** = #(a in R with C[a] == L[a]) / |R|. F1 = 2PR / (P + R) (0 when P + R = 0).
* Without labels (real captions with no attribute labels), pass ``labels=None``: the parsed
  reference caption is then both the truth and R (``reference`` must be ``"caption"``).

Aggregates: **micro** sums true positives, claims and reference sizes over all captions and
all attributes before dividing; **macro** averages per-attribute P / R / F1 over the
attributes that have at least one claim (P), one reference entry (R), or both (F1).
``per_attribute`` holds
the counts and P / R / F1 of every ontology attribute that appears.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ...data.caption_parser import parse_caption
from ...data.ontology import BY_NAME, NAMES, Labels, hidden_attributes
from ...errors import UserError

__all__ = [
    "AttributeCounts",
    "CaptionAttributeScores",
    "caption_attribute_scores",
    "per_caption_counts",
    "prf",
]

REFERENCES = ("caption", "labels")


def prf(tp_p: int, n_claims: int, tp_r: int, n_ref: int) -> tuple[float, float, float]:
    """(precision, recall, F1) from counts; NaN where a denominator is 0 (F1: 0 if P+R=0)."""
    p = tp_p / n_claims if n_claims else math.nan
    r = tp_r / n_ref if n_ref else math.nan
    if math.isnan(p) or math.isnan(r):
        f = math.nan
    else:
        f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


@dataclass
class AttributeCounts:
    """Counts for one attribute (or all): claims, correct claims, reference size, recalled."""

    claims: int = 0
    correct: int = 0
    reference: int = 0
    recalled: int = 0

    def add(self, other: AttributeCounts) -> None:
        self.claims += other.claims
        self.correct += other.correct
        self.reference += other.reference
        self.recalled += other.recalled

    def scores(self) -> tuple[float, float, float]:
        return prf(self.correct, self.claims, self.recalled, self.reference)


@dataclass(frozen=True)
class CaptionAttributeScores:
    """Micro and macro P / R / F1 and per-attribute results (module docstring)."""

    precision: float  # micro
    recall: float
    f1: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    n_captions: int
    n_unverifiable: int
    reference: str
    per_attribute: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _one(
    candidate: str, labels: Labels | None, ref_text: str | None, reference: str
) -> tuple[dict[str, AttributeCounts], int]:
    """Per-attribute counts of one caption and its number of unverifiable claims."""
    ref_parsed = parse_caption(ref_text) if ref_text is not None else None
    if labels is None:
        truth: Labels = dict(ref_parsed or {})
        hidden: set[str] = set()
    else:
        truth, hidden = labels, hidden_attributes(labels)
    claims = parse_caption(candidate)
    if reference == "labels":
        ref_set = {a for a, v in truth.items() if v is not None and a not in hidden}
    else:
        ref_set = {a for a in (ref_parsed or {}) if a not in hidden and truth.get(a) is not None}
    out: dict[str, AttributeCounts] = {}
    unverifiable = 0
    for a, v in claims.items():
        # Hidden, not applicable, or (without labels) not stated by the reference: uncheckable.
        if a in hidden or truth.get(a) is None:
            unverifiable += 1
            continue
        c = out.setdefault(a, AttributeCounts())
        c.claims += 1
        c.correct += int(v == truth[a])
    for a in ref_set:
        c = out.setdefault(a, AttributeCounts())
        c.reference += 1
        c.recalled += int(claims.get(a) == truth[a])
    return out, unverifiable


def caption_attribute_scores(
    candidates: Sequence[str],
    labels: Sequence[Labels] | None = None,
    references: Sequence[str] | None = None,
    reference: str = "caption",
) -> CaptionAttributeScores:
    """Attribute precision / recall / F1 of ``candidates`` (definitions: module docstring).

    Args:
        candidates: generated captions, one per face.
        labels: ground-truth label sets (every ontology attribute), one per face; ``None``
            to take the parsed reference captions as the truth.
        references: reference captions, one per face; required for ``reference="caption"``.
        reference: ``"caption"`` (recall over what the reference caption states) or
            ``"labels"`` (recall over all visible labels).
    """
    n = len(candidates)
    if reference not in REFERENCES:
        raise UserError(f"unknown reference {reference!r}; valid: {', '.join(REFERENCES)}")
    if labels is None and references is None:
        raise UserError("caption attribute scores need labels or reference captions")
    if reference == "caption" and references is None:
        raise UserError('reference="caption" needs reference captions; or use "labels"')
    if labels is None and reference == "labels":
        raise UserError('reference="labels" needs label sets; pass labels=')
    for what, seq in (("labels", labels), ("references", references)):
        if seq is not None and len(seq) != n:
            raise UserError(f"{n} candidates but {len(seq)} {what}; need one each")
    if labels is not None:
        for lab in labels:
            unknown = [a for a in lab if a not in BY_NAME]
            if unknown:
                raise UserError(f"unknown attribute(s) in labels: {', '.join(unknown)}")
    per: dict[str, AttributeCounts] = {}
    unverifiable = 0
    for counts, unv in _each(candidates, labels, references, reference):
        unverifiable += unv
        for a, c in counts.items():
            per.setdefault(a, AttributeCounts()).add(c)
    return _aggregate(per, n, unverifiable, reference)


def _each(candidates, labels, references, reference):
    for i, cand in enumerate(candidates):
        yield _one(
            cand,
            labels[i] if labels is not None else None,
            references[i] if references is not None else None,
            reference,
        )


def per_caption_counts(
    candidates: Sequence[str],
    labels: Sequence[Labels] | None = None,
    references: Sequence[str] | None = None,
    reference: str = "caption",
) -> list[AttributeCounts]:
    """The all-attribute counts of each caption (what :func:`caption_attribute_scores` sums
    for its micro scores; same arguments, checked there): the units of a bootstrap over
    faces."""
    out = []
    for counts, _ in _each(candidates, labels, references, reference):
        total = AttributeCounts()
        for c in counts.values():
            total.add(c)
        out.append(total)
    return out


def _aggregate(
    per: dict[str, AttributeCounts], n: int, unverifiable: int, reference: str
) -> CaptionAttributeScores:
    total = AttributeCounts()
    for c in per.values():
        total.add(c)
    p, r, f = total.scores()
    rows = {a: per[a].scores() for a in NAMES if a in per}

    def mean(vals: list[float]) -> float:
        vals = [v for v in vals if not math.isnan(v)]
        return sum(vals) / len(vals) if vals else math.nan

    return CaptionAttributeScores(
        precision=p,
        recall=r,
        f1=f,
        macro_precision=mean([s[0] for s in rows.values()]),
        macro_recall=mean([s[1] for s in rows.values()]),
        macro_f1=mean([s[2] for s in rows.values()]),
        n_captions=n,
        n_unverifiable=unverifiable,
        reference=reference,
        per_attribute={
            a: {**asdict(per[a]), "precision": s[0], "recall": s[1], "f1": s[2]}
            for a, s in rows.items()
        },
    )
