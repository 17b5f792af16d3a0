"""LLM-judge scores for understanding, the paper's protocol (NOTES.md §7): a text-only judge
(the paper: GPT-4o or DeepSeek-v3) rates each model caption ("Desc") and each VQA answer
("Conv") from 1 to 10 against the reference, through any OpenAI-compatible endpoint
(:class:`~unif2ace.eval.llm.ChatBackend`).

The judge sees the reference and the candidate, never the image; the prompts ask for one
line ``Score: N``. Replies without a score in 1..10 are counted as ``unparsed`` and left out
of the mean (never silently scored). Optional: nothing here runs without ``--llm-url``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

DESC_PROMPT = (
    "You are grading a description of a person's face against a reference description "
    "written by an expert who saw the face.\n\nReference:\n{reference}\n\nCandidate:\n"
    "{candidate}\n\nRate the candidate from 1 to 10 for how accurately and completely it "
    "describes the same face: reward attributes that agree with the reference (hair, eyes, "
    "skin, facial hair, make-up, accessories, expression, emotion, action), penalise "
    "contradictions and invented details more than omissions. Reply with one line: Score: N"
)
CONV_PROMPT = (
    "You are grading an answer to a question about a person's face against the reference "
    "answer of an expert who saw the face.\n\nQuestion: {question}\nReference answer: "
    "{reference}\nCandidate answer: {candidate}\n\nRate the candidate from 1 to 10 for "
    "correctness and helpfulness (10: same meaning as the reference; 1: wrong or unrelated)."
    " Reply with one line: Score: N"
)
_NUM = r"(10(?:\.0+)?|[1-9](?:\.\d+)?)"
_SCORE = re.compile(rf"score\s*[:=]?\s*\**\s*{_NUM}\s*(?:/\s*10)?\b", re.I)
_BARE = re.compile(rf"^\s*\**\s*{_NUM}\s*(?:/\s*10)?\s*\**\s*\.?\s*$")


def parse_score(reply: str) -> float | None:
    """The 1..10 score in a judge reply (``Score: 7``, ``score = 7.5/10``, or a bare ``7``)."""
    m = _SCORE.search(reply) or _BARE.match(reply)
    if not m:
        return None
    value = float(m.group(1))
    return int(value) if value.is_integer() else value


@dataclass
class JudgeScores:
    """Mean 1..10 score over the parsed replies, with counts and every item's score."""

    mean: float
    n: int
    unparsed: int
    scores: list[float | None] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "n": self.n, "unparsed": self.unparsed}


def _summarise(scores: list[float | None]) -> JudgeScores:
    ok = [s for s in scores if s is not None]
    mean = sum(ok) / len(ok) if ok else float("nan")
    return JudgeScores(mean, len(ok), len(scores) - len(ok), scores)


def _ask(backend, prompt: str) -> float | None:
    return parse_score(backend.complete([{"role": "user", "content": prompt}]))


def desc_scores(backend, captions: Sequence[str], references: Sequence[str]) -> JudgeScores:
    """Desc: one judge request per caption."""
    if len(captions) != len(references):
        raise ValueError("one reference per caption")
    return _summarise(
        [
            _ask(backend, DESC_PROMPT.format(reference=r, candidate=c))
            for c, r in zip(captions, references, strict=True)
        ]
    )


def conv_scores(backend, qa: Sequence[dict]) -> JudgeScores:
    """Conv: one judge request per ``{"question", "answer", "reference"}`` row."""
    return _summarise(
        [
            _ask(
                backend,
                CONV_PROMPT.format(
                    question=r["question"], reference=r["reference"], candidate=r["answer"]
                ),
            )
            for r in qa
        ]
    )


def llm_judge(backend, examples: Sequence[dict]) -> dict:
    """Desc and Conv for :func:`~unif2ace.eval.evaluate.evaluate_understanding`'s examples
    (``{"caption", "reference", "qa": [{"question", "answer", "reference"}]}``)."""
    desc = desc_scores(
        backend, [e["caption"] for e in examples], [e["reference"] for e in examples]
    )
    conv = conv_scores(backend, [q for e in examples for q in e["qa"]])
    return {"judge_model": backend.model, "desc": desc.to_dict(), "conv": conv.to_dict()}
