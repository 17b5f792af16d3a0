"""KID: the unbiased estimate against a direct double loop, its lack of small-sample bias
(where FID has one), the resampled estimate against the definition on a multiset, and its
interval and paired comparison through the evaluation's units."""

import itertools

import numpy as np
import pytest

from unif2ace.errors import UserError
from unif2ace.eval.intervals import intervals, paired_differences, point_values
from unif2ace.eval.metrics import (
    KidTerms,
    fid_from_features,
    kid_from_features,
    kid_resampled,
    kid_terms,
)


def _k(x, y):
    return (float(x @ y) / len(x) + 1.0) ** 3


def _kid_loops(g, r, g_ids=None):
    """The definition, by loops; ``g_ids`` names the original image of each row of ``g`` so
    that two copies of one image are never paired (a resample with repetition)."""
    g_ids = range(len(g)) if g_ids is None else g_ids
    gg = [_k(g[i], g[j]) for i, j in itertools.permutations(range(len(g)), 2)
          if g_ids[i] != g_ids[j]]  # fmt: skip
    rr = [_k(r[a], r[b]) for a, b in itertools.permutations(range(len(r)), 2)]
    gr = [_k(x, y) for x in g for y in r]
    return np.mean(gg) + np.mean(rr) - 2 * np.mean(gr)


def test_kid_equals_the_definition():
    rng = np.random.default_rng(0)
    g, r = rng.normal(size=(7, 5)), rng.normal(0.3, 1.2, size=(9, 5))
    assert kid_from_features(g, r) == pytest.approx(_kid_loops(g, r), rel=1e-10)
    assert kid_from_features(g, r) == pytest.approx(kid_from_features(r, g), rel=1e-10)


def test_kid_is_unbiased_where_fid_is_not():
    """Same distribution, 24 vs 96 images in 16 dimensions: KID averages to ~0 over draws,
    FID sits far above its population value 0; a shifted distribution raises KID clearly."""
    rng = np.random.default_rng(1)
    kids, fids = [], []
    for _ in range(60):
        g, r = rng.normal(size=(24, 16)), rng.normal(size=(96, 16))
        kids.append(kid_from_features(g, r))
        fids.append(fid_from_features(g, r))
    se = np.std(kids, ddof=1) / np.sqrt(len(kids))
    assert abs(np.mean(kids)) < 3 * se
    assert min(kids) < 0  # an unbiased estimate of 0 falls below it sometimes
    assert np.mean(fids) > 20 * se and min(fids) > 0
    shifted = kid_from_features(rng.normal(0.5, 1, size=(24, 16)), rng.normal(size=(96, 16)))
    assert shifted > np.mean(kids) + 10 * np.std(kids)


def test_resampled_kid_is_the_definition_on_the_multiset():
    rng = np.random.default_rng(2)
    g, r = rng.normal(size=(6, 4)), rng.normal(size=(8, 4))
    terms = kid_terms(g, r)
    idx = np.array([[0, 0, 2, 3, 3, 3], [5, 4, 3, 2, 1, 0], [1, 1, 1, 1, 1, 1]])
    got = kid_resampled(terms, idx)
    assert got[0] == pytest.approx(_kid_loops(g[idx[0]], r, idx[0]), rel=1e-10)
    assert got[1] == pytest.approx(terms.value(), rel=1e-10)  # a permutation: the estimate
    assert np.isnan(got[2])  # one distinct image: no pair to average


def test_unit_rows_round_trip_and_reject_bad_shapes():
    rng = np.random.default_rng(3)
    terms = kid_terms(rng.normal(size=(5, 3)), rng.normal(size=(6, 3)))
    back = KidTerms.from_unit_rows(terms.unit_rows())
    assert back.value() == terms.value() and back.real_real == terms.real_real
    with pytest.raises(UserError, match="N \\+ 2"):
        KidTerms.from_unit_rows([[1.0, 2.0, 3.0]] * 2)
    with pytest.raises(UserError, match="at least 2"):
        kid_terms(rng.normal(size=(1, 3)), rng.normal(size=(6, 3)))
    with pytest.raises(UserError, match="feature sizes differ"):
        kid_terms(rng.normal(size=(4, 3)), rng.normal(size=(6, 2)))


def _units(g, r):
    return {"ids": [f"f{i}" for i in range(len(g))], "kid": kid_terms(g, r).unit_rows()}


def test_kid_interval_and_paired_difference():
    rng = np.random.default_rng(4)
    r = rng.normal(size=(120, 8))
    g_bad = rng.normal(0.6, 1, size=(40, 8))
    g_good = g_bad * 0.2 + rng.normal(size=(40, 8)) * 0.98  # closer to the real faces
    bad, good = _units(g_bad, r), _units(g_good, r)
    kid = point_values(bad)["kid"]
    assert kid == pytest.approx(kid_from_features(g_bad, r))
    lo, hi = intervals(bad)["kid"]
    assert lo < kid < hi
    d = paired_differences(bad, good)["kid"]
    assert d["diff"] == pytest.approx(kid_from_features(g_good, r) - kid, rel=1e-9)
    assert d["beyond_noise"] and d["ci95"][1] < 0
    assert paired_differences(bad, bad)["kid"]["ci95"] == [0.0, 0.0]
    # against other real faces the difference is not paired: left out
    other = _units(g_good, rng.normal(size=(120, 8)))
    assert "kid" not in paired_differences(bad, other)
