"""FaceForge captions and generation prompts from a label set (issue 2 §4, NOTES.md §6).

``make_caption(labels, rng)`` writes a detailed caption in varied English — at the paper's
scale (UniF²ace-130K: ~120 tokens, ~17.7 attributes per caption) — covering the *visible*
attributes (:func:`unif2ace.data.ontology.visible_labels`): the salient present ones, the core
categorical ones, a fair share of facial details, natural absences ("clean-shaven", "no
glasses") and one or two *reasoning* sentences when the labels support them (bags under the
eyes and narrow eyes -> looks tired). Hidden attributes are never described; the occluder
itself is ("her eyes are hidden behind dark sunglasses").

``make_prompts(labels, rng, n)`` writes short generation prompts, longest first.

Every random choice goes through the caller's ``numpy.random.Generator``: same seed, same
text. :func:`caption_with_facts` also returns what the caption intends to state, which the
tests compare with :func:`unif2ace.data.caption_parser.parse_caption`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import UserError
from ..ontology import Labels, Value

# Phrase banks, helpers and sentence builders live in private modules; their public names are
# re-exported here (vqa.py imports ``Ctx`` and ``cap`` from this module).
from ._caption_phrases import (  # noqa: F401
    AGE_ADJ,
    AGE_DECADES,
    BROW_SHAPE,
    BUSHY,
    EMOTION_ADJ,
    EYE_COLOR,
    FACE_SHAPE,
    HAIR_COLOR,
    HAIR_LENGTH,
    HAIR_TYPE,
    LIPS,
    NARROW,
    NOSE_SIZE,
    POINTY,
    SKIN_TONE,
    Ctx,
    art,
    cap,
    join,
    pick,
)
from ._caption_reasoning import reasoning_sentences
from ._caption_sentences import (  # noqa: F401
    GROUPS,
    accessories_sentence,
    expression_sentence,
    eyes_sentence,
    face_sentence,
    facial_hair_sentence,
    hair_sentence,
    intro_sentence,
    makeup_sentence,
    pose_sentence,
    skin_sentence,
)

__all__ = ["caption_with_facts", "make_caption", "make_prompts"]


def caption_with_facts(labels: Labels, rng: np.random.Generator) -> tuple[str, dict[str, Value]]:
    """A caption and the ``{attribute: value}`` facts it intends to state.

    Args:
        labels: a full label set (every ontology attribute).
        rng: the only source of randomness.
    """
    ctx = Ctx.create(labels, rng)
    sentences = [intro_sentence(ctx)]
    n_app = len(GROUPS) - 2  # appearance groups; expression and pose last most of the time
    if rng.random() < 0.7:
        order = [*rng.permutation(n_app), *(n_app + rng.permutation(2))]
    else:
        order = list(rng.permutation(len(GROUPS)))
    for gi in order:
        s = GROUPS[int(gi)](ctx)
        if s:
            sentences.append(s)
    sentences += reasoning_sentences(ctx)
    return " ".join(sentences), dict(ctx.stated)


def make_caption(labels: Labels, rng: np.random.Generator) -> str:
    """A detailed caption of the visible attributes of ``labels`` (see module docstring)."""
    return caption_with_facts(labels, rng)[0]


# ---------------------------------------------------------------------------------------------
# Prompts: what a user types to generate a face.
_BIN_PROMPT: dict[str, Sequence[str]] = {
    "bangs": ("bangs", "a fringe"),
    "beard": ("a beard", "a full beard"),
    "five_o_clock_shadow": ("stubble", "a five o'clock shadow"),
    "sideburns": ("sideburns",),
    "mustache": ("a mustache", "a moustache"),
    "earrings": ("earrings", "small earrings"),
    "necklace": ("a necklace",),
    "hat": ("a hat", "a cap"),
    "face_mask": ("a face mask", "a surgical mask"),
    "freckles": ("freckles",),
    "wrinkles": ("wrinkles",),
    "moles": ("a mole", "a beauty mark"),
    "rosy_cheeks": ("rosy cheeks",),
    "bags_under_eyes": ("bags under the eyes",),
    "lipstick": ("lipstick",),
    "makeup": ("eye makeup", "eyeshadow"),
    "bushy_eyebrows": ("bushy eyebrows", "thick eyebrows"),
    "narrow_eyes": ("narrow eyes",),
    "pointy_nose": ("a pointy nose",),
    "double_chin": ("a double chin",),
    "high_cheekbones": ("high cheekbones",),
    "raised_eyebrows": ("raised eyebrows",),
    "eyes_closed": ("eyes closed", "closed eyes"),
    "head_tilt": ("a tilted head",),
    "mouth_open": ("mouth open", "parted lips"),
}
_PRE_ACTION = {
    "laugh": "laughing",
    "smile": "smiling",
    "frown": "frowning",
    "glare": "glaring",
    "wink": "winking",
}


def _prompt_pool(ctx: Ctx) -> list[tuple[str, str, Value, str]]:
    """(kind, attribute, value, phrase) candidates; kind: pre | hair | with | neg."""
    v, r = ctx.vis, ctx.rng
    pool: list[tuple[str, str, Value, str]] = []
    for a, word in _PRE_ACTION.items():
        if v.get(a) is True and not (a == "smile" and v.get("laugh")):
            pool.append(("pre", a, True, word))
    if v.get("emotion") not in (None, "neutral", "happy") and not any(p[0] == "pre" for p in pool):
        pool.append(("pre", "emotion", v["emotion"], pick(r, EMOTION_ADJ[v["emotion"]])))
    if v.get("age") is not None:
        pool.append(("age", "age", v["age"], pick(r, AGE_ADJ[v["age"]])))
    if v.get("bald") is True:
        pool.append(("pre", "bald", True, "bald"))
    for a, bank in (
        ("hair_length", HAIR_LENGTH),
        ("hair_type", HAIR_TYPE),
        ("hair_color", HAIR_COLOR),
    ):
        if v.get(a) is not None:
            pool.append(("hair", a, v[a], pick(r, bank[v[a]])))
    if v.get("eye_color") is not None:
        pool.append(
            ("with", "eye_color", v["eye_color"], pick(r, EYE_COLOR[v["eye_color"]]) + " eyes")
        )
    if v.get("skin_tone") is not None:
        pool.append(
            ("with", "skin_tone", v["skin_tone"], pick(r, SKIN_TONE[v["skin_tone"]]) + " skin")
        )
    if v.get("glasses") in ("eyeglasses", "sunglasses"):
        pool.append(("with", "glasses", v["glasses"], v["glasses"]))
    for a, bank in _BIN_PROMPT.items():
        if v.get(a) is True:
            pool.append(("with", a, True, pick(r, bank)))
    if v.get("head_turn") in ("left", "right"):
        pool.append(("with", "head_turn", v["head_turn"], f"head turned to the {v['head_turn']}"))
    if v.get("glasses") == "none":
        pool.append(("neg", "glasses", "none", "no glasses"))
    if v.get("earrings") is False and v.get("necklace") is False:
        pool.append(("neg", "earrings+necklace", False, "no jewellery"))
    return pool


def _render_prompt(ctx: Ctx, chosen: list[tuple[str, str, Value, str]], style: int) -> str:
    noun = pick(ctx.rng, ("woman", "lady") if ctx.female else ("man", "guy"))
    pre = [p[3] for p in chosen if p[0] == "pre"]
    age = [p[3] for p in chosen if p[0] == "age"]
    hair = [p[3] for p in chosen if p[0] == "hair"]
    items = ([" ".join(hair) + " hair"] if hair else []) + [p[3] for p in chosen if p[0] == "with"]
    negs = [p[3] for p in chosen if p[0] == "neg"]
    if style == 2:  # tag style; negative tags last so their scope is their own tag
        return ", ".join([" ".join(pre + age + [noun])] + items + negs)
    head = " ".join(pre + age + [noun])
    head = ("an " if head[0] in "aeiou" else "a ") + head
    if style == 1:
        head = pick(ctx.rng, ("portrait of ", "close-up photo of ", "headshot of ")) + head
    parts = items + negs
    if not parts:
        return head
    tail = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{head} with {tail}"


def make_prompts(labels: Labels, rng: np.random.Generator, n: int = 3) -> list[str]:
    """``n`` short generation prompts of decreasing length, each a subset of the visible
    attributes ("a smiling young woman with red curly hair, freckles and gold earrings")."""
    if n < 0:
        raise UserError(f"number of prompts must be >= 0, not {n}")
    ctx = Ctx.create(labels, rng)
    pool = _prompt_pool(ctx)
    sizes = sorted({max(1, round(len(pool) * f)) for f in np.linspace(0.7, 0.15, n)}, reverse=True)
    while len(sizes) < n:
        sizes.append(max(1, sizes[-1] - 1) if sizes else 1)
    prompts = []
    for k in sizes[:n]:
        idx = sorted(int(i) for i in rng.choice(len(pool), size=min(k, len(pool)), replace=False))
        prompts.append(_render_prompt(ctx, [pool[i] for i in idx], int(rng.integers(3))))
    return sorted(prompts, key=lambda t: -len(t.split()))  # stable: longest first
