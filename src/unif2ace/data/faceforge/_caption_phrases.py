"""Phrase banks, shared helpers and the caption state :class:`Ctx` for FaceForge captions.

Private to :mod:`unif2ace.data.faceforge.captions` (which re-exports the public names); the
sentence builders live in :mod:`._caption_sentences`, the reasoning rules in
:mod:`._caption_reasoning`. Every phrase names its value unambiguously so that
:func:`unif2ace.data.caption_parser.parse_caption` can read it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import ontology as onto
from ..ontology import Labels, Value

# ---------------------------------------------------------------------------------------------
# Phrase banks. Every phrase names its value unambiguously (the parser must read it back).
AGE_ADJ = {
    "young": ("young", "youthful"),
    "middle_aged": ("middle-aged",),
    "old": ("elderly", "older", "senior"),
}
AGE_DECADES = {
    "young": ("twenties", "thirties"),
    "middle_aged": ("forties", "fifties"),
    "old": ("sixties", "seventies", "eighties"),
}
HAIR_COLOR = {
    "black": ("black", "jet-black", "raven"),
    "brown": ("brown", "chestnut", "dark brown", "light brown"),
    "blond": ("blond", "golden", "honey-blond", "flaxen"),
    "red": ("red", "auburn", "ginger", "copper"),
    "gray": ("gray", "grey", "silver", "salt-and-pepper"),
    "white": ("white", "snow-white", "snowy"),
}
HAIR_LENGTH = {
    "short": ("short", "cropped", "close-cropped"),
    "medium": ("medium-length", "shoulder-length"),
    "long": ("long", "flowing"),
}
HAIR_TYPE = {"straight": ("straight", "sleek"), "wavy": ("wavy",), "curly": ("curly", "coily")}
EYE_COLOR = {
    "brown": ("brown", "dark brown", "chocolate"),
    "blue": ("blue", "pale blue", "bright blue"),
    "green": ("green", "emerald"),
    "gray": ("gray", "grey", "steel-gray"),
    "hazel": ("hazel", "amber"),
}
SKIN_TONE = {
    "pale": ("pale", "porcelain", "ivory"),
    "light": ("light", "fair"),
    "medium": ("olive", "medium-toned"),
    "tan": ("tanned", "tan", "bronzed"),
    "brown": ("brown", "warm brown"),
    "dark": ("dark", "deep brown", "ebony"),
}
EMOTION_ADJ = {
    "neutral": ("neutral", "calm", "composed", "impassive"),
    "happy": ("happy", "cheerful", "joyful", "delighted"),
    "sad": ("sad", "downcast", "melancholy", "unhappy"),
    "angry": ("angry", "furious", "irritated"),
    "surprised": ("surprised", "astonished", "amazed", "startled"),
    "fearful": ("fearful", "frightened", "scared", "alarmed"),
    "disgusted": ("disgusted", "repulsed", "revolted"),
    "contempt": ("contemptuous", "scornful", "disdainful"),
}
BROW_SHAPE = {
    "straight": ("straight", "flat"),
    "arched": ("arched", "curved"),
    "angled": ("angled", "sharply angled", "angular"),
}
BUSHY = {True: ("bushy", "thick", "heavy"), False: ("thin", "fine", "slender")}
NARROW = {True: ("narrow", "almond-shaped"), False: ("wide", "large, round")}
FACE_SHAPE = {
    "oval": ("oval",),
    "round": ("round",),
    "square": ("square", "angular"),
    "heart": ("heart-shaped",),
    "long": ("long", "oblong"),
}
NOSE_SIZE = {
    "small": ("small", "button", "petite"),
    "medium": ("medium-sized", "average-sized"),
    "big": ("big", "large", "prominent"),
}
POINTY = {True: ("pointy", "pointed", "sharp"), False: ("rounded", "soft")}
LIPS = {"thin": ("thin",), "medium": ("medium-sized", "medium"), "full": ("full", "plump")}
# Texture and accessory phrases; ``{p}`` is the possessive pronoun.
TEXTURE = {
    "freckles": ("a dusting of freckles across {p} nose", "freckles", "a sprinkle of freckles"),
    "moles": ("a small mole on {p} cheek", "a beauty mark", "a mole near {p} mouth"),
    "wrinkles": ("fine wrinkles around {p} eyes", "wrinkles", "creases on {p} forehead"),
    "rosy_cheeks": ("rosy cheeks", "flushed cheeks"),
    "bags_under_eyes": ("bags under {p} eyes", "puffy under-eyes"),
}
ACCESSORY = {
    "earrings": ("earrings", "small earrings", "a pair of earrings"),
    "necklace": ("a necklace", "a thin necklace", "a necklace around {p} neck"),
    "hat": ("a hat", "a hat on {p} head"),
}


def pick(rng: np.random.Generator, seq: Sequence):
    """One element of ``seq``, uniformly."""
    return seq[int(rng.integers(len(seq)))]


def join(items: list[str], conj: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conj} " + items[-1]


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def art(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


@dataclass
class Ctx:
    """Caption state: visible labels, pronouns and the facts stated so far."""

    vis: Labels
    rng: np.random.Generator
    female: bool
    stated: dict[str, Value] = field(default_factory=dict)

    @classmethod
    def create(cls, labels: Labels, rng: np.random.Generator) -> Ctx:
        onto.validate(labels)  # UserError on an unknown attribute, value or contradiction
        vis = onto.visible_labels(labels)
        return cls(vis, rng, vis.get("gender") == "female")

    @property
    def subj(self) -> str:
        return "she" if self.female else "he"

    @property
    def poss(self) -> str:
        return "her" if self.female else "his"

    @property
    def obj(self) -> str:
        return "her" if self.female else "him"

    def p(self, prob: float) -> bool:
        return bool(self.rng.random() < prob)

    def pick(self, seq: Sequence):
        return pick(self.rng, seq)

    def is_(self, attr: str, value: Value = True) -> bool:
        """Attribute visible with this value."""
        return attr in self.vis and self.vis[attr] == value

    def say(self, attr: str, bank: dict | None = None) -> str:
        """Record that the caption states ``attr`` (its visible value); return a phrase."""
        if attr not in self.vis:
            raise RuntimeError(f"caption would state hidden attribute {attr!r}")
        self.stated[attr] = self.vis[attr]
        return self.pick(bank[self.vis[attr]]) if bank is not None else ""
