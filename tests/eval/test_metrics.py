"""Evaluation metrics on cases with known answers: FID, diversity, caption attribute F1, VQA
accuracy, BLEU-4 and CIDEr-D (issue 6, "Done means")."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from unif2ace.data import ontology as onto
from unif2ace.data.faceforge.captions import make_caption
from unif2ace.data.faceforge.labels import sample_labels
from unif2ace.data.faceforge.vqa import make_vqa
from unif2ace.errors import UserError
from unif2ace.eval.metrics import (
    bleu,
    bleu_4,
    caption_attribute_scores,
    cider_d,
    compute_fid,
    feature_stats,
    fid_from_features,
    frechet_distance,
    inception_feature_fn,
    mean_pairwise_distance,
    normalize_answer,
    pairwise_distances,
    real_vs_real_fid,
    sample_diversity,
    tokenize,
    vqa_accuracy,
)
from unif2ace.eval.metrics.fid import sqrtm_trace
from unif2ace.eval.metrics.vqa import answers_match


def _spd(rng: np.random.Generator, f: int) -> np.ndarray:
    a = rng.normal(size=(f, f))
    return a @ a.T + 0.1 * np.eye(f)


# ------------------------------------------------------------------------------------- FID
@pytest.mark.parametrize("seed", range(4))
def test_sqrtm_trace_matches_scipy_sqrtm(seed):
    rng = np.random.default_rng(seed)
    s1, s2 = _spd(rng, 8), _spd(rng, 8)
    want = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert sqrtm_trace(s1, s2) == pytest.approx(want, rel=1e-9)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * want  # pytorch-fid
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    # d² = |mu1 - mu2|² + sum (sqrt v1 - sqrt v2)² = (1 + 0 + 6.25) + (4 + 1 + 0)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(12.25)


def test_fid_self_zero_shift_grows_and_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(size=(150, 16)) * 1.5
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-7)
    direction = rng.normal(size=16)
    fids = [fid_from_features(a, a + s * direction) for s in (0.5, 1.0, 2.0)]
    # A pure shift leaves the covariance unchanged, so FID = |shift|² exactly.
    np.testing.assert_allclose(fids, [s * s * direction @ direction for s in (0.5, 1.0, 2.0)])
    assert fids[0] < fids[1] < fids[2]
    assert fid_from_features(a, b) == pytest.approx(fid_from_features(b, a), rel=1e-9)
    assert fid_from_features(a, b) > 1.0


def test_fid_with_singular_covariance_is_finite():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 32)), rng.normal(size=(6, 32))  # N < F: rank-deficient
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-7)
    assert math.isfinite(fid_from_features(a, b)) and fid_from_features(a, b) > 0


def test_feature_stats_match_numpy_cov():
    x = np.random.default_rng(2).normal(size=(30, 4))
    mu, sigma = feature_stats(torch.from_numpy(x).float())
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-5)
    with pytest.raises(UserError):
        feature_stats(x[:1])


def _channel_features(images: torch.Tensor) -> torch.Tensor:
    """A fixed feature network: per-channel mean and std of quadrants (B, 3*4*2)."""
    x = images.float() / 255
    h, w = x.shape[2] // 2, x.shape[3] // 2
    quads = [x[:, :, i * h : (i + 1) * h, j * w : (j + 1) * w] for i in (0, 1) for j in (0, 1)]
    return torch.cat([torch.cat([q.mean((2, 3)), q.std((2, 3))], 1) for q in quads], 1)


def test_compute_fid_on_images():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 200, (40, 3, 8, 8), generator=g, dtype=torch.uint8)
    brighter = [(imgs.int() + d).clamp(0, 255).to(torch.uint8) for d in (10, 40)]
    assert compute_fid(imgs, imgs, _channel_features) == pytest.approx(0.0, abs=1e-7)
    f10, f40 = (compute_fid(imgs, b, _channel_features) for b in brighter)
    assert 0 < f10 < f40
    # Batch size and input form (array vs iterable of batches) do not change the result.
    chunks = [brighter[0][:15].numpy(), brighter[0][15:]]
    assert compute_fid(imgs, chunks, _channel_features, batch_size=7) == pytest.approx(f10)
    other = torch.randint(0, 200, (40, 3, 8, 8), generator=g, dtype=torch.uint8)
    floor = real_vs_real_fid(imgs, other, _channel_features)
    assert 0 < floor < f40
    with pytest.raises(UserError, match="uint8"):
        compute_fid(imgs.float(), imgs, _channel_features)
    with pytest.raises(UserError, match="features"):
        compute_fid(imgs, imgs, lambda x: x.float().mean((1, 2, 3)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_inception_feature_fn_loads_only_a_local_torchscript_file(tmp_path):
    missing = tmp_path / "inception-2015-12-05.pt"
    with pytest.raises(UserError, match=str(missing)):
        inception_feature_fn(missing)
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(UserError, match="TorchScript"):
        inception_feature_fn(tmp_path / "bad.pt")
    net = torch.jit.script(_TinyDetector())
    net.save(str(missing))
    fn = inception_feature_fn(missing)
    gray = torch.full((2, 1, 5, 5), 7, dtype=torch.uint8)
    assert fn(gray).tolist() == [[7.0, 7.0, 7.0]] * 2  # repeated to 3 channels, features on


class _TinyDetector(torch.nn.Module):
    """Stand-in with the StyleGAN Inception call signature ``(x_uint8, return_features)``."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        m = x.float().mean(dim=(2, 3))
        return m if return_features else -m


