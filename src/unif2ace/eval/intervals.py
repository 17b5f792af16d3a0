"""How far an evaluation's numbers can move with the choice of faces, and whether two
evaluations on the same faces differ beyond that.

An evaluation keeps, per split, the numbers each evaluated face contributed (``units``: the
face's right / scored prompted attributes, its VQAScore sum and count, its caption's claim
counts, its CIDEr-D, its right / asked questions for the model and the blind baseline). Each
headline metric is a function of those rows (:data:`UNIT_METRICS`), so a percentile bootstrap
over faces (:func:`unif2ace.eval.metrics.stats.bootstrap_ci`) resamples whole faces — their
questions, attributes and claims move together — and two evaluations of the same faces (two
models, same data, ``--num`` and seed) compare *paired*: each resample takes the same faces
from both, which cancels most of the variation between faces (:func:`paired_differences`).
KID's unit of a face is its row of kernel values (:mod:`.metrics.kid`): a resample of faces
resamples the generated set while the real reference stays fixed, so KID compares paired only
between evaluations against the same real faces (same data, split and ``--fid-real``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import UserError
from .metrics.stats import bootstrap_ci

Units = dict[str, list]
MetricFn = Callable[[Units, np.ndarray], np.ndarray]


def _sums(units: Units, key: str, idx_RN: np.ndarray) -> np.ndarray:
    """Column sums of ``units[key]`` over each resample: ``(R, columns)``."""
    x = np.asarray(units[key], dtype=np.float64)
    x = x.reshape(len(x), -1)
    return x[idx_RN].sum(1)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _ratio(key: str) -> MetricFn:
    """Σ first column / Σ second column (right / scored; a sum of probabilities / count;
    a caption's correct / claims: precision)."""

    def f(units: Units, idx_RN: np.ndarray) -> np.ndarray:
        s = _sums(units, key, idx_RN)
        return _div(s[:, 0], s[:, 1])

    return f


def _mean(key: str) -> MetricFn:
    def f(units: Units, idx_RN: np.ndarray) -> np.ndarray:
        return np.asarray(units[key], dtype=np.float64)[idx_RN].mean(1)

    return f


def _caption_f1(units: Units, idx_RN: np.ndarray) -> np.ndarray:
    """Micro F1 with :func:`~unif2ace.eval.metrics.caption_attributes.prf`'s conventions
    (nan without claims or references; 0 when precision + recall is 0)."""
    s = _sums(units, "caption", idx_RN)  # correct, claims, recalled, reference
    p, r = _div(s[:, 0], s[:, 1]), _div(s[:, 2], s[:, 3])
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1.0), 0.0)
    return np.where(np.isnan(p) | np.isnan(r), np.nan, f)


def _kid(units: Units, idx_RN: np.ndarray) -> np.ndarray:
    """KID of each resample of the generated faces against the evaluation's fixed real set."""
    from .metrics.kid import KidTerms, kid_resampled

    return kid_resampled(KidTerms.from_unit_rows(units["kid"]), idx_RN)


def _vqa_minus_blind(units: Units, idx_RN: np.ndarray) -> np.ndarray:
    model, blind = _sums(units, "vqa", idx_RN), _sums(units, "vqa_blind", idx_RN)
    return _div(model[:, 0] - blind[:, 0], model[:, 1])


#: summary key -> (the units it needs, its value on a resample of faces)
UNIT_METRICS: dict[str, tuple[tuple[str, ...], MetricFn]] = {
    "generation_fidelity": (("fidelity",), _ratio("fidelity")),
    "generation_fidelity_real_ceiling": (("fidelity_real",), _ratio("fidelity_real")),
    "vqa_score": (("vqa_score",), _ratio("vqa_score")),
    "kid": (("kid",), _kid),
    "caption_attribute_f1": (("caption",), _caption_f1),
    "caption_attribute_precision": (("caption",), _ratio("caption")),
    "cider_d": (("cider_d",), _mean("cider_d")),
    "vqa_accuracy": (("vqa",), _ratio("vqa")),
    "vqa_accuracy_blind": (("vqa_blind",), _ratio("vqa_blind")),
    "vqa_minus_blind": (("vqa", "vqa_blind"), _vqa_minus_blind),
}


def _available(units: Units) -> dict[str, MetricFn]:
    return {k: fn for k, (need, fn) in UNIT_METRICS.items() if all(n in units for n in need)}


def point_values(units: Units) -> dict[str, float]:
    """Each metric on all the faces (equals the evaluation's summary numbers)."""
    every = np.arange(len(units["ids"]))[None]
    return {k: float(fn(units, every)[0]) for k, fn in _available(units).items()}


def intervals(units: Units, **kw) -> dict[str, list[float]]:
    """95 % bootstrap interval of each metric the units allow (``bootstrap_ci`` keywords)."""
    n = len(units["ids"])
    return {k: bootstrap_ci(lambda idx, f=fn: f(units, idx), n, **kw) for k, fn in
            _available(units).items()}  # fmt: skip


def _same_real_reference(before: Units, after: Units) -> bool:
    """Whether two evaluations' KID terms were measured against the same real faces (their
    real-vs-real kernel means agree)."""
    return bool(np.isclose(before["kid"][0][0], after["kid"][0][0], rtol=1e-9, atol=0.0))


def paired_differences(before: Units, after: Units, **kw) -> dict[str, dict]:
    """``after − before`` of each metric both evaluations have, with a paired 95 % bootstrap
    interval (each resample takes the same faces from both). The two must have evaluated the
    same faces in the same order (same data, split and ``--num``); KID is left out when the
    two were measured against different real faces."""
    if list(before["ids"]) != list(after["ids"]):
        raise UserError(
            "the two evaluations did not score the same faces (same data, split and --num "
            f"needed): {len(before['ids'])} vs {len(after['ids'])} ids, or another order"
        )
    a, b = _available(before), _available(after)
    if "kid" in a and "kid" in b and not _same_real_reference(before, after):
        del a["kid"]  # KID against different real faces: not a paired difference
    va, vb = point_values(before), point_values(after)
    out = {}
    for k in (k for k in UNIT_METRICS if k in a and k in b):
        ci = bootstrap_ci(
            lambda idx, fa=a[k], fb=b[k]: fb(after, idx) - fa(before, idx), len(after["ids"]), **kw
        )
        out[k] = {"before": va[k], "after": vb[k], "diff": vb[k] - va[k], "ci95": ci,
                  "beyond_noise": bool(ci[0] > 0 or ci[1] < 0)}  # fmt: skip
    return out


def beyond_seed_noise(diff: dict, controls: list[dict]) -> bool:
    """Whether a change is beyond what another training seed explains: ``after − before``
    (``diff``, a :func:`paired_differences` entry) and ``after − control`` for every control
    seed of the reference (``controls``, entries of the same kind) all lie on one side of 0,
    each paired interval excluding it. With no controls: the interval of ``diff`` alone."""
    cis = [diff["ci95"]] + [c["ci95"] for c in controls]
    return all(lo > 0 for lo, _ in cis) or all(hi < 0 for _, hi in cis)
