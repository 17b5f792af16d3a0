"""Sample diversity: mean pairwise feature distance within and across prompts.

Definition (the feature-space analogue of the "average pairwise LPIPS between samples of one
input" used by BicycleGAN, Zhu et al. 2017, §5, and DivCo, Liu et al. 2021):

* ``within_prompt``: for every prompt with at least two samples, the mean distance over all
  unordered pairs of its samples; then the mean over those prompts (each prompt weighs the
  same). 0 means the model returns the same face for a prompt every time (mode collapse).
* ``across_prompt``: the mean distance over all unordered pairs of samples whose prompts
  differ. It is the scale ``within_prompt`` should be read against.
* ``ratio = within_prompt / across_prompt`` (NaN when ``across_prompt`` is 0 or undefined).

Distances: ``"cosine"`` = 1 - cos(f_i, f_j) (in [0, 2]; scale-free), ``"l2"`` = Euclidean.
Features come from the same network as FID (the judge's penultimate layer by default).

Shape legend: N samples, F feature dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ...errors import UserError

METRICS = ("cosine", "l2")

__all__ = ["DiversityScores", "mean_pairwise_distance", "pairwise_distances", "sample_diversity"]


def pairwise_distances(features_NF: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Symmetric ``(N, N)`` distance matrix (float64, zero diagonal) of feature rows.

    ``cosine``: ``1 - <f_i, f_j> / (|f_i| |f_j|)``; a zero row has distance 1 to everything
    but itself. ``l2``: ``|f_i - f_j|``.
    """
    f = np.asarray(features_NF, dtype=np.float64)
    if f.ndim != 2:
        raise UserError(f"features must be a 2-D (N, F) array, got shape {f.shape}")
    if metric == "cosine":
        norm = np.linalg.norm(f, axis=1, keepdims=True)
        unit = np.divide(f, norm, out=np.zeros_like(f), where=norm > 0)
        d = 1.0 - unit @ unit.T
    elif metric == "l2":
        sq = (f * f).sum(axis=1)
        d = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0, None))
    else:
        raise UserError(f"unknown distance {metric!r}; valid: {', '.join(METRICS)}")
    d = np.clip((d + d.T) / 2, 0.0, None)
    np.fill_diagonal(d, 0.0)
    return d


def mean_pairwise_distance(features_NF: np.ndarray, metric: str = "cosine") -> float:
    """Mean distance over the N(N-1)/2 unordered pairs of rows (N >= 2)."""
    n = np.asarray(features_NF).shape[0]
    if n < 2:
        raise UserError(f"diversity needs at least 2 samples, got {n}")
    d = pairwise_distances(features_NF, metric)
    return float(d[np.triu_indices(n, k=1)].mean())


@dataclass(frozen=True)
class DiversityScores:
    """Diversity of generated samples (module docstring gives the definitions)."""

    within_prompt: float
    across_prompt: float
    ratio: float
    metric: str
    n_samples: int
    n_prompts: int
    n_prompts_scored: int  # prompts with >= 2 samples (the ones within_prompt averages)

    def to_dict(self) -> dict:
        return asdict(self)


def sample_diversity(
    features_NF: np.ndarray, prompt_ids: Sequence[Hashable], metric: str = "cosine"
) -> DiversityScores:
    """Within- and across-prompt mean pairwise distances of sample features.

    Args:
        features_NF: one feature row per generated sample.
        prompt_ids: length N; samples with equal ids were generated for the same prompt.
        metric: ``"cosine"`` or ``"l2"``.
    """
    f = np.asarray(features_NF, dtype=np.float64)
    ids = list(prompt_ids)
    if f.ndim != 2 or len(ids) != f.shape[0]:
        raise UserError(
            f"need one prompt id per feature row: {len(ids)} ids for features {f.shape}"
        )
    d = pairwise_distances(f, metric)
    codes = {p: k for k, p in enumerate(dict.fromkeys(ids))}
    g = np.array([codes[p] for p in ids])
    iu, ju = np.triu_indices(len(ids), k=1)
    same = g[iu] == g[ju]
    within = [
        float(d[np.ix_(idx, idx)][np.triu_indices(len(idx), k=1)].mean())
        for k in range(len(codes))
        if len(idx := np.flatnonzero(g == k)) >= 2
    ]
    w = float(np.mean(within)) if within else math.nan
    a = float(d[iu[~same], ju[~same]].mean()) if (~same).any() else math.nan
    return DiversityScores(
        within_prompt=w,
        across_prompt=a,
        ratio=w / a if a > 0 and not math.isnan(w) else math.nan,
        metric=metric,
        n_samples=len(ids),
        n_prompts=len(codes),
        n_prompts_scored=len(within),
    )
