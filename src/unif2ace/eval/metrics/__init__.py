"""Evaluation metrics of unif2ace (issue 6): pure functions, no model loading.

* :mod:`.fid` — Fréchet distance / FID with a pluggable feature network, real-vs-real floor.
* :mod:`.kid` — unbiased kernel distance (KID) with per-image terms for intervals.
* :mod:`.diversity` — mean pairwise feature distance within and across prompts.
* :mod:`.caption_attributes` — caption attribute precision / recall / F1 against labels.
* :mod:`.vqa` — VQA accuracy by category, question kind and answer type.
* :mod:`.text` — corpus BLEU-4 and CIDEr-D.
* :mod:`.llm_judge` — the paper's Desc / Conv 1–10 LLM-judge scores (optional endpoint).
"""

from .caption_attributes import CaptionAttributeScores, caption_attribute_scores
from .diversity import DiversityScores, mean_pairwise_distance, pairwise_distances, sample_diversity
from .fid import (
    compute_fid,
    extract_features,
    feature_stats,
    fid_from_features,
    frechet_distance,
    inception_feature_fn,
    real_vs_real_fid,
)
from .kid import KidTerms, kid_from_features, kid_resampled, kid_terms
from .llm_judge import JudgeScores, conv_scores, desc_scores, llm_judge, parse_score
from .text import BleuScore, CiderScore, bleu, bleu_4, cider_d, tokenize
from .vqa import VQAScores, answers_match, normalize_answer, prior_answers, vqa_accuracy

__all__ = [
    "BleuScore",
    "CaptionAttributeScores",
    "CiderScore",
    "DiversityScores",
    "JudgeScores",
    "KidTerms",
    "VQAScores",
    "answers_match",
    "bleu",
    "bleu_4",
    "caption_attribute_scores",
    "cider_d",
    "compute_fid",
    "conv_scores",
    "desc_scores",
    "extract_features",
    "feature_stats",
    "fid_from_features",
    "frechet_distance",
    "inception_feature_fn",
    "kid_from_features",
    "kid_resampled",
    "kid_terms",
    "llm_judge",
    "mean_pairwise_distance",
    "normalize_answer",
    "pairwise_distances",
    "parse_score",
    "prior_answers",
    "real_vs_real_fid",
    "sample_diversity",
    "tokenize",
    "vqa_accuracy",
]