# ------------------------------------------------------------------------------- diversity
def test_pairwise_distances_known_values():
    f = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    cos = pairwise_distances(f, "cosine")
    np.testing.assert_allclose(cos, [[0, 1, 0], [1, 0, 1], [0, 1, 0]], atol=1e-12)
    l2 = pairwise_distances(f, "l2")
    np.testing.assert_allclose(l2, [[0, 5**0.5, 2], [5**0.5, 0, 13**0.5], [2, 13**0.5, 0]])
    assert mean_pairwise_distance(f, "l2") == pytest.approx((5**0.5 + 2 + 13**0.5) / 3)
    with pytest.raises(UserError):
        pairwise_distances(f, "manhattan")


def test_diversity_within_and_across_prompts():
    f = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])
    d = sample_diversity(f, ["a", "a", "b", "b"], "cosine")
    # within: a -> 1, b -> 0, mean 0.5; across pairs a1-b1, a1-b2 = 0, a2-b1, a2-b2 = 1
    assert (d.within_prompt, d.across_prompt, d.ratio) == pytest.approx((0.5, 0.5, 1.0))
    collapsed = sample_diversity(np.repeat(f[[0, 1]], 3, axis=0), [0, 0, 0, 1, 1, 1])
    assert collapsed.within_prompt == pytest.approx(0.0, abs=1e-12)
    assert collapsed.across_prompt == pytest.approx(1.0)
    single = sample_diversity(f, ["a", "b", "c", "c"], "l2")
    assert single.n_prompts_scored == 1 and single.within_prompt == pytest.approx(1.0)


# ---------------------------------------------------------------------- caption attributes
def _faceforge(n: int, seed: int = 0):
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        labels = sample_labels(rng)
        out.append((labels, make_caption(labels, rng), make_vqa(labels, rng)))
    return out


@pytest.fixture(scope="module")
def faceforge():
    return _faceforge(40)


def test_caption_f1_against_its_own_labels_is_one(faceforge):
    labels, caps = [x[0] for x in faceforge], [x[1] for x in faceforge]
    s = caption_attribute_scores(caps, labels, caps)
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)
    assert (s.macro_precision, s.macro_recall, s.macro_f1) == (1.0, 1.0, 1.0)
    # Against every visible label, recall is far below 1 (captions state a subset).
    s = caption_attribute_scores(caps, labels, reference="labels")
    assert s.precision == 1.0 and 0.2 < s.recall < 0.8
    # No labels: the parsed reference caption is the truth.
    assert caption_attribute_scores(caps, None, caps).f1 == 1.0


def test_flipped_attribute_loses_precision_and_recall(faceforge):
    labels, cap = faceforge[0][0], faceforge[0][1]
    flipped = {**labels, "gender": "male" if labels["gender"] == "female" else "female"}
    base = caption_attribute_scores([cap], [labels], [cap])
    s = caption_attribute_scores([cap], [flipped], [cap])
    n = sum(r["claims"] for r in base.per_attribute.values())
    assert s.precision == pytest.approx((n - 1) / n) and s.recall == pytest.approx((n - 1) / n)
    assert s.per_attribute["gender"]["precision"] == 0.0


