"""Caption n-gram metrics: corpus BLEU-4 and CIDEr-D, implemented here (no nltk / coco tools).

* **BLEU-4** (Papineni et al., 2002, "BLEU: a Method for Automatic Evaluation of Machine
  Translation"), with the conventions of ``nltk.translate.bleu_score.corpus_bleu`` defaults:
  uniform weights 1/4, clipped n-gram counts summed over the corpus before dividing, per
  sentence denominator ``max(1, #hypothesis n-grams)``, brevity penalty from the summed
  hypothesis length c and the summed *closest* reference lengths r (ties -> the shorter one):
  ``BP = 1 if c > r else exp(1 - r / c)``; no smoothing, so any zero n-gram precision gives 0.
* **CIDEr-D** (Vedantam et al., 2015, "CIDEr: Consensus-based Image Description Evaluation",
  §3 and §4.2 "CIDEr-D"), as coded in coco-caption ``pycocoevalcap/cider/cider_scorer.py``:
  n = 1..4; tf-idf vectors where the term frequency is the raw n-gram count and the document
  frequency counts the *images* whose reference set contains the n-gram, idf =
  ``log(#images) - log(max(1, df))``; per n the similarity is
  ``sum_g min(v_c(g), v_r(g)) * v_r(g) / (|v_c| |v_r|)`` (clipping) times the length penalty
  ``exp(-(l_c - l_r)² / (2 sigma²))``, sigma = 6, where l is coco's length (the count of
  bigrams); averaged over n and over the references, times 10; the corpus score is the mean
  over images. Document frequencies come from the evaluated corpus' references, so scores
  depend on the whole corpus (a one-image corpus scores 0: every idf is log 1 = 0).

Tokenisation (:func:`tokenize`): lower case, words and numbers kept (hyphenated words stay
one token), clitics split (``she's`` -> ``she 's``), punctuation dropped — close to what the
coco-caption PTB tokenizer produces.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ...errors import UserError

__all__ = ["BleuScore", "CiderScore", "bleu", "bleu_4", "cider_d", "ngrams", "tokenize"]

_WORD = re.compile(r"n't|[a-z0-9]+(?:-[a-z0-9]+)*|'[a-z]+")


def tokenize(text: str) -> list[str]:
    """PTB-like tokens of ``text`` (module docstring)."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"n't\b", " n't", t)
    return _WORD.findall(t)


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the contiguous ``n``-grams (tuples) of ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _tok(x: str | Sequence[str]) -> list[str]:
    return tokenize(x) if isinstance(x, str) else list(x)


def _check(candidates: Sequence, references: Sequence) -> None:
    if len(candidates) != len(references):
        raise UserError(
            f"{len(candidates)} candidates but {len(references)} reference lists; need one each"
        )
    if not candidates:
        raise UserError("no captions to score")
    if any(len(refs) == 0 for refs in references):
        raise UserError("every candidate needs at least one reference caption")


# ---------------------------------------------------------------------------------------------
# BLEU
@dataclass(frozen=True)
class BleuScore:
    """Corpus BLEU with its parts: ``precisions[n-1]`` is the clipped n-gram precision."""

    score: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    hyp_length: int
    ref_length: int

    def to_dict(self) -> dict:
        return asdict(self)