def test_caption_scores_hand_computed_with_negation_and_occlusion():
    labels = {a: False if onto.BY_NAME[a].is_binary else None for a in onto.NAMES}
    labels.update(gender="female", hair_color="brown", glasses="sunglasses", eye_color="blue")
    labels.update(earrings=False, smile=True)
    ref = "A woman with brown hair and sunglasses. She wears no earrings and is smiling."
    cand = "A smiling woman with blond hair, blue eyes and earrings, wearing sunglasses."
    s = caption_attribute_scores([cand], [labels], [ref])
    # claims: smile ✓, gender ✓, hair_color ✗, earrings ✗, glasses ✓; eye_color hidden
    # reference: gender, hair_color, glasses, earrings, smile -> recalled: gender, glasses, smile
    assert s.n_unverifiable == 1 and "eye_color" not in s.per_attribute
    assert (s.precision, s.recall) == pytest.approx((3 / 5, 3 / 5))
    assert s.per_attribute["earrings"] == pytest.approx(
        {
            "claims": 1,
            "correct": 0,
            "reference": 1,
            "recalled": 0,
            "precision": 0.0,
            "recall": 0.0,
            "f1": 0.0,
        }
    )
    negated = "A smiling woman with brown hair and sunglasses, wearing no earrings."
    assert caption_attribute_scores([negated], [labels], [ref]).f1 == 1.0
    with pytest.raises(UserError):
        caption_attribute_scores([cand], [labels], None, reference="caption")


# ------------------------------------------------------------------------------------- VQA
def test_vqa_references_score_one_and_always_no_is_split_by_type(faceforge):
    refs = [qa for _, _, pairs in faceforge for qa in pairs]
    s = vqa_accuracy([r["answer"] for r in refs], refs)
    assert s.accuracy == 1.0
    assert set(s.by_category) == {"appearance", "action", "emotion", "reasoning"}
    assert set(s.by_answer_type) == {"yes", "no", "cant_tell", "value"}
    nos = vqa_accuracy(["No."] * len(refs), refs)
    assert nos.by_answer_type["no"] == 1.0 and nos.by_answer_type["yes"] == 0.0
    assert nos.by_answer_type["cant_tell"] == 0.0
    n_no = s.counts["answer_type"]["no"]
    assert nos.accuracy == pytest.approx(n_no / len(refs))


def test_blind_baseline_answers_with_the_training_majority(faceforge):
    from unif2ace.eval.metrics import prior_answers

    train = [
        {"question": "Is she smiling?", "answer": "No", "attribute": "smile", "kind": "yes_no"},
        {"question": "Is she smiling?", "answer": "No", "attribute": "smile", "kind": "yes_no"},
        {"question": "Is she smiling?", "answer": "Yes", "attribute": "smile", "kind": "yes_no"},
        {"question": "Is he smiling?", "answer": "Yes", "attribute": "smile", "kind": "yes_no"},
        {"question": "Hair?", "answer": "Black", "attribute": "hair_color", "kind": "open"},
    ]
    asked = [
        {"question": "is she smiling", "answer": "Yes", "attribute": "smile", "kind": "yes_no"},
        {"question": "Are they smiling?", "answer": "Yes", "attribute": "smile", "kind": "yes_no"},
        {"question": "Why?", "answer": "x", "attribute": "", "kind": "open"},
    ]
    # same normalised question -> its majority; unseen question -> its (attribute, kind)
    # majority (a No/Yes tie: alphabetical); nothing alike -> the overall majority
    assert prior_answers(train, asked) == ["No", "No", "No"]
    with pytest.raises(UserError):
        prior_answers([], asked)
    refs = [qa for _, _, pairs in faceforge for qa in pairs]
    blind = vqa_accuracy(prior_answers(refs, refs), refs).accuracy
    assert 0.0 < blind < 1.0  # questions alone do not give FaceForge's answers


@pytest.mark.parametrize(
    "pred,ref,attr,kind,ok",
    [
        ("Shoulder-length", "Medium-length", "hair_length", "open", True),
        ("long", "Medium-length", "hair_length", "choice", False),
        ("She looks joyful.", "Happy", "emotion", "open", True),
        ("Yes, she is.", "Yes", "smile", "yes_no", True),
        ("Nope", "Yes", "smile", "yes_no", False),
        ("Her mouth is closed.", "No", "mouth_open", "yes_no", True),
        ("No, it is brown.", "No", "hair_color", "yes_no", True),
        (
            "Cannot tell.",
            "I can't tell: her eyes are covered by sunglasses.",
            "eye_color",
            "open",
            True,
        ),
        ("Blue", "I can't tell: her eyes are closed.", "eye_color", "open", False),
        ("I can't tell", "Yes", "wink", "yes_no", False),
        (
            "probably something funny like a joke",
            "Probably something funny, like a joke.",
            "",
            "open",
            True,
        ),
        ("A joke.", "Probably something funny, like a joke.", "", "open", False),
    ],
)
def test_answers_match(pred, ref, attr, kind, ok):
    assert answers_match(pred, ref, attr, kind) is ok


def test_normalize_answer():
    assert normalize_answer("  The Mask!  ") == "mask"
    assert normalize_answer("A widow's peak.") == "widow's peak"


# -------------------------------------------------------------------------- BLEU / CIDEr-D
def test_bleu_hand_computed():
    cand = "The quick brown fox jumps over the dog."
    ref = "the quick brown fox jumped over the lazy dog"
    s = bleu([cand], [[ref]])
    # clipped matches 7/8, 4/7, 2/6, 1/5; c = 8, r = 9
    assert s.precisions == pytest.approx((7 / 8, 4 / 7, 2 / 6, 1 / 5))
    assert s.brevity_penalty == pytest.approx(math.exp(1 - 9 / 8))
    assert s.score == pytest.approx(math.exp(-1 / 8) * (1 / 30) ** 0.25)
    # Corpus level sums counts first (not a mean of sentence scores).
    two = bleu([cand, "a cat sat on the mat"], [[ref], ["a cat sat on the mat", "a cat is here"]])
    assert two.precisions == pytest.approx((13 / 14, 9 / 12, 6 / 10, 4 / 8))
    assert two.score == pytest.approx(
        math.exp(1 - 15 / 14) * (13 / 14 * 9 / 12 * 6 / 10 * 4 / 8) ** 0.25
    )


# The worked example of nltk.translate.bleu_score (Papineni et al. 2002), with the values its
# doctests publish: corpus_bleu 0.5920..., sentence_bleu(hyp1) 0.5045..., and the modified
# precisions 17/18, 10/17 (hyp1) and 8/14, 1/13 (hyp2).
HYP1 = (
    "It is a guide to action which ensures that the military always obeys the commands of the party"
)
HYP2 = "It is to insure the troops forever hearing the activity guidebook that party direct"
REF1 = [
    "It is a guide to action that ensures that the military will forever heed Party commands",
    "It is the guiding principle which guarantees the military forces always being under the "
    "command of the Party",
    "It is the practical guide for the army always to heed the directions of the party",
]
REF2 = "he was interested in world history because he read the book"


def test_bleu_matches_nltk_published_example():
    refs1 = [r.split() for r in REF1]  # token lists: case kept, as in the nltk example
    s1 = bleu([HYP1.split()], [refs1])
    assert s1.score == pytest.approx(0.5045, abs=1e-4)
    assert s1.precisions[:2] == pytest.approx((17 / 18, 10 / 17))
    assert bleu([HYP2.split()], [refs1]).precisions[:2] == pytest.approx((8 / 14, 1 / 13))
    hyp2 = "he read the book because he was interested in world history".split()
    corpus = bleu([HYP1.split(), hyp2], [refs1, [REF2.split()]])
    assert corpus.score == pytest.approx(0.5920, abs=1e-4)


def test_bleu_clipping_closest_length_and_identity():
    s = bleu(["the the the the the the the"], [["the cat is on the mat", "there is a cat"]])
    assert s.precisions[0] == pytest.approx(2 / 7) and s.score == 0.0  # Papineni et al. §2.1
    s = bleu([["a", "b", "c", "d", "e"]], [[["a", "b", "c", "d"], list("abcdef")]])
    assert s.ref_length == 4 and s.brevity_penalty == 1.0  # tie 4 vs 6 -> the shorter
    assert bleu_4(["a man with a beard"], [["A man with a beard."]]) == pytest.approx(1.0)