def bleu(
    candidates: Sequence[str | Sequence[str]],
    references: Sequence[Sequence[str | Sequence[str]]],
    max_n: int = 4,
) -> BleuScore:
    """Corpus BLEU-``max_n`` with uniform weights (Papineni et al. 2002; nltk corpus_bleu).

    Args:
        candidates: one caption per item (a string, tokenised by :func:`tokenize`, or tokens).
        references: per item, one or more reference captions.
        max_n: highest n-gram order (4 for BLEU-4).
    """
    _check(candidates, references)
    num, den = [0] * max_n, [0] * max_n
    c_len = r_len = 0
    for cand, refs in zip(candidates, references, strict=True):
        hyp, rs = _tok(cand), [_tok(r) for r in refs]
        for n in range(1, max_n + 1):
            counts = ngrams(hyp, n)
            max_ref: Counter = Counter()
            for r in rs:
                max_ref |= ngrams(r, n)  # element-wise max over references
            num[n - 1] += sum(min(c, max_ref[g]) for g, c in counts.items())
            den[n - 1] += max(1, sum(counts.values()))
        c_len += len(hyp)
        r_len += min((len(r) for r in rs), key=lambda L: (abs(L - len(hyp)), L))
    precisions = tuple(a / b for a, b in zip(num, den, strict=True))
    if c_len == 0:
        bp = 0.0
    else:
        bp = 1.0 if c_len > r_len else math.exp(1.0 - r_len / c_len)
    if min(precisions) == 0.0:
        score = 0.0
    else:
        score = bp * math.exp(sum(math.log(p) for p in precisions) / max_n)
    return BleuScore(score, precisions, bp, c_len, r_len)


def bleu_4(
    candidates: Sequence[str | Sequence[str]], references: Sequence[Sequence[str | Sequence[str]]]
) -> float:
    """Corpus BLEU-4 (see :func:`bleu`)."""
    return bleu(candidates, references, 4).score


# ---------------------------------------------------------------------------------------------
# CIDEr-D
@dataclass(frozen=True)
class CiderScore:
    """Corpus CIDEr-D (mean of ``per_item``) and the score of each candidate."""

    score: float
    per_item: tuple[float, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def _tfidf(
    counts: Counter, df: Counter, log_n_docs: float, n: int
) -> tuple[list[dict], list[float], int]:
    """Per-order tf-idf vectors, their norms and coco's length (#bigrams) of one caption."""
    vec: list[dict] = [{} for _ in range(n)]
    norm = [0.0] * n
    length = 0
    for g, tf in counts.items():
        k = len(g) - 1
        v = float(tf) * (log_n_docs - math.log(max(1.0, df[g])))
        vec[k][g] = v
        norm[k] += v * v
        if k == 1:
            length += tf
    return vec, [math.sqrt(x) for x in norm], length


def _sim(c: tuple, r: tuple, n: int, sigma: float) -> list[float]:
    (vc, nc, lc), (vr, nr, lr) = c, r
    penalty = math.exp(-((lc - lr) ** 2) / (2.0 * sigma**2))
    out = []
    for k in range(n):
        val = sum(min(v, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, v in vc[k].items())
        if nc[k] != 0 and nr[k] != 0:
            val /= nc[k] * nr[k]
        out.append(val * penalty)
    return out


def cider_d(
    candidates: Sequence[str | Sequence[str]],
    references: Sequence[Sequence[str | Sequence[str]]],
    n: int = 4,
    sigma: float = 6.0,
) -> CiderScore:
    """Corpus CIDEr-D (Vedantam et al. 2015 §4.2; coco-caption ``CiderScorer``).

    Args:
        candidates: one caption per image.
        references: per image, its reference captions (document frequencies are counted over
            these, one document per image).
        n: highest n-gram order.
        sigma: standard deviation of the Gaussian length penalty.
    """
    _check(candidates, references)

    def cook(x) -> Counter:
        toks = _tok(x)
        out: Counter = Counter()
        for k in range(1, n + 1):
            out.update(ngrams(toks, k))
        return out

    crefs = [[cook(r) for r in refs] for refs in references]
    df: Counter = Counter()
    for refs in crefs:
        df.update(set().union(*(r.keys() for r in refs)))
    log_n = math.log(float(len(crefs)))
    per_item = []
    for cand, refs in zip(candidates, crefs, strict=True):
        vc = _tfidf(cook(cand), df, log_n, n)
        total = [0.0] * n
        for r in refs:
            for k, s in enumerate(_sim(vc, _tfidf(r, df, log_n, n), n, sigma)):
                total[k] += s
        per_item.append(10.0 * (sum(total) / n) / len(refs))
    return CiderScore(sum(per_item) / len(per_item), tuple(per_item))