def test_tokenize():
    want = "she 's smiling is n't she a close-up".split()
    assert tokenize("She's smiling, isn't she? A close-up.") == want


def test_cider_d_hand_computed():
    refs = [["a b"], ["c d"]]  # two images: every n-gram has df 1, idf log 2
    assert cider_d(["a b", "c d"], refs).per_item == pytest.approx((5.0, 5.0))  # n=3,4 empty
    # unigram cos 1/2, bigram 0, same length
    assert cider_d(["a x", "c d"], refs).per_item[0] == pytest.approx(10 * 0.5 / 4)
    # clipping: unigram sum min(2,1)*1 + 1*1 = 2 over sqrt5*sqrt2; bigram 1/sqrt2; l 2 vs 1
    want = 10 * math.exp(-1 / 72) * (2 / 10**0.5 + 2**-0.5) / 4
    assert cider_d(["a a b", "c d"], refs).per_item[0] == pytest.approx(want)
    # length penalty: 7 vs 1 bigrams; unigram cos 2/4, bigram 1/sqrt7
    want = 10 * math.exp(-36 / 72) * (0.5 + 7**-0.5) / 4
    assert cider_d(["a b e f g h i j", "c d"], refs).per_item[0] == pytest.approx(want)


def test_cider_d_identity_is_ten_and_drops_with_edits():
    refs = [
        ["a young woman with long red hair and freckles"],
        ["an old man with a gray beard and glasses"],
        ["a smiling boy wearing a blue cap outdoors"],
    ]
    exact = cider_d([r[0] for r in refs], refs)
    assert exact.score == pytest.approx(10.0)
    edited = ["a young woman with long brown hair and freckles", refs[1][0], refs[2][0]]
    worse = ["a young woman with short brown hair", refs[1][0], refs[2][0]]
    s1, s2 = cider_d(edited, refs).per_item[0], cider_d(worse, refs).per_item[0]
    assert 10.0 > s1 > s2 > 0
    assert cider_d(["zebra", refs[1][0], refs[2][0]], refs).per_item[0] == 0.0
    with pytest.raises(UserError):
        cider_d(["x"], [])


# ----------------------------------------------------------------------- ablation statistics
def test_welch_test_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    from scipy.special import betainc as sp_betainc

    from unif2ace.eval.metrics.stats import betainc, welch_test

    for a, b, x in [(1.5, 0.5, 0.3), (0.5, 0.5, 0.99), (10, 0.5, 0.9), (2, 3, 0.01), (1, 1, 0.5)]:
        assert betainc(a, b, x) == pytest.approx(float(sp_betainc(a, b, x)), rel=1e-9, abs=1e-12)
    cases = [
        ([4.79, 4.81, 4.66], [4.67, 5.16, 4.68]),
        ([0.1, 0.2, 0.3], [0.5, 0.6, 0.8]),
        ([1.0, 1.1], [3.0, 3.2, 2.9, 3.1]),
        ([0.42, 0.41, 0.43], [0.42, 0.42, 0.44]),
    ]
    for a, b in cases:
        ours, ref = welch_test(a, b), stats.ttest_ind(a, b, equal_var=False)
        assert ours.p == pytest.approx(float(ref.pvalue), rel=1e-7)
        assert ours.delta / ours.se == pytest.approx(float(ref.statistic), rel=1e-9)
    assert math.isnan(welch_test([1.0], [2.0, 3.0]).p) and welch_test([1.0], [2.0]).delta == -1.0
    assert welch_test([1.0, 1.0], [1.0, 1.0]).p == 1.0


def _vqa_interval(right, asked):
    from unif2ace.eval.intervals import intervals

    rows = [[r, n] for r, n in zip(right, asked, strict=True)]
    units = {"ids": list(range(len(rows))), "vqa": rows}
    return intervals(units)["vqa_accuracy"]


def test_bootstrap_interval_matches_the_normal_approximation_and_is_seeded():
    from unif2ace.eval.metrics.stats import bootstrap_ci

    rng = np.random.default_rng(0)
    x = (rng.random(400) < 0.5).astype(int)  # 400 faces, one question each, coin flips
    lo, hi = _vqa_interval(x, np.ones_like(x))
    half = 1.96 * math.sqrt(x.mean() * (1 - x.mean()) / len(x))
    assert lo < x.mean() < hi and (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert _vqa_interval(x, np.ones_like(x)) == [lo, hi]  # seeded
    assert _vqa_interval([3] * 5, [4] * 5) == pytest.approx([0.75, 0.75])
    assert all(math.isnan(v) for v in _vqa_interval([1], [1]))
    assert all(math.isnan(v) for v in bootstrap_ci(lambda idx: np.full(len(idx), np.nan), 5))


def test_bootstrap_over_faces_keeps_a_faces_questions_together():
    """50 faces x 8 answers that agree within a face: the interval is as wide as 50 flips,
    not 400 (questions about one face are not independent evidence)."""
    rng = np.random.default_rng(1)
    face = (rng.random(50) < 0.5).astype(int)
    clustered = _vqa_interval(8 * face, np.full(50, 8))
    naive = _vqa_interval(np.repeat(face, 8), np.ones(400))
    width = 2 * 1.96 * math.sqrt(face.mean() * (1 - face.mean()) / 50)
    assert clustered[1] - clustered[0] == pytest.approx(width, rel=0.2)
    assert (naive[1] - naive[0]) < 0.5 * (clustered[1] - clustered[0])


def test_caption_f1_of_units_follows_prf_and_paired_differences():
    """The unit metrics reproduce the caption scorer's micro P / F1 (on wrong captions);
    an evaluation against itself differs by exactly 0; a better copy is beyond noise; other
    faces are refused."""
    from unif2ace.eval.intervals import paired_differences, point_values
    from unif2ace.eval.metrics.caption_attributes import per_caption_counts

    labels, caps = [x[0] for x in _faceforge(40)], [x[1] for x in _faceforge(40)]
    shuffled = caps[1:] + caps[:1]
    counts = per_caption_counts(shuffled, labels, caps)
    rng = np.random.default_rng(2)
    units = {"ids": list(range(40)),
             "caption": [[c.correct, c.claims, c.recalled, c.reference] for c in counts],
             "vqa": [[int(k), 8] for k in rng.integers(2, 7, 40)],
             "vqa_blind": [[int(k), 8] for k in rng.integers(2, 7, 40)]}  # fmt: skip
    s = caption_attribute_scores(shuffled, labels, caps)
    v = point_values(units)
    assert v["caption_attribute_precision"] == pytest.approx(s.precision)
    assert v["caption_attribute_f1"] == pytest.approx(s.f1) and s.f1 < 0.9
    same = paired_differences(units, units)
    assert all(d["diff"] == 0 and d["ci95"] == [0, 0] for d in same.values())
    better = {**units, "vqa": [[min(r + 2, 8), n] for r, n in units["vqa"]]}
    d = paired_differences(units, better)["vqa_accuracy"]
    assert d["diff"] > 0 and d["beyond_noise"] and d["ci95"][0] > 0
    assert d["after"] == pytest.approx(v["vqa_accuracy"] + d["diff"])
    with pytest.raises(UserError, match="same faces"):
        paired_differences(units, {**better, "ids": list(range(1, 41))})


def test_per_caption_counts_sum_to_the_micro_scores(faceforge):
    from unif2ace.eval.metrics.caption_attributes import AttributeCounts, per_caption_counts

    labels, caps = [x[0] for x in faceforge], [x[1] for x in faceforge]
    shuffled = caps[1:] + caps[:1]  # wrong captions: precision and recall well below 1
    total = AttributeCounts()
    for c in per_caption_counts(shuffled, labels, caps):
        total.add(c)
    s = caption_attribute_scores(shuffled, labels, caps)
    assert total.scores() == pytest.approx((s.precision, s.recall, s.f1))
    assert s.precision < 0.9


def test_reported_intervals_take_the_points_format():
    from unif2ace.eval.report import fmt_metric, with_interval

    assert with_interval(fmt_metric(208.344), [185.633, 234.366]) == "208.3 [185.6, 234.4]"
    assert with_interval(fmt_metric(0.4941), [0.4551, 0.5362]) == "0.494 [0.455, 0.536]"
    assert with_interval(fmt_metric(-7.36), [float("nan"), 1.0]) == "-7.360"
